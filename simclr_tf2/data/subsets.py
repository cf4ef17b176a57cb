"""Label-fraction subsets: class-balanced, seeded, saved as a list of example ids."""

import numpy as np
import tensorflow as tf

from simclr_tf2.errors import DataError


def labels_and_ids(source, split):
    """All (label, id) pairs of a split, read without decoding any image.

    Args:
      source: an opened Source.
      split: split name (slicing allowed).

    Returns:
      (labels int64 [N], ids int64 [N]) numpy arrays.
    """
    labels, ids = source.labels_and_ids(split)
    if not len(labels):
        raise DataError(f"split {split!r} is empty; pass a non-empty --train_split.")
    return labels, ids


def balanced_subset(labels, ids, fraction, seed):
    """Picks about `fraction` of the examples of every class.

    Each class c with n_c labelled examples contributes max(1, round(fraction
    * n_c)) of them, drawn without replacement with `seed`; so 1% of a
    balanced dataset has the same number per class, and the same seed gives
    the same ids.

    Args:
      labels: int [N], -1 for unlabeled examples (never chosen).
      ids: int [N] example ids.
      fraction: in (0, 1].
      seed: random seed.

    Returns:
      Sorted list of chosen ids.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}.")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels[labels >= 0]):
        members = ids[labels == label]
        count = max(1, int(round(fraction * len(members))))
        chosen.extend(rng.choice(members, size=count, replace=False).tolist())
    if not chosen:
        raise DataError("no labelled examples to choose a label subset from; "
                        "use a labelled --dataset/--train_split.")
    return sorted(int(i) for i in chosen)


def write_subset_file(path, example_ids):
    """Writes one id per line (through a temporary file, all or nothing)."""
    tmp_path = f"{path}.tmp"
    with tf.io.gfile.GFile(tmp_path, "w") as f:
        f.write("".join(f"{i}\n" for i in example_ids))
    tf.io.gfile.rename(tmp_path, path, overwrite=True)


def read_subset_file(path):
    """Reads ids written by `write_subset_file` (blank lines and # comments ok)."""
    if not tf.io.gfile.exists(path):
        raise DataError(f"label subset file {path} does not exist; pass a file "
                        "written by an earlier run (model_dir/label_subset.txt).")
    ids = []
    with tf.io.gfile.GFile(path) as f:
        for number, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                ids.append(int(line))
            except ValueError as err:
                raise DataError(f"{path}:{number}: {line!r} is not an example id; "
                                "the file holds one integer id per line.") from err
    if not ids:
        raise DataError(f"label subset file {path} holds no ids.")
    return sorted(set(ids))
