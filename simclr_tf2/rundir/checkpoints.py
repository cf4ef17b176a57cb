"""Checkpoints: the run's CheckpointManager, resume, and init from another run.

Writes go through tf.train.CheckpointManager, which writes the data files
and the `ckpt-N.index` first and only then atomically replaces the
`checkpoint` file (temporary file + rename), so a kill at any moment leaves
the previous checkpoint loadable. TF does not fsync, so after a full disk or
a crash of the machine the newest checkpoint can still be truncated:
`restore_latest` then falls back to the newest readable one. A write that
fails (`save`: full disk, permissions) removes its partial files and stops
the run with one line; the earlier checkpoints stay as they were.
A checkpoint a trainer deletes (rotation) while another process reads the
same model_dir is read again from the newest one (rundir.pinning).

The checkpoint's object layout is defined here and nowhere else:

    model/<part>/variables/<i>    the model's variables, part by part
                                  (MODEL_PARTS), in creation order
    optimizer                     the optimizer and its slots
    global_step                   the optimizer's iterations counter
    <extra>                       a task's own state (e.g. memory)
"""

import glob
import logging
import os
import shutil

import tensorflow as tf

from simclr_tf2.rundir import pinning
from simclr_tf2 import rundir
from simclr_tf2.errors import CheckpointMismatchError
from simclr_tf2.errors import CheckpointVanishedError
from simclr_tf2.errors import DamagedCheckpointError
from simclr_tf2.errors import WriteError
from simclr_tf2.errors import io_reason
from simclr_tf2.errors import one_line
from simclr_tf2.rundir.object_graph import ObjectGraph

logger = logging.getLogger(__name__)


def _reason(err):
    """First line of a TF error (its later lines are detail), shortened."""
    return one_line(err, limit=300, first_line_only=True)

MODEL_NODE = "model"
MODEL_PARTS = ("encoder", "projection_head", "supervised_head")


def part_variables_path(part):
    """Object-graph path of a model part's variable list: model/<part>/variables."""
    return f"{MODEL_NODE}/{part}/variables"


def global_step(optimizer):
    """The run's global step: the optimizer's `iterations` counter, as saved."""
    return int(optimizer.iterations.numpy())


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


def weights_checkpoint(model, parts=MODEL_PARTS, global_step=None):
    """A checkpoint of the model's weights alone (no optimizer), same layout.

    Args:
      model: a SimCLRModel.
      parts: which of MODEL_PARTS to include.
      global_step: the step variable to read into, or None.
    """
    nodes = {MODEL_NODE: model_trackable(model, parts)}
    if global_step is not None:
        nodes["global_step"] = global_step
    return tf.train.Checkpoint(**nodes)


def make_manager(model, optimizer, model_dir, max_to_keep, **extra):
    """The run's checkpoint (model, optimizer, global step) and its manager.

    The global step is the optimizer's `iterations` counter, saved both
    inside the optimizer and as the top-level `global_step`.

    Args:
      model, optimizer, model_dir, max_to_keep: as the names say.
      **extra: further top-level nodes (a task's own state, e.g.
        memory=...), so that the model's node is the same with or without.

    Returns:
      (tf.train.Checkpoint, tf.train.CheckpointManager).
    """
    checkpoint = tf.train.Checkpoint(**{MODEL_NODE: model_trackable(model)},
                                     optimizer=optimizer,
                                     global_step=optimizer.iterations,
                                     **extra)
    manager = tf.train.CheckpointManager(
        checkpoint, model_dir, max_to_keep=max_to_keep,
        checkpoint_name=rundir.CHECKPOINT_PREFIX)
    return checkpoint, manager


def save(manager, step):
    """Writes checkpoint `step` with `manager`; returns its path.

    Raises:
      WriteError: the files could not be written (full disk, permissions,
        ...). The partial files of `step` are removed first, so the model_dir
        holds exactly the earlier checkpoints, and the message names the
        newest of them, from which rerunning the same command resumes.
    """
    try:
        return manager.save(checkpoint_number=step)
    except (OSError, tf.errors.OpError) as err:
        _remove_unlisted(manager, step)
        latest = manager.latest_checkpoint
        kept = (f"{os.path.basename(latest)} is the last good checkpoint"
                if latest else "no earlier checkpoint was written")
        raise WriteError(
            f"cannot write checkpoint {step} in {manager.directory} "
            f"({io_reason(err)}); {kept}. Free space (or fix permissions) "
            "there and rerun the same command to resume.") from err


