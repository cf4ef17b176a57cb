"""Tests for simclr_tf2.data.augment (geometry, policies) and photometric
(colour, blur): values, statistics, eager vs tf.data."""

import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from simclr_tf2 import tasks
from simclr_tf2.data import augment, photometric

SIZE = 16
SEED = tf.constant([3, 7], tf.int64)


def _colorful(h=12, w=10, seed=0):
    """A random float RGB image in [0, 1] with distinct channels."""
    return tf.constant(np.random.RandomState(seed).uniform(0.1, 0.9, (h, w, 3)),
                       tf.float32)


def _over_seeds(fn, num=200):
    """Runs fn(seed) for seeds [i, 0], i < num, inside tf.data.

    Returns:
        A numpy array stacking the `num` outputs.
    """
    ds = tf.data.Dataset.range(num).map(lambda i: fn(tf.stack([i, tf.constant(0, tf.int64)])))
    return next(iter(ds.batch(num))).numpy()


RANDOM_OPS = {
    "crop": lambda x, s: augment.random_crop_and_resize(x, SIZE, s),
    "flip": augment.flip_left_right,
    "jitter": lambda x, s: photometric.color_jitter(x, 1.0, s),
    "distortion": lambda x, s: photometric.color_distortion(x, 0.5, s),
    "blur": photometric.random_blur,
    "pretrain": lambda x, s: augment.preprocess_for_pretrain(x, SIZE, s),
    "finetune": lambda x, s: augment.preprocess_for_finetune(x, SIZE, s),
    "two_views": lambda x, s: augment.two_views(x, SIZE, s),
}


# --- to_float_rgb -----------------------------------------------------------

def test_to_float_rgb_scales_uint8():
    image = tf.constant([[[0, 128, 255]]], tf.uint8)
    out = augment.to_float_rgb(image)
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), [[[0.0, 128 / 255, 1.0]]], atol=1e-6)


def test_to_float_rgb_tiles_grayscale_and_keeps_float():
    image = tf.constant([[[0.25], [0.5]]], tf.float32)
    out = augment.to_float_rgb(image).numpy()
    assert out.shape == (1, 2, 3)
    np.testing.assert_allclose(out, [[[0.25] * 3, [0.5] * 3]])


@pytest.mark.parametrize("channels", [2, 4])
def test_to_float_rgb_rejects_bad_static_channels(channels):
    with pytest.raises(ValueError, match="channels"):
        augment.to_float_rgb(tf.zeros([4, 4, channels], tf.uint8))


def test_to_float_rgb_dynamic_channels():
    fn = tf.function(augment.to_float_rgb,
                     input_signature=[tf.TensorSpec([None, None, None], tf.uint8)])
    assert fn(tf.zeros([3, 5, 1], tf.uint8)).shape == (3, 5, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="channels"):
        fn(tf.zeros([3, 5, 4], tf.uint8))


# --- every random op: shape, range, determinism -----------------------------

@pytest.mark.parametrize("name", sorted(RANDOM_OPS))
def test_random_op_same_seed_eager_equals_tf_data(name):
    fn = RANDOM_OPS[name]
    image = _colorful()
    eager = fn(image, SEED).numpy()
    ds = tf.data.Dataset.from_tensors((image, SEED)).map(fn)
    in_data = next(iter(ds)).numpy()
    np.testing.assert_allclose(eager, in_data, atol=1e-6)
    np.testing.assert_array_equal(eager, fn(image, SEED).numpy())
    assert eager.dtype == np.float32
    assert eager.min() >= 0.0 and eager.max() <= 1.0


