"""Seed handling shared by the augmentations: splitting a seed, random application.

A seed is an int32/int64 tensor of shape [2] for TF's stateless random ops;
the same seed gives the same draw eagerly and inside `tf.data.Dataset.map`.
"""

import tensorflow as tf


def split_seed(seed, num):
    """Splits a [2] seed into `num` independent [2] seeds.

    Returns:
        A tensor of shape [num, 2]; index it to get each sub-seed.
    """
    return tf.random.experimental.stateless_split(seed, num=num)


def random_apply(fn, image, p, seed):
    """Applies `fn` to `image` with probability `p`.

    Args:
        fn: Callable mapping an image to an image of the same shape.
        image: Float tensor of shape [H, W, C].
        p: Python float, the probability of applying `fn`.
        seed: Int tensor of shape [2].

    Returns:
        `fn(image)` or `image`, shape [H, W, C].
    """
    apply = tf.random.stateless_uniform([], seed) < p
    return tf.cond(apply, lambda: fn(image), lambda: image)
