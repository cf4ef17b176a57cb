"""LARS (layer-wise adaptive rate scaling) optimizer for Keras 3, as in SimCLR.

LARS (You et al., 2017) scales each variable's learning rate by a trust ratio
`eeta * ||w|| / ||g||`, which keeps training stable at batch sizes of 4096 and
more. Weight decay is L2-style (added to the gradient before the trust ratio),
not the decoupled decay that the Keras base optimizer applies, so the base
class is always given `weight_decay=None`.

Variables are matched against the exclusion patterns by their Keras path
(`"model/head_supervised/kernel"`), decided once in `build()`. Inside
`update_step` the TensorFlow backend hands over the raw `tf.Variable`, whose
name may have lost the layer names, so it is never matched there.
"""

import re

import keras
from keras import ops


def variable_path(variable):
    """Returns the name used to match a variable against exclusion patterns.

    Args:
        variable: A `keras.Variable` (matched by its `path`, e.g.
            `"simclr/head_supervised/kernel"`) or a `tf.Variable` (matched by
            its `name`).

    Returns:
        The path or name as a string.
    """
    return getattr(variable, "path", None) or variable.name


def _matches_any(patterns, name):
    return any(re.search(pattern, name) for pattern in patterns)


@keras.saving.register_keras_serializable(package="simclr_tf2")
class LARS(keras.optimizers.Optimizer):
    """Layer-wise adaptive rate scaling with (classic) momentum.

    For a variable `w` with gradient `g`, learning rate `lr`, momentum `m` and
    momentum buffer `v`, with `classic_momentum=True`:

    ```
    g = g + weight_decay * w             # unless excluded from weight decay
    r = eeta * ||w|| / ||g||             # 1 if either norm is 0 or excluded
    v = m * v + lr * r * g
    w = w - v
    ```

    With `classic_momentum=False` the trust ratio is taken on the momentum
    buffer instead: `v = m * v + g`, `r = eeta * ||w|| / ||v||`,
    `w = w - lr * r * v`.

    Args:
        learning_rate: A float, or a
            `keras.optimizers.schedules.LearningRateSchedule`.
        momentum: Momentum coefficient `m`.
        weight_decay: L2 weight decay coefficient, added to the gradient.
        eeta: LARS trust coefficient.
        exclude_from_weight_decay: Patterns (substrings or regular
            expressions, matched with `re.search`) of variable paths that get
            no weight decay, e.g. `("batch_normalization", "bias")`.
        exclude_from_layer_adaptation: Patterns of variable paths that get no
            trust ratio (plain momentum SGD). Defaults to
            `exclude_from_weight_decay` when `None`.
        classic_momentum: Whether to use the classic momentum form above.
        name: Name of the optimizer.
        **kwargs: Passed to `keras.optimizers.Optimizer` (e.g.
            `global_clipnorm`, `use_ema`). `weight_decay` there is always
            `None`; this class applies its own.
    """

    def __init__(
        self,
        learning_rate,
        momentum=0.9,
        weight_decay=0.0,
        eeta=0.001,
        exclude_from_weight_decay=None,
        exclude_from_layer_adaptation=None,
        classic_momentum=True,
        name="LARS",
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate, weight_decay=None, name=name, **kwargs
        )
        self.momentum = momentum
        self.lars_weight_decay = weight_decay
        self.eeta = eeta
        # Not `self.exclude_from_weight_decay`: that is a base-class method.
        self.wd_exclude_patterns = tuple(exclude_from_weight_decay or ())
        if exclude_from_layer_adaptation is None:
            exclude_from_layer_adaptation = self.wd_exclude_patterns
        self.adaptation_exclude_patterns = tuple(exclude_from_layer_adaptation)
        self.classic_momentum = classic_momentum

    def build(self, variables):
        """Creates one momentum slot per variable and fixes its exclusions.

        Args:
            variables: The trainable `keras.Variable`s to optimise.
        """
        if self.built:
            return
        super().build(variables)
        self.momentums = [
            self.add_variable_from_reference(v, name="momentum")
            for v in variables
        ]
        paths = [variable_path(v) for v in variables]
        self._use_weight_decay_flags = [
            not _matches_any(self.wd_exclude_patterns, p) for p in paths
        ]
        self._use_adaptation_flags = [
            not _matches_any(self.adaptation_exclude_patterns, p)
            for p in paths
        ]

    def _trust_ratio(self, weights, update):
        """Returns `eeta * ||weights|| / ||update||`, or 1 if a norm is 0."""
        w_norm = ops.sqrt(ops.sum(ops.square(weights)))
        u_norm = ops.sqrt(ops.sum(ops.square(update)))
        both_positive = ops.logical_and(w_norm > 0, u_norm > 0)
        # Safe denominator: `where` evaluates both branches.
        safe_u_norm = ops.where(both_positive, u_norm, ops.ones_like(u_norm))
        ratio = ops.cast(self.eeta, weights.dtype) * w_norm / safe_u_norm
        return ops.where(both_positive, ratio, ops.ones_like(ratio))

    def update_step(self, gradient, variable, learning_rate):
        """Applies one LARS update to `variable`.

        Args:
            gradient: Gradient tensor, same shape as `variable`.
            variable: The variable to update.
            learning_rate: Scalar learning rate for this step.
        """
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        momentum = ops.cast(self.momentum, dtype)
        # Densify sparse (IndexedSlices) gradients: the norms need all of it.
        grad = ops.cast(ops.convert_to_tensor(gradient), dtype)
        velocity = self.momentums[index]
        if self._use_weight_decay_flags[index] and self.lars_weight_decay:
            grad = grad + ops.cast(self.lars_weight_decay, dtype) * variable
        use_adaptation = self._use_adaptation_flags[index]
        if self.classic_momentum:
            ratio = self._trust_ratio(variable, grad) if use_adaptation else 1.0
            next_velocity = momentum * velocity + lr * ratio * grad
            update = next_velocity
        else:
            next_velocity = momentum * velocity + grad
            ratio = (
                self._trust_ratio(variable, next_velocity)
                if use_adaptation
                else 1.0
            )
            update = lr * ratio * next_velocity
        self.assign(velocity, next_velocity)
        self.assign_sub(variable, update)

    def get_config(self):
        """Returns the constructor arguments as a serialisable dict."""
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "weight_decay": self.lars_weight_decay,
                "eeta": self.eeta,
                "exclude_from_weight_decay": list(self.wd_exclude_patterns),
                "exclude_from_layer_adaptation": list(
                    self.adaptation_exclude_patterns
                ),
                "classic_momentum": self.classic_momentum,
            }
        )
        return config
