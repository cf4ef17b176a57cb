"""Checkpoints: the run's CheckpointManager, resume, and init from another run.

Writes go through tf.train.CheckpointManager, which writes the data files
first and then atomically replaces the `checkpoint` index, so a kill at any
moment leaves the previous checkpoint loadable.
"""

import os

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2


MODEL_PARTS = ("encoder", "projection_head", "supervised_head")


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not fit the model; one line with the fix."""


def model_trackable(model, parts=MODEL_PARTS):
    """The model's variables as a checkpointable object, part by part.

    Keras 3 layers do not expose sub-layers held in lists to
    tf.train.Checkpoint, so the checkpoint names each part's variables
    explicitly: model/<part>/variables/<i>, in the part's creation order
    (independent of which layers are currently trainable).

    Args:
      model: a SimCLRModel.
      parts: which of MODEL_PARTS to include (absent heads are skipped).

    Returns:
      A tf.train.Checkpoint node holding the parts.
    """
    nodes = {}
    for name in parts:
        layer = getattr(model, name, None)
        if layer is not None:
            nodes[name] = tf.train.Checkpoint(variables=list(layer.variables))
    return tf.train.Checkpoint(**nodes)


def make_manager(model, optimizer, model_dir, max_to_keep):
    """The run's checkpoint (model, optimizer, global step) and its manager.

    The global step is the optimizer's `iterations` counter, saved both
    inside the optimizer and as the top-level `global_step`.

    Returns:
      (tf.train.Checkpoint, tf.train.CheckpointManager).
    """
    checkpoint = tf.train.Checkpoint(model=model_trackable(model),
                                     optimizer=optimizer,
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
        status.expect_partial()  # Extra saved values (e.g. optimizer) are fine.
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointMismatchError(
            f"checkpoint {path} does not match the {what} built from the "
            f"flags ({first_line[:300]}); use the same architecture flags "
            "(resnet_depth, width_multiplier, sk_ratio, proj_head_mode, ...) "
            "as the run that wrote it.") from err
    return status


def restore_latest(checkpoint, model_dir):
    """Resumes from the newest checkpoint in `model_dir`, if any.

    Every worker of a multi-worker run resumes from the chief's model_dir.

    Returns:
      The restored checkpoint path, or None for a fresh run.
    """
    latest = tf.train.latest_checkpoint(model_dir)
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
    parts = MODEL_PARTS if include_supervised_head else MODEL_PARTS[:2]
    partial = tf.train.Checkpoint(model=model_trackable(model, parts))
    restore(partial, path, "encoder")
    _check_variable_counts(path, model, parts)
    return path


def _saved_part_sizes(path):
    """Number of saved variables per model part, read from the object graph."""
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(tf.train.load_checkpoint(path).get_tensor(
        "_CHECKPOINTABLE_OBJECT_GRAPH"))

    def child(node_id, name):
        for ref in graph.nodes[node_id].children:
            if ref.local_name == name:
                return ref.node_id
        return None

    sizes = {}
    model_id = child(0, "model")
    for part in MODEL_PARTS:
        part_id = child(model_id, part) if model_id is not None else None
        variables_id = child(part_id, "variables") if part_id is not None else None
        if variables_id is not None:
            sizes[part] = len(graph.nodes[variables_id].children)
    return sizes


def _check_variable_counts(path, model, parts):
    """Fails when a part of the checkpoint has a different variable count.

    (Shape differences are caught by the restore itself.)
    """
    saved = _saved_part_sizes(path)
    for part in parts:
        layer = getattr(model, part, None)
        if layer is None:
            continue
        if saved.get(part, 0) != len(layer.variables):
            raise CheckpointMismatchError(
                f"checkpoint {path} does not match the model: it has "
                f"{saved.get(part, 0)} {part} variables, the model built from "
                f"the flags has {len(layer.variables)}; use the same "
                "architecture flags as the run that wrote it.")


def checkpoint_step(path):
    """The step number N of a 'ckpt-N' prefix (or -1)."""
    name = os.path.basename(path)
    try:
        return int(name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1
