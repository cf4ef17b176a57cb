"""NT-Xent, SimCLR's contrastive loss, with cross-replica negatives.

The contrastive loss follows the original SimCLR code: `hidden` stacks the two
augmented views along the batch axis, each example's positive is its other
view, and the 2N-2 other examples of the (global) batch are its negatives.
The helpers here (`view_logits`, `targets_from_matches`,
`cross_replica_concat`) are shared with SupCon (`losses.supcon`) and the
memory's losses (`memory.loss`).
"""

import tensorflow as tf

# Subtracted from self-similarity logits so an example is never its own
# negative; large enough to vanish under softmax, small enough to stay finite
# after scaling by 1/temperature in float32.
LARGE_NUM = 1e9


def cross_replica_concat(tensor, strategy=None):
    """Concatenates `tensor` from every replica along axis 0, in replica order.

    Differentiable: under a strategy the gradient of each replica's slice is
    sent back to the replica that produced it (`ReplicaContext.all_gather`).

    Args:
      tensor: [n, ...] the local slice.
      strategy: a `tf.distribute.Strategy` or None.

    Returns:
      [n * num_replicas, ...]; `tensor` itself with one replica or no strategy.
    """
    if strategy is None or strategy.num_replicas_in_sync == 1:
        return tensor
    replica_context = tf.distribute.get_replica_context()
    if replica_context is None:
        raise ValueError(
            "the contrastive losses with strategy=... must be called inside "
            "strategy.run (replica context); call it there or pass strategy=None.")
    return replica_context.all_gather(tensor, axis=0)


def replica_id(strategy):
    """Index of this replica in the sync group (0 without a strategy)."""
    if strategy is None or strategy.num_replicas_in_sync == 1:
        return tf.constant(0, tf.int32)
    replica_id = tf.distribute.get_replica_context().replica_id_in_sync_group
    return tf.cast(replica_id, tf.int32)


def view_logits(hidden, hidden_norm, temperature, strategy):
    """Similarity logits of local anchors against every view of the global batch.

    Args:
      hidden: [2N, D] projections, view-1 rows first; cast to float32.
      hidden_norm, temperature, strategy: as in `add_contrastive_loss`.

    Returns:
      logits_ab: [N, N_g] view-1 anchors against view 2 of the global batch.
      logits_a: [N, 2 N_g] view-1 anchors against (view 2 | view 1);
      logits_b: [N, 2 N_g] view-2 anchors against (view 1 | view 2).
        Self-similarity columns are pushed to -LARGE_NUM.
      self_mask: [N, N_g] one-hot of each local example's global index
        (replica_id * N + i), i.e. of its other view's column.
    """
    hidden = tf.cast(hidden, tf.float32)
    if hidden_norm:
        hidden = tf.math.l2_normalize(hidden, axis=-1)
    hidden1, hidden2 = tf.split(hidden, 2, axis=0)
    local_batch = tf.shape(hidden1)[0]

    hidden1_all = cross_replica_concat(hidden1, strategy)
    hidden2_all = cross_replica_concat(hidden2, strategy)
    global_batch = tf.shape(hidden1_all)[0]

    positive_idx = tf.range(local_batch) + replica_id(strategy) * local_batch
    self_mask = tf.one_hot(positive_idx, global_batch)

    inv_t = 1.0 / temperature
    logits_aa = tf.matmul(hidden1, hidden1_all, transpose_b=True) * inv_t
    logits_bb = tf.matmul(hidden2, hidden2_all, transpose_b=True) * inv_t
    logits_aa -= self_mask * LARGE_NUM
    logits_bb -= self_mask * LARGE_NUM
    logits_ab = tf.matmul(hidden1, hidden2_all, transpose_b=True) * inv_t
    logits_ba = tf.matmul(hidden2, hidden1_all, transpose_b=True) * inv_t
    return (logits_ab, tf.concat([logits_ab, logits_aa], axis=1),
            tf.concat([logits_ba, logits_bb], axis=1), self_mask)


