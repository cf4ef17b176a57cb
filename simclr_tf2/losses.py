"""Losses of SimCLR: NT-Xent with cross-replica negatives, and distillation.

The contrastive loss follows the original SimCLR code: `hidden` stacks the two
augmented views along the batch axis, each example's positive is its other
view, and the 2N-2 other examples of the (global) batch are its negatives.
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
            "add_contrastive_loss(strategy=...) must be called inside "
            "strategy.run (replica context); call it there or pass strategy=None.")
    return replica_context.all_gather(tensor, axis=0)


def _replica_id(strategy):
    """Index of this replica in the sync group (0 without a strategy)."""
    if strategy is None or strategy.num_replicas_in_sync == 1:
        return tf.constant(0, tf.int32)
    replica_id = tf.distribute.get_replica_context().replica_id_in_sync_group
    return tf.cast(replica_id, tf.int32)


def add_contrastive_loss(hidden, hidden_norm=True, temperature=1.0,
                         strategy=None):
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

    Returns:
      loss: scalar float32.
      logits_con: [N, N_g] logits of view 1 against view 2 of the global batch.
      labels_con: [N, 2 N_g] one-hot targets; the positive of local row i is
        column replica_id * N + i.
    """
    hidden = tf.cast(hidden, tf.float32)
    if hidden_norm:
        hidden = tf.math.l2_normalize(hidden, axis=-1)
    hidden1, hidden2 = tf.split(hidden, 2, axis=0)
    local_batch = tf.shape(hidden1)[0]

    hidden1_all = cross_replica_concat(hidden1, strategy)
    hidden2_all = cross_replica_concat(hidden2, strategy)
    global_batch = tf.shape(hidden1_all)[0]

    positive_idx = tf.range(local_batch) + _replica_id(strategy) * local_batch
    labels = tf.one_hot(positive_idx, global_batch * 2)
    self_mask = tf.one_hot(positive_idx, global_batch)

    inv_t = 1.0 / temperature
    logits_aa = tf.matmul(hidden1, hidden1_all, transpose_b=True) * inv_t
    logits_bb = tf.matmul(hidden2, hidden2_all, transpose_b=True) * inv_t
    logits_aa -= self_mask * LARGE_NUM
    logits_bb -= self_mask * LARGE_NUM
    logits_ab = tf.matmul(hidden1, hidden2_all, transpose_b=True) * inv_t
    logits_ba = tf.matmul(hidden2, hidden1_all, transpose_b=True) * inv_t

    loss_a = tf.nn.softmax_cross_entropy_with_logits(
        labels, tf.concat([logits_ab, logits_aa], axis=1))
    loss_b = tf.nn.softmax_cross_entropy_with_logits(
        labels, tf.concat([logits_ba, logits_bb], axis=1))
    loss = tf.reduce_mean(loss_a) + tf.reduce_mean(loss_b)
    return loss, logits_ab, labels


def contrastive_metrics(logits_con, labels_con):
    """Accuracy and entropy of the contrastive prediction.

    Args:
      logits_con: [N, N_g] view-1-vs-view-2 logits from `add_contrastive_loss`.
      labels_con: [N, 2 N_g] its one-hot targets.

    Returns:
      (accuracy, entropy): per-example float32 vectors [N]; accuracy is 1
      where the most similar view-2 example is the positive.
    """
    correct = tf.equal(tf.argmax(labels_con, axis=1),
                       tf.argmax(logits_con, axis=1))
    probs = tf.nn.softmax(logits_con, axis=-1)
    entropy = -tf.reduce_sum(
        probs * tf.math.log(probs + 1e-8), axis=-1)
    return tf.cast(correct, tf.float32), entropy


def distillation_loss(teacher_logits, student_logits, temperature=1.0):
    """Cross entropy from softened teacher to student (SimCLRv2 step 3).

    Args:
      teacher_logits: [B, C] teacher logits (no gradient is taken through them).
      student_logits: [B, C] student logits.
      temperature: both distributions are softmax(logits / temperature).

    Returns:
      Per-example loss, float32 [B].
    """
    teacher_probs = tf.nn.softmax(
        tf.stop_gradient(tf.cast(teacher_logits, tf.float32)) / temperature)
    return tf.nn.softmax_cross_entropy_with_logits(
        teacher_probs, tf.cast(student_logits, tf.float32) / temperature)
