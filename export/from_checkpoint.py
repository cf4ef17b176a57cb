"""Rebuilds a trained SimCLRModel from a model_dir: flags.json + a checkpoint.

Used by `python -m export` to export without training. The architecture
comes from `model_dir/flags.json` (written by run.py); the number of classes
comes from the checkpoint itself (the shape of the supervised head's kernel,
absent when the run had no head), so the dataset need not be available.
"""

from export import saved_model
from simclr_tf2 import checkpoint_pin
from simclr_tf2 import checkpoints
from simclr_tf2 import tasks
from simclr_tf2.models import build
from simclr_tf2.object_graph import ObjectGraph


def num_classes_in_checkpoint(path):
    """Width of the checkpoint's supervised head; 0 if it has none.

    Reads the object graph: model/supervised_head/variables/<i>, the rank-2
    one being the kernel [D, C].
    """
    graph = ObjectGraph(path)
    for name in graph.children("model/supervised_head/variables"):
        shape = graph.shape(f"model/supervised_head/variables/{name}")
        if shape is not None and len(shape) == 2:
            return int(shape[-1])
    return 0


def _global_step(path):
    step = ObjectGraph(path).global_step()
    return checkpoints.checkpoint_step(path) if step is None else step


def restore_model(config, checkpoint):
    """Builds the run's model and reads a checkpoint into it.

    Args:
      config: the run's `simclr_tf2.config.RunConfig` (`load_run_config`).
      checkpoint: ckpt-N prefix, or a directory (its latest checkpoint).

    Returns:
      (model, global_step, checkpoint_path).

    Raises:
      checkpoints.CheckpointMismatchError: no checkpoint, or one that does
        not fit the architecture in flags.json.
    """
    # [rotation] held while read: a trainer may be rotating the checkpoints.
    with checkpoint_pin.pinned(checkpoint) as pin:
        return _restore_pinned(config, pin)


def _restore_pinned(config, pin):
    """`restore_model` from a `checkpoint_pin.Pin`."""
    readable = checkpoints.resolve_checkpoint_path(pin.readable)
    path = pin.path  # its name in the model_dir, for messages and the export info
    num_classes = num_classes_in_checkpoint(readable)
    task = tasks.get(config.train.train_mode)
    if task.requires_classes and not num_classes:
        raise checkpoints.CheckpointMismatchError(
            f"checkpoint {path} has no supervised head, but flags.json says "
            f"train_mode={config.train.train_mode}; pass a checkpoint of that run.")
    with saved_model.float32_policy():
        model = build.build_model(config.model, num_classes=num_classes,
                                  task=task,
                                  image_size=config.data.image_size)
    checkpoints.init_from_pinned(model, pin, include_supervised_head=True)
    return model, _global_step(readable), path
