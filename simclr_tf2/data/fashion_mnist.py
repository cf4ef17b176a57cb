"""The offline Fashion-MNIST source, and its IDX file reader (the MNIST file format).

Fashion-MNIST is read, in this order of preference, from IDX files in an
explicit directory (``fashion_mnist:/dir``), in ``data_dir`` itself, in
``<data_dir>/fashion_mnist_idx/`` or ``<data_dir>/fashion-mnist/``, in the
Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``),
and finally from a TFDS ``fashion_mnist`` already prepared under ``data_dir``.
Files may be plain or gzip-compressed (``train-images-idx3-ubyte[.gz]``).
"""

import gzip
import os
import struct

import numpy as np

from simclr_tf2.data import tfds_source
from simclr_tf2.data.in_memory import ArraySource
from simclr_tf2.data.source import DatasetInfo
from simclr_tf2.errors import DataError

# Where Debian's `dataset-fashion-mnist` package installs the IDX files.
SYSTEM_FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# split -> file stems of (images, labels), as published by Zalando.
_FASHION_FILES = {"train": ("train-images", "train-labels"),
                  "test": ("t10k-images", "t10k-labels")}
# IDX type byte -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4",
               0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def _open(path: str):
    """Opens a plain or gzip-compressed file (detected by content) for reading."""
    with open(path, "rb") as f:
        compressed = f.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def _invalid(path: str, reason: str) -> DataError:
    return DataError(f"{path} is not a valid IDX file ({reason}): re-install "
                     f"or re-download it")


def _parse_header(path: str, head: bytes) -> tuple[np.dtype, tuple, int]:
    """Returns (dtype, shape, header length) from the first bytes of an IDX file."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise _invalid(path, "bad magic number")
    type_code, ndim = head[2], head[3]
    if type_code not in _IDX_DTYPES:
        raise _invalid(path, f"unknown data type 0x{type_code:02x}")
    header_len = 4 + 4 * ndim
    if len(head) < header_len:
        raise _invalid(path, "truncated header")
    shape = struct.unpack(f">{ndim}I", head[4:header_len])
    return np.dtype(_IDX_DTYPES[type_code]), tuple(shape), header_len


def read_idx_header(path: str) -> tuple[np.dtype, tuple]:
    """Reads only the header of an IDX file.

    Args:
        path: a plain or gzip-compressed IDX file.

    Returns:
        (dtype, shape) of the array the file holds.

    Raises:
        DataError: the file is unreadable or not in IDX format.
    """
    try:
        with _open(path) as f:
            head = f.read(4 + 4 * 255)
    except (OSError, EOFError) as e:
        raise _invalid(path, f"cannot read: {e}") from e
    dtype, shape, _ = _parse_header(path, head)
    return dtype, shape


def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (magic number, big-endian dims, big-endian data).

    Args:
        path: a plain or gzip-compressed IDX file.

    Returns:
        The array, in native byte order, with the dims the file declares.

    Raises:
        DataError: the file is unreadable, not IDX, or truncated.
    """
    try:
        with _open(path) as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise _invalid(path, f"cannot read: {e}") from e
    dtype, shape, header_len = _parse_header(path, data)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header_len != expected:
        raise _invalid(path, f"expected {expected} data bytes, found "
                       f"{len(data) - header_len}")
    array = np.frombuffer(data, dtype=dtype, offset=header_len)
    return array.reshape(shape).astype(dtype.newbyteorder("="))


def _find_file(directory: str, stem: str, kind: str) -> str | None:
    """Finds e.g. train-images-idx3-ubyte[.gz] (or the '.idx3' spelling)."""
    for sep in ("-", "."):
        for suffix in ("", ".gz"):
            path = os.path.join(directory, f"{stem}{sep}{kind}-ubyte{suffix}")
            if os.path.isfile(path):
                return path
    return None


def find_fashion_mnist_files(directory: str) -> dict | None:
    """Returns {split: (images_path, labels_path)} if all four files exist there."""
    found = {}
    for split, (images_stem, labels_stem) in _FASHION_FILES.items():
        images = _find_file(directory, images_stem, "idx3")
        labels = _find_file(directory, labels_stem, "idx1")
        if images is None or labels is None:
            return None
        found[split] = (images, labels)
    return found


def _candidate_dirs(data_dir: str | None) -> list[str]:
    dirs = []
    if data_dir:
        dirs += [data_dir, os.path.join(data_dir, "fashion_mnist_idx"),
                 os.path.join(data_dir, "fashion-mnist")]
    return dirs + list(SYSTEM_FASHION_MNIST_DIRS)


def open_fashion_mnist(data_dir: str | None = None,
                       directory: str | None = None):
    """Opens Fashion-MNIST from local IDX files, else from a prepared TFDS copy.

    Args:
        data_dir: the user's data directory (searched for IDX files and TFDS).
        directory: an explicit directory holding the four IDX files; when
            given, nothing else is searched.

    Returns:
        A Source with splits 'train' (60000) and 'test' (10000) of
        uint8 [28, 28, 1] images and 10 classes.

    Raises:
        DataError: no usable copy was found, with how to get one.
    """
    if directory is not None:
        files = find_fashion_mnist_files(directory)
        if files is None:
            raise DataError(
                f"no Fashion-MNIST IDX files in {directory}: expected "
                f"train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                f"t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte "
                f"(optionally .gz) there")
        return _idx_source(files)
    searched = _candidate_dirs(data_dir)
    for candidate in searched:
        files = find_fashion_mnist_files(candidate)
        if files is not None:
            return _idx_source(files)
    builder = tfds_source.prepared_builder("fashion_mnist", data_dir)
    if builder is not None:
        return tfds_source.TfdsSource(builder, "fashion_mnist")
    raise DataError(
        f"Fashion-MNIST not found (no IDX files in {', '.join(searched)}; no "
        f"prepared TFDS fashion_mnist under {data_dir or 'the default TFDS dir'}"
        f"): install it with `apt-get install dataset-fashion-mnist`, or "
        f"prepare it with `tfds build fashion_mnist --data_dir=DIR` on a "
        f"machine with internet and pass --data_dir=DIR")


def _idx_source(files: dict) -> ArraySource:
    """Builds the Fashion-MNIST source from {split: (images, labels)} paths."""
    sizes, image_shape = {}, None
    for split, (images, labels) in files.items():
        _, images_shape = read_idx_header(images)
        _, labels_shape = read_idx_header(labels)
        if len(images_shape) != 3 or labels_shape[:1] != images_shape[:1]:
            raise DataError(
                f"Fashion-MNIST files {images} and {labels} do not match: "
                f"{images_shape} images vs {labels_shape} labels; re-install "
                f"the files")
        sizes[split] = images_shape[0]
        image_shape = images_shape[1:] + (1,)

    def loader(images: str, labels: str):
        return lambda: (read_idx(images)[..., None], read_idx(labels))

    info = DatasetInfo(name="fashion_mnist", num_classes=10,
                       num_examples=sizes, image_shape=image_shape,
                       class_names=FASHION_MNIST_CLASSES)
    return ArraySource(info, {split: loader(*paths)
                              for split, paths in files.items()})