def add_contrastive_loss(hidden: tf.Tensor, hidden_norm: bool = True,
                         temperature: float = 1.0,
                         strategy: tf.distribute.Strategy | None = None, *,
                         example_ids: tf.Tensor | None = None
                         ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """NT-Xent loss of SimCLR (normalized, temperature-scaled cross entropy).

    Every example of view 1 classifies its view-2 partner among all 2N_g - 1
    other examples of the global batch (N_g = N * replicas), and vice versa.
    Like the original, the returned loss is the sum of the two directions'
    means over the local batch; under a strategy, averaging it over replicas
    gives the loss of the global batch.

    Args:
      hidden: [2N, D] projections; rows 0..N-1 are view 1 and rows N..2N-1
        the same examples' view 2. Any float dtype; computed in float32.
      hidden_norm: l2-normalise rows first (cosine similarity).
      temperature: softmax temperature tau (> 0).
      strategy: a `tf.distribute.Strategy` to gather negatives from every
        replica (call from inside `strategy.run`), or None.
      example_ids: optional [N] int ids of this replica's examples (the
        dataset's example index). A batch larger than the training split
        holds several copies of an image; with ids, every view of another
        copy (either augmentation, any replica) is an extra positive of the
        anchor instead of a negative: the target is uniform over the
        anchor's positives, i.e. SupCon's L_sup_out with the id as label.
        With all ids distinct the loss equals the one without ids. None:
        plain NT-Xent, every other example a negative.

    Returns:
      loss: scalar float32.
      logits_con: [N, N_g] logits of view 1 against view 2 of the global batch.
      labels_con: [N, 2 N_g] targets; without copies, the one-hot of local
        row i's positive, column replica_id * N + i.
    """
    logits_ab, logits_a, logits_b, self_mask = view_logits(
        hidden, hidden_norm, temperature, strategy)
    if example_ids is None:
        labels = tf.concat([self_mask, tf.zeros_like(self_mask)], axis=1)
    else:
        # int32, as for SupCon's labels: MultiWorkerMirroredStrategy's
        # all_gather fails on int64 ("destinations can not be empty").
        ids = tf.cast(example_ids, tf.int32)
        ids_all = cross_replica_concat(ids, strategy)
        labels = targets_from_matches(
            tf.equal(ids[:, None], ids_all[None, :]), self_mask)
    loss_a = tf.nn.softmax_cross_entropy_with_logits(labels, logits_a)
    loss_b = tf.nn.softmax_cross_entropy_with_logits(labels, logits_b)
    loss = tf.reduce_mean(loss_a) + tf.reduce_mean(loss_b)
    return loss, logits_ab, labels


def targets_from_matches(matches, self_mask):
    """Targets uniform over an anchor's own other view and every match.

    Args:
      matches: [N, N_g] bool, True where global example j shares the local
        anchor's label (or id); the anchor's own row may be either.
      self_mask: [N, N_g] one-hot of each local example's global index.

    Returns:
      [N, 2 N_g] float32 rows summing to 1, columns (other view | same view);
      the anchor's own view never is a target.
    """
    same = tf.cast(matches, tf.float32)
    other_view = tf.maximum(same, self_mask)
    same_view = same * (1.0 - self_mask)
    positives = tf.concat([other_view, same_view], axis=1)
    return positives / tf.reduce_sum(positives, axis=1, keepdims=True)


def contrastive_metrics(logits_con, labels_con):
    """Accuracy and entropy of the contrastive prediction.

    Args:
      logits_con: [N, N_g] view-1-vs-view-2 logits from `add_contrastive_loss`
        or `add_supervised_contrastive_loss`.
      labels_con: [N, 2 N_g] its targets (one-hot, or SupCon's distribution
        over positives).

    Returns:
      (accuracy, entropy): per-example float32 vectors [N]; accuracy is 1
      where the most similar view-2 example is a positive (for NT-Xent: the
      anchor's own other view).
    """
    predicted = tf.argmax(logits_con, axis=1, output_type=tf.int32)
    correct = tf.gather(labels_con, predicted, axis=1, batch_dims=1) > 0
    probs = tf.nn.softmax(logits_con, axis=-1)
    entropy = -tf.reduce_sum(
        probs * tf.math.log(probs + 1e-8), axis=-1)
    return tf.cast(correct, tf.float32), entropy

