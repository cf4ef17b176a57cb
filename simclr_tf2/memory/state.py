"""What a checkpoint holds of the memory: EMA weights, buffered keys and labels, write position."""

import tensorflow as tf


def memory_trackable(memory_network, key_buffer):
    """The memory's state as a checkpointable object.

    Keras 3 layers do not expose sub-layers held in lists to
    tf.train.Checkpoint (see `checkpoints.model_trackable`), so the EMA
    weights are listed explicitly, in `MemoryNetwork.weights` order
    (creation order): network/variables/<i>. The buffer's variables are
    named: buffer/keys, buffer/labels, buffer/position, buffer/filled.

    Add it as its own child of the run's checkpoint (e.g. `memory=`), next to
    the model, only when the memory is on: the model's node stays the same,
    so model_dirs trained with and without the memory load each other's
    models for fine-tuning, distillation and export.

    Args:
      memory_network: a `MemoryNetwork`.
      key_buffer: a `KeyBuffer`.

    Returns:
      A tf.train.Checkpoint node.
    """
    return tf.train.Checkpoint(
        network=tf.train.Checkpoint(variables=list(memory_network.weights)),
        buffer=tf.train.Checkpoint(
            keys=key_buffer.keys, labels=key_buffer.labels,
            position=key_buffer.position, filled=key_buffer.filled))
