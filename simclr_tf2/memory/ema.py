"""The memory network: an exponential moving average (EMA) of encoder + projection head.

After every optimizer step each memory variable m follows its trained
counterpart w: m <- d * m + (1 - d) * w, with d = `momentum` (0.999 in
SimCLRv2). The memory network gets no gradient.

Its BatchNorm normalises each call's batch with that batch's statistics
(`batch_statistics=True`), as MoCo's key encoder does, and its BN momentum
is 1, so computing keys never writes the moving statistics: they change
only through the EMA, averaged like the weights (one rule for every
variable, which is what a checkpoint restores and what the test checks).
Inference mode (`batch_statistics=False`) would normalise with those moving
statistics, but a fresh network's initial statistics (0, 1) do not describe
its activations: its keys are nearly one vector (mean pairwise cosine 0.987
for a 1/8-width ResNet-18), and with d = 0.999 the copy stays near its
initialisation for ~1000 steps; a short Fashion-MNIST run with such keys
did not learn (docs/memory.md).
"""

import keras
import tensorflow as tf


def clone_layer(layer):
    """A new, unbuilt layer with `layer`'s configuration and no shared state.

    Uses `from_config(get_config())`, which every layer of this project
    supports (the ResNet, the ProjectionHead, Keras functional models).
    """
    return type(layer).from_config(layer.get_config())


def _check_pairs(targets, sources):
    if len(targets) != len(sources):
        raise ValueError(
            f"EMA copy has {len(targets)} variables, the trained network "
            f"{len(sources)}; build both from the same configuration.")
    for target, source in zip(targets, sources):
        if tuple(target.shape) != tuple(source.shape):
            raise ValueError(
                f"EMA variable {_label(target)} has shape "
                f"{tuple(target.shape)}, its source {_label(source)} "
                f"{tuple(source.shape)}; build both from the same "
                "configuration.")


def _label(variable):
    return getattr(variable, "path", None) or variable.name


def _tf_variable(variable):
    """The tf.Variable (a MirroredVariable under a strategy) behind it."""
    return variable.value if isinstance(variable, keras.Variable) else variable


def ema_update(target_vars, source_vars, decay):
    """m <- decay * m + (1 - decay) * w for every (m, w) pair.

    Float variables are averaged (weights and BN moving statistics alike);
    other dtypes are copied. Works without a strategy, in cross-replica
    context and inside `strategy.run` (through a merge call, like a Keras
    optimizer's update), so every replica's copy gets the same value.

    Args:
      target_vars: list of the EMA copy's variables.
      source_vars: list of the trained network's variables, same order and
        shapes.
      decay: d in [0, 1]; 0 copies the sources.
    """
    _check_pairs(target_vars, source_vars)
    pairs = [(_tf_variable(t), _tf_variable(s))
             for t, s in zip(target_vars, source_vars)]

    def update(target, source):
        source = tf.cast(source, target.dtype)
        if not target.dtype.is_floating:
            return target.assign(source)
        return target.assign(decay * target + (1.0 - decay) * source)

    def apply(distribution, pairs):
        for target, source in pairs:
            distribution.extended.update(target, update, args=(source,),
                                         group=False)

    strategy = tf.distribute.get_strategy()
    if tf.distribute.in_cross_replica_context():
        apply(strategy, pairs)
    else:
        tf.__internal__.distribute.interim.maybe_merge_call(
            apply, strategy, pairs)


