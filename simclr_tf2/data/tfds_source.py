"""TFDS data source: reads an already-prepared TensorFlow Datasets builder offline.

Nothing here downloads: a builder whose data is not prepared under
``data_dir`` is reported with the command that prepares it elsewhere.
"""

import re

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from simclr_tf2.data.source import (DatasetInfo, Source, SplitSlice,
                                    collect_labels_and_ids,
                                    decoded_buffer_size, filter_ids,
                                    parse_split)
from simclr_tf2.errors import DataError
from simclr_tf2.errors import one_line

# Files read at once when training: examples of 16 shuffled files mix.
_INTERLEAVE_FILES = 16
# 'name-train.tfrecord-00003-of-00016__123': shard 3, example 123 in it.
_TFDS_ID_RE = r"^.*-(\d+)-of-\d+__(\d+)$"

# 'name', 'name/config', 'name:1.2.3', 'name/config:1.*.*'. Community
# namespaces ('huggingface:x', 'kaggle:x') would go to the network.
_TFDS_NAME_RE = re.compile(r"^[a-z0-9_]+(/[\w.-]+)?(:\d[\w.*]*)?$")
_UNKNOWN = ("unknown dataset {name!r}: expected digits, fashion_mnist, "
            "folder:/path, or a TFDS name (see tfds.list_builders())")


def _builder(name: str, data_dir: str | None):
    """Returns tfds.builder(name, data_dir), or raises DataError if unknown."""
    if not _TFDS_NAME_RE.match(name):
        raise DataError(_UNKNOWN.format(name=name))
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DataError(_UNKNOWN.format(name=name)) from e
    except Exception as e:  # noqa: BLE001 - any builder failure is user-facing
        reason = one_line(e, first_line_only=True)
        raise DataError(f"cannot open TFDS dataset {name!r}: {reason}; "
                        f"check the name and --data_dir") from e


def _is_prepared(builder) -> bool:
    # is_prepared() only checks for dataset_info.json on the local disk.
    try:
        return bool(builder.is_prepared())
    except Exception:  # noqa: BLE001 - an unreadable data_dir is "not prepared"
        return False


def prepared_builder(name: str, data_dir: str | None):
    """Returns the builder if `name` is prepared under `data_dir`, else None."""
    builder = _builder(name, data_dir)
    return builder if _is_prepared(builder) else None


def open_tfds(name: str, data_dir: str | None = None) -> "TfdsSource":
    """Opens a prepared TFDS dataset without touching the network.

    Args:
        name: a TFDS builder name, optionally with config and version.
        data_dir: the TFDS data directory (None: the TFDS default).

    Returns:
        A TfdsSource.

    Raises:
        DataError: unknown name, or data not prepared (with the fix).
    """
    builder = _builder(name, data_dir)
    if not _is_prepared(builder):
        target = data_dir or "DIR"
        raise DataError(
            f"TFDS dataset {name!r} is not prepared in {builder.data_dir} "
            f"(no dataset_info.json) and nothing is downloaded here: on a "
            f"machine with internet run `tfds build {name} "
            f"--data_dir={target}` (or python -c \"import tensorflow_datasets "
            f"as tfds; tfds.builder('{name}', data_dir='{target}')"
            f".download_and_prepare()\"), copy that directory here and pass "
            f"--data_dir={target}")
    return TfdsSource(builder, name)


