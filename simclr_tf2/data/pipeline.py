"""tf.data pipelines: raw source examples -> augmented, batched model inputs.

Every source yields dicts {"image": uint8 [H, W, C], "label": int64, "id":
int64}; this module turns them into {"image": float32 [B, S, S, 3 or 6],
"label": int64 [B], "id": int64 [B]} training batches (a transform, the
train mode's augmentation, maps each example: `two_view_transform` or
`single_view_transform`) and {"image", "label"} eval batches.
`contrastive_batches` makes the same pretraining batches from a user's own
tf.data.Dataset of images (library use, no Source needed).

Order: every epoch is a new seeded permutation of the whole split, drawn by
the source before images are decoded (`Source.shuffled`), so batches mix the
classes even when the files are sorted by class. Augmentation is seeded per
example from one stream of stateless seeds. Both streams derive from (seed,
start_step): a run is reproducible for a given --seed, and a resumed run
continues with new orders rather than replaying the first epochs.

Multi-worker: every worker builds the same global stream and
tf.distribute's DATA auto-sharding gives each worker its own slice of every
global batch, so workers see different examples with different augmentation
seeds, and N workers train on exactly what one worker would.
"""

import logging

import numpy as np
import tensorflow as tf

from simclr_tf2.data import augment
from simclr_tf2.data.source import decoded_buffer_size, hide_labels_outside

AUTOTUNE = tf.data.AUTOTUNE


def derive_seeds(seed, start_step=0):
    """(order seed, augmentation seed) for a run at `start_step`.

    A run from step 0 uses `seed` itself for both (the streams of earlier
    versions, so its results are unchanged); a resumed run hashes (seed,
    start_step), so seed 0 resumed at step 1 differs from seed 1 at step 0.
    """
    if start_step == 0:
        return seed, seed
    order, aug = np.random.SeedSequence([seed, start_step]).generate_state(2)
    return int(order), int(aug)


def copies_note(global_batch_size, num_examples):
    """One line saying how many copies of each image a batch holds.

    Epochs stream through one after another, so a batch of B > N examples
    holds B / N copies of every image on average (an image near an epoch
    boundary may get one more or one fewer).
    """
    return (f"train_batch_size {global_batch_size} is larger than the "
            f"{num_examples} training examples: each batch holds "
            f"{global_batch_size / num_examples:.2f} copies of every image on "
            "average, each in its own augmentations; NT-Xent counts them as "
            "positives of each other, a step counts as one epoch, and the "
            f"learning rate is scaled as for a batch of {num_examples}.")


def two_view_transform(image_size, color_jitter_strength=1.0, use_blur=True,
                       crop_min_area=0.08, random_flip=True):
    """(example, seed) -> two augmented views: pretraining's augmentation.

    Args:
      image_size: output side S.
      color_jitter_strength: colour distortion strength s.
      use_blur: random Gaussian blur (p = 0.5).
      crop_min_area: smallest area fraction of a random crop.
      random_flip: random left-right flips.

    Returns:
      fn(example {"image": [H, W, C], "label", "id"}, seed int [2]) ->
      {"image": float32 [S, S, 6] (view 1 in channels 0:3), "label", "id"}.
    """
    def transform(example, seed):
        image = augment.two_views(example["image"], image_size, seed,
                                  color_jitter_strength, use_blur,
                                  crop_min_area, random_flip)
        return {"image": image, "label": example["label"], "id": example["id"]}
    return transform


def single_view_transform(image_size, crop_min_area=0.08, random_flip=True):
    """(example, seed) -> one cropped (and randomly flipped) view: the
    supervised modes' training augmentation ({"image": float32 [S, S, 3],
    "label", "id"})."""
    def transform(example, seed):
        image = augment.preprocess_for_finetune(example["image"], image_size,
                                                seed, crop_min_area, random_flip)
        return {"image": image, "label": example["label"], "id": example["id"]}
    return transform


def student_and_teacher_transform(image_size, crop_min_area=0.08,
                                  random_flip=True):
    """(example, seed) -> the student's augmented view and the teacher's
    whole image: distillation where the teacher labels what evaluation
    sees and the student learns that label from an augmented view.

    Returns:
      fn(example, seed int [2]) -> {"image": float32 [S, S, 3] (cropped,
      randomly flipped), "teacher_image": float32 [S, S, 3] (the eval
      preprocessing), "label", "id"}.
    """
    student_view = single_view_transform(image_size, crop_min_area, random_flip)

    def transform(example, seed):
        return dict(student_view(example, seed), teacher_image=augment.preprocess_for_eval(
            example["image"], image_size))
    return transform


