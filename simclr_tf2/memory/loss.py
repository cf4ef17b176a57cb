"""Contrastive losses of SimCLRv2's memory: trained-network anchors against memory-network keys.

Formulation (one training step, global batch of N_g examples, two views each;
this replica holds N of them). Let q^1_i, q^2_i be the trained network's
projections of example i's two views (the anchors, or queries), k^1_j, k^2_j
the memory (EMA) network's projections of example j's views (the keys), and
b_1..b_M the keys buffered from earlier steps, of which the first F are
filled. With s(u, v) = u.v / tau (after l2 normalisation if `hidden_norm`),
the loss of the view-1 anchor q^1_i is

    -log  exp s(q^1_i, k^2_i) / Z_i,
    Z_i = sum_j exp s(q^1_i, k^2_j)            (other view, j = 1..N_g)
        + sum_{j != i} exp s(q^1_i, k^1_j)     (same view, itself left out)
        + sum_{m <= F} exp s(q^1_i, b_m)       (buffer, filled slots only)

and symmetrically for q^2_i with the views swapped. The returned loss is the
mean over the local view-1 anchors plus the mean over the local view-2
anchors, the reduction of `losses.add_contrastive_loss`.

Choices, and why:

- Both views are anchors. NT-Xent uses both; so does symmetric MoCo. Each
  image then gives two gradient terms per step, as without the memory.
- The in-batch candidates are the memory network's keys of BOTH views of the
  global batch (2 N_g - 1 of them), not the trained network's projections.
  The paper's author describes the contrasting examples as coming "from the
  momentum encoder from current and past batches" (google-research/simclr
  #115, #167). Keeping NT-Xent's 2 N_g - 1 in-batch layout means that with
  an empty buffer and keys equal to the queries (memory momentum 0 and the
  same BN mode) the value is exactly `add_contrastive_loss`; the memory only
  changes who supplies the candidates and adds the buffer. The anchor's own
  same-view key (the EMA network's projection of the very same crop) is left
  out, as NT-Xent leaves out self-similarity: it is a near-copy of the
  anchor, and as a negative it would push the anchor away from itself.
- Keys get no gradient (`tf.stop_gradient` here, whatever the caller did):
  the memory network is updated only by the moving average, as in MoCo.
- Empty buffer slots are masked (logit - LARGE_NUM), never treated as zero
  vectors: a zero key would be a negative with similarity 0, biasing the
  loss while the buffer fills. So the first step is the in-batch loss and
  the buffer's negatives grow step by step to M.
- Both views' keys are buffered (`KeyBuffer.enqueue_batch`), 2 N_g per
  step: every key the memory network computes is used, and `memory_size`
  counts keys, so the buffer spans memory_size / (2 N_g) steps.
- Under a strategy, the keys of every replica are all-gathered in replica
  order (`losses.cross_replica_concat`); each replica's anchors are its own
  rows, so the positive of local row i is column replica_id * N + i. The
  buffer is identical on every replica (see `KeyBuffer`).

SupCon (`memory_supervised_contrastive_loss`): the buffer stores the labels
with the keys; an anchor's positives are its other view's key, every
in-batch key (either view, its own same-view key excluded) with its label,
and every filled buffer slot with its label; label -1 (unlabeled) matches
nothing. The mean over positives sits outside the log, as in
`losses.add_supervised_contrastive_loss`.
"""

import tensorflow as tf

from simclr_tf2.losses.contrastive import LARGE_NUM
from simclr_tf2.losses.contrastive import cross_replica_concat
from simclr_tf2.losses.contrastive import replica_id
from simclr_tf2.losses.supcon import supervised_contrastive_targets


def _memory_logits(queries, keys, buffer, buffer_valid, hidden_norm,
                   temperature, strategy):
    """Logits of the local anchors against in-batch keys and the buffer.

    Args:
      queries: [2N, P] trained-network projections, view-1 rows first.
      keys: [2N, P] memory-network projections of the same rows.
      buffer: [M, P] buffered keys of earlier steps.
      buffer_valid: [M] bool, True where a slot holds a key.
      hidden_norm, temperature, strategy: as in `memory_contrastive_loss`.

    Returns:
      logits_ab: [N, N_g] view-1 anchors against view-2 keys of the global
        batch.
      logits_a: [N, 2 N_g + M] view-1 anchors against (view-2 keys | view-1
        keys | buffer); logits_b: the same for view-2 anchors with the views
        swapped. The anchor's own same-view key and empty slots are pushed to
        -LARGE_NUM.
      self_mask: [N, N_g] one-hot of each local example's global index.
    """
    queries = tf.cast(queries, tf.float32)
    keys = tf.stop_gradient(tf.cast(keys, tf.float32))
    buffer = tf.stop_gradient(tf.cast(buffer, tf.float32))
    if hidden_norm:
        queries = tf.math.l2_normalize(queries, axis=-1)
        keys = tf.math.l2_normalize(keys, axis=-1)
        buffer = tf.math.l2_normalize(buffer, axis=-1)
    query1, query2 = tf.split(queries, 2, axis=0)
    key1, key2 = tf.split(keys, 2, axis=0)
    key1_all = cross_replica_concat(key1, strategy)
    key2_all = cross_replica_concat(key2, strategy)
    local_batch = tf.shape(query1)[0]
    positive_idx = tf.range(local_batch) + replica_id(strategy) * local_batch
    self_mask = tf.one_hot(positive_idx, tf.shape(key1_all)[0])
    empty_penalty = (1.0 - tf.cast(buffer_valid, tf.float32)) * LARGE_NUM

    inv_t = 1.0 / temperature

    def against(query, other_keys, same_keys):
        other = tf.matmul(query, other_keys, transpose_b=True) * inv_t
        same = tf.matmul(query, same_keys, transpose_b=True) * inv_t
        past = tf.matmul(query, buffer, transpose_b=True) * inv_t
        return other, tf.concat(
            [other, same - self_mask * LARGE_NUM, past - empty_penalty], axis=1)

    logits_ab, logits_a = against(query1, key2_all, key1_all)
    _, logits_b = against(query2, key1_all, key2_all)
    return logits_ab, logits_a, logits_b, self_mask


