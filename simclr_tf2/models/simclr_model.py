"""SimCLRModel: encoder + heads as one Keras model, trained by a Task."""

import keras
import tensorflow as tf

from simclr_tf2.optim import gradcache
from simclr_tf2 import optim
from simclr_tf2.errors import ConfigError
from simclr_tf2.optim import WeightDecay

# label_top_5_accuracy: top-k over min(TOP_K, classes) logits.
TOP_K = 5


# What `train_step` and `test_step` report: a task's `compute_loss` and
# `regularization` name their metrics from this list.
METRIC_NAMES = ("loss", "contrast_loss", "contrast_acc", "contrast_entropy",
                "supervised_loss", "supervised_acc", "distill_loss",
                "weight_decay", "regularization_loss")
# Configs that name the train_mode instead of stop_gradient_to_head (the
# earlier format of .keras files): only pretraining stopped the gradient.
_STOP_GRADIENT_TRAIN_MODES = ("pretrain",)


@keras.saving.register_keras_serializable(package="simclr_tf2")
class SimCLRModel(keras.Model):
    """SimCLR as a Keras model: f (encoder), g (projection head), classifier.

    `call` maps one batch of images to a dict of named outputs (what exports
    serve). What training minimises is not the model's business: `compile`
    takes a `tasks.Task` (pretraining, fine-tuning, distillation, see
    simclr_tf2/tasks/); `train_step` owns the step mechanics and asks the
    task for the model inputs, the loss and what runs after each step. The
    gradient comes from one forward pass or, with `micro_batch_size`, from
    gradient caching.

    Args:
      encoder: a layer mapping [B, H, W, 3] to a dict with "final_avg_pool".
      projection_head: a `ProjectionHead`.
      supervised_head: a layer mapping [B, D] to logits [B, C] (with a
        `units` property), or None.
      stop_gradient_to_head: detach the supervised head's input, so that
        labels never reach f or g (linear eval while pretraining).
      ft_proj_selector: projection-head layer feeding the supervised head.
    """

    def __init__(self, encoder, projection_head, supervised_head=None, *,
                 stop_gradient_to_head=False, ft_proj_selector=0, **kwargs):
        super().__init__(**kwargs)
        if ft_proj_selector > projection_head.depth:
            raise ConfigError(
                f"ft_proj_selector={ft_proj_selector} exceeds the projection "
                f"head's {projection_head.depth} layers; use 0..{projection_head.depth}.")
        self.encoder = encoder
        self.projection_head = projection_head
        self.supervised_head = supervised_head
        self.stop_gradient_to_head = stop_gradient_to_head
        self.ft_proj_selector = ft_proj_selector
        self.task = None
        self.micro_batch_size = 0
        self._trackers = {name: keras.metrics.Mean(name=name)
                          for name in METRIC_NAMES}
        self._top1 = keras.metrics.SparseTopKCategoricalAccuracy(
            k=1, name="label_top_1_accuracy")
        classes = supervised_head.units if supervised_head is not None else TOP_K
        self._top5 = keras.metrics.SparseTopKCategoricalAccuracy(
            k=min(TOP_K, classes), name="label_top_5_accuracy")

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {
            "name": self.name, "trainable": self.trainable,
            "dtype": serialize(self.dtype_policy),
            "encoder": serialize(self.encoder),
            "projection_head": serialize(self.projection_head),
            "supervised_head": (serialize(self.supervised_head)
                                if self.supervised_head is not None else None),
            "stop_gradient_to_head": self.stop_gradient_to_head,
            "ft_proj_selector": self.ft_proj_selector}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "train_mode" in config:
            config["stop_gradient_to_head"] = (
                config.pop("train_mode") in _STOP_GRADIENT_TRAIN_MODES)
        for key in ("encoder", "projection_head", "supervised_head"):
            if config.get(key) is not None:
                # Unbuilt: the parts create their variables on the model's
                # first call, under its name scope ("simclr/resnet/...").
                part = {k: v for k, v in config[key].items()
                        if k != "build_config"}
                config[key] = keras.saving.deserialize_keras_object(part)
        return cls(**config)

    def compile(self, optimizer: keras.optimizers.Optimizer, task=None,
                micro_batch_size: int = 0, **kwargs):
        """Keras compile, with a `tasks.Task` instead of a loss.

        Args:
          optimizer: a Keras optimizer.
          task: what `train_step` minimises; also holds the weight-decay
            policy that `test_step` reports (None: evaluation only, no decay).
          micro_batch_size: if > 0, a contrastive task computes the exact full-batch
            gradient in chunks of this many examples (gradient caching), so
            memory is bounded by the chunk, not the batch.
          **kwargs: other `keras.Model.compile` arguments (jit_compile,
            steps_per_execution).
        """
        self.task = task
        self.micro_batch_size = micro_batch_size
        super().compile(optimizer=optimizer, **kwargs)

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
            if self.stop_gradient_to_head:
                sup_input = tf.stop_gradient(sup_input)
            outputs["logits_sup"] = tf.cast(
                self.supervised_head(sup_input, training=training), tf.float32)
        return outputs

    # ----------------------------------------------------------------- train
    def train_step(self, data):
        """One optimizer step on this replica's batch `data` (a dict)."""
        variables = self.trainable_variables
        loss, metrics, grads = self.loss_and_gradients(data)
        optim.apply_gradients(self.optimizer, grads, variables)
        self.task.after_step(self)
        self._update_trackers(dict(metrics, loss=loss))
        return self._results(training=True)

    def loss_and_gradients(self, data):
        """The task's loss (plus regulariser), metrics and gradients.

        Args:
          data: this replica's batch {"image": [B, H, W, C], "label": [B],
            ...} (C = 6, two stacked views, when pretraining).

        Returns:
          (loss, metrics dict, gradients aligned with trainable_variables,
          scaled for replicas and loss scaling; None where none flows).
        """
        task, variables = self.task, self.trainable_variables
        if task is None:
            raise ValueError("SimCLRModel needs a task to train; pass "
                             "compile(task=tasks.PretrainTask(...)).")
        if self.micro_batch_size > 0 and task.supports_gradient_caching:
            return gradcache.compute_gradients(
                self, task, data, micro_batch_size=self.micro_batch_size)
        with tf.GradientTape() as tape:
            outputs = self(task.model_inputs(data), training=True)
            loss, metrics = task.compute_loss(self, data, outputs)
            regulariser, reg_metrics = task.regularization(variables)
            loss += regulariser
            scaled = optim.scale_for_replicas(self.optimizer, loss)
        return loss, dict(metrics, **reg_metrics), tape.gradient(scaled, variables)

    def _update_trackers(self, metrics):
        for name, value in metrics.items():
            values, weights = value if isinstance(value, tuple) else (value, None)
            self._trackers[name].update_state(values, weights)

    # ------------------------------------------------------------------ eval
    def test_step(self, data):
        images, labels = data["image"], data["label"]
        outputs = self(images, training=False)
        weights = tf.cast(labels >= 0, tf.float32)
        safe_labels = tf.maximum(tf.cast(labels, tf.int32), 0)
        if "logits_sup" in outputs:
            self._top1.update_state(safe_labels, outputs["logits_sup"], weights)
            self._top5.update_state(safe_labels, outputs["logits_sup"], weights)
        decay = self.task.weight_decay if self.task else WeightDecay()
        reg = decay.total_loss(self.trainable_variables)
        self._trackers["regularization_loss"].update_state(reg)
        return self._results(training=False)

    def _results(self, training):
        if training:
            names = self.task.result_names(self.supervised_head is not None)
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
