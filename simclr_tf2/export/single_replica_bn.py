"""Synchronized batch norm for one replica: same arithmetic, no all-reduce.

Keras 3's `BatchNormalization(synchronized=True)` computes batch moments as
all-reduced sums (E[x^2] - E[x]^2). Outside a strategy the all-reduce is an
identity, but it is still recorded with a custom gradient whose own gradient
is not saved; TF warns on loading such a SavedModel. An export only ever
runs as one replica, so its batch-norm layers get these moments instead:
the very same float operations minus the all-reduce, hence bit-identical
outputs to the trained model and plain ops all the way down.
"""

import keras
import tensorflow as tf


def single_replica_moments(x, axes):
    """Synchronized-BN moments of a single replica.

    Args:
      x: float tensor, e.g. [B, H, W, C].
      axes: reduction axes (all but the channel axis).

    Returns:
      (mean, variance), each of shape [C].
    """
    count = tf.reduce_sum(tf.ones_like(x), axis=axes, keepdims=True)
    total = tf.reduce_sum(x, axis=axes, keepdims=True)
    squares = tf.reduce_sum(tf.square(x), axis=axes, keepdims=True)
    mean = tf.math.divide_no_nan(total, count)
    variance = tf.maximum(
        tf.math.divide_no_nan(squares, count) - tf.square(mean), 0.0)
    return tf.squeeze(mean, axes), tf.squeeze(variance, axes)


def _replace_moments(layer):
    # pylint: disable=protected-access
    keras_moments = layer._moments

    def moments(inputs, mask):
        if mask is not None or inputs.dtype != tf.float32:
            return keras_moments(inputs, mask)
        return single_replica_moments(inputs, layer._reduction_axes)

    layer._moments = moments


def use_single_replica_batch_norm(model):
    """Switches every synchronized BN layer of `model` to one-replica moments.

    Args:
      model: a built Keras model (changed in place; meant for export copies).

    Returns:
      The number of layers switched.
    """
    layers = [layer for layer in model._flatten_layers()  # pylint: disable=protected-access
              if isinstance(layer, keras.layers.BatchNormalization)
              and layer.synchronized]
    for layer in layers:
        _replace_moments(layer)
    return len(layers)
