"""FIFO buffer of memory-network keys (and their labels), identical on every replica."""

import keras
import tensorflow as tf

from simclr_tf2.losses import cross_replica_concat

# Every replica writes the same all-gathered keys; ONLY_FIRST_REPLICA makes a
# replica-context assign legal on a MirroredVariable and copies replica 0's
# value to all devices, so the replicas cannot drift apart.
_SYNC = dict(trainable=False, aggregation="only_first_replica")


@keras.saving.register_keras_serializable(package="simclr_tf2")
class KeyBuffer(keras.layers.Layer):
    """The last `size` keys written, as a ring with a write position.

    Slots fill from 0 upwards and then wrap, so slots 0..filled-1 are the
    filled ones. State (all non-trainable, checkpointed with the layer):
    `keys` [size, dim] float32, `labels` [size] int32 (-1 where unlabeled or
    empty), `position` int64 scalar (next slot to write), `filled` int64
    scalar (number of filled slots, at most size).

    Create it under the strategy's scope; `enqueue` may run in replica
    context (inside `strategy.run`) or without a strategy.

    Args:
      size: number of keys kept (M > 0).
      dim: key width (P).
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """

    def __init__(self, size, dim, **kwargs):
        kwargs.pop("trainable", None)  # state, never trained (from_config)
        super().__init__(trainable=False, **kwargs)
        if int(size) <= 0 or int(dim) <= 0:
            raise ValueError(
                f"KeyBuffer needs size > 0 and dim > 0. Received: size={size}, "
                f"dim={dim}")
        self.size = int(size)
        self.dim = int(dim)
        self.build()

    def build(self, input_shape=None):
        if self.built:
            return
        self.keys = self.add_weight(shape=(self.size, self.dim),
                                    initializer="zeros", dtype="float32",
                                    name="keys", **_SYNC)
        self.labels = self.add_weight(
            shape=(self.size,), initializer=keras.initializers.Constant(-1),
            dtype="int32", name="labels", **_SYNC)
        self.position = self.add_weight(shape=(), initializer="zeros",
                                        dtype="int64", name="position", **_SYNC)
        self.filled = self.add_weight(shape=(), initializer="zeros",
                                      dtype="int64", name="filled", **_SYNC)
        self.built = True

    def valid_mask(self):
        """[size] bool: True for the filled slots."""
        return tf.range(self.size, dtype=tf.int64) < tf.convert_to_tensor(
            self.filled)

    def enqueue(self, keys, labels=None):
        """Writes K keys after the last written one, wrapping around.

        Every replica must pass the same tensor: the keys of the whole global
        batch in replica order (all-gathered). When K > size only the last
        `size` keys are kept, as if written one by one.

        Args:
          keys: [K, dim] keys (cast to float32; stored as given, normalise
            later).
          labels: [K] int labels, or None to store -1.
        """
        keys = tf.stop_gradient(tf.cast(keys, tf.float32))
        count = tf.shape(keys, out_type=tf.int64)[0]
        if labels is None:
            labels = -tf.ones([count], tf.int32)
        labels = tf.cast(labels, tf.int32)
        position = tf.convert_to_tensor(self.position)
        slots = (position + tf.range(count, dtype=tf.int64)) % self.size
        keep = tf.minimum(count, self.size)
        slots = slots[count - keep:]
        # Row scatter, not a whole-buffer assign: writes K rows instead of
        # copying all M (a 64K x 128 buffer is 32 MB per step).
        self.keys.value.scatter_update(
            tf.IndexedSlices(keys[count - keep:], slots))
        self.labels.value.scatter_update(
            tf.IndexedSlices(labels[count - keep:], slots))
        self.position.assign((position + count) % self.size)
        self.filled.assign(tf.minimum(
            tf.convert_to_tensor(self.filled) + count, self.size))

    def enqueue_batch(self, keys, labels=None, strategy=None):
        """Enqueues both views' keys of the whole global batch.

        Order: view-1 keys of every replica in replica order, then view-2
        keys likewise; each key keeps its example's label.

        Args:
          keys: [2N, dim] this replica's keys, view-1 rows first.
          labels: [N] int labels of this replica's examples, or None.
          strategy: a `tf.distribute.Strategy` (call inside `strategy.run`)
            or None.
        """
        view1, view2 = tf.split(keys, 2, axis=0)
        gathered = tf.concat([cross_replica_concat(view1, strategy),
                              cross_replica_concat(view2, strategy)], axis=0)
        if labels is not None:
            labels = cross_replica_concat(tf.cast(labels, tf.int32), strategy)
            labels = tf.concat([labels, labels], axis=0)
        self.enqueue(gathered, labels)

    def call(self, inputs=None):
        """Returns (keys [size, dim], labels [size], valid [size] bool)."""
        return (tf.convert_to_tensor(self.keys),
                tf.convert_to_tensor(self.labels), self.valid_mask())

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, dim=self.dim)
        return config
