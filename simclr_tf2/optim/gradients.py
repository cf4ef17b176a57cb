"""Step mechanics every gradient engine shares: loss scaling, applying.

Both the one-pass train step (`SimCLRModel.loss_and_gradients`) and
gradient caching (`gradcache.compute_gradients`) scale the loss the same
way and hand their gradients to `apply_gradients`.
"""

import tensorflow as tf


def scale_for_replicas(optimizer, loss):
    """The loss to differentiate: 1/replicas (replica gradients are summed)
    and the optimizer's loss scale (mixed_float16)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return optimizer.scale_loss(loss / replicas)


def apply_gradients(optimizer, grads, variables):
    """Applies gradients, skipping variables that got none (e.g. frozen
    encoder parts reached only through stop_gradient)."""
    optimizer.apply_gradients(
        [(g, v) for g, v in zip(grads, variables) if g is not None])