@pytest.mark.parametrize("name", sorted(RANDOM_OPS))
def test_random_op_different_seeds_differ(name):
    fn = RANDOM_OPS[name]
    image = _colorful()
    # A single seed pair can legitimately agree (e.g. both skip the flip).
    outs = [fn(image, tf.constant([i, 1], tf.int64)).numpy() for i in range(8)]
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize("name", sorted(RANDOM_OPS))
def test_random_op_unknown_height_width(name):
    fn = tf.function(RANDOM_OPS[name], input_signature=[
        tf.TensorSpec([None, None, 3], tf.float32), tf.TensorSpec([2], tf.int32)])
    image = _colorful(9, 13)
    out = fn(image, tf.constant([1, 2], tf.int32))
    expected = RANDOM_OPS[name](image, tf.constant([1, 2], tf.int32))
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-6)
    if name in ("pretrain", "finetune", "two_views"):
        static = fn.get_concrete_function().structured_outputs.shape
        assert static.as_list() == [SIZE, SIZE, 6 if name == "two_views" else 3]


# --- crop -------------------------------------------------------------------

def test_crop_window_statistics():
    windows = _over_seeds(
        lambda s: augment.distorted_crop_window(tf.constant([64, 64, 3]), s), 300)
    y, x, h, w = windows.T
    assert np.all(y >= 0) and np.all(x >= 0)
    assert np.all(y + h <= 64) and np.all(x + w <= 64)
    area = h * w / 64.0**2
    ratio = w / h
    # Pixel rounding can move area and ratio slightly past the nominal range.
    assert area.min() >= 0.07 and area.max() <= 1.0
    assert np.all((ratio > 0.70) & (ratio < 1.40))
    assert area.min() < 0.15 and area.max() > 0.8  # The whole range is used.
    assert 0.2 < np.median(area) < 0.8
    assert len(set(zip(y, x))) > 100  # Offsets vary, not always top-left.


def test_crop_full_area_is_plain_resize():
    image = _colorful(SIZE, SIZE)
    out = augment.random_crop_and_resize(image, SIZE, SEED, area_range=(1.0, 1.0),
                                         aspect_ratio_range=(1.0, 1.0))
    np.testing.assert_allclose(out.numpy(), image.numpy(), atol=1e-5)


@pytest.mark.parametrize("make_view", [
    lambda x, s: augment.preprocess_for_finetune(x, SIZE, s, crop_min_area=1.0),
    lambda x, s: augment.preprocess_for_pretrain(x, SIZE, s, 0.0, False,
                                                 crop_min_area=1.0)])
def test_crop_min_area_reaches_the_crop(make_view):
    # With crop_min_area=1 every view is the whole image, maybe flipped;
    # with the default 0.08 most views are zoomed-in crops.
    image = _colorful(SIZE, SIZE)
    whole = [image.numpy(), image.numpy()[:, ::-1]]
    for i in range(8):
        view = make_view(image, tf.constant([i, 1], tf.int64)).numpy()
        assert min(np.abs(view - w).max() for w in whole) < 1e-5
    zoomed = [augment.preprocess_for_finetune(image, SIZE, tf.constant([i, 1], tf.int64))
              for i in range(8)]
    assert sum(min(np.abs(v.numpy() - w).max() for w in whole) > 1e-3
               for v in zoomed) >= 6


# --- flip -------------------------------------------------------------------

def test_flip_is_left_right_half_the_time():
    image = _colorful(4, 6)
    outs = _over_seeds(lambda s: augment.flip_left_right(image, s))
    flipped = np.array([np.array_equal(o, image.numpy()[:, ::-1]) for o in outs])
    same = np.array([np.array_equal(o, image.numpy()) for o in outs])
    assert np.all(flipped | same)
    assert 0.35 < flipped.mean() < 0.65


