"""Rebuilds a trained SimCLRModel from a model_dir: flags.json + a checkpoint.

Used by `python -m export` to export without training. The architecture
comes from `model_dir/flags.json` (written by run.py); the number of classes
comes from the checkpoint itself (the shape of the supervised head's kernel,
absent when the run had no head), so the dataset need not be available.
"""

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from export import saved_model
from simclr_tf2 import checkpoint_pin
from simclr_tf2 import checkpoints
from simclr_tf2.models import build

GLOBAL_STEP_KEY = "global_step/.ATTRIBUTES/VARIABLE_VALUE"


def _object_graph(reader):
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    return graph


def _follow(graph, *names):
    """Node id of the object at root/names[0]/names[1]/..., or None."""
    node = 0
    for name in names:
        found = [c.node_id for c in graph.nodes[node].children
                 if c.local_name == name]
        if not found:
            return None
        node = found[0]
    return node


def num_classes_in_checkpoint(path):
    """Width of the checkpoint's supervised head; 0 if it has none.

    Reads the object graph: model/supervised_head/variables/<i>, the rank-2
    one being the kernel [D, C].
    """
    reader = tf.train.load_checkpoint(path)
    graph = _object_graph(reader)
    shapes = reader.get_variable_to_shape_map()
    node = _follow(graph, "model", "supervised_head", "variables")
    for ref in graph.nodes[node].children if node is not None else ():
        for attribute in graph.nodes[ref.node_id].attributes:
            shape = shapes.get(attribute.checkpoint_key, [])
            if len(shape) == 2:
                return int(shape[-1])
    return 0


def _global_step(path):
    reader = tf.train.load_checkpoint(path)
    if reader.has_tensor(GLOBAL_STEP_KEY):
        return int(reader.get_tensor(GLOBAL_STEP_KEY))
    return checkpoints.checkpoint_step(path)


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
    train_mode = config.train.train_mode
    if train_mode == "distill":
        train_mode = "finetune"  # Same network; the teacher is not needed.
    if train_mode != "pretrain" and not num_classes:
        raise checkpoints.CheckpointMismatchError(
            f"checkpoint {path} has no supervised head, but flags.json says "
            f"train_mode={config.train.train_mode}; pass a checkpoint of that run.")
    with saved_model.float32_policy():
        model = build.build_model(config.model, num_classes=num_classes,
                                  train_mode=train_mode,
                                  image_size=config.data.image_size)
    checkpoints.init_from_pinned(model, pin, include_supervised_head=True)
    return model, _global_step(readable), path
