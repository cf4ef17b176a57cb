"""The object graph of a TF2 checkpoint: navigate it by attribute path, list its variables.

Both a tf.train.Checkpoint prefix and a SavedModel's ``variables/variables``
hold a ``_CHECKPOINTABLE_OBJECT_GRAPH``. Its variables are keyed by their
shortest path (``model/resnet_model/variables/7`` in a SavedModel), so keys
are not looked up as strings: paths are followed child by child. Our own
checkpoints (rundir.checkpoints, `python -m export`) and the original code's
(simclr_tf2/original/) are read through the same `ObjectGraph`.
"""

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

VALUE = "VARIABLE_VALUE"
# The step counter both our checkpoints and the original code's save at the
# root (tf.train.Checkpoint(global_step=...)).
GLOBAL_STEP_KEY = "global_step/.ATTRIBUTES/VARIABLE_VALUE"
# Children that Keras and tf.Module add on top of the model's own attributes;
# walked last, so variables are named by the original code's attribute paths.
_GENERIC = ("variables", "trainable_variables", "non_trainable_variables",
            "keras_api", "layer_with_weights-", "layer-", "_variables",
            "trainable_variables_list", "regularization_losses", "metrics",
            "signatures", "__call__", "call_and_return")


def _is_generic(name):
    return any(name == g or (g.endswith("-") and name.startswith(g))
               or (g == "call_and_return" and name.startswith(g)) for g in _GENERIC)


class ObjectGraph:
    """A checkpoint's object graph and values.

    Args:
      prefix: checkpoint prefix (``.../ckpt-8`` or ``.../variables/variables``).
    """

    def __init__(self, prefix):
        self.prefix = prefix
        self.reader = tf.train.load_checkpoint(prefix)
        self.graph = trackable_object_graph_pb2.TrackableObjectGraph()
        self.graph.ParseFromString(self.reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))

    def child(self, node_id, name):
        """Node id of child `name` of `node_id`, or None."""
        if node_id is None:
            return None
        for ref in self.graph.nodes[node_id].children:
            if ref.local_name == name:
                return ref.node_id
        return None

    def node(self, path, start=0):
        """Node id at a '/'-separated attribute path (None if absent)."""
        node_id = start
        for name in path.split("/") if path else []:
            node_id = self.child(node_id, name)
        return node_id

    def children(self, path):
        """Names of the children at `path` ([] if absent)."""
        node_id = self.node(path)
        if node_id is None:
            return []
        return [ref.local_name for ref in self.graph.nodes[node_id].children]

    def global_step(self):
        """The saved global step, or None when the checkpoint has none."""
        if self.reader.has_tensor(GLOBAL_STEP_KEY):
            return int(self.reader.get_tensor(GLOBAL_STEP_KEY))
        return None

    def value_key(self, node_id):
        """Checkpoint key of a variable node's value, or None if not a variable."""
        if node_id is None:
            return None
        for attr in self.graph.nodes[node_id].attributes:
            if attr.name == VALUE:
                return attr.checkpoint_key
        return None

    def shape(self, path):
        """Shape of the variable at `path`, or None."""
        key = self.value_key(self.node(path))
        return None if key is None else tuple(self.reader.get_variable_to_shape_map()[key])

    def value(self, path):
        """Numpy value of the variable at `path` (KeyError if absent)."""
        key = self.value_key(self.node(path))
        if key is None:
            raise KeyError(path)
        return self.reader.get_tensor(key)

    def variables_under(self, path):
        """{variable node id: attribute path} of every variable below `path`.

        Paths go through the model's own attributes where possible (generic
        Keras children are walked last), so they read like the original code.
        """
        start = self.node(path)
        found, seen = {}, set()
        stack = [(start, path)] if start is not None else []
        while stack:
            node_id, where = stack.pop()
            if node_id in seen:
                continue
            seen.add(node_id)
            if self.value_key(node_id) is not None:
                found[node_id] = where
                continue
            refs = sorted(self.graph.nodes[node_id].children,
                          key=lambda r: _is_generic(r.local_name), reverse=True)
            stack.extend((r.node_id, f"{where}/{r.local_name}") for r in refs)
        return found
