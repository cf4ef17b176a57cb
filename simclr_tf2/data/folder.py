"""Image-folder data source: one sub-folder per class, or a flat unlabeled folder.

Layouts (``folder:/path``):

* ``/path/<class>/**/*.jpg``: labeled; class index = position of the class
  folder in the sorted list of class folders (``info.class_names``). Class
  folders without images are ignored; so are images lying next to them.
* ``/path/*.jpg``: flat, unlabeled (label -1, ``num_classes`` 0).
* ``/path/train/`` plus ``/path/test/`` and/or ``/path/validation/`` (or
  ``val/``), each laid out as above: one split per sub-directory. Otherwise
  every image is in the split 'train'.

Accepted extensions (case-insensitive): .jpg .jpeg .png .bmp .gif (first
frame). Images keep their native size and are decoded to 3 channels.

Opening a folder only lists it (no image is decoded, so start-up costs one
directory walk, not one decode per image). Corrupt or unreadable files are
skipped where the pipeline decodes them, each reported once with a warning
and listed in ``source.skipped_files``; the split sizes count them, since
they are only found when read. Opening fails only when no file of the
folder decodes (checked file by file until the first readable one).
"""

import logging
import os

import numpy as np
import tensorflow as tf

from simclr_tf2.data.source import DatasetInfo, Source, SplitSlice
from simclr_tf2.errors import DataError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# Directory name -> split name, for folders already split on disk.
_SPLIT_DIRS = {"train": "train", "test": "test", "validation": "validation",
               "val": "validation"}


def _is_image(filename: str) -> bool:
    return (not filename.startswith(".")
            and filename.lower().endswith(IMAGE_EXTENSIONS))


def _subdirs(directory: str) -> list[str]:
    return sorted(name for name in os.listdir(directory)
                  if not name.startswith(".")
                  and os.path.isdir(os.path.join(directory, name)))


def _walk_images(directory: str) -> list[str]:
    """All image files under `directory`, recursively, in sorted order."""
    found = []
    for root, dirs, files in os.walk(directory, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files) if _is_image(f)]
    return found


def _split_dirs(root: str) -> dict[str, str]:
    """Returns split name -> directory: pre-split sub-folders, else {'train': root}."""
    subdirs = _subdirs(root)
    split_dirs = {_SPLIT_DIRS[d]: os.path.join(root, d)
                  for d in subdirs if d in _SPLIT_DIRS}
    if "train" in split_dirs and (len(split_dirs) > 1 or subdirs == ["train"]):
        return split_dirs
    return {"train": root}


def _list_split(directory: str) -> list[tuple[str, str | None]]:
    """Returns [(path, class name or None)] for one split directory."""
    classes = [(name, _walk_images(os.path.join(directory, name)))
               for name in _subdirs(directory)]
    labeled = [(path, name) for name, paths in classes for path in paths]
    loose = [os.path.join(directory, f) for f in sorted(os.listdir(directory))
             if _is_image(f) and os.path.isfile(os.path.join(directory, f))]
    if not labeled:
        return [(path, None) for path in loose]
    if loose:
        logger.warning("ignoring %d image(s) directly in %s: images of a "
                       "labeled folder belong in its class sub-folders",
                       len(loose), directory)
    return labeled


def _load_image(path: tf.Tensor) -> tf.Tensor:
    """Decodes one image file to uint8 [H, W, 3] (first frame of a GIF)."""
    return tf.io.decode_image(tf.io.read_file(path), channels=3,
                              expand_animations=False, dtype=tf.uint8)


def decode_or_skip(ref: dict) -> tf.data.Dataset:
    """One example as a 1-element dataset, with 'ok' False if it failed to decode."""
    def decode(r):
        return dict(r, image=_load_image(r["path"]), ok=tf.constant(True))

    failed = dict(ref, image=tf.zeros([0, 0, 3], tf.uint8),
                  ok=tf.constant(False))
    # ignore_errors drops exactly the element whose read or decode failed;
    # the fallback then stands in for it, so the failure can be counted.
    return (tf.data.Dataset.from_tensors(ref).map(decode).ignore_errors()
            .concatenate(tf.data.Dataset.from_tensors(failed)).take(1))


