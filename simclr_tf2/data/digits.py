"""The default dataset: scikit-learn's embedded 8x8 digits (no download).

1797 images of 10 classes as uint8 [8, 8, 1]; a fixed-seed stratified split
gives 'train' (1437) and 'test' (360).
"""

import numpy as np

from simclr_tf2.data.in_memory import ArraySource
from simclr_tf2.data.source import DatasetInfo

DIGITS = "digits"
DIGITS_TEST_SIZE = 360  # 1797 - 360 = 1437 train examples (~80%).
DIGITS_SEED = 0


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
