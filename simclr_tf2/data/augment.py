"""SimCLR image augmentations built on TF stateless random ops.

Every random op takes a `seed`: an int32/int64 tensor of shape [2]. The same
seed gives the same result eagerly and inside `tf.data.Dataset.map`, because
only stateless ops (`tf.random.stateless_*`, `tf.image.stateless_*`) draw
randomness. Ops that need several draws split their seed with
`tf.random.experimental.stateless_split`.

All ops work on a single image `[H, W, C]` whose height and width may be
unknown until run time. Float images are expected in [0, 1]; the outputs are
float32 in [0, 1]. The augmentation policy follows Appendix A of the SimCLR
paper (Chen et al., 2020) and the SimCLR v2 code's choices (multiplicative
brightness, random jitter order).

This module holds the geometry (crops, flips, the eval centre crop) and the
policies that compose it with the colour and blur ops of `photometric`:
`preprocess_for_pretrain` (and `two_views`), `preprocess_for_finetune`,
`preprocess_for_eval`.
"""

import tensorflow as tf

from simclr_tf2.data import photometric
from simclr_tf2.data import stateless

CROP_PROPORTION = 0.875  # Eval centre crop for large images (Inception style).


def _resize(image, size):
    """Bicubic resize to [size, size], clipped because bicubic overshoots."""
    image = tf.image.resize(image, [size, size], method="bicubic")
    return tf.clip_by_value(image, 0.0, 1.0)


def to_float_rgb(image):
    """Converts an image to float32 RGB in [0, 1].

    Integer images are scaled by their dtype's maximum (255 for uint8); float
    images are assumed to be in [0, 1] already and only cast.

    Args:
        image: Tensor of shape [H, W, C] with C in {1, 3}, any integer or
            float dtype.

    Returns:
        Float32 tensor of shape [H, W, 3]; one channel is tiled to three.

    Raises:
        ValueError: If the rank or a statically known channel count is wrong.
    """
    image = tf.convert_to_tensor(image)
    if image.shape.rank is not None and image.shape.rank != 3:
        raise ValueError(f"Expected an image of shape [H, W, C], got shape {image.shape}.")
    channels = image.shape[-1] if image.shape.rank is not None else None
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"Expected 1 (grayscale) or 3 (RGB) channels, got {channels}.")
    if channels is None:
        num = tf.shape(image)[-1]
        with tf.control_dependencies([tf.debugging.assert_equal(
                tf.logical_or(tf.equal(num, 1), tf.equal(num, 3)), True,
                message="Expected 1 (grayscale) or 3 (RGB) channels.")]):
            image = tf.identity(image)
    image = tf.image.convert_image_dtype(image, tf.float32)
    # Broadcasting tiles a single channel and leaves three channels alone.
    shape = tf.concat([tf.shape(image)[:2], [3]], axis=0)
    return tf.broadcast_to(image, shape)


def distorted_crop_window(image_shape, seed, area_range=(0.08, 1.0),
                          aspect_ratio_range=(3 / 4, 4 / 3)):
    """Samples an Inception-style crop window.

    The window covers a fraction of the image area within `area_range` and has
    a width/height ratio within `aspect_ratio_range` (TF's sampler, up to 100
    attempts, falling back to the whole image).

    Args:
        image_shape: Int tensor of shape [3], the image's [H, W, C].
        seed: Int tensor of shape [2].
        area_range: (min, max) fraction of the image area to keep.
        aspect_ratio_range: (min, max) crop width / height.

    Returns:
        Int32 tensor of shape [4]: (offset_y, offset_x, height, width).
    """
    whole_image = tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4])
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        image_shape, bounding_boxes=whole_image, seed=seed,
        # The box is the whole image, so "covered" equals the area fraction;
        # area_range alone bounds it (the original code's 0.1 raised the floor).
        min_object_covered=0.0,
        aspect_ratio_range=list(aspect_ratio_range),
        area_range=list(area_range), max_attempts=100,
        use_image_if_no_bounding_boxes=True)
    return tf.cast(tf.concat([begin[:2], size[:2]], axis=0), tf.int32)


def random_crop_and_resize(image, size, seed, area_range=(0.08, 1.0),
                           aspect_ratio_range=(3 / 4, 4 / 3)):
    """Inception-style random crop, resized (bicubic) to a square.

    Args:
        image: Float tensor of shape [H, W, 3] in [0, 1].
        size: Python int, the output side.
        seed: Int tensor of shape [2].
        area_range: (min, max) fraction of the image area to keep.
        aspect_ratio_range: (min, max) crop width / height.

    Returns:
        Float32 tensor of shape [size, size, 3] in [0, 1].
    """
    window = distorted_crop_window(tf.shape(image), seed, area_range,
                                   aspect_ratio_range)
    crop = tf.image.crop_to_bounding_box(image, window[0], window[1],
                                         window[2], window[3])
    return _resize(crop, size)


def flip_left_right(image, seed):
    """Flips left-right with probability 0.5.

    Args:
        image: Tensor of shape [H, W, C].
        seed: Int tensor of shape [2].

    Returns:
        Tensor of shape [H, W, C].
    """
    return tf.image.stateless_random_flip_left_right(image, seed)


