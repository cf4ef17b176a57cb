"""A Source whose splits are numpy arrays held in memory (digits, Fashion-MNIST IDX)."""

from typing import Callable, Mapping

import numpy as np
import tensorflow as tf

from simclr_tf2.data.source import DatasetInfo, Source, SplitSlice
from simclr_tf2.errors import DataError

ArrayLoader = Callable[[], tuple[np.ndarray, np.ndarray]]


class ArraySource(Source):
    """A source whose splits are numpy arrays loaded into memory on first use.

    Args:
        info: the dataset info; `info.num_examples` must match the arrays.
        loaders: split name -> function returning (images uint8 [N, H, W, C],
            labels int [N]); called at most once per split.
    """

    def __init__(self, info: DatasetInfo, loaders: Mapping[str, ArrayLoader]):
        super().__init__(info)
        self._loaders = dict(loaders)
        self._arrays = {}

    def arrays(self, split_name: str) -> tuple[np.ndarray, np.ndarray]:
        """Returns (images, labels) of an unsliced split, loading them once."""
        if split_name not in self._arrays:
            images, labels = self._loaders[split_name]()
            expected = self.info.num_examples[split_name]
            if images.dtype != np.uint8 or images.ndim != 4 or len(
                    images) != expected or len(labels) != expected:
                raise DataError(
                    f"split {split_name!r} of dataset {self.info.name!r} is "
                    f"malformed: expected {expected} uint8 images and labels, "
                    f"got images {images.dtype}{list(images.shape)} and "
                    f"{len(labels)} labels; re-install or re-create the data")
            self._arrays[split_name] = (images, labels.astype(np.int64))
        return self._arrays[split_name]

    def _refs(self, part: SplitSlice) -> tf.data.Dataset:
        _, labels = self.arrays(part.split)
        return tf.data.Dataset.from_tensor_slices({
            "split": tf.fill([part.size], part.split),
            "label": labels[part.start:part.stop],
            "id": np.arange(part.start, part.stop, dtype=np.int64),
        })

    def _load(self, refs: tf.data.Dataset,
              splits: tuple[str, ...]) -> tf.data.Dataset:
        # The id of an example is its row in its split's array.
        images = [tf.constant(self.arrays(split)[0]) for split in splits]
        names = tf.constant(list(splits))

        def load(ref):
            if len(images) == 1:
                image = tf.gather(images[0], ref["id"])
            else:
                index = tf.argmax(tf.cast(tf.equal(names, ref["split"]),
                                          tf.int32), output_type=tf.int32)
                image = tf.switch_case(index, [
                    (lambda rows=rows: tf.gather(rows, ref["id"]))
                    for rows in images])
            return {"image": image, "label": ref["label"], "id": ref["id"]}

        return refs.map(load, num_parallel_calls=tf.data.AUTOTUNE)
