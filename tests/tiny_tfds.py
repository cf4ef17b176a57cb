"""Tiny TFDS builders generated without downloads, for the TFDS source tests."""

import numpy as np
import tensorflow_datasets as tfds


class SimclrSourcesTiny(tfds.core.GeneratorBasedBuilder):
    """A tiny image dataset generated without downloads, for the TFDS path."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(6, 5, 3)),
                "label": tfds.features.ClassLabel(names=["a", "b", "c"])}))

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        return {"train": self._generate_examples(12),
                "test": self._generate_examples(4)}

    def _generate_examples(self, num):
        for i in range(num):
            # Pixel value i + 1 identifies the example; label = i % 3.
            yield i, {"image": np.full((6, 5, 3), i + 1, np.uint8),
                      "label": i % 3}


class SimclrSourcesTinyUnlabeled(SimclrSourcesTiny):
    """The same images without a 'label' feature."""

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(6, 5, 3))}))

    def _generate_examples(self, num):
        for i in range(num):
            yield i, {"image": np.full((6, 5, 3), i + 1, np.uint8)}
