"""How strong the augmentations are, not only how often they fire: colour
jitter factor ranges, and the blur's sigma and kernel size."""

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2.data import photometric

SEEDS = 200
PIXEL = tf.constant([[[0.5, 0.3, 0.2], [0.3, 0.4, 0.45]]], tf.float32)  # [1,2,3]


def _samples(op, measure):
    return np.array([measure(op(PIXEL, tf.constant([i, 7]))) for i in range(SEEDS)])


def _ops(strength):
    return dict(zip(["brightness", "contrast", "saturation", "hue"],
                    photometric._jitter_ops(strength)))


def _assert_spans(samples, low, high, slack=0.06):
    """All samples in [low, high], and they reach near both ends."""
    width = high - low
    assert samples.min() >= low - 1e-5 and samples.max() <= high + 1e-5, (
        samples.min(), samples.max())
    assert samples.min() < low + slack * width, samples.min()
    assert samples.max() > high - slack * width, samples.max()


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_brightness_contrast_saturation_factors(strength):
    ops = _ops(strength)
    low, high = max(1 - 0.8 * strength, 0.0), 1 + 0.8 * strength
    x = PIXEL.numpy()
    # Brightness scales every value by one factor.
    _assert_spans(_samples(ops["brightness"],
                           lambda y: float(y[0, 0, 0] / x[0, 0, 0])), low, high)
    # Contrast moves each channel away from its mean by the factor.
    mean = x.mean(axis=(0, 1))

    def contrast_factor(y):
        return float((y[0, 0, 0] - mean[0]) / (x[0, 0, 0] - mean[0]))

    _assert_spans(_samples(ops["contrast"], contrast_factor), low, high)
    # Saturation scales HSV saturation (before clipping at 1).
    s0 = tf.image.rgb_to_hsv(PIXEL)[0, 0, 1].numpy()

    def saturation_factor(y):
        return float(tf.image.rgb_to_hsv(y)[0, 0, 1] / s0)

    samples = _samples(ops["saturation"], saturation_factor)
    _assert_spans(samples[samples * s0 < 0.999], low, high, slack=0.1)


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_hue_shift_range(strength):
    h0 = tf.image.rgb_to_hsv(PIXEL)[0, 0, 0].numpy()

    def shift(y):
        d = float(tf.image.rgb_to_hsv(y)[0, 0, 0]) - h0
        return (d + 0.5) % 1.0 - 0.5  # hue is circular

    bound = min(0.2 * strength, 0.5)
    _assert_spans(_samples(_ops(strength)["hue"], shift), -bound, bound)


def test_gaussian_blur_matches_the_numpy_kernel():
    image = np.zeros((21, 21, 1), np.float32)
    image[10, 10, 0] = 1.0
    for sigma, size in [(0.7, 5), (1.5, 7), (2.0, 9), (1.0, 6)]:
        out = photometric.gaussian_blur(tf.constant(image), sigma, size).numpy()[..., 0]
        radius = size // 2  # an even size is centred as size + 1
        t = np.arange(-radius, radius + 1)
        k = np.exp(-t ** 2 / (2 * sigma ** 2))
        k /= k.sum()
        expected = np.zeros((21, 21))
        expected[10 - radius:11 + radius, 10 - radius:11 + radius] = np.outer(k, k)
        np.testing.assert_allclose(out, expected, atol=1e-6)


def _fitted_sigma_and_support(out):
    """sigma from the ratio of the centre and its neighbour; support width."""
    centre = out.shape[0] // 2
    ratio = out[centre, centre + 1] / out[centre, centre]
    sigma = np.sqrt(-1.0 / (2.0 * np.log(ratio))) if 0 < ratio < 1 else 0.0
    support = int(np.sum(out[centre] > 0))
    return sigma, support


@pytest.mark.parametrize("height,size", [(41, 5), (101, 11)])
def test_random_blur_sigma_range_and_kernel_size(height, size):
    """sigma ~ U(0.1, 2.0); kernel size 2 * (H // 20) + 1 (the original's ~H/10)."""
    image = np.zeros((height, height, 1), np.float32)
    image[height // 2, height // 2, 0] = 1.0
    sigmas, supports = [], []
    for i in range(120):
        out = photometric.random_blur(tf.constant(image), tf.constant([i, 3]),
                                  p=1.0).numpy()[..., 0]
        sigma, support = _fitted_sigma_and_support(out)
        sigmas.append(sigma)
        supports.append(support)
    sigmas = np.array(sigmas)
    # Tiny sigmas underflow the neighbour to 0 (fitted as 0): below 0.2.
    assert np.all(sigmas <= 2.0 + 1e-3)
    assert sigmas.max() > 1.8 and np.mean(sigmas < 0.3) < 0.15
    assert abs(np.median(sigmas[sigmas > 0]) - 1.05) < 0.25
    assert max(supports) == size and min(supports) >= 1