def center_crop(image, size, crop_proportion):
    """Crops the centre square and resizes it (bicubic) to [size, size].

    The square's side is `crop_proportion` times the shorter image side;
    odd margins put the extra pixel before the crop, as Inception eval does.
    With crop_proportion=1.0 a square image is only resized.

    Args:
        image: Float tensor of shape [H, W, 3] in [0, 1].
        size: Python int, the output side.
        crop_proportion: Python float in (0, 1].

    Returns:
        Float32 tensor of shape [size, size, 3] in [0, 1].
    """
    shape = tf.shape(image)
    shorter = tf.cast(tf.minimum(shape[0], shape[1]), tf.float32)
    side = tf.maximum(tf.cast(tf.math.rint(crop_proportion * shorter), tf.int32), 1)
    offset_y = (shape[0] - side + 1) // 2
    offset_x = (shape[1] - side + 1) // 2
    crop = tf.image.crop_to_bounding_box(image, offset_y, offset_x, side, side)
    return _resize(crop, size)


def preprocess_for_pretrain(image, image_size, seed, color_jitter_strength=1.0,
                            use_blur=True, crop_min_area=0.08, random_flip=True):
    """Makes one SimCLR pretraining view: crop, flip, color, blur.

    Args:
        image: Tensor of shape [H, W, C], C in {1, 3}; uint8 or float in [0, 1].
        image_size: Python int, the output side.
        seed: Int tensor of shape [2].
        color_jitter_strength: Python float, the color jitter strength.
        use_blur: Whether to apply random Gaussian blur (p=0.5).
        crop_min_area: smallest fraction of the image area a random crop
            keeps (the paper's 0.08; larger for small images).
        random_flip: flip left-right with p = 0.5 (the paper; off for images
            whose mirror image is another class, such as digits).

    Returns:
        Float32 tensor of shape [image_size, image_size, 3] in [0, 1].
    """
    seeds = stateless.split_seed(seed, 4)
    # A grey image (one channel known when the graph is built) is augmented
    # as one channel and tiled at the end: the same view as its three-channel
    # copy would get, for a third of the work and no hue/saturation ops.
    image = tf.convert_to_tensor(image)
    grey = image.shape.rank == 3 and image.shape[-1] == 1
    image = (tf.image.convert_image_dtype(image, tf.float32) if grey
             else to_float_rgb(image))
    image = random_crop_and_resize(image, image_size, seeds[0],
                                   area_range=(crop_min_area, 1.0))
    if random_flip:
        image = flip_left_right(image, seeds[1])
    image = photometric.color_distortion(image, color_jitter_strength, seeds[2])
    if use_blur:
        image = photometric.random_blur(image, seeds[3])
    image = tf.clip_by_value(image, 0.0, 1.0)
    if grey:
        image = tf.tile(image, [1, 1, 3])
    return tf.ensure_shape(image, [image_size, image_size, 3])


def preprocess_for_finetune(image, image_size, seed, crop_min_area=0.08,
                            random_flip=True):
    """Random crop and flip only, as for fine-tuning (paper Appendix B.5).

    Args:
        image: Tensor of shape [H, W, C], C in {1, 3}; uint8 or float in [0, 1].
        image_size: Python int, the output side.
        seed: Int tensor of shape [2].
        crop_min_area: smallest fraction of the image area a crop keeps.
        random_flip: flip left-right with p = 0.5.

    Returns:
        Float32 tensor of shape [image_size, image_size, 3] in [0, 1].
    """
    seeds = stateless.split_seed(seed, 2)
    image = to_float_rgb(image)
    image = random_crop_and_resize(image, image_size, seeds[0],
                                   area_range=(crop_min_area, 1.0))
    if random_flip:
        image = flip_left_right(image, seeds[1])
    return tf.ensure_shape(image, [image_size, image_size, 3])


def preprocess_for_eval(image, image_size):
    """Deterministic eval preprocessing.

    Images larger than 32 px get a centre crop of `CROP_PROPORTION`; small
    images (e.g. CIFAR) are only resized, with no crop, as the original does.

    Args:
        image: Tensor of shape [H, W, C], C in {1, 3}; uint8 or float in [0, 1].
        image_size: Python int, the output side.

    Returns:
        Float32 tensor of shape [image_size, image_size, 3] in [0, 1].
    """
    image = to_float_rgb(image)
    if image_size > 32:
        image = center_crop(image, image_size, CROP_PROPORTION)
    else:
        image = _resize(image, image_size)
    return tf.ensure_shape(image, [image_size, image_size, 3])


def two_views(image, image_size, seed, color_jitter_strength=1.0, use_blur=True,
              crop_min_area=0.08, random_flip=True):
    """Makes two independent pretraining views, stacked along channels.

    Args:
        image: Tensor of shape [H, W, C], C in {1, 3}; uint8 or float in [0, 1].
        image_size: Python int, the output side.
        seed: Int tensor of shape [2].
        color_jitter_strength: Python float, the color jitter strength.
        use_blur: Whether to apply random Gaussian blur (p=0.5).
        crop_min_area: smallest fraction of the image area a crop keeps.
        random_flip: flip each view left-right with p = 0.5.

    Returns:
        Float32 tensor of shape [image_size, image_size, 6]: view 1 in
        channels 0:3, view 2 in channels 3:6.
    """
    seeds = stateless.split_seed(seed, 2)
    views = [preprocess_for_pretrain(image, image_size, seeds[i],
                                     color_jitter_strength, use_blur,
                                     crop_min_area, random_flip)
             for i in range(2)]
    return tf.concat(views, axis=-1)


def split_views(images):
    """Inverse of `two_views` on a batch: the views as separate images.

    Args:
        images: [B, H, W, 3 * V] V views stacked on channels (`two_views`:
            V = 2), or [B, H, W, 3], one view.

    Returns:
        List of V tensors [B, H, W, 3], view 1 first.
    """
    return tf.split(images, images.shape[-1] // 3, axis=-1)
