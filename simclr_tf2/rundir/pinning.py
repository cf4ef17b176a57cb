"""Reading a checkpoint that a running trainer may delete at any moment.

A trainer keeps only its newest `--keep_checkpoint_max` checkpoints: each
save deletes the oldest. An export, an evaluation or a fine-tuning run that
picked "the newest checkpoint of DIR" can see it deleted before it has read
it (with `--keep_checkpoint_max=1` and a save every few steps this happens
on most tries). When the user named a directory, a vanished checkpoint is a
race, not a user error, so `pinned` takes the newest one again.

`pinned` also holds the files while they are read: it hard-links the
checkpoint's `.index` and `.data-*` files into a private directory next to
them (a link keeps the file's contents after the trainer unlinks its name),
so a read that started always finishes, however slow. Where links are not
possible (another file system, gs://) the checkpoint is read in place and
only the choice of checkpoint is retried.
"""

import collections
import contextlib
import glob
import logging
import os
import shutil
import tempfile
import time

import tensorflow as tf

from simclr_tf2 import rundir
from simclr_tf2.errors import CheckpointVanishedError

logger = logging.getLogger(__name__)

# A trainer deletes at most one checkpoint per save; a few retries cover a
# saving rate far above what any model here reaches.
RETRIES = 10
_RETRY_PAUSE_SECS = 0.05
# Private link directories, removed after the read; a killed reader's are
# removed by the next reader after an hour (they hold disk space).
_PREFIX = rundir.PIN_PREFIX
_STALE_SECS = 3600

Pin = collections.namedtuple("Pin", ["path", "readable"])
Pin.__doc__ = """A pinned checkpoint.

Attributes:
  path: the checkpoint prefix as the model_dir names it (for messages).
  readable: the prefix to read from (a private link to `path`'s files,
    or `path` itself).
"""


def _files(prefix):
    """The files of checkpoint `prefix`: its .index and .data-* shards."""
    return tf.io.gfile.glob(prefix + ".index") + tf.io.gfile.glob(prefix + ".data-*")


def _remove_stale(parent):
    """Removes `.reading-*` directories a killed reader left (older than an hour)."""
    for path in glob.glob(os.path.join(parent, _PREFIX + "*")):
        try:
            if time.time() - os.path.getmtime(path) > _STALE_SECS:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def _link(prefix):
    """Hard-links `prefix`'s files into a new private directory.

    Returns:
      (directory, linked prefix), or (None, prefix) where links cannot be
      made (the checkpoint is then read in place).

    Raises:
      CheckpointVanishedError: a file of the checkpoint no longer exists.
    """
    parent, name = os.path.split(prefix)
    if "://" in prefix or not os.path.isdir(parent):
        return None, prefix
    _remove_stale(parent)
    try:
        directory = tempfile.mkdtemp(prefix=_PREFIX, dir=parent)
    except OSError:
        return None, prefix  # read-only model_dir: read in place
    try:
        files = _files(prefix)
        if not any(f.endswith(".index") for f in files):
            raise FileNotFoundError(prefix + ".index")
        for path in files:
            os.link(path, os.path.join(directory, os.path.basename(path)))
    except FileNotFoundError as err:
        shutil.rmtree(directory, ignore_errors=True)
        raise CheckpointVanishedError(
            f"checkpoint {prefix} was deleted while it was being read ({err}); "
            "pass a model_dir or a ckpt-N prefix that is kept.") from err
    except OSError:
        shutil.rmtree(directory, ignore_errors=True)
        return None, prefix  # no hard links here (another file system)
    return directory, os.path.join(directory, name)


def _hold(source, retries):
    """(Pin, private directory or None) for `source`; see `pinned`."""
    if not tf.io.gfile.isdir(source):
        if not tf.io.gfile.exists(source + ".index"):
            return Pin(source, source), None  # the reader reports it
        directory, readable = _link(source)
        return Pin(source, readable), directory
    for attempt in range(retries + 1):
        path = rundir.latest_checkpoint(source)
        listed = tf.train.get_checkpoint_state(source) is not None
        try:
            if path is None and listed:
                # 'checkpoint' names a checkpoint whose files are gone.
                raise CheckpointVanishedError(f"checkpoint listed in {source} was deleted")
            if path is None:
                return Pin(source, source), None  # the reader reports it
            directory, readable = _link(path)
            return Pin(path, readable), directory
        except CheckpointVanishedError:
            if attempt == retries:
                raise
            logger.info("the newest checkpoint of %s was deleted before it "
                        "was read (a trainer rotates checkpoints); taking the "
                        "newest again.", source)
            time.sleep(_RETRY_PAUSE_SECS)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def pinned(source, retries=RETRIES):
    """Holds the checkpoint `source` names while the block reads it.

    Args:
      source: a ckpt-N prefix (read as given: if it does not exist, that is
        the user's error and `Pin.readable` is `source`, for the reader to
        report) or a directory (its newest checkpoint, chosen again when the
        chosen one is deleted before it is held, at most `retries` times).

    Yields:
      A `Pin` (path, readable).

    Raises:
      CheckpointVanishedError: the checkpoint kept vanishing (`retries` times) or a
        named ckpt-N prefix was deleted while being linked.
    """
    pin, directory = _hold(source, retries)
    try:
        yield pin
    finally:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
