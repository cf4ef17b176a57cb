"""Opens a dataset by name as a Source of raw examples for the one tf.data pipeline.

Accepted names (`describe_datasets()`):

* ``digits``: scikit-learn's embedded 8x8 digits (1797 images, 10 classes),
  no download; the default dataset. Splits 'train' (1437) and 'test' (360).
* ``fashion_mnist``: local IDX files (Debian ``dataset-fashion-mnist``, or
  ``--data_dir``), else a TFDS copy prepared under ``data_dir``;
  ``fashion_mnist:/dir`` reads the IDX files of an explicit directory.
* ``folder:/path``: a directory of images (see `simclr_tf2.data.folder`).
* any other TFDS builder name (``cifar10``, ``imagenet2012``, ``mnist``...),
  read from data already prepared under ``data_dir``; never downloaded.

Every source yields dicts ``{'image': uint8 [H, W, C], 'label': int64
(-1 if unlabeled), 'id': int64}``; see `simclr_tf2.data.source_base`.

Example:
    source = open_source('digits')
    train = source.split('train[:10%]')   # 144 examples, ids 0..143
"""

import numpy as np

from simclr_tf2.data import idx, tfds_source
from simclr_tf2.data.folder import FolderSource
from simclr_tf2.data.source_base import (ArraySource, DataError, DatasetInfo,
                                         Source, SplitSlice, parse_split)

__all__ = ["DataError", "DatasetInfo", "Source", "SplitSlice", "FolderSource",
           "open_source", "describe_datasets", "parse_split", "DIGITS"]

DIGITS = "digits"
FASHION_MNIST = "fashion_mnist"
FOLDER_PREFIX = "folder:"
DIGITS_TEST_SIZE = 360  # 1797 - 360 = 1437 train examples (~80%).
DIGITS_SEED = 0


def describe_datasets() -> str:
    """Returns a one-line list of the accepted dataset names, for help texts."""
    return ("digits (embedded 8x8 digits, no download), fashion_mnist (local "
            "IDX files or prepared TFDS), folder:/path/to/images, or any "
            "prepared TFDS image dataset name (e.g. cifar10, imagenet2012)")


def open_source(dataset: str, data_dir: str | None = None) -> Source:
    """Opens a dataset by name without touching the network.

    Args:
        dataset: 'digits', 'fashion_mnist' (or 'fashion_mnist:/idx/dir'),
            'folder:/path', or a TFDS name (optionally 'name/config:version').
        data_dir: where prepared TFDS data (or Fashion-MNIST IDX files) live;
            None for the TFDS default.

    Returns:
        The opened Source.

    Raises:
        DataError: unknown name or missing/unprepared data, with the fix.
    """
    name = (dataset or "").strip()
    if not name:
        raise DataError("empty dataset name: expected digits, fashion_mnist, "
                        "folder:/path, or a TFDS name (see tfds.list_builders())")
    if name.startswith(FOLDER_PREFIX):
        return FolderSource(name[len(FOLDER_PREFIX):])
    if name.lower() == DIGITS:
        return open_digits()
    if name.lower() == FASHION_MNIST:
        return idx.open_fashion_mnist(data_dir)
    prefix, _, rest = name.partition(":")
    if prefix.lower() == FASHION_MNIST and rest and not rest[0].isdigit():
        return idx.open_fashion_mnist(data_dir, directory=rest)
    return tfds_source.open_tfds(name, data_dir)


def _stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A fixed-seed permutation in which every prefix is class-balanced.

    Examples are shuffled, then ordered by their rank within their class
    divided by the class size, so the first k examples hold about k * p_c of
    each class c: train (the head) and test (the tail) are stratified, and so
    is any slice such as 'train[:10%]'.
    """
    order = np.random.RandomState(seed).permutation(len(labels))
    counts = np.bincount(labels)
    seen = np.zeros_like(counts)
    position = np.empty(len(labels))
    for i in order:
        position[i] = (seen[labels[i]] + 0.5) / counts[labels[i]]
        seen[labels[i]] += 1
    return order[np.argsort(position[order], kind="stable")]


def open_digits() -> ArraySource:
    """Opens scikit-learn's 8x8 digits as uint8 [8, 8, 1] images in 0..255.

    Returns:
        A source with splits 'train' (1437) and 'test' (360; also reachable
        as 'validation'), stratified by a fixed-seed split.
    """
    # Imported here: scikit-learn is only needed for this dataset.
    from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

    digits = load_digits()
    # Pixel values are 0..16: scale to the full uint8 range.
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    order = _stratified_order(labels, DIGITS_SEED)
    num_train = len(order) - DIGITS_TEST_SIZE
    splits = {"train": order[:num_train], "test": order[num_train:]}
    info = DatasetInfo(
        name=DIGITS, num_classes=10,
        num_examples={name: len(rows) for name, rows in splits.items()},
        image_shape=images.shape[1:],
        class_names=tuple(str(d) for d in range(10)))
    return ArraySource(info, {
        name: (lambda rows=rows: (images[rows], labels[rows]))
        for name, rows in splits.items()})
