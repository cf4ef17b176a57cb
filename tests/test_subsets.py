"""Label-fraction subsets: balance, reproducibility and the ids file."""

import numpy as np
import pytest

from simclr_tf2 import errors
from simclr_tf2.data import registry, subsets


def test_balanced_and_reproducible():
    labels = np.repeat(np.arange(10), 100)
    ids = np.arange(1000) + 5000
    chosen = subsets.balanced_subset(labels, ids, 0.01, seed=3)
    assert len(chosen) == 10
    assert sorted(labels[np.searchsorted(ids, chosen)]) == list(range(10))
    assert chosen == subsets.balanced_subset(labels, ids, 0.01, seed=3)
    assert chosen != subsets.balanced_subset(labels, ids, 0.01, seed=4)
    ten = subsets.balanced_subset(labels, ids, 0.1, seed=3)
    assert np.all(np.bincount(labels[np.searchsorted(ids, ten)]) == 10)


def test_unlabelled_never_chosen_and_small_classes_kept():
    labels = np.array([0, 0, 0, 1, -1, -1])
    chosen = subsets.balanced_subset(labels, np.arange(6), 0.1, seed=0)
    assert 3 in chosen and not {4, 5} & set(chosen)
    with pytest.raises(ValueError):
        subsets.balanced_subset(labels, np.arange(6), 0.0, seed=0)


def test_file_round_trip_and_errors(tmp_path):
    path = str(tmp_path / "label_subset.txt")
    subsets.write_subset_file(path, [3, 1, 2])
    assert subsets.read_subset_file(path) == [1, 2, 3]
    (tmp_path / "bad.txt").write_text("1\nabc\n")
    with pytest.raises(errors.DataError, match="bad.txt:2"):
        subsets.read_subset_file(str(tmp_path / "bad.txt"))
    with pytest.raises(errors.DataError, match="does not exist"):
        subsets.read_subset_file(str(tmp_path / "missing.txt"))


def test_digits_one_percent_subset():
    source = registry.open_source("digits")
    labels, ids = subsets.labels_and_ids(source, "train")
    assert len(ids) == source.num_examples("train")
    chosen = subsets.balanced_subset(labels, ids, 0.05, seed=0)
    per_class = np.bincount(labels[np.isin(ids, chosen)], minlength=10)
    assert per_class.min() >= 6 and per_class.max() <= 8
