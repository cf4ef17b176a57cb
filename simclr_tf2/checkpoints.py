"""Checkpoints: the run's CheckpointManager, resume, and init from another run.

Writes go through tf.train.CheckpointManager, which writes the data files
first and then atomically replaces the `checkpoint` index, so a kill at any
moment leaves the previous checkpoint loadable.
"""

import os

import tensorflow as tf


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not fit the model; one line with the fix."""


def make_manager(model, optimizer, model_dir, max_to_keep):
    """The run's checkpoint (model, optimizer, global step) and its manager.

    The global step is the optimizer's `iterations` counter, saved both
    inside the optimizer and as the top-level `global_step`.

    Returns:
      (tf.train.Checkpoint, tf.train.CheckpointManager).
    """
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                     global_step=optimizer.iterations)
    manager = tf.train.CheckpointManager(checkpoint, model_dir,
                                         max_to_keep=max_to_keep)
    return checkpoint, manager


def resolve_checkpoint_path(path):
    """Accepts a checkpoint prefix or a directory holding checkpoints.

    Raises:
      CheckpointMismatchError: if nothing loadable is there.
    """
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise CheckpointMismatchError(
                f"no checkpoint found in directory {path}; pass a model_dir "
                "that holds a 'checkpoint' file or a ckpt-N prefix.")
        return latest
    if not tf.io.gfile.exists(path + ".index"):
        raise CheckpointMismatchError(
            f"checkpoint {path} does not exist (no {path}.index); pass a "
            "model_dir or a ckpt-N prefix.")
    return path


def restore(checkpoint, path, what):
    """Reads `path` into `checkpoint`, requiring every object to be found.

    Raises:
      CheckpointMismatchError: one line naming the mismatch and the fix.
    """
    try:
        status = checkpoint.read(path)
        status.assert_existing_objects_matched().expect_partial()
    except (AssertionError, ValueError, tf.errors.OpError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointMismatchError(
            f"checkpoint {path} does not match the {what} built from the "
            f"flags ({first_line[:300]}); use the same architecture flags "
            "(resnet_depth, width_multiplier, sk_ratio, proj_head_mode, ...) "
            "as the run that wrote it.") from err
    return status


def restore_latest(checkpoint, manager):
    """Resumes from the newest checkpoint of the run, if any.

    Returns:
      The restored checkpoint path, or None for a fresh run.
    """
    latest = manager.latest_checkpoint
    if latest:
        restore(checkpoint, latest, "model")
    return latest


def init_from_checkpoint(model, path, include_supervised_head=False):
    """Loads encoder and projection head (and optionally the classifier).

    Used by --checkpoint to start fine-tuning from a pretraining run: only
    the network weights are taken; optimizer state and step start fresh.

    Args:
      model: a built SimCLRModel.
      path: checkpoint prefix or directory.
      include_supervised_head: also load `head_supervised`.

    Returns:
      The resolved checkpoint path.
    """
    path = resolve_checkpoint_path(path)
    parts = {"encoder": model.encoder, "projection_head": model.projection_head}
    if include_supervised_head and model.supervised_head is not None:
        parts["supervised_head"] = model.supervised_head
    partial = tf.train.Checkpoint(model=tf.train.Checkpoint(**parts))
    restore(partial, path, "encoder")
    return path


def checkpoint_step(path):
    """The step number N of a 'ckpt-N' prefix (or -1)."""
    name = os.path.basename(path)
    try:
        return int(name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1