def memory_contrastive_loss(queries, keys, buffer, buffer_valid, *,
                            hidden_norm=True, temperature=1.0, strategy=None):
    """NT-Xent with memory-network keys and a buffer of past keys.

    See the module docstring for the formula. With an empty buffer and
    `keys == queries` the value equals `losses.add_contrastive_loss(queries)`.

    Args:
      queries: [2N, P] the trained network's projections; rows 0..N-1 view 1,
        rows N..2N-1 the same examples' view 2. Any float dtype; float32 math.
      keys: [2N, P] the memory network's projections of the same rows (no
        gradient flows into them).
      buffer: [M, P] keys of earlier steps (`KeyBuffer.keys`), same on every
        replica.
      buffer_valid: [M] bool, which slots are filled (`KeyBuffer.valid_mask()`).
      hidden_norm: l2-normalise queries, keys and buffer rows first.
      temperature: softmax temperature tau (> 0).
      strategy: a `tf.distribute.Strategy` (call inside `strategy.run`) to
        gather keys from every replica, or None.

    Returns:
      loss: scalar float32; the replicas' mean is the global batch's loss.
      logits_con: [N, N_g] view-1 anchors against view-2 keys of the global
        batch (for `losses.contrastive_metrics`).
      labels_con: [N, 2 N_g + M] one-hot targets; the positive of local row i
        is column replica_id * N + i.
    """
    logits_ab, logits_a, logits_b, self_mask = _memory_logits(
        queries, keys, buffer, buffer_valid, hidden_norm, temperature,
        strategy)
    labels = tf.concat(
        [self_mask, tf.zeros_like(self_mask),
         tf.zeros([tf.shape(self_mask)[0], tf.shape(buffer)[0]])], axis=1)
    loss_a = tf.nn.softmax_cross_entropy_with_logits(labels, logits_a)
    loss_b = tf.nn.softmax_cross_entropy_with_logits(labels, logits_b)
    return tf.reduce_mean(loss_a) + tf.reduce_mean(loss_b), logits_ab, labels


def memory_supervised_targets(labels, labels_all, self_mask, buffer_labels,
                              buffer_valid):
    """SupCon targets of local anchors over (other view | same view | buffer).

    Args:
      labels: [N] int labels of the local examples (-1: unlabeled).
      labels_all: [N_g] int labels of the global batch, replica order.
      self_mask: [N, N_g] one-hot of each local example's global index.
      buffer_labels: [M] int labels stored with the buffered keys.
      buffer_valid: [M] bool, which slots are filled.

    Returns:
      [N, 2 N_g + M] float32 rows summing to 1, uniform over the positives.
    """
    in_batch = tf.cast(
        supervised_contrastive_targets(labels, labels_all, self_mask) > 0,
        tf.float32)
    labels = tf.cast(labels, tf.int32)[:, None]
    buffer_labels = tf.cast(buffer_labels, tf.int32)[None, :]
    past = tf.logical_and(tf.equal(labels, buffer_labels), labels >= 0)
    past = tf.logical_and(past, tf.cast(buffer_valid, tf.bool)[None, :])
    positives = tf.concat([in_batch, tf.cast(past, tf.float32)], axis=1)
    return positives / tf.reduce_sum(positives, axis=1, keepdims=True)


def memory_supervised_contrastive_loss(queries, keys, labels, buffer,
                                       buffer_labels, buffer_valid, *,
                                       hidden_norm=True, temperature=1.0,
                                       strategy=None):
    """SupCon (L_sup_out) with memory-network keys and a labelled buffer.

    Candidates as in `memory_contrastive_loss`; positives as in the module
    docstring. With all labels distinct (or all -1) it equals
    `memory_contrastive_loss`; with an empty buffer and `keys == queries` it
    equals `losses.add_supervised_contrastive_loss`.

    Args:
      queries, keys, buffer, buffer_valid, hidden_norm, temperature, strategy:
        as in `memory_contrastive_loss`.
      labels: [N] int class labels of the local examples (-1: unlabeled).
      buffer_labels: [M] int labels of the buffered keys (`KeyBuffer.labels`).

    Returns:
      loss: scalar float32.
      logits_con: [N, N_g] view-1 anchors against view-2 keys.
      labels_con: [N, 2 N_g + M] the view-1 anchors' target distributions.
    """
    logits_ab, logits_a, logits_b, self_mask = _memory_logits(
        queries, keys, buffer, buffer_valid, hidden_norm, temperature,
        strategy)
    labels_all = cross_replica_concat(tf.cast(labels, tf.int32), strategy)
    targets = memory_supervised_targets(labels, labels_all, self_mask,
                                        buffer_labels, buffer_valid)
    loss_a = tf.nn.softmax_cross_entropy_with_logits(targets, logits_a)
    loss_b = tf.nn.softmax_cross_entropy_with_logits(targets, logits_b)
    return tf.reduce_mean(loss_a) + tf.reduce_mean(loss_b), logits_ab, targets
