"""The dataset registry: opens a dataset by name as a Source of raw examples for the one tf.data pipeline.

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
(-1 if unlabeled), 'id': int64}``; see `simclr_tf2.data.source`.

Example:
    source = open_source('digits')
    train = source.split('train[:10%]')   # 144 examples, ids 0..143
"""

from simclr_tf2.data import fashion_mnist, tfds_source
from simclr_tf2.data.digits import DIGITS, open_digits
from simclr_tf2.data.folder import FolderSource
from simclr_tf2.data.source import DatasetInfo, Source, SplitSlice, parse_split
from simclr_tf2.errors import DataError

__all__ = ["DatasetInfo", "Source", "SplitSlice", "FolderSource",
           "open_source", "describe_datasets", "parse_split", "DIGITS"]

FASHION_MNIST = "fashion_mnist"
FOLDER_PREFIX = "folder:"


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
        return fashion_mnist.open_fashion_mnist(data_dir)
    prefix, _, rest = name.partition(":")
    if prefix.lower() == FASHION_MNIST and rest and not rest[0].isdigit():
        return fashion_mnist.open_fashion_mnist(data_dir, directory=rest)
    return tfds_source.open_tfds(name, data_dir)
