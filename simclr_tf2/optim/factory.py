"""Builds SimCLR optimizers by name, plus the matching weight-decay loss.

With LARS, weight decay happens inside the optimizer for every variable except
batch norm, biases and the supervised head; the supervised head's kernels are
decayed through the loss instead (`weight_decay_loss`). With momentum or Adam
all decay goes through the loss.
"""

import re

import keras
import tensorflow as tf

from simclr_tf2.optim.lars import LARS
from simclr_tf2.optim.lars import variable_path

# Variable-path patterns (regular expressions) of normalisation parameters:
# the original ResNet's batch norm, and the names Keras Applications give
# theirs ("conv_bn/gamma", "bn/beta", ConvNeXt's layer norm and layer scale).
NORMALIZATION_PATTERNS = ("batch_normalization", r"(^|[/_])bn/(gamma|beta)$",
                          "layernorm", "layer_scale")
# Variable-path patterns that LARS neither decays nor adapts.
EXCLUDE_FROM_WEIGHT_DECAY = NORMALIZATION_PATTERNS + ("bias", "head_supervised")

OPTIMIZER_NAMES = ("lars", "momentum", "adam")


def build_optimizer(
    name: str,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    nesterov: bool = False,
) -> keras.optimizers.Optimizer:
    """Builds an optimizer by name.

    Args:
        name: `"lars"`, `"momentum"` or `"adam"`.
        learning_rate: A float or a
            `keras.optimizers.schedules.LearningRateSchedule`.
        momentum: Momentum for LARS and SGD; unused by Adam.
        weight_decay: Weight decay inside LARS. Momentum and Adam get theirs
            from `weight_decay_loss` instead.
        nesterov: Nesterov momentum for SGD (used for fine-tuning).

    Returns:
        A `keras.optimizers.Optimizer`.

    Raises:
        ValueError: If `name` is not one of the above.
    """
    if name == "lars":
        return LARS(
            learning_rate,
            momentum=momentum,
            weight_decay=weight_decay,
            exclude_from_weight_decay=EXCLUDE_FROM_WEIGHT_DECAY,
        )
    if name == "momentum":
        return keras.optimizers.SGD(
            learning_rate, momentum=momentum, nesterov=nesterov
        )
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    raise ValueError(
        f"Unknown optimizer {name!r}; use one of {', '.join(OPTIMIZER_NAMES)}."
    )


def _decayed_by_loss(path, optimizer_decays):
    if optimizer_decays:
        # LARS decays the rest itself and skips the supervised head.
        return "head_supervised" in path and "bias" not in path
    return not any(re.search(p, path) for p in NORMALIZATION_PATTERNS)


def _l2_loss(variables, weight_decay, optimizer_decays):
    chosen = [
        v for v in variables
        if _decayed_by_loss(variable_path(v), optimizer_decays)
    ]
    if not weight_decay or not chosen:
        return tf.constant(0.0, tf.float32)
    l2 = tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in chosen])
    return tf.cast(weight_decay, tf.float32) * l2


def weight_decay_loss(variables, weight_decay, optimizer_name):
    """Returns the L2 regulariser to add to the training loss.

    Args:
        variables: Trainable variables of the model (matched by their Keras
            `path`, e.g. `"simclr/head_supervised/kernel"`).
        weight_decay: Coefficient; the loss is
            `weight_decay * sum(sum(v ** 2) / 2)` over the chosen variables.
        optimizer_name: `"lars"`: only the supervised head's kernels (LARS
            decays every other variable itself). Otherwise: every variable
            that is not a normalisation parameter (`NORMALIZATION_PATTERNS`), biases
            included.

    Returns:
        A float32 scalar tensor; 0.0 when `weight_decay` is 0 or no variable
        matches.
    """
    return _l2_loss(variables, weight_decay, optimizer_name == "lars")


class WeightDecay:
    """The weight-decay policy a training task is handed.

    Which variables the loss decays depends on the optimizer (LARS decays
    most of them itself); `weight_decay_policy` builds the policy for an
    optimizer name, so the model and the task never see that name.

    Args:
        coefficient: The L2 coefficient (0: no decay).
        optimizer_decays: The optimizer applies decay to every variable
            except batch norm, biases and the supervised head (LARS).
    """

    def __init__(self, coefficient=0.0, optimizer_decays=False):
        self.coefficient = coefficient
        self.optimizer_decays = optimizer_decays

    def training_loss(self, variables):
        """The L2 term the training loss carries (float32 scalar)."""
        return _l2_loss(variables, self.coefficient, self.optimizer_decays)

    def total_loss(self, variables):
        """The L2 of every non-batch-norm variable: the evaluation's
        `regularization_loss`, whatever the optimizer (float32 scalar)."""
        return _l2_loss(variables, self.coefficient, False)


def weight_decay_policy(optimizer_name, weight_decay):
    """The `WeightDecay` matching `build_optimizer(optimizer_name, ...)`."""
    return WeightDecay(weight_decay, optimizer_decays=optimizer_name == "lars")