def test_random_flip_false_never_mirrors_a_view():
    # crop_min_area=1.0 keeps the whole image, so with flips a view is the
    # image or its mirror; without, always the image. Pretraining views,
    # fine-tuning views and the task transforms all obey the switch.
    image = _colorful(SIZE, SIZE)
    mirror = image.numpy()[:, ::-1]

    def mirrored(outs):
        return np.array([np.abs(o[..., :3] - mirror).max() < 1e-5 for o in outs])

    for flips in (True, False):
        ops = {
            "pretrain": lambda s: augment.preprocess_for_pretrain(
                image, SIZE, s, 0.0, False, 1.0, random_flip=flips),
            "finetune": lambda s: augment.preprocess_for_finetune(
                image, SIZE, s, 1.0, random_flip=flips),
            "task": lambda s: tasks.FinetuneTask.train_transform(
                SIZE, 0.0, False, 1.0, flips)(
                    {"image": image, "label": 0, "id": 0}, s)["image"],
        }
        for name, op in ops.items():
            share = mirrored(_over_seeds(op, num=64)).mean()
            assert (0.25 < share < 0.75) if flips else share == 0.0, (name, flips)


# --- color ------------------------------------------------------------------

def test_color_drop_is_grayscale_in_three_channels():
    image = _colorful()
    out = photometric.color_drop(image).numpy()
    gray = tf.image.rgb_to_grayscale(image).numpy()
    for c in range(3):
        np.testing.assert_allclose(out[..., c:c + 1], gray)


def test_color_jitter_brightness_is_multiplicative():
    # Every jitter op maps black to black only if brightness scales, not adds.
    black = tf.zeros([4, 4, 3])
    outs = _over_seeds(lambda s: photometric.color_jitter(black, 1.0, s), 50)
    np.testing.assert_allclose(outs, 0.0, atol=1e-6)


def test_color_jitter_order_is_a_random_permutation():
    orders = _over_seeds(lambda s: photometric._random_order(4, s), 100)
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders)
    assert len({tuple(o) for o in orders}) > 12  # 24 possible orders.


def test_color_jitter_zero_strength_is_identity():
    image = _colorful()
    np.testing.assert_array_equal(photometric.color_jitter(image, 0.0, SEED), image)


def test_color_distortion_frequencies():
    image = _colorful(6, 6)
    outs = _over_seeds(lambda s: photometric.color_distortion(image, 1.0, s), 400)
    gray = np.all(np.abs(outs - outs[..., :1]) < 1e-6, axis=(1, 2, 3))
    unchanged = np.all(np.abs(outs - image.numpy()) < 1e-6, axis=(1, 2, 3))
    assert 0.12 < gray.mean() < 0.28  # Color drop p = 0.2.
    assert 0.09 < unchanged.mean() < 0.23  # No jitter, no drop: 0.2 * 0.8.


# --- blur -------------------------------------------------------------------

