"""The training objective: model outputs + labels -> (loss, metrics).

Every way of training a SimCLRModel goes through one `Objective`: the plain
train step (`compute_gradients` below) and gradient caching
(`gradcache.compute_gradients`) call the same object, so a new loss is added
here and nowhere else:

- a new contrastive loss is one entry of `CONTRASTIVE_LOSSES` (selected by
  `--contrastive_loss`);
- a new train mode is one branch of `Objective.__call__`.

The metrics an objective returns are values for the model's `keras.metrics.Mean`
trackers, named from `METRIC_NAMES`: either a tensor, or a pair
(values, sample_weight).

This module also holds the two pieces of step mechanics both steps share:
the loss scaling for replicas and mixed precision (`scale_for_replicas`) and
applying gradients while skipping variables without one (`apply_gradients`).
"""

import tensorflow as tf

from simclr_tf2 import losses
from simclr_tf2.optim import WeightDecay

TRAIN_MODES = ("pretrain", "finetune", "distill")

# Model outputs an objective reads (keys of SimCLRModel.call's dict).
Z = "proj_head_output"
LOGITS = "logits_sup"

# Every metric a train or eval step can report (the model's trackers).
METRIC_NAMES = ("loss", "contrast_loss", "contrast_acc", "contrast_entropy",
                "supervised_loss", "supervised_acc", "distill_loss",
                "weight_decay", "regularization_loss")


def _nt_xent(hidden, labels, *, hidden_norm, temperature, strategy):
    del labels  # An example's only positive is its other view.
    return losses.add_contrastive_loss(hidden, hidden_norm=hidden_norm,
                                       temperature=temperature,
                                       strategy=strategy)


def _supcon(hidden, labels, *, hidden_norm, temperature, strategy):
    # Every other view with the anchor's label is a positive (-1: none).
    return losses.add_supervised_contrastive_loss(
        hidden, labels, hidden_norm=hidden_norm, temperature=temperature,
        strategy=strategy)


# name -> fn(hidden [2N, P], labels [N], *, hidden_norm, temperature,
# strategy) -> (loss, logits_con [N, N_g], labels_con [N, 2N_g]); `hidden`
# stacks view 1 of the N examples, then view 2.
CONTRASTIVE_LOSSES = {"nt_xent": _nt_xent, "supcon": _supcon}


