"""A Source whose splits are numpy arrays held in memory (digits, Fashion-MNIST IDX)."""

from typing import Callable, Mapping

import numpy as np
import tensorflow as tf

from simclr_tf2.data.source import DataError, DatasetInfo, Source, SplitSlice

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

    def _read(self, part: SplitSlice) -> tf.data.Dataset:
        images, labels = self.arrays(part.split)
        window = slice(part.start, part.stop)
        return tf.data.Dataset.from_tensor_slices({
            "image": images[window],
            "label": labels[window],
            "id": np.arange(part.start, part.stop, dtype=np.int64),
        })