@pytest.mark.parametrize("sigma, kernel_size", [(1.0, 7), (0.5, 3), (2.0, 9)])
def test_gaussian_blur_matches_scipy_on_impulse(sigma, kernel_size):
    impulse = np.zeros([11, 11, 3], np.float32)
    impulse[5, 5] = 1.0
    impulse[1, 2, 1] = 0.5  # Near the border: checks the zero padding too.
    out = photometric.gaussian_blur(tf.constant(impulse), sigma, kernel_size).numpy()
    expected = scipy.ndimage.gaussian_filter(
        impulse, sigma, mode="constant", radius=kernel_size // 2, axes=(0, 1))
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_gaussian_blur_keeps_sum_and_constant_interior():
    impulse = np.zeros([15, 15, 1], np.float32)
    impulse[7, 7] = 1.0
    blurred = photometric.gaussian_blur(tf.constant(impulse), 1.5, 7).numpy()
    assert blurred[7, 7, 0] < 0.5
    np.testing.assert_allclose(blurred.sum(), 1.0, atol=1e-5)
    constant = photometric.gaussian_blur(tf.fill([15, 15, 3], 0.4), 1.5, 7).numpy()
    np.testing.assert_allclose(constant[3:-3, 3:-3], 0.4, atol=1e-6)


def test_random_blur_half_the_time():
    image = _colorful(20, 20)
    outs = _over_seeds(lambda s: photometric.random_blur(image, s))
    blurred = ~np.all(np.abs(outs - image.numpy()) < 1e-6, axis=(1, 2, 3))
    assert 0.35 < blurred.mean() < 0.65


# --- deterministic crops and full pipelines ---------------------------------

def test_center_crop_takes_the_centre():
    image = tf.reshape(tf.range(10 * 12 * 3, dtype=tf.float32), [10, 12, 3]) / 360.0
    out = augment.center_crop(image, 6, 0.6).numpy()
    np.testing.assert_allclose(out, image.numpy()[2:8, 3:9], atol=1e-6)
    np.testing.assert_allclose(augment.center_crop(image, 10, 1.0).numpy(),
                               image.numpy()[:, 1:11], atol=1e-6)


def test_preprocess_for_eval():
    small = tf.cast(tf.reshape(tf.range(8 * 8 * 3) % 256, [8, 8, 3]), tf.uint8)
    np.testing.assert_allclose(augment.preprocess_for_eval(small, 8).numpy(),
                               small.numpy() / 255.0, atol=1e-6)
    large = _colorful(48, 48)
    out = augment.preprocess_for_eval(large, 40)
    assert out.shape == (40, 40, 3)
    # 0.875 * 48 = 42 px centre crop, then resized.
    expected = augment.center_crop(large, 40, augment.CROP_PROPORTION)
    np.testing.assert_allclose(out.numpy(), expected.numpy())
    assert not np.allclose(out, augment.center_crop(large, 40, 1.0))


def test_pretrain_accepts_uint8_grayscale():
    image = tf.cast(tf.reshape(tf.range(20 * 20) % 256, [20, 20, 1]), tf.uint8)
    out = augment.preprocess_for_pretrain(image, SIZE, SEED, use_blur=False)
    assert out.shape == (SIZE, SIZE, 3) and out.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0


def test_two_views_are_two_different_pretrain_views():
    image = _colorful()
    out = augment.two_views(image, SIZE, SEED).numpy()
    assert out.shape == (SIZE, SIZE, 6)
    assert not np.allclose(out[..., :3], out[..., 3:])
    seeds = tf.random.experimental.stateless_split(SEED, 2)
    np.testing.assert_allclose(
        out[..., :3], augment.preprocess_for_pretrain(image, SIZE, seeds[0]).numpy())
    np.testing.assert_allclose(
        out[..., 3:], augment.preprocess_for_pretrain(image, SIZE, seeds[1]).numpy())


@pytest.mark.parametrize("use_blur,flip", [(False, True), (True, False)])
def test_grey_image_gets_the_view_of_its_three_channel_copy(use_blur, flip):
    """A [H, W, 1] image is augmented as one channel (no hue/saturation ops)
    and gives, seed for seed, the view its tiled [H, W, 3] copy gets."""
    rng = np.random.default_rng(3)
    grey = tf.constant(rng.integers(0, 256, (28, 28, 1)), tf.uint8)
    rgb = tf.tile(grey, [1, 1, 3])
    for i in range(12):
        seed = tf.constant([i, 7])
        kwargs = dict(color_jitter_strength=1.0, use_blur=use_blur,
                      crop_min_area=0.35, random_flip=flip)
        got = augment.preprocess_for_pretrain(grey, 20, seed, **kwargs)
        want = augment.preprocess_for_pretrain(rgb, 20, seed, **kwargs)
        assert got.shape == want.shape == (20, 20, 3)
        # Colour drop scales a grey pixel by 0.2989 + 0.587 + 0.114 = 0.9999.
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=2e-3)


def _op_types(channels):
    """Op types of the pretraining view's graph, branch functions included."""
    graph_def = tf.function(
        lambda x: augment.preprocess_for_pretrain(x, 16, tf.constant([1, 2])))\
        .get_concrete_function(tf.TensorSpec([28, 28, channels], tf.uint8))\
        .graph.as_graph_def()
    types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        types |= {node.op for node in function.node_def}
    return types


def test_grey_path_skips_the_colour_space_ops():
    colour_space = {"RGBToHSV", "HSVToRGB", "AdjustHue", "AdjustSaturation"}
    assert _op_types(3) & colour_space
    assert not _op_types(1) & colour_space