@keras.saving.register_keras_serializable(package="simclr_tf2")
class MemoryNetwork(keras.layers.Layer):
    """EMA copy of an encoder and a projection head, producing keys.

    Build it with `MemoryNetwork.from_networks(encoder, head, ...)`, which
    clones both, creates their variables and copies the trained values. Its
    variables are non-trainable; Keras checkpoints track them through this
    layer.

    Args:
      encoder: a layer mapping [B, H, W, 3] to a dict with "final_avg_pool"
        (the project's ResNet) or to the [B, D] representation directly.
      projection_head: a layer mapping [B, D] to z [B, P], or to a list whose
        last element is z (the project's ProjectionHead).
      momentum: EMA decay d of `update`.
      batch_statistics: BatchNorm normalises each call's batch with its own
        statistics (as MoCo's key encoder does), and the forward pass leaves
        the moving statistics to the EMA (`freeze_moving_statistics`). False:
        inference mode, the EMA'd moving statistics.
      **kwargs: `keras.layers.Layer` arguments (name).
    """

    def __init__(self, encoder, projection_head, momentum=0.999,
                 batch_statistics=True, **kwargs):
        kwargs.pop("trainable", None)  # never trained (from_config)
        super().__init__(trainable=False, **kwargs)
        if isinstance(encoder, dict):
            encoder = keras.saving.deserialize_keras_object(encoder)
        if isinstance(projection_head, dict):
            projection_head = keras.saving.deserialize_keras_object(
                projection_head)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(
                f"memory momentum must be in [0, 1]. Received: momentum={momentum}")
        self.encoder = encoder
        self.projection_head = projection_head
        self.momentum = momentum
        self.batch_statistics = batch_statistics

    @classmethod
    def from_networks(cls, encoder, projection_head, image_shape,
                      momentum=0.999, batch_statistics=True,
                      name="memory_network"):
        """A memory network equal to the given (built) trained networks.

        Call under the strategy's scope so its variables are mirrored.

        Args:
          encoder, projection_head: the trained network's parts (built).
          image_shape: (H, W, 3) of the inputs, to create the variables.
          momentum: EMA decay.
          name: layer name.
        """
        memory = cls(clone_layer(encoder), clone_layer(projection_head),
                     momentum=momentum, batch_statistics=batch_statistics,
                     name=name)
        memory(tf.zeros([1, *image_shape]))
        ema_update(memory.weights, _network_weights(encoder, projection_head),
                   0.0)
        return memory

    def call(self, images):
        """Keys of `images` [B, H, W, 3]: z [B, P] float32, no gradient."""
        mode = self.batch_statistics
        features = self.encoder(images, training=mode)
        if isinstance(features, dict):
            features = features["final_avg_pool"]
        z = self.projection_head(features, training=mode)
        if isinstance(z, (list, tuple)):
            z = z[-1]
        if mode:
            # Sub-layers are created by the first call (`from_networks`
            # then copies the trained values over whatever it wrote).
            freeze_moving_statistics([self.encoder, self.projection_head])
        return tf.stop_gradient(tf.cast(z, tf.float32))

    def update(self, encoder, projection_head):
        """One EMA step towards the trained `encoder` and `projection_head`."""
        ema_update(self.weights, _network_weights(encoder, projection_head),
                   self.momentum)

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder=keras.saving.serialize_keras_object(self.encoder),
            projection_head=keras.saving.serialize_keras_object(
                self.projection_head),
            momentum=self.momentum, batch_statistics=self.batch_statistics)
        return config


def freeze_moving_statistics(layers):
    """Sets BatchNorm momentum to 1 in `layers` and their sub-layers, so a
    training-mode call normalises with batch statistics but writes back
    moving statistics unchanged (m * 1 + batch * 0 == m exactly)."""
    for sub in _all_layers(layers):
        if isinstance(sub, keras.layers.BatchNormalization):
            sub.momentum = 1.0


def _all_layers(layers):
    """Every layer reachable from `layers`, including those held in lists
    (which Keras 3's `_flatten_layers` does not report)."""
    seen, stack = {}, list(layers)
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen[id(layer)] = layer
        stack.extend(layer._flatten_layers(include_self=False))
        for value in vars(layer).values():
            items = value if isinstance(value, (list, tuple)) else [value]
            stack.extend(v for v in items if isinstance(v, keras.layers.Layer))
    return list(seen.values())


def _network_weights(encoder, projection_head):
    """The trained variables in `MemoryNetwork.weights` order."""
    return list(encoder.weights) + list(projection_head.weights)
