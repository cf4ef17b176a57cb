"""SimCLR's photometric augmentations: colour jitter, colour drop, Gaussian blur.

The ops change pixel values, never geometry; `augment` composes them with
the crops and flips into the paper's policies (Appendix A). Each random op
takes a [2] seed for TF's stateless random ops (`stateless`). Images are
float [H, W, C] in [0, 1]; a one-channel image is treated as the grey
image it is (saturation, hue and colour drop change nothing on it).
"""

import tensorflow as tf

from simclr_tf2.data import stateless


def _jitter_ops(strength, grey=False):
    """Returns the four jitter ops `fn(image, seed)` for a jitter strength.

    With `grey`, saturation and hue are the identity: on an image whose
    channels are equal they change nothing (a grey pixel has no saturation
    and no hue), so a one-channel image skips their colour-space round trip.
    """
    s = 0.8 * strength
    lower = max(1.0 - s, 0.0)  # Contrast and saturation reject factors < 0.

    def brightness(x, seed):
        # SimCLR v2 scales brightness rather than adding a delta.
        factor = tf.random.stateless_uniform([], seed, lower, 1.0 + s)
        return x * factor

    def contrast(x, seed):
        return tf.image.stateless_random_contrast(x, lower, 1.0 + s, seed)

    def saturation(x, seed):
        return tf.image.stateless_random_saturation(x, lower, 1.0 + s, seed)

    def hue(x, seed):
        return tf.image.stateless_random_hue(x, min(0.2 * strength, 0.5), seed)

    if grey:
        return [brightness, contrast, lambda x, seed: x, lambda x, seed: x]
    return [brightness, contrast, saturation, hue]


def _random_order(num, seed):
    """Returns a random permutation of range(num), int32 shape [num]."""
    return tf.argsort(tf.random.stateless_uniform([num], seed))


def color_jitter(image, strength, seed):
    """Jitters brightness, contrast, saturation and hue in a random order.

    Brightness, contrast and saturation factors are uniform in
    [max(0, 1 - 0.8 s), 1 + 0.8 s]; the hue shift is uniform in
    [-0.2 s, 0.2 s]. The image is clipped to [0, 1] after each op.

    Args:
        image: Float tensor of shape [H, W, 3] in [0, 1], or [H, W, 1]: a
            grey image, which gets what its three-channel copy would get.
        strength: Python float s, the jitter strength (0 disables jitter).
        seed: Int tensor of shape [2].

    Returns:
        Float32 tensor of the input's shape in [0, 1].
    """
    if strength == 0:
        return image
    ops = _jitter_ops(strength, grey=image.shape[-1] == 1)
    seeds = stateless.split_seed(seed, len(ops) + 1)
    order = _random_order(len(ops), seeds[0])
    for i in range(len(ops)):
        # Each op keeps its own sub-seed, whatever position it lands in.
        branches = [lambda op=op, k=k, x=image: op(x, seeds[k + 1])
                    for k, op in enumerate(ops)]
        image = tf.clip_by_value(tf.switch_case(order[i], branches), 0.0, 1.0)
    return image


def color_drop(image):
    """Converts to grayscale, kept as three equal channels.

    Args:
        image: Float tensor of shape [H, W, 3].

    Returns:
        Float tensor of shape [H, W, 3] with equal channels.
    """
    return tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3])


def color_distortion(image, strength, seed):
    """Applies color jitter with p=0.8, then color drop with p=0.2.

    Args:
        image: Float tensor of shape [H, W, 3] in [0, 1], or [H, W, 1] (grey:
            colour drop leaves it as it is).
        strength: Python float, the color jitter strength.
        seed: Int tensor of shape [2].

    Returns:
        Float32 tensor of the input's shape in [0, 1].
    """
    seeds = stateless.split_seed(seed, 3)
    image = stateless.random_apply(lambda x: color_jitter(x, strength, seeds[0]),
                                   image, 0.8, seeds[1])
    if image.shape[-1] != 1:
        image = stateless.random_apply(color_drop, image, 0.2, seeds[2])
    return tf.clip_by_value(image, 0.0, 1.0)


def gaussian_blur(image, sigma, kernel_size):
    """Blurs each channel with a separable Gaussian, zero ('SAME') padding.

    Args:
        image: Float tensor of shape [H, W, C].
        sigma: Float scalar (Python or tensor), the standard deviation in px.
        kernel_size: Int scalar (Python or tensor). An even size k is treated
            as k + 1, so the kernel is centred: radius = k // 2.

    Returns:
        Float32 tensor of shape [H, W, C].
    """
    radius = tf.cast(kernel_size, tf.int32) // 2
    x = tf.cast(tf.range(-radius, radius + 1), tf.float32)
    sigma = tf.cast(sigma, tf.float32)
    kernel = tf.exp(-tf.square(x) / (2.0 * tf.square(sigma)))
    kernel /= tf.reduce_sum(kernel)
    channels = tf.shape(image)[-1]
    # depthwise filter [kh, kw, C, 1]: one 1-D kernel per channel.
    kernel_h = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, channels, 1])
    kernel_w = tf.reshape(kernel_h, [1, -1, channels, 1])
    batch = tf.cast(image, tf.float32)[tf.newaxis]
    batch = tf.nn.depthwise_conv2d(batch, kernel_h, [1, 1, 1, 1], "SAME")
    batch = tf.nn.depthwise_conv2d(batch, kernel_w, [1, 1, 1, 1], "SAME")
    return tf.ensure_shape(batch[0], image.shape)


def random_blur(image, seed, p=0.5, sigma_range=(0.1, 2.0)):
    """Gaussian-blurs with probability `p`, sigma ~ U(sigma_range).

    The kernel size is about 10% of the image height: radius = H // 20
    (at least 1), size = 2 * radius + 1, as in the original code's H // 10.

    Args:
        image: Float tensor of shape [H, W, C].
        seed: Int tensor of shape [2].
        p: Python float, the probability of blurring.
        sigma_range: (min, max) of the Gaussian standard deviation in px.

    Returns:
        Float32 tensor of shape [H, W, C].
    """
    seeds = stateless.split_seed(seed, 2)
    sigma = tf.random.stateless_uniform([], seeds[0], *sigma_range)
    radius = tf.maximum(tf.shape(image)[0] // 20, 1)

    def blur(x):
        return gaussian_blur(x, sigma, 2 * radius + 1)

    return stateless.random_apply(blur, image, p, seeds[1])