def _remove_unlisted(manager, step):
    """Deletes the files a failed save of `step` left (ckpt-N_temp, ckpt-N.*)."""
    prefix = os.path.join(manager.directory, rundir.checkpoint_name(step))
    if prefix in manager.checkpoints:
        return  # an earlier, complete save of the same step: keep it
    for path in glob.glob(prefix + "_temp*") + glob.glob(prefix + ".*"):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except OSError:
                pass


def resolve_checkpoint_path(path):
    """Accepts a checkpoint prefix or a directory holding checkpoints.

    Raises:
      CheckpointMismatchError: if nothing loadable is there.
      DamagedCheckpointError: its `.index` cannot be read.
    """
    if tf.io.gfile.isdir(path):
        latest = rundir.latest_checkpoint(path)
        if latest is None:
            raise CheckpointMismatchError(
                f"no checkpoint found in directory {path}; pass a model_dir "
                "that holds a 'checkpoint' file or a ckpt-N prefix.")
        path = latest
    elif not tf.io.gfile.exists(path + ".index"):
        raise CheckpointMismatchError(
            f"checkpoint {path} does not exist (no {path}.index); pass a "
            "model_dir or a ckpt-N prefix.")
    try:
        tf.train.load_checkpoint(path)  # Reads the .index only.
    except (ValueError, tf.errors.OpError) as err:
        raise DamagedCheckpointError(
            f"checkpoint {path} is damaged ({_reason(err)}); pass an "
            "older ckpt-N, or copy it again from where it came from.") from err
    return path


def damage(path):
    """Why the checkpoint at `path` cannot be read, or None if it can.

    Reads every saved tensor, which catches a truncated or missing data file
    (`IndexError: Read less bytes than requested`), a checksum mismatch and
    a damaged `.index`. Costs one full read; called only after a restore
    failed.
    """
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (IndexError, ValueError, tf.errors.OpError) as err:
        return _reason(err)
    return None


def restore(checkpoint, path, what, name=None):
    """Reads `path` into `checkpoint`, requiring every object to be found.

    `name` is the checkpoint's name in messages (default: `path`; a pinned
    checkpoint is read from a private link, see pinning.py).

    Raises:
      CheckpointMismatchError: one line naming the mismatch and the fix.
      DamagedCheckpointError: the checkpoint's files cannot be read.
    """
    try:
        status = checkpoint.read(path)
        status.expect_partial()  # Extra saved values (e.g. optimizer) are fine.
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, IndexError, tf.errors.OpError) as err:
        reason = damage(path)
        path = name or path
        if reason:
            error = DamagedCheckpointError(
                f"checkpoint {path} is damaged ({reason}); pass an older "
                "ckpt-N, or copy it again from where it came from.")
            error.reason = reason
            raise error from err
        raise CheckpointMismatchError(
            f"checkpoint {path} does not match the {what} built from the "
            f"flags ({_reason(err)}); use the same architecture flags "
            "(resnet_depth, width_multiplier, sk_ratio, proj_head_mode, ...), "
            "--optimizer and --memory_size as the run that wrote it.") from err
    return status


def listed_checkpoints(model_dir):
    """The checkpoints `model_dir/checkpoint` lists, newest first."""
    state = tf.train.get_checkpoint_state(model_dir)
    if state is None:
        return []
    paths = list(reversed(state.all_model_checkpoint_paths))
    if state.model_checkpoint_path and state.model_checkpoint_path not in paths:
        paths.insert(0, state.model_checkpoint_path)
    return paths