def build_train_dataset(source, split, global_batch_size, transform, *,
                        seed=0, cache=False, example_ids=None, labelled_ids=None,
                        start_step=0):
    """Infinite, shuffled, augmented training batches.

    Args:
      source: an opened `simclr_tf2.data.registry.Source`.
      split: split name, TFDS slicing allowed ("train[:10%]").
      global_batch_size: examples per step over all replicas.
      transform: fn(example, seed int [2]) -> augmented example, the train
        mode's augmentation (`two_view_transform`, `single_view_transform`;
        a task's `train_transform`).
      seed: seeds shuffling and augmentation.
      cache: keep decoded examples in memory (one permutation is cached;
        later epochs re-mix it in a buffer sized for memory).
      example_ids: optional list of example ids to restrict to.
      labelled_ids: optional list of example ids whose labels the batches
        keep; every other example trains with label -1 (distillation on all
        images with a label subset).
      start_step: the global step training starts from; folded into the
        seeds so a resumed run draws new orders and augmentations.

    Returns:
      tf.data.Dataset of {"image": float32 [B, S, S, 6 or 3], "label": int64
      [B], "id": int64 [B]} with B = global_batch_size (remainder dropped).
    """
    order_seed, augment_seed = derive_seeds(seed, start_step)
    dataset = source.shuffled(split, order_seed, example_ids)
    if labelled_ids is not None:
        dataset = hide_labels_outside(dataset, labelled_ids)
    num_examples = (len(example_ids) if example_ids is not None
                    else source.num_examples(split))
    if cache or example_ids is not None:
        # A label subset is cached too: it is small and repeats often.
        dataset = dataset.cache().shuffle(
            decoded_buffer_size(source.info.image_shape, num_examples),
            seed=order_seed, reshuffle_each_iteration=True)
    if global_batch_size > num_examples:
        logging.warning("%s", copies_note(global_batch_size, num_examples))
    return augment_and_batch(dataset.repeat(), global_batch_size, transform,
                             augment_seed)


def augment_and_batch(dataset, global_batch_size, transform, augment_seed):
    """Seeded per-example training augmentation, then fixed-size batches.

    The step shared by `build_train_dataset` and `contrastive_batches`.

    Args:
      dataset: examples {"image": [H, W, C], "label": int64, "id": int64}.
      global_batch_size: examples per batch (remainder dropped).
      transform: see `build_train_dataset`.
      augment_seed: seeds the stream of per-example [2] seeds.

    Returns:
      tf.data.Dataset of {"image": float32 [B, S, S, 6 or 3], "label": int64
      [B], "id": int64 [B]}, prefetched, auto-sharded by DATA.
    """
    seeds = tf.data.Dataset.random(seed=augment_seed).batch(2)
    dataset = tf.data.Dataset.zip(dataset, seeds).map(
        transform, num_parallel_calls=AUTOTUNE, deterministic=True)
    dataset = dataset.batch(global_batch_size, drop_remainder=True)
    options = tf.data.Options()
    # Same global stream on every worker, each keeping its slice of every
    # batch (FILE sharding would give workers uneven, unshuffled files).
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return dataset.with_options(options).prefetch(AUTOTUNE)


def _as_example(element, index):
    """A user's dataset element -> {"image", "label" int64, "id" int64}.

    Accepts an image tensor, an (image, label) pair, or a dict with "image"
    and optional "label" / "id"; a missing label is -1 (unlabeled) and a
    missing id is the element's position in the dataset.
    """
    if isinstance(element, dict):
        if "image" not in element:
            raise ValueError(
                "contrastive_batches needs dict elements with an 'image' key; "
                f"got keys {sorted(element)}.")
        image = element["image"]
        label = element.get("label", tf.constant(-1, tf.int64))
        index = element.get("id", index)
    elif isinstance(element, (tuple, list)):
        if len(element) != 2:
            raise ValueError(
                "contrastive_batches takes (image, label) pairs; got a tuple "
                f"of {len(element)} elements.")
        image, label = element
    else:
        image, label = element, tf.constant(-1, tf.int64)
    if image.dtype.is_floating:
        # Floats in [0, 255] (image_dataset_from_directory) would be clipped
        # to a white image by the augmentation; fail instead.
        with tf.control_dependencies([tf.debugging.assert_less_equal(
                tf.reduce_max(image), tf.cast(1.0, image.dtype),
                message="contrastive_batches: float images must be in "
                        "[0, 1]; divide images in [0, 255] by 255 first.")]):
            image = tf.identity(image)
    return {"image": image, "label": tf.cast(label, tf.int64),
            "id": tf.cast(index, tf.int64)}


