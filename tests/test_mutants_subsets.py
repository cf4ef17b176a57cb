"""Behaviour of simclr_tf2/data/subsets.py that the mutation run (benchmarks/mutation.py)
found unpinned: each test kills mutants that survived the module's own tests
(a default of the library API, an exact rule, an error a user acts on).
"""

import types

import numpy as np
import pytest

from simclr_tf2.data import subsets
from simclr_tf2.errors import DataError


def test_labels_and_ids_of_an_empty_split_is_one_clear_error():
    empty = types.SimpleNamespace(
        labels_and_ids=lambda split: (np.zeros([0], np.int64),
                                      np.zeros([0], np.int64)))
    with pytest.raises(DataError, match=(
            r"^split 'train\[:0\]' is empty; pass a non-empty --train_split\.$")):
        subsets.labels_and_ids(empty, "train[:0]")
    one = types.SimpleNamespace(
        labels_and_ids=lambda split: (np.array([4]), np.array([9])))
    labels, ids = subsets.labels_and_ids(one, "train")
    assert labels.tolist() == [4] and ids.tolist() == [9]


def test_balanced_subset_counts_per_class():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 1 + [-1] * 5)
    ids = np.arange(len(labels)) * 3 + 100
    # fraction 1: every labelled example, none of the unlabelled ones.
    assert subsets.balanced_subset(labels, ids, 1.0, seed=0) == sorted(
        ids[labels >= 0].tolist())
    # round(0.25 * n_c), at least 1: 10 -> 2 (2.5 rounds to even), 3 -> 1, 1 -> 1.
    chosen = subsets.balanced_subset(labels, ids, 0.25, seed=0)
    picked = labels[np.isin(ids, chosen)]
    assert np.bincount(picked).tolist() == [2, 1, 1]
    assert len(set(chosen)) == len(chosen) == 4
    assert all(isinstance(i, int) for i in chosen)
    # 0.35 * 10 = 3.5 -> 4; 0.35 * 3 = 1.05 -> 1.
    picked = labels[np.isin(ids, subsets.balanced_subset(labels, ids, 0.35, 0))]
    assert np.bincount(picked).tolist() == [4, 1, 1]


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.01])
def test_balanced_subset_fraction_outside_0_1_is_refused(fraction):
    with pytest.raises(ValueError, match=(
            rf"^label fraction must be in \(0, 1\], got {fraction}\.$")):
        subsets.balanced_subset(np.array([0, 1]), np.array([0, 1]), fraction, 0)


def test_balanced_subset_without_labels_is_one_clear_error():
    with pytest.raises(DataError, match=(
            r"^no labelled examples to choose a label subset from; use a "
            r"labelled --dataset/--train_split\.$")):
        subsets.balanced_subset(np.array([-1, -1]), np.array([0, 1]), 0.5, 0)


def test_subset_file_is_one_id_per_line_and_overwrites(tmp_path):
    path = str(tmp_path / "label_subset.txt")
    subsets.write_subset_file(path, [5, 17])
    assert open(path).read() == "5\n17\n"
    subsets.write_subset_file(path, [3])  # an existing file is replaced
    assert open(path).read() == "3\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["label_subset.txt"]


def test_subset_file_reader_skips_comments_and_blank_lines(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("# chosen by hand\n\n7  # a seven\n  3\n7\n#9\n")
    assert subsets.read_subset_file(str(path)) == [3, 7]
    path.write_text("1\n\n x1\n")
    with pytest.raises(DataError, match=(
            rf"^{path}:3: 'x1' is not an example id; the file holds one "
            r"integer id per line\.$")):
        subsets.read_subset_file(str(path))
    path.write_text("# nothing\n\n")
    with pytest.raises(DataError, match=rf"^label subset file {path} holds no ids\.$"):
        subsets.read_subset_file(str(path))
    missing = tmp_path / "missing.txt"
    with pytest.raises(DataError, match=(
            rf"^label subset file {missing} does not exist; pass a file written "
            r"by an earlier run \(model_dir/label_subset\.txt\)\.$")):
        subsets.read_subset_file(str(missing))
