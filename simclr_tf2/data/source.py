"""The Source interface every dataset implements: its error, dataset info and split specs.

Every source yields *raw* examples, a `tf.data.Dataset` of dicts::

    {'image': uint8 [H, W, C] (C = 1 or 3),
     'label': int64 scalar (-1 when unlabeled),
     'id':    int64 scalar (stable index of the example in its split)}

`Source.split` reads a split in a fixed order with stable ids (evaluation,
label lists); `Source.shuffled` reads it for training, in a seeded random
order over the whole split, drawn anew at every pass.

Split specs follow TFDS: ``'train'``, ``'train[:10%]'``, ``'train[100:200]'``,
``'test[-50:]'`` and ``'train[:10%]+test'``. Percent boundaries round to the
closest example, like TFDS's default ``rounding='closest'``. A sliced split
keeps the ids of the full split, so ``'train[100:200]'`` yields ids 100..199.
"""

import dataclasses
import logging
import re
from typing import Mapping

import numpy as np
import tensorflow as tf

from simclr_tf2.errors import DataError

logger = logging.getLogger(__name__)

# 'validation' and 'test' stand in for each other when a dataset has only one
# of them (the original SimCLR evaluates on 'validation' by default, but most
# small datasets only have 'test').
_SPLIT_ALIASES = {"validation": "test", "test": "validation"}
_SPEC_RE = re.compile(
    r"^(?P<name>[\w.-]+)(?:\[(?P<start>[^:\[\]]*):(?P<stop>[^:\[\]]*)\])?$")
_BOUND_RE = re.compile(r"^(?P<value>[-+]?\d+(?:\.\d*)?)(?P<pct>%?)$")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a training app needs to know about an opened dataset.

    Attributes:
        name: the dataset name as opened (e.g. 'digits', 'folder:/abs/path').
        num_classes: number of label classes; 0 for unlabeled data.
        num_examples: split name -> number of examples (unsliced splits).
        image_shape: (H, W, C) native image size, or (None, None, 3) when the
            images differ in size.
        class_names: class index -> human-readable name; may be empty.
    """

    name: str
    num_classes: int
    num_examples: dict
    image_shape: tuple
    class_names: tuple = ()


@dataclasses.dataclass(frozen=True)
class SplitSlice:
    """The absolute range [start, stop) of one named split."""

    split: str
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def parse_split(spec: str, sizes: Mapping[str, int],
                dataset: str) -> list[SplitSlice]:
    """Resolves a TFDS-style split spec into absolute ranges.

    Args:
        spec: e.g. 'train', 'train[:10%]', 'test[100:200]', 'train+test'.
        sizes: split name -> number of examples of the dataset.
        dataset: the dataset name, for error messages.

    Returns:
        One SplitSlice per '+'-separated part, in order.

    Raises:
        DataError: malformed spec, unknown split, or out-of-range boundary.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"empty split name for dataset {dataset!r}: pass a "
                        f"split such as {_expected(sizes)}")
    return [_parse_part(part.strip(), spec, sizes, dataset)
            for part in spec.split("+")]


def _expected(sizes: Mapping[str, int]) -> str:
    return ", ".join(repr(name) for name in sizes)


def _parse_part(part: str, spec: str, sizes: Mapping[str, int],
                dataset: str) -> SplitSlice:
    """Parses one 'name' or 'name[a:b]' part of a split spec."""
    match = _SPEC_RE.match(part)
    bad_syntax = DataError(
        f"invalid split {spec!r} for dataset {dataset!r}: write NAME or "
        f"NAME[a:b] with example counts or percentages, e.g. 'train[:10%]' "
        f"or 'train[100:200]'")
    if not match:
        raise bad_syntax
    name = resolve_split_name(match["name"], sizes, dataset)
    num = sizes[name]
    texts = [match["start"] or "", match["stop"] or ""]
    bounds = [_BOUND_RE.match(text) if text else None for text in texts]
    if any(text and bound is None for text, bound in zip(texts, bounds)):
        raise bad_syntax
    percent = any(bound is not None and bound["pct"] for bound in bounds)
    start, stop = [_absolute(bound, default, num, percent, spec, dataset)
                   for bound, default in zip(bounds, (0, num))]
    return SplitSlice(name, start, max(start, stop))


def resolve_split_name(name: str, sizes: Mapping[str, int],
                       dataset: str) -> str:
    """Returns the split `name` refers to, applying the validation/test alias."""
    if name in sizes:
        return name
    alias = _SPLIT_ALIASES.get(name)
    if alias in sizes:
        logger.info("dataset %r has no %r split; using %r", dataset, name,
                    alias)
        return alias
    raise DataError(f"unknown split {name!r} for dataset {dataset!r}: "
                    f"expected one of {_expected(sizes)} (optionally sliced, "
                    f"e.g. 'train[:10%]')")


def _absolute(bound, default: int, num: int, percent: bool, spec: str,
              dataset: str) -> int:
    """Converts one slice boundary to an absolute index in [0, num]."""
    if bound is None:
        return default
    value = float(bound["value"])
    if percent:
        if abs(value) > 100:
            raise DataError(f"split {spec!r} of dataset {dataset!r}: "
                            f"percentages must lie in [-100%, 100%]")
        value = round(value * num / 100.0)
    elif value != int(value):
        raise DataError(f"split {spec!r} of dataset {dataset!r}: example "
                        f"counts must be integers (or add '%')")
    value = int(value)
    if abs(value) > num:
        raise DataError(f"split {spec!r} of dataset {dataset!r} is out of "
                        f"range: the split has {num} examples")
    return value + num if value < 0 else value


