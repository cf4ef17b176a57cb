"""Rebuilds a trained SimCLRModel from a model_dir: flags.json + a checkpoint.

Used by `python -m export` to export without training. The architecture
comes from `model_dir/flags.json` (written by run.py); the number of classes
comes from the checkpoint itself (the shape of the supervised head's kernel,
absent when the run had no head), so the dataset need not be available.
"""

from simclr_tf2.export import saved_model
from simclr_tf2.rundir import pinning
from simclr_tf2.rundir import checkpoints
from simclr_tf2 import tasks
from simclr_tf2.errors import CheckpointMismatchError
from simclr_tf2.models import build


def restore_model(config, checkpoint):
    """Builds the run's model and reads a checkpoint into it.

    Args:
      config: the run's `simclr_tf2.config.RunConfig` (`load_run_config`).
      checkpoint: ckpt-N prefix, or a directory (its latest checkpoint).

    Returns:
      (model, global_step, checkpoint_path).

    Raises:
      CheckpointMismatchError: no checkpoint, or one that does
        not fit the architecture in flags.json.
    """
    # [rotation] held while read: a trainer may be rotating the checkpoints.
    with pinning.pinned(checkpoint) as pin:
        return _restore_pinned(config, pin)


def _restore_pinned(config, pin):
    """`restore_model` from a `pinning.Pin`."""
    readable = checkpoints.resolve_checkpoint_path(pin.readable)
    path = pin.path  # its name in the model_dir, for messages and the export info
    num_classes = checkpoints.saved_num_classes(readable)
    task = tasks.get(config.train.train_mode)
    if task.requires_classes and not num_classes:
        raise CheckpointMismatchError(
            f"checkpoint {path} has no supervised head, but flags.json says "
            f"train_mode={config.train.train_mode}; pass a checkpoint of that run.")
    with saved_model.float32_policy():
        model = build.build_model(config.model, num_classes=num_classes,
                                  task=task,
                                  image_size=config.data.image_size)
    checkpoints.init_from_pinned(model, pin, include_supervised_head=True)
    return model, checkpoints.saved_global_step(readable), path
