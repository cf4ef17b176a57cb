"""tf.data pipelines: raw source examples -> augmented, batched model inputs.

Every source yields dicts {"image": uint8 [H, W, C], "label": int64, "id":
int64}; this module turns them into {"image": float32 [B, S, S, 3 or 6],
"label": int64 [B]} batches. Augmentation is seeded per example from one
stream of stateless seeds, so a run is reproducible for a given --seed.
"""

import logging

import tensorflow as tf

from simclr_tf2.data import augment

AUTOTUNE = tf.data.AUTOTUNE
_SHUFFLE_BUFFER = 10_000


def _filter_ids(dataset, example_ids):
    """Keeps only examples whose "id" is in `example_ids` (a list of ints)."""
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(example_ids), tf.int64),
            tf.ones([len(example_ids)], tf.int64)), default_value=0)
    return dataset.filter(lambda ex: table.lookup(ex["id"]) > 0)


def _train_transform(train_mode, image_size, color_jitter_strength, use_blur):
    """The per-example augmentation of a train mode, as (example, seed) -> example."""
    def pretrain(example, seed):
        image = augment.two_views(example["image"], image_size, seed,
                                  color_jitter_strength, use_blur)
        return {"image": image, "label": example["label"]}

    def finetune(example, seed):
        image = augment.preprocess_for_finetune(example["image"], image_size,
                                                seed)
        return {"image": image, "label": example["label"]}

    return pretrain if train_mode == "pretrain" else finetune


def build_train_dataset(source, split, global_batch_size, train_mode,
                        image_size, color_jitter_strength=1.0, use_blur=True,
                        seed=0, cache=False, example_ids=None):
    """Infinite, shuffled, augmented training batches.

    Args:
      source: an opened `simclr_tf2.data.registry.Source`.
      split: split name, TFDS slicing allowed ("train[:10%]").
      global_batch_size: examples per step over all replicas.
      train_mode: "pretrain" (two views, full SimCLR augmentation) or
        "finetune" / "distill" (crop + flip only).
      image_size: output side S.
      color_jitter_strength: colour distortion strength s.
      use_blur: Gaussian blur in pretraining.
      seed: seeds shuffling and augmentation.
      cache: keep decoded examples in memory.
      example_ids: optional list of example ids to restrict to.

    Returns:
      tf.data.Dataset of {"image": float32 [B, S, S, 6 or 3], "label": int64
      [B]} with B = global_batch_size (remainder dropped).
    """
    dataset = source.split(split)
    num_examples = source.num_examples(split)
    if example_ids is not None:
        # Cached: a small subset is repeated many times per batch, and
        # re-filtering the whole split for every repetition dominates.
        dataset = _filter_ids(dataset, example_ids).cache()
        num_examples = len(example_ids)
    elif cache:
        dataset = dataset.cache()
    if global_batch_size > num_examples:
        logging.warning(
            "train_batch_size %d is larger than the %d training examples: "
            "examples repeat within a batch.", global_batch_size, num_examples)
    dataset = dataset.shuffle(min(num_examples, _SHUFFLE_BUFFER), seed=seed,
                              reshuffle_each_iteration=True).repeat()
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    transform = _train_transform(train_mode, image_size,
                                 color_jitter_strength, use_blur)
    dataset = tf.data.Dataset.zip(dataset, seeds).map(
        transform, num_parallel_calls=AUTOTUNE, deterministic=True)
    return dataset.batch(global_batch_size, drop_remainder=True).prefetch(
        AUTOTUNE)


def build_eval_dataset(source, split, batch_size, image_size, cache=False,
                       num_steps=0):
    """One pass over a split with evaluation preprocessing (centre crop).

    Args:
      source: an opened Source.
      split: split name.
      batch_size: examples per batch (the last batch may be smaller).
      image_size: output side S.
      cache: keep decoded examples in memory.
      num_steps: if > 0, at most this many batches.

    Returns:
      tf.data.Dataset of {"image": float32 [b, S, S, 3], "label": int64 [b]}.
    """
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