class TfdsSource(Source):
    """Raw examples of a prepared TFDS builder.

    Args:
        builder: a prepared `tfds.core.DatasetBuilder` with an 'image' feature
            and, optionally, a 'label' feature.
        name: the dataset name as the user wrote it (default: builder.name).
    """

    def __init__(self, builder, name: str | None = None):
        features = builder.info.features
        name = name or builder.name
        if "image" not in features or features["image"].dtype != tf.uint8:
            raise DataError(
                f"TFDS dataset {name!r} has no uint8 'image' feature (features:"
                f" {', '.join(features.keys())}): pick an image dataset")
        label = features["label"] if "label" in features else None
        class_label = isinstance(label, tfds.features.ClassLabel)
        info = DatasetInfo(
            name=name,
            num_classes=label.num_classes if class_label else 0,
            num_examples={split: info.num_examples
                          for split, info in builder.info.splits.items()},
            image_shape=tuple(features["image"].shape),
            class_names=tuple(label.names) if class_label else ())
        super().__init__(info)
        self._builder = builder
        self._has_label = label is not None

    def split(self, split: str) -> tf.data.Dataset:
        """The examples of `split` in file order (ids = position in the split)."""
        parts = parse_split(split, self.info.num_examples, self.info.name)
        dataset = self._read(parts[0])
        for part in parts[1:]:
            dataset = dataset.concatenate(self._read(part))
        return dataset

    def shuffled(self, split: str, seed: int,
                 example_ids=None) -> tf.data.Dataset:
        """One pass in a seeded random order, new at every pass.

        Files are shuffled and read `_INTERLEAVE_FILES` at a time, then mixed
        in a buffer of decoded images sized for memory (TFDS files are
        already shuffled when prepared). A label subset is read in file
        order, filtered by id, and mixed in the same buffer.
        """
        if example_ids is not None:
            dataset, count = filter_ids(self.split(split), example_ids), len(
                example_ids)
        else:
            parts = parse_split(split, self.info.num_examples, self.info.name)
            dataset = self._read(parts[0], seed)
            for part in parts[1:]:
                dataset = dataset.concatenate(self._read(part, seed))
            count = self.num_examples(split)
        buffer = decoded_buffer_size(self.info.image_shape, count)
        return dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)

    def labels_and_ids(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(labels, ids) of a split, read without decoding any image."""
        parts = parse_split(split, self.info.num_examples, self.info.name)
        dataset = self._read(parts[0], decode_images=False)
        for part in parts[1:]:
            dataset = dataset.concatenate(self._read(part, decode_images=False))
        return collect_labels_and_ids(dataset)

    def _read(self, part: SplitSlice, shuffle_seed: int | None = None,
              decode_images: bool = True) -> tf.data.Dataset:
        """One split range; files shuffled with `shuffle_seed` if not None."""
        spec = part.split if part.size == 0 else (
            f"{part.split}[{part.start}:{part.stop}]")
        shuffle = shuffle_seed is not None
        read_config = tfds.ReadConfig(
            add_tfds_id=shuffle, shuffle_seed=shuffle_seed,
            shuffle_reshuffle_each_iteration=True if shuffle else None,
            interleave_cycle_length=_INTERLEAVE_FILES)
        decoders = None if decode_images else {
            "image": tfds.decode.SkipDecoding()}
        dataset = self._builder.as_dataset(
            split=spec, shuffle_files=shuffle, read_config=read_config,
            decoders=decoders)
        if part.size == 0:
            dataset = dataset.take(0)  # TFDS refuses empty slices.
        if shuffle:
            ids = self._ids_of(part.split)
            dataset = dataset.map(lambda ex: (ids(ex["tfds_id"]), ex))
        else:
            dataset = dataset.enumerate(start=part.start)
        has_label = self._has_label

        def to_raw(index, example):
            label = (tf.cast(example["label"], tf.int64) if has_label
                     else tf.constant(-1, tf.int64))
            return {"image": example["image"], "label": label, "id": index}

        return dataset.map(to_raw, num_parallel_calls=tf.data.AUTOTUNE)

    def _ids_of(self, split_name: str):
        """A function tfds_id string -> position of the example in its split."""
        lengths = self._builder.info.splits[split_name].shard_lengths
        offsets = tf.constant(np.cumsum([0] + list(lengths))[:-1], tf.int64)

        def example_id(tfds_id):
            shard = tf.strings.to_number(
                tf.strings.regex_replace(tfds_id, _TFDS_ID_RE, r"\1"), tf.int64)
            index = tf.strings.to_number(
                tf.strings.regex_replace(tfds_id, _TFDS_ID_RE, r"\2"), tf.int64)
            return tf.gather(offsets, shard) + index

        return example_id
