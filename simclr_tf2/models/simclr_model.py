"""SimCLRModel: encoder + heads with the pretrain / finetune / distill steps."""

import keras
import tensorflow as tf

from simclr_tf2 import gradcache
from simclr_tf2 import losses
from simclr_tf2.errors import ConfigError
from simclr_tf2.optim import weight_decay_loss

TRAIN_MODES = ("pretrain", "finetune", "distill")


def _masked_sparse_ce(labels, logits):
    """Mean softmax cross entropy over examples with a label (label >= 0).

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
                                 tf.reduce_sum(weights))
    return loss, weights


class SimCLRModel(keras.Model):
    """SimCLR as a Keras model: f (encoder), g (projection head), classifier.

    `call` maps one batch of images to a dict of named outputs (what exports
    serve). `train_step` implements the chosen `train_mode`:

    - pretrain: inputs carry two views stacked on channels ([B, H, W, 6]);
      NT-Xent on g(f(x)) plus, when a supervised head exists, a linear
      classifier on stop_gradient(h) (linear eval while pretraining).
    - finetune: [B, H, W, 3] images; cross entropy of the supervised head on
      the projection-head layer `ft_proj_selector`.
    - distill: [B, H, W, 3] images; cross entropy to a teacher's softened
      predictions on the same images (SimCLRv2), optionally plus labels.

    Args:
      encoder: a layer mapping [B, H, W, 3] to a dict with "final_avg_pool".
      projection_head: a `ProjectionHead`.
      supervised_head: a layer mapping [B, D] to logits [B, C], or None.
      train_mode: one of TRAIN_MODES.
      temperature: NT-Xent temperature.
      hidden_norm: l2-normalise z before NT-Xent.
      ft_proj_selector: projection-head layer feeding the supervised head.
      weight_decay: L2 coefficient; LARS applies it itself (see optim).
      optimizer_name: "lars", "momentum" or "adam" (decides where WD goes).
      teacher: callable images [B, H, W, 3] -> logits [B, C] (distill only).
      distill_temperature: softmax temperature of teacher and student.
      distill_label_weight: weight of the true-label loss when distilling.
      micro_batch_size: if > 0, pretraining computes the exact full-batch
        gradient in chunks of this many examples (gradient caching), so
        memory is bounded by the chunk, not the batch.
    """

    def __init__(self, encoder, projection_head, supervised_head=None, *,
                 train_mode="pretrain", temperature=0.1, hidden_norm=True,
                 ft_proj_selector=0, weight_decay=0.0, optimizer_name="lars",
                 teacher=None, distill_temperature=1.0,
                 distill_label_weight=0.0, micro_batch_size=0, **kwargs):
        super().__init__(**kwargs)
        if train_mode not in TRAIN_MODES:
            raise ValueError(
                f"train_mode must be one of {TRAIN_MODES}, got {train_mode!r}.")
        if train_mode != "pretrain" and supervised_head is None:
            raise ConfigError(f"train_mode={train_mode} needs a supervised head "
                              "(a dataset with labels / num_classes > 0).")
        if train_mode == "distill" and teacher is None:
            raise ValueError("train_mode=distill needs a teacher.")
        if ft_proj_selector > projection_head.depth:
            raise ConfigError(
                f"ft_proj_selector={ft_proj_selector} exceeds the projection "
                f"head's {projection_head.depth} layers; use 0..{projection_head.depth}.")
        self.encoder = encoder
        self.projection_head = projection_head
        self.supervised_head = supervised_head
        self.train_mode = train_mode
        self.temperature = temperature
        self.hidden_norm = hidden_norm
        self.ft_proj_selector = ft_proj_selector
        self.weight_decay = weight_decay
        self.optimizer_name = optimizer_name
        self.teacher = teacher
        self.distill_temperature = distill_temperature
        self.distill_label_weight = distill_label_weight
        self.micro_batch_size = micro_batch_size
        self._trackers = {name: keras.metrics.Mean(name=name) for name in (
            "loss", "contrast_loss", "contrast_acc", "contrast_entropy",
            "supervised_loss", "supervised_acc", "distill_loss",
            "weight_decay", "regularization_loss")}
        self._top1 = keras.metrics.SparseTopKCategoricalAccuracy(
            k=1, name="label_top_1_accuracy")
        num_classes = getattr(supervised_head, "units", 5) or 5
        self._top5 = keras.metrics.SparseTopKCategoricalAccuracy(
            k=min(5, num_classes), name="label_top_5_accuracy")

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Skips Keras's symbolic build under a strategy.

        Keras 3.15 builds the model on a batch reduced with
        `strategy.reduce("MEAN", batch)`, which fails for dict batches under
        MultiWorkerMirroredStrategy (and costs a batch). This model, its
        metrics and its optimizer are built before fit, so nothing is lost.
        """
        if not (self.built and self.optimizer is not None
                and self.optimizer.built):
            super()._maybe_symbolic_build(iterator, data_batch)

    @property
    def metrics(self):
        return list(self._trackers.values()) + [self._top1, self._top5]

    def call(self, images, training=None):
        """Forward pass of one view.

        Args:
          images: float [B, H, W, 3] in [0, 1].
          training: BN mode of the trainable parts.

        Returns:
          Dict of float32 tensors: the encoder's outputs ("initial_conv",
          "initial_max_pool", "block_group1".."block_group4",
          "final_avg_pool" [B, D]), "proj_head_input" [B, D],
          "proj_head_output" [B, P], and "logits_sup" [B, C] when a
          supervised head exists.
        """
        outputs = {k: tf.cast(v, tf.float32)
                   for k, v in self.encoder(images, training=training).items()}
        hiddens = self.projection_head(outputs["final_avg_pool"],
                                       training=training)
        outputs["proj_head_input"] = tf.cast(hiddens[0], tf.float32)
        outputs["proj_head_output"] = tf.cast(hiddens[-1], tf.float32)
        if self.supervised_head is not None:
            sup_input = hiddens[self.ft_proj_selector]
            if self.train_mode == "pretrain":
                # Linear eval while pretraining: labels never reach f or g.
                sup_input = tf.stop_gradient(sup_input)
            outputs["logits_sup"] = tf.cast(
                self.supervised_head(sup_input, training=training), tf.float32)
        return outputs

    # ----------------------------------------------------------------- train
    def train_step(self, data):
        if self.train_mode == "pretrain" and self.micro_batch_size > 0:
            return gradcache.train_step(self, data)
        images, labels = data["image"], data["label"]
        with tf.GradientTape() as tape:
            if self.train_mode == "pretrain":
                loss = self._pretrain_loss(images, labels)
            elif self.train_mode == "finetune":
                loss = self._finetune_loss(images, labels)
            else:
                loss = self._distill_loss(images, labels)
            loss += self._weight_decay_term()
            self._trackers["loss"].update_state(loss)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            # Replica gradients are summed, so each replica scales by 1/R.
            scaled_loss = self.optimizer.scale_loss(loss / replicas)
        variables = self.trainable_variables
        grads = tape.gradient(scaled_loss, variables)
        self.optimizer.apply_gradients(
            [(g, v) for g, v in zip(grads, variables) if g is not None])
        return self._results(training=True)

    def _pretrain_loss(self, images, labels):
        views = tf.concat(tf.split(images, 2, axis=-1), axis=0)
        outputs = self(views, training=True)
        con_loss, logits_con, labels_con = losses.add_contrastive_loss(
            outputs["proj_head_output"], hidden_norm=self.hidden_norm,
            temperature=self.temperature,
            strategy=tf.distribute.get_strategy())
        accuracy, entropy = losses.contrastive_metrics(logits_con, labels_con)
        self._trackers["contrast_loss"].update_state(con_loss)
        self._trackers["contrast_acc"].update_state(accuracy)
        self._trackers["contrast_entropy"].update_state(entropy)
        loss = con_loss
        if "logits_sup" in outputs:
            loss += self._supervised_loss(tf.concat([labels, labels], 0),
                                          outputs["logits_sup"])
        return loss

    def _finetune_loss(self, images, labels):
        outputs = self(images, training=True)
        return self._supervised_loss(labels, outputs["logits_sup"])

    def _distill_loss(self, images, labels):
        teacher_logits = self.teacher(images)
        outputs = self(images, training=True)
        per_example = losses.distillation_loss(
            teacher_logits, outputs["logits_sup"], self.distill_temperature)
        loss = tf.reduce_mean(per_example)
        self._trackers["distill_loss"].update_state(loss)
        if self.distill_label_weight:
            loss += self.distill_label_weight * self._supervised_loss(
                labels, outputs["logits_sup"])
        return loss

    def _supervised_loss(self, labels, logits):
        loss, weights = _masked_sparse_ce(labels, logits)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                   tf.cast(labels, tf.int32)), tf.float32)
        self._trackers["supervised_loss"].update_state(loss)
        self._trackers["supervised_acc"].update_state(correct, weights)
        return loss

    def _weight_decay_term(self):
        wd = weight_decay_loss(self.trainable_variables, self.weight_decay,
                               self.optimizer_name)
        self._trackers["weight_decay"].update_state(wd)
        return wd

    # ------------------------------------------------------------------ eval
    def test_step(self, data):
        images, labels = data["image"], data["label"]
        outputs = self(images, training=False)
        weights = tf.cast(labels >= 0, tf.float32)
        safe_labels = tf.maximum(tf.cast(labels, tf.int32), 0)
        if "logits_sup" in outputs:
            self._top1.update_state(safe_labels, outputs["logits_sup"], weights)
            self._top5.update_state(safe_labels, outputs["logits_sup"], weights)
        reg = weight_decay_loss(self.trainable_variables, self.weight_decay,
                                "momentum")
        self._trackers["regularization_loss"].update_state(reg)
        return self._results(training=False)

    def _results(self, training):
        if training:
            names = ["loss", "weight_decay"] + {
                "pretrain": ["contrast_loss", "contrast_acc", "contrast_entropy"]
                + (["supervised_loss", "supervised_acc"]
                   if self.supervised_head is not None else []),
                "finetune": ["supervised_loss", "supervised_acc"],
                "distill": ["distill_loss", "supervised_acc"],
            }[self.train_mode]
            results = {n: self._trackers[n].result() for n in names}
            results["learning_rate"] = tf.cast(
                self.optimizer.learning_rate, tf.float32)
        else:
            results = {
                "label_top_1_accuracy": self._top1.result(),
                "label_top_5_accuracy": self._top5.result(),
                "regularization_loss":
                    self._trackers["regularization_loss"].result()}
        if isinstance(tf.distribute.get_strategy(),
                      tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3.15 reduces logs across workers with axis=0, which
            # fails for scalars; [1]-shaped logs reduce to the same scalar.
            results = {k: tf.reshape(v, [1]) for k, v in results.items()}
        return results