def _image_rank(spec):
    """Rank of the images in a dataset's element_spec (None: unknown)."""
    if isinstance(spec, dict):
        spec = spec.get("image")
    elif isinstance(spec, (tuple, list)) and spec:
        spec = spec[0]
    return getattr(getattr(spec, "shape", None), "rank", None)


def contrastive_batches(dataset: tf.data.Dataset, *, image_size: int,
                        batch_size: int, seed: int = 0,
                        shuffle_buffer: int = 1024,
                        color_jitter_strength: float = 1.0,
                        use_blur: bool = True, crop_min_area: float = 0.08,
                        random_flip: bool = True) -> tf.data.Dataset:
    """SimCLR pretraining batches from any `tf.data.Dataset` of images.

    Each image gets the pretraining augmentation (`two_view_transform`:
    two independently cropped, flipped, colour-distorted, blurred views),
    seeded per example from one stream as in `build_train_dataset`, so the
    batches are the same for the same `seed`. The dataset is repeated
    forever: give `fit` its `steps_per_epoch`.

    Args:
      dataset: a `tf.data.Dataset` whose elements are images [H, W, C]
        (C in {1, 3}; uint8, or float in [0, 1]), (image, label) pairs, or
        dicts with "image" and optional "label" and "id" (int). Images may
        differ in size. A batched dataset (images [b, H, W, C]) is unbatched
        first.
      image_size: side S of the square views.
      batch_size: global examples per batch (split over a strategy's
        replicas by `fit`); the remainder of each pass is dropped.
      seed: seeds the shuffle and the augmentation.
      shuffle_buffer: examples mixed by a shuffle before batching (0: the
        dataset's own order). A buffer covering the whole dataset gives a
        new permutation every pass.
      color_jitter_strength: colour distortion strength s.
      use_blur: random Gaussian blur (p = 0.5).
      crop_min_area: smallest area fraction of a random crop.
      random_flip: random left-right flips of each view.

    Returns:
      An infinite tf.data.Dataset of {"image": float32 [B, S, S, 6] (view 1
      in channels 0:3, view 2 in 3:6), "label": int64 [B] (-1 when the
      dataset has no labels), "id": int64 [B]}: what
      `SimCLRModel.fit` takes when compiled with `tasks.PretrainTask`.

    Raises:
      ValueError: elements of another structure, batch_size < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if _image_rank(dataset.element_spec) == 4:
        dataset = dataset.unbatch()  # E.g. keras.utils.image_dataset_from_directory.
    dataset = dataset.enumerate().map(
        lambda index, element: _as_example(element, index),
        num_parallel_calls=AUTOTUNE, deterministic=True)
    if shuffle_buffer > 0:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed,
                                  reshuffle_each_iteration=True)
    transform = two_view_transform(image_size, color_jitter_strength, use_blur,
                                   crop_min_area, random_flip)
    return augment_and_batch(dataset.repeat(), batch_size, transform, seed)


def build_eval_dataset(source, split, batch_size, image_size, cache=False,
                       num_steps=0, max_examples=0, seed=0):
    """One pass over a split with evaluation preprocessing (centre crop).

    Args:
      source: an opened Source.
      split: split name.
      batch_size: examples per batch (the last batch may be smaller).
      image_size: output side S.
      cache: keep decoded examples in memory.
      num_steps: if > 0, at most this many batches.
      max_examples: if > 0 and the split is larger, a seeded random subset
        of this many examples (the same one for the same seed).
      seed: picks that subset.

    Returns:
      tf.data.Dataset of {"image": float32 [b, S, S, 3], "label": int64 [b]}.
    """
    if 0 < max_examples < source.num_examples(split):
        dataset = source.shuffled(split, seed).take(max_examples)
    else:
        dataset = source.split(split)
    if cache:
        dataset = dataset.cache()

    def preprocess(example):
        return {"image": augment.preprocess_for_eval(example["image"],
                                                     image_size),
                "label": example["label"]}

    dataset = dataset.map(preprocess, num_parallel_calls=AUTOTUNE)
    dataset = dataset.batch(batch_size)
    if num_steps > 0:
        dataset = dataset.take(num_steps)
    return dataset.prefetch(AUTOTUNE)