def _labelled_per_replica(weights):
    """Labelled examples per replica, counted over the global batch.

    Each replica's loss is later divided by the number of replicas and the
    replicas' gradients are summed (`scale_for_replicas`). Dividing each
    replica's sum by global count / replicas, rather than by its own count,
    makes that sum the mean over every labelled example of the global batch,
    however unevenly the unlabelled (-1) ones fall on the replicas.

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
    labels = tf.cast(labels, tf.int32)
    weights = tf.cast(labels >= 0, tf.float32)
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.maximum(labels, 0), tf.cast(logits, tf.float32))
    loss = tf.math.divide_no_nan(tf.reduce_sum(per_example * weights),
                                 _labelled_per_replica(weights))
    return loss, weights


def supervised(labels, logits):
    """Masked cross entropy and its metrics.

    Args:
      labels: [B] int, -1 for unlabeled examples.
      logits: [B, C].

    Returns:
      (loss, {"supervised_loss", "supervised_acc"}).
    """
    loss, weights = masked_cross_entropy(labels, logits)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                               tf.cast(labels, tf.int32)), tf.float32)
    return loss, {"supervised_loss": loss, "supervised_acc": (correct, weights)}


class Objective:
    """What a train step minimises, for one train mode.

    Args:
      train_mode: one of TRAIN_MODES.
      contrastive_loss: key of CONTRASTIVE_LOSSES (pretraining).
      temperature: contrastive softmax temperature.
      hidden_norm: l2-normalise z before the contrastive loss.
      weight_decay: an `optim.WeightDecay` (the L2 term the loss carries).
      teacher: callable images [B, H, W, 3] -> logits [B, C] (distill).
      distill_temperature: softmax temperature of teacher and student.
      distill_label_weight: weight of the true-label loss when distilling.
    """

    reads = (Z, LOGITS)

    def __init__(self, train_mode="pretrain", *, contrastive_loss="nt_xent",
                 temperature=0.1, hidden_norm=True, weight_decay=None,
                 teacher=None, distill_temperature=1.0,
                 distill_label_weight=0.0):
        if train_mode not in TRAIN_MODES:
            raise ValueError(
                f"train_mode must be one of {TRAIN_MODES}, got {train_mode!r}.")
        if contrastive_loss not in CONTRASTIVE_LOSSES:
            raise ValueError(
                f"contrastive_loss must be one of {sorted(CONTRASTIVE_LOSSES)}, "
                f"got {contrastive_loss!r}.")
        if train_mode == "distill" and teacher is None:
            raise ValueError("train_mode=distill needs a teacher.")
        self.train_mode = train_mode
        self.contrastive_loss = contrastive_loss
        self.temperature = temperature
        self.hidden_norm = hidden_norm
        self.weight_decay = weight_decay or WeightDecay(0.0)
        self.teacher = teacher
        self.distill_temperature = distill_temperature
        self.distill_label_weight = distill_label_weight

    def model_inputs(self, images):
        """Batch images -> model inputs: [B, H, W, 6] two views -> [2B, H, W, 3]
        (view 1 rows first) when pretraining; unchanged otherwise."""
        if self.train_mode != "pretrain":
            return images
        return tf.concat(tf.split(images, 2, axis=-1), axis=0)

    def __call__(self, outputs, labels, images=None):
        """The task loss of one batch (no regulariser).

        Args:
          outputs: the model's dict for `model_inputs(images)`; reads
            "proj_head_output" [2B, P] / "logits_sup" ([2B, C] pretraining,
            [B, C] otherwise).
          labels: [B] int, -1 for unlabeled examples.
          images: [B, H, W, 3] the batch (the teacher's input; distill only).

        Returns:
          (loss scalar float32, metrics dict).
        """
        if self.train_mode == "pretrain":
            return self._pretrain(outputs, labels)
        if self.train_mode == "finetune":
            return supervised(labels, outputs[LOGITS])
        return self._distill(outputs, labels, images)

    def _pretrain(self, outputs, labels):
        loss, logits_con, labels_con = CONTRASTIVE_LOSSES[self.contrastive_loss](
            outputs[Z], labels, hidden_norm=self.hidden_norm,
            temperature=self.temperature,
            strategy=tf.distribute.get_strategy())
        accuracy, entropy = losses.contrastive_metrics(logits_con, labels_con)
        metrics = {"contrast_loss": loss, "contrast_acc": accuracy,
                   "contrast_entropy": entropy}
        if LOGITS in outputs:
            # Linear eval while pretraining: both views' logits, same labels.
            sup_loss, sup_metrics = supervised(tf.concat([labels, labels], 0),
                                               outputs[LOGITS])
            loss += sup_loss
            metrics.update(sup_metrics)
        return loss, metrics

    def _distill(self, outputs, labels, images):
        per_example = losses.distillation_loss(
            self.teacher(images), outputs[LOGITS], self.distill_temperature)
        loss = tf.reduce_mean(per_example)
        metrics = {"distill_loss": loss}
        if self.distill_label_weight:
            sup_loss, sup_metrics = supervised(labels, outputs[LOGITS])
            loss += self.distill_label_weight * sup_loss
            metrics.update(sup_metrics)
        return loss, metrics

    def regularization(self, variables):
        """The weight-decay term the loss carries: (loss, metrics)."""
        loss = self.weight_decay.training_loss(variables)
        return loss, {"weight_decay": loss}

    def result_names(self, has_supervised_head):
        """Metric names a train step reports, in order."""
        names = {"pretrain": ["contrast_loss", "contrast_acc", "contrast_entropy"]
                 + (["supervised_loss", "supervised_acc"]
                    if has_supervised_head else []),
                 "finetune": ["supervised_loss", "supervised_acc"],
                 "distill": ["distill_loss", "supervised_acc"]}[self.train_mode]
        return ["loss", "weight_decay"] + names


def scale_for_replicas(optimizer, loss):
    """The loss to differentiate: 1/replicas (replica gradients are summed)
    and the optimizer's loss scale (mixed_float16)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return optimizer.scale_loss(loss / replicas)


def compute_gradients(forward, objective, data, variables, optimizer):
    """Loss, metrics and gradients of one batch by one forward pass.

    Args:
      forward: callable model inputs -> the model's output dict (training).
      objective: an `Objective`.
      data: {"image": [B, H, W, C], "label": [B]} of this replica.
      variables: the trainable variables.
      optimizer: the model's optimizer (its loss scale).

    Returns:
      (loss: task loss + regulariser, metrics dict, gradients aligned with
      `variables`, None where a variable does not reach the loss).
    """
    images, labels = data["image"], data["label"]
    with tf.GradientTape() as tape:
        outputs = forward(objective.model_inputs(images))
        loss, metrics = objective(outputs, labels, images)
        regulariser, reg_metrics = objective.regularization(variables)
        loss += regulariser
        scaled = scale_for_replicas(optimizer, loss)
    return loss, dict(metrics, **reg_metrics), tape.gradient(scaled, variables)


def apply_gradients(optimizer, grads, variables):
    """Applies gradients, skipping variables that got none (e.g. frozen
    encoder parts reached only through stop_gradient)."""
    optimizer.apply_gradients(
        [(g, v) for g, v in zip(grads, variables) if g is not None])
