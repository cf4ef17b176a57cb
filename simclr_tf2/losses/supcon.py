"""SupCon: the supervised contrastive loss L_sup_out, NT-Xent's layout.

The supervised contrastive loss (SupCon) uses NT-Xent's layout
(`losses.contrastive`) and adds every other view with the anchor's label to
its positives.
"""

import tensorflow as tf

from simclr_tf2.losses.contrastive import cross_replica_concat
from simclr_tf2.losses.contrastive import targets_from_matches
from simclr_tf2.losses.contrastive import view_logits


def supervised_contrastive_targets(labels, labels_all, self_mask):
    """SupCon target distributions of local anchors over the global views.

    Positives of an anchor: its own other view, and every other view (of
    either augmentation) whose label equals the anchor's. Unlabeled examples
    (label < 0) match no label, not even each other's: their only positive is
    their own other view (as in NT-Xent), and they serve as negatives for
    every other anchor.

    Args:
      labels: [N] int labels of the local examples (-1: unlabeled).
      labels_all: [N_g] int labels of the global batch, replica order.
      self_mask: [N, N_g] one-hot of each local example's global index.

    Returns:
      [N, 2 N_g] float32 rows summing to 1: uniform over the anchor's
      positives, columns laid out like `view_logits` (other view | same view).
    """
    labels = tf.cast(labels, tf.int32)[:, None]
    labels_all = tf.cast(labels_all, tf.int32)[None, :]
    return targets_from_matches(
        tf.logical_and(tf.equal(labels, labels_all), labels >= 0), self_mask)


def add_supervised_contrastive_loss(
        hidden: tf.Tensor, labels: tf.Tensor, hidden_norm: bool = True,
        temperature: float = 1.0, strategy: tf.distribute.Strategy | None = None
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Supervised contrastive loss L_sup_out (Khosla et al., NeurIPS 2020).

    For each of the 2N_g anchors i of the global batch, with positives P(i)
    (see `supervised_contrastive_targets`) and all 2N_g - 1 other views A(i):

        L_i = -1/|P(i)| * sum_{p in P(i)} log softmax_{a in A(i)}(s_ia / tau)_p

    i.e. the mean over positives sits outside the log; this is the cross
    entropy between the uniform distribution over P(i) and the softmax.
    Reduction as in `add_contrastive_loss`: mean over local view-1 anchors
    plus mean over local view-2 anchors, so with all labels distinct (or all
    unlabeled) the loss equals NT-Xent exactly, and under a strategy the
    replicas' mean is the loss of the global batch. Positives and negatives
    come from every replica (labels are all-gathered like the projections).

    Args:
      hidden: [2N, D] projections; rows 0..N-1 view 1, rows N..2N-1 the same
        examples' view 2. Any float dtype; computed in float32.
      labels: [N] int class labels of the N examples (shared by both views);
        -1 marks an unlabeled example.
      hidden_norm: l2-normalise rows first (cosine similarity).
      temperature: softmax temperature tau (> 0).
      strategy: a `tf.distribute.Strategy` (call inside `strategy.run`) or None.

    Returns:
      loss: scalar float32.
      logits_con: [N, N_g] logits of view 1 against view 2 of the global batch.
      labels_con: [N, 2 N_g] the view-1 anchors' target distributions
        (one-hot of the partner when no other positive exists), for
        `contrastive_metrics`.
    """
    logits_ab, logits_a, logits_b, self_mask = view_logits(
        hidden, hidden_norm, temperature, strategy)
    labels_all = cross_replica_concat(tf.cast(labels, tf.int32), strategy)
    targets = supervised_contrastive_targets(labels, labels_all, self_mask)
    loss_a = tf.nn.softmax_cross_entropy_with_logits(targets, logits_a)
    loss_b = tf.nn.softmax_cross_entropy_with_logits(targets, logits_b)
    loss = tf.reduce_mean(loss_a) + tf.reduce_mean(loss_b)
    return loss, logits_ab, targets