# Decoded images a training shuffle buffer may hold; images of unknown size
# are counted at a typical photo's 500 x 400 x 3 bytes.
DECODED_SHUFFLE_BYTES = 512 << 20
_TYPICAL_IMAGE_SHAPE = (500, 400, 3)


def decoded_buffer_size(image_shape: tuple, count: int) -> int:
    """Shuffle buffer size for decoded images: bounded by memory, not by order.

    Args:
        image_shape: (H, W, C), None for sizes that vary.
        count: examples in the split (a larger buffer is never needed).

    Returns:
        max(1, min(count, DECODED_SHUFFLE_BYTES // bytes per image)).
    """
    shape = [d if d else t for d, t in zip(image_shape, _TYPICAL_IMAGE_SHAPE)]
    return max(1, min(count, DECODED_SHUFFLE_BYTES // int(np.prod(shape))))


def collect_labels_and_ids(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(labels int64 [N], ids int64 [N]) of a dataset of dicts with 'label', 'id'."""
    labels, ids = [], []
    pairs = dataset.map(lambda ex: (ex["label"], ex["id"]))
    for label_batch, id_batch in pairs.batch(65536).as_numpy_iterator():
        labels.append(label_batch)
        ids.append(id_batch)
    empty = np.zeros([0], np.int64)
    return (np.concatenate(labels) if labels else empty,
            np.concatenate(ids) if ids else empty)


def _membership_table(example_ids) -> tf.lookup.StaticHashTable:
    """int64 id -> 1 for `example_ids`, 0 for every other id."""
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(example_ids), tf.int64),
            tf.ones([len(example_ids)], tf.int64)), default_value=0)


def filter_ids(dataset: tf.data.Dataset, example_ids) -> tf.data.Dataset:
    """Keeps only the elements whose 'id' is in `example_ids` (ints)."""
    table = _membership_table(example_ids)
    return dataset.filter(lambda ex: table.lookup(ex["id"]) > 0)


def hide_labels_outside(dataset: tf.data.Dataset, labelled_ids) -> tf.data.Dataset:
    """Sets 'label' to -1 (unlabeled) on every element whose 'id' is not in
    `labelled_ids`; the elements themselves all stay.

    Distillation trains on every image but may read only a label subset's
    labels: the masked cross entropy skips -1.
    """
    table = _membership_table(labelled_ids)

    def hide(example):
        known = table.lookup(example["id"]) > 0
        label = tf.where(known, example["label"],
                         tf.constant(-1, example["label"].dtype))
        return {**example, "label": label}

    return dataset.map(hide, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True)


class Source:
    """An opened dataset: its info and a reader for each (possibly sliced) split.

    Subclasses describe each example by a cheap reference (`_refs(part)`: a
    dataset of dicts holding 'label', 'id' and what locates the image, such as
    a path or a row number) and turn references into examples
    (`_load(refs)`). Reading the references, never the images, is what makes
    a whole-split shuffle and label lists cheap. Sources that cannot address
    examples one by one (TFDS) override `split`, `shuffled` and
    `labels_and_ids` instead.
    """

    def __init__(self, info: DatasetInfo):
        self.info = info

    def split(self, split: str) -> tf.data.Dataset:
        """Returns the raw examples of `split`, in a deterministic order.

        Args:
            split: a split spec, e.g. 'train', 'train[:10%]', 'test[:500]'.

        Returns:
            A dataset of {'image': uint8 [H, W, C], 'label': int64,
            'id': int64} dicts.
        """
        return self._load(self._all_refs(split), self._split_names(split))

    def shuffled(self, split: str, seed: int,
                 example_ids=None) -> tf.data.Dataset:
        """One pass over `split` in a seeded random order, new at every pass.

        The references of the whole split are shuffled (a uniform
        permutation, whatever the order on disk, e.g. sorted by class) before
        any image is read; `.repeat()` on the result draws a new permutation
        for every epoch, the sequence of permutations fixed by `seed`.

        Args:
            split: a split spec.
            seed: the shuffle seed.
            example_ids: optional ids to restrict to (label subsets).

        Returns:
            A finite dataset of {'image', 'label', 'id'} dicts.
        """
        refs = self._all_refs(split)
        count = self.num_examples(split)
        if example_ids is not None:
            refs, count = filter_ids(refs, example_ids), len(example_ids)
        refs = refs.shuffle(max(count, 1), seed=seed,
                            reshuffle_each_iteration=True)
        return self._load(refs, self._split_names(split))

    def labels_and_ids(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """All (labels int64 [N], ids int64 [N]) of a split; no image is read."""
        return collect_labels_and_ids(self._all_refs(split))

    def num_examples(self, split: str) -> int:
        """Returns the number of examples of `split` (a possibly sliced spec)."""
        parts = parse_split(split, self.info.num_examples, self.info.name)
        return sum(part.size for part in parts)

    def _all_refs(self, split: str) -> tf.data.Dataset:
        """The references of every part of a split spec, concatenated."""
        dataset = None
        for part in parse_split(split, self.info.num_examples, self.info.name):
            part_ds = self._refs(part)
            dataset = part_ds if dataset is None else dataset.concatenate(
                part_ds)
        return dataset

    def _split_names(self, split: str) -> tuple[str, ...]:
        parts = parse_split(split, self.info.num_examples, self.info.name)
        return tuple(sorted({part.split for part in parts}))

    def _refs(self, part: SplitSlice) -> tf.data.Dataset:
        """References {'split', 'label', 'id', ...} of one split range."""
        raise NotImplementedError

    def _load(self, refs: tf.data.Dataset,
              splits: tuple[str, ...]) -> tf.data.Dataset:
        """Examples {'image', 'label', 'id'} of references from `splits`."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info})"
