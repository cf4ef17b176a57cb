"""Representations of a dataset split from an exported SimCLR SavedModel."""

import json
import os

import numpy as np
import tensorflow as tf

from simclr_tf2 import knn
from simclr_tf2 import rundir
from simclr_tf2.errors import ConfigError
from simclr_tf2.data import pipeline


def export_image_size(export_dir):
    """The input side S an export was trained at (from its simclr_export.json)."""
    path = os.path.join(export_dir, rundir.EXPORT_INFO)
    if not os.path.exists(path):
        raise ConfigError(
            f"{export_dir} is not a simclr_tf2 export (no {path}); pass the "
            "model_dir/saved_model/<step> directory a run exported.")
    with open(path) as f:
        return int(json.load(f)["image_size"])


def split_features(export_dir, source, split, batch_size=500, limit=0,
                   output="final_avg_pool"):
    """Frozen features of every image of a split, with eval preprocessing.

    Args:
      export_dir: a SavedModel written by run.py / `python -m export`.
      source: an opened Source (simclr_tf2.data.registry.open_source).
      split: split name, e.g. "test" or "train[:2048]".
      batch_size: images per forward pass.
      limit: if > 0, only the first `limit` images.
      output: which named output to return (h = "final_avg_pool").

    Returns:
      (features float32 [N, D], labels int64 [N]) numpy arrays.
    """
    module = tf.saved_model.load(export_dir)
    image_size = export_image_size(export_dir)
    dataset = pipeline.build_eval_dataset(source, split, batch_size, image_size)
    if limit > 0:
        dataset = dataset.unbatch().take(limit).batch(batch_size)
    return knn.extract_features(module, dataset, key=output, normalize=False)


def split_pixels(source, split):
    """Raw pixels of a split, flattened and scaled to [0, 1].

    Returns:
      (pixels float32 [N, H*W*C], labels int64 [N], ids int64 [N]).
    """
    pixels, labels, ids = [], [], []
    for batch in source.split(split).batch(4096):
        images = tf.cast(batch["image"], tf.float32).numpy() / 255.0
        pixels.append(images.reshape(len(images), -1))
        labels.append(batch["label"].numpy())
        ids.append(batch["id"].numpy())
    return np.concatenate(pixels), np.concatenate(labels), np.concatenate(ids)
