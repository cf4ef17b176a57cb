"""The memory during pretraining: one object owning the EMA network and the buffer for a run.

`TrainingMemory` is what `tasks.PretrainTask` holds when --memory_size > 0.
Per training step (docs/memory.md, "A training step with the memory"):

1. `loss(...)`: the memory network's keys of both views of this replica's
   batch, the contrastive loss of the trained network's projections against
   them and against the buffer as it was before the step. The keys and
   labels are kept for step 3, per replica.
2. The optimizer step (the model's `train_step`).
3. `after_step(model)`: one EMA step of the memory network towards the
   updated encoder and projection head, then the kept keys of the whole
   global batch are enqueued.

With gradient caching the task's loss runs once per global batch (on the
gathered outputs of all chunks), so the keys are computed once per step and
never in the chunks' backward passes.
"""

import threading

import tensorflow as tf

from simclr_tf2.memory.buffer import KeyBuffer
from simclr_tf2.memory.ema import MemoryNetwork
from simclr_tf2.memory.ema import ema_update
from simclr_tf2.memory.loss import memory_contrastive_loss
from simclr_tf2.memory.loss import memory_supervised_contrastive_loss
from simclr_tf2.memory.state import memory_trackable


class TrainingMemory:
    """The memory network and key buffer of one pretraining run.

    Args:
      size: buffered keys M (> 0).
      momentum: EMA decay d in [0, 1).
      supervised: buffer labels and use SupCon's positives
        (`memory_supervised_contrastive_loss`).

    Attributes:
      network: the `MemoryNetwork`, None until `build`.
      buffer: the `KeyBuffer`, None until `build`.
    """

    def __init__(self, size, momentum=0.999, supervised=False):
        if int(size) <= 0:
            raise ValueError(f"memory size must be > 0. Received: size={size}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(
                f"memory momentum must be in [0, 1). Received: momentum={momentum}")
        self.size = int(size)
        self.momentum = momentum
        self.supervised = supervised
        self.network = None
        self.buffer = None
        # Keys and labels of the current step, kept from `loss` for
        # `after_step`. Under MirroredStrategy every replica traces the step
        # in its own thread, so each thread keeps its own.
        self._step = threading.local()

    def build(self, model, image_shape):
        """Creates the EMA copy of `model`'s encoder and projection head and
        the buffer. Call once, under the strategy's scope, after the model
        is built.

        Args:
          model: a built `SimCLRModel`.
          image_shape: (H, W, 3) of one training view.
        """
        if self.network is not None:
            return
        self.network = MemoryNetwork.from_networks(
            model.encoder, model.projection_head, tuple(image_shape),
            momentum=self.momentum)
        dim = int(self.network(tf.zeros([1, *image_shape])).shape[-1])
        self.buffer = KeyBuffer(self.size, dim, name="memory_buffer")

    def reset(self, model):
        """The memory network becomes a copy of `model`'s encoder and head
        (e.g. once --checkpoint loaded them); the buffer is left as it is
        (empty in a fresh run). Call in cross-replica context."""
        ema_update(self.network.weights,
                   list(model.encoder.weights) + list(model.projection_head.weights),
                   0.0)

    def trackable(self):
        """The checkpoint node of the EMA weights and the buffer."""
        return memory_trackable(self.network, self.buffer)

    def loss(self, images, queries, labels, *, hidden_norm, temperature,
             strategy):
        """Contrastive loss of `queries` against memory keys and the buffer.

        Args:
          images: [2N, H, W, 3] this replica's views, view-1 rows first.
          queries: [2N, P] the trained network's projections of `images`.
          labels: [N] int labels (-1: unlabeled).
          hidden_norm, temperature: as in `memory_contrastive_loss`.
          strategy: the current `tf.distribute.Strategy`.

        Returns:
          (loss, logits_con [N, N_g], labels_con [N, 2 N_g + M]).
        """
        keys = self.network(images)
        past, past_labels, valid = self.buffer()
        self._step.keys, self._step.labels = keys, labels
        if self.supervised:
            return memory_supervised_contrastive_loss(
                queries, keys, labels, past, past_labels, valid,
                hidden_norm=hidden_norm, temperature=temperature,
                strategy=strategy)
        return memory_contrastive_loss(
            queries, keys, past, valid, hidden_norm=hidden_norm,
            temperature=temperature, strategy=strategy)

    def after_step(self, model, strategy):
        """EMA step towards `model`'s updated networks, then the enqueue of
        the keys `loss` computed (all replicas, replica order)."""
        keys = getattr(self._step, "keys", None)
        if keys is None:
            raise RuntimeError("TrainingMemory.after_step needs a loss() call "
                               "in the same step first.")
        labels = self._step.labels if self.supervised else None
        self._step.keys = self._step.labels = None
        self.network.update(model.encoder, model.projection_head)
        self.buffer.enqueue_batch(keys, labels, strategy)