def _first_readable(paths: list[str]) -> int | None:
    """Index of the first file that decodes, or None; stops at the first one."""
    for i, path in enumerate(paths):
        try:
            _load_image(tf.constant(path))
            return i
        except (tf.errors.OpError, ValueError):
            continue
    return None


class FolderSource(Source):
    """Images in a directory tree (see the module docstring for layouts).

    Args:
        path: the image folder.

    Attributes:
        skipped_files: sorted paths of the files found unreadable so far.

    Raises:
        DataError: missing path, or no readable image in it.
    """

    def __init__(self, path: str):
        root = os.path.abspath(os.path.expanduser(path))
        if not os.path.isdir(root):
            raise DataError(f"image folder {root} does not exist or is not a "
                            f"directory: pass folder:/path/to/images (one "
                            f"sub-folder per class, or images directly in it)")
        try:
            listing = {split: _list_split(d)
                       for split, d in _split_dirs(root).items()}
        except OSError as e:
            raise DataError(f"cannot read image folder {root}: {e}; check its "
                            f"permissions") from e
        class_names = sorted({name for files in listing.values()
                              for _, name in files if name is not None})
        class_index = {name: i for i, name in enumerate(class_names)}
        self._root = root
        self._skipped = set()
        self._files = {
            split: ([p for p, _ in files],
                    np.array([-1 if n is None else class_index[n]
                              for _, n in files], np.int64))
            for split, files in listing.items()}
        self._check_readable()
        super().__init__(DatasetInfo(
            name=f"folder:{root}", num_classes=len(class_names),
            num_examples={s: len(p) for s, (p, _) in self._files.items()},
            image_shape=(None, None, 3), class_names=tuple(class_names)))

    @property
    def skipped_files(self) -> list[str]:
        return sorted(self._skipped)

    def _check_readable(self) -> None:
        """Raises DataError unless some file decodes (the first usually does)."""
        # Files before the first readable one are reported when read.
        paths = [p for paths, _ in self._files.values() for p in paths]
        if _first_readable(paths) is None:
            raise DataError(
                f"no readable images in {self._root} ({len(paths)} "
                f"skipped as unreadable): put .jpg/.jpeg/.png/.bmp/.gif files "
                f"in one sub-folder per class, or directly in the folder")

    def _note_skipped(self, path: tf.Tensor) -> bool:
        """Records and reports an unreadable file (once); runs in tf.data."""
        path = path.numpy().decode()
        if path not in self._skipped:
            self._skipped.add(path)
            logger.warning("skipped unreadable image file %s (%d unreadable "
                           "file(s) in %s so far)", path, len(self._skipped),
                           self._root)
        return False

    def _refs(self, part: SplitSlice) -> tf.data.Dataset:
        paths, labels = self._files[part.split]
        window = slice(part.start, part.stop)
        return tf.data.Dataset.from_tensor_slices({
            "path": tf.constant(paths[window], tf.string),
            "label": labels[window],
            "id": np.arange(part.start, part.stop, dtype=np.int64),
        })

    def _load(self, refs: tf.data.Dataset,
              splits: tuple[str, ...]) -> tf.data.Dataset:
        del splits  # A path says where its image is.
        # In-order parallel decoding; each reference gives exactly one element.
        dataset = refs.interleave(
            decode_or_skip, cycle_length=tf.data.AUTOTUNE,
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

        def readable(example):
            return tf.cond(example["ok"], lambda: tf.constant(True),
                           lambda: tf.py_function(self._note_skipped,
                                                  [example["path"]], tf.bool))

        return dataset.filter(readable).map(lambda ex: {
            "image": ex["image"], "label": ex["label"], "id": ex["id"]})
