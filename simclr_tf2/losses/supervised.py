"""Cross entropy over the labelled examples: the supervised heads' loss (a
mean over the labelled examples) and distillation's label term (a sum over
them, per image of the batch)."""

import tensorflow as tf


def _labelled_per_replica(weights):
    """Labelled examples per replica, counted over the global batch.

    Each replica's loss is later divided by the number of replicas and the
    replicas' gradients are summed (`optim.scale_for_replicas`). Dividing
    each replica's sum by global count / replicas, rather than by its own
    count, makes that sum the mean over every labelled example of the global
    batch, however unevenly the unlabelled (-1) ones fall on the replicas.

    Args:
      weights: [B] float 0/1, this replica's labelled examples.

    Returns:
      float32 scalar: the global labelled count / number of replicas.
    """
    count = tf.reduce_sum(weights)
    context = tf.distribute.get_replica_context()
    strategy = tf.distribute.get_strategy()
    if context is None or strategy.num_replicas_in_sync == 1:
        return count
    total = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return total / strategy.num_replicas_in_sync


def masked_cross_entropy(labels, logits):
    """Mean softmax cross entropy over examples with a label (label >= 0).

    Under a multi-replica strategy the mean is over the labelled examples of
    the global batch (see `_labelled_per_replica`), as on one device.

    Args:
      labels: [B] int, -1 for unlabeled examples.
      logits: [B, C].

    Returns:
      (mean loss, per-example weights [B] of 0/1).
    """
    per_example, weights = _per_example_cross_entropy(labels, logits)
    loss = tf.math.divide_no_nan(tf.reduce_sum(per_example * weights),
                                 _labelled_per_replica(weights))
    return loss, weights


def labelled_cross_entropy_per_image(labels, logits):
    """Cross entropy summed over the labelled examples, divided by the batch size.

    SimCLRv2's distillation objective sums the true-label term over the
    labelled images and the soft-label term over all images, so one labelled
    image weighs as much in the first as any image in the second. With a few
    labelled images per batch (600 of 60,000 put ~5 in 512), a mean over the
    labelled ones would weigh each of them ~100 times more. Each replica
    divides by its own batch size; averaging the replicas' gradients then
    divides the global sum by the global batch size.

    Args:
      labels: [B] int, -1 for unlabeled examples.
      logits: [B, C].

    Returns:
      (loss, per-example weights [B] of 0/1).
    """
    per_example, weights = _per_example_cross_entropy(labels, logits)
    return tf.reduce_mean(per_example * weights), weights


def _per_example_cross_entropy(labels, logits):
    """(float32 cross entropy [B], 0/1 weights [B]) of labels [B] (-1:
    unlabelled, its entropy computed against class 0 and weighted 0)."""
    labels = tf.cast(labels, tf.int32)
    weights = tf.cast(labels >= 0, tf.float32)
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.maximum(labels, 0), tf.cast(logits, tf.float32))
    return per_example, weights