def restore_latest(checkpoint, model_dir, newest=None):
    """Resumes from the newest readable checkpoint in `model_dir`, if any.

    With `newest` (a path listed in `model_dir/checkpoint`), checkpoints
    listed as newer than it are not considered.

    A damaged newest checkpoint (truncated by a full disk, say) is skipped
    with one warning naming it; its files are not deleted (the resumed run's
    own save of that step replaces them later). Every
    worker of a multi-worker run resumes from the chief's model_dir.
    A checkpoint deleted while it is read (a trainer rotating the
    checkpoints of the model_dir an evaluator watches) is not an error: the
    listing is read again and the newest checkpoint taken (bounded retries).

    Returns:
      The restored checkpoint path, or None for a fresh run.

    Raises:
      DamagedCheckpointError: every listed checkpoint is damaged.
      CheckpointMismatchError: the newest readable one does not fit.
    """
    # [rotation] a checkpoint deleted by a trainer while it was being read:
    # list again (bounded; see pinning.py).
    for attempt in range(pinning.RETRIES + 1):
        try:
            return _restore_newest_readable(checkpoint, model_dir, newest)
        except CheckpointVanishedError:
            if attempt == pinning.RETRIES:
                raise
    return None


def _restore_newest_readable(checkpoint, model_dir, newest):
    """`restore_latest` on one listing of `model_dir/checkpoint`."""
    paths = listed_checkpoints(model_dir)
    if newest in paths:
        paths = paths[paths.index(newest):]
    for path in paths:
        # Read in place, not pinned: `checkpoint` holds the optimizer, whose
        # slot variables may be created (and restored from `path`) later.
        # An open file stays readable when the trainer deletes it, so only a
        # deletion before the read opens it fails; then list again.
        try:
            restore(checkpoint, path, "model")
            return path
        except DamagedCheckpointError as err:
            if _rotated_away(model_dir, path):
                raise CheckpointVanishedError(f"{path} was deleted") from err
            logger.warning("checkpoint %s is damaged (%s); trying the one "
                           "before it (the damaged files are not deleted; a "
                           "later save of the same step replaces them).",
                           path, err.reason)
    if paths:
        raise DamagedCheckpointError(
            f"no readable checkpoint in {model_dir}: "
            f"{', '.join(os.path.basename(p) for p in paths)} are damaged; "
            "move them (and the 'checkpoint' file) away to start afresh, or "
            "use another --model_dir.")
    return None


def _rotated_away(model_dir, path):
    """Whether a trainer deleted checkpoint `path` (rotation), not damage.

    CheckpointManager drops a checkpoint from `model_dir/checkpoint` before
    it deletes its files, so a missing file that is still listed is damage.
    """
    return (not tf.io.gfile.exists(path + ".index")
            and path not in listed_checkpoints(model_dir))


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
    # [rotation] held while read: a trainer may be rotating `path`'s
    # checkpoints. Pinning is safe here: every object read exists already
    # (model_trackable lists built variables), so nothing is restored later.
    with pinning.pinned(path) as pin:
        return init_from_pinned(model, pin, include_supervised_head)


def init_from_pinned(model, pin, include_supervised_head=False):
    """`init_from_checkpoint` from a `pinning.Pin`; returns its path."""
    readable = resolve_checkpoint_path(pin.readable)
    parts = MODEL_PARTS if include_supervised_head else MODEL_PARTS[:2]
    partial = weights_checkpoint(model, parts)
    restore(partial, readable, "encoder", name=pin.path)
    _check_variable_counts(readable, model, parts, name=pin.path)
    return pin.path


def _saved_part_sizes(path):
    """Number of saved variables per model part, read from the object graph."""
    graph = ObjectGraph(path)
    return {part: len(graph.children(part_variables_path(part)))
            for part in MODEL_PARTS
            if graph.node(part_variables_path(part)) is not None}


def saved_num_classes(path):
    """Width of the checkpoint's supervised head; 0 if it has none.

    Reads the object graph: model/supervised_head/variables/<i>, the rank-2
    one being the kernel [D, C].
    """
    graph = ObjectGraph(path)
    variables = part_variables_path("supervised_head")
    for name in graph.children(variables):
        shape = graph.shape(f"{variables}/{name}")
        if shape is not None and len(shape) == 2:
            return int(shape[-1])
    return 0


def saved_global_step(path):
    """The checkpoint's saved global step, else the N of its ckpt-N name."""
    step = ObjectGraph(path).global_step()
    return rundir.checkpoint_step(path) if step is None else step


def _check_variable_counts(path, model, parts, name=None):
    """Fails when a part of the checkpoint has a different variable count.

    (Shape differences are caught by the restore itself.)
    """
    saved = _saved_part_sizes(path)
    path = name or path
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

