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

Corrupt or unreadable files would kill a tf.data pipeline mid-epoch, so by
default every file is decoded once when the folder is opened (in parallel,
with the same op the pipeline uses) and the bad ones are skipped and listed
in ``source.skipped_files``. That costs one full decode per image, a few
milliseconds per photo per core: seconds for thousands of images, but hours
for ImageNet-sized folders, where ``FolderSource(path, validate=False)`` skips
the check (and a corrupt file then stops the pipeline).
"""

import logging
import os

import numpy as np
import tensorflow as tf

from simclr_tf2.data.source import DataError, DatasetInfo, Source, SplitSlice

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


def _validate(paths: list[str]) -> dict[int, tuple]:
    """Decodes every file once; returns {index: (H, W, 3)} of the readable ones."""
    if not paths:
        return {}
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.arange(len(paths), dtype=np.int64),
         tf.constant(paths, tf.string)))
    dataset = dataset.map(
        lambda i, path: (i, tf.shape(_load_image(path))),
        num_parallel_calls=tf.data.AUTOTUNE)
    # ignore_errors drops exactly the elements whose read or decode failed.
    dataset = dataset.ignore_errors(log_warning=False)
    return {int(i): tuple(int(d) for d in shape)
            for i, shape in dataset.as_numpy_iterator()}


class FolderSource(Source):
    """Images in a directory tree (see the module docstring for layouts).

    Args:
        path: the image folder.
        validate: decode every file once now and skip unreadable ones.

    Attributes:
        skipped_files: paths of the files skipped as unreadable.

    Raises:
        DataError: missing path, or no readable image in it.
    """

    def __init__(self, path: str, validate: bool = True):
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
        self.skipped_files = []
        self._files, shapes = {}, set()
        for split, files in listing.items():
            labeled = [(p, -1 if n is None else class_index[n])
                       for p, n in files]
            self._files[split] = self._keep_readable(labeled, validate, shapes)
        self._check_not_empty(root)
        super().__init__(DatasetInfo(
            name=f"folder:{root}", num_classes=len(class_names),
            num_examples={s: len(p) for s, (p, _) in self._files.items()},
            image_shape=shapes.pop() if len(shapes) == 1 else (None, None, 3),
            class_names=tuple(class_names)))

    def _keep_readable(self, files: list[tuple[str, int]], validate: bool,
                       shapes: set) -> tuple[list[str], np.ndarray]:
        """Drops unreadable files (into skipped_files); adds image shapes."""
        paths = [path for path, _ in files]
        valid = _validate(paths) if validate else {
            i: (None, None, 3) for i in range(len(paths))}
        self.skipped_files += [p for i, p in enumerate(paths) if i not in valid]
        shapes.update(valid.values())
        keep = sorted(valid)
        return ([paths[i] for i in keep],
                np.array([files[i][1] for i in keep], np.int64))

    def _check_not_empty(self, root: str) -> None:
        """Warns about skipped files; raises DataError if nothing is readable."""
        if self.skipped_files:
            logger.warning("skipped %d unreadable image file(s) in %s, e.g. %s",
                           len(self.skipped_files), root, self.skipped_files[0])
        if not any(paths for paths, _ in self._files.values()):
            raise DataError(
                f"no readable images in {root} ({len(self.skipped_files)} "
                f"skipped as unreadable): put .jpg/.jpeg/.png/.bmp/.gif files "
                f"in one sub-folder per class, or directly in the folder")

    def _read(self, part: SplitSlice) -> tf.data.Dataset:
        paths, labels = self._files[part.split]
        window = slice(part.start, part.stop)
        dataset = tf.data.Dataset.from_tensor_slices({
            "path": tf.constant(paths[window], tf.string),
            "label": labels[window],
            "id": np.arange(part.start, part.stop, dtype=np.int64),
        })
        image_shape = self.info.image_shape

        def load(example):
            image = _load_image(example["path"])
            image.set_shape(image_shape)
            return {"image": image, "label": example["label"],
                    "id": example["id"]}

        return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
