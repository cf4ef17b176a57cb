"""The Task interface: what one training mode decides, in one object.

A task answers, for its mode, every question whose answer depends on the
mode; `SimCLRModel.train_step` owns the step mechanics and asks it:

- wiring of the model (class methods, answered from a `ModelConfig` before
  any task object exists): is there a supervised head, is its input's
  gradient stopped, does it standardise h, which encoder blocks are frozen;
- data: the per-example training augmentation and how a batch becomes
  model inputs (`model_inputs`);
- the step: the loss of a batch (`compute_loss`, given the model so that a
  loss with state can read it), the regulariser, a hook run after every
  optimizer step (`after_step`), the metric and result names;
- checks of a run configuration, and what an export keeps by default.

A task is built from plain keyword arguments (a library user compiles
`model.compile(optimizer, task=tasks.PretrainTask(temperature=0.2))`) or
from a run's configuration (`from_config`).
"""

import tensorflow as tf

from simclr_tf2 import losses
from simclr_tf2 import optim
from simclr_tf2.data import pipeline
from simclr_tf2.optim import WeightDecay

# Model outputs a task reads (keys of SimCLRModel.call's dict).
Z = "proj_head_output"
LOGITS = "logits_sup"

# Every metric a train or eval step can report: the model's trackers.


def weight_decay_of(config):
    """The `optim.WeightDecay` a `config.RunConfig`'s optimizer implies."""
    return optim.weight_decay_policy(config.optim.optimizer,
                                     config.optim.weight_decay)


def supervised_loss(labels, logits):
    """Masked cross entropy of the supervised head, and its metrics.

    Args:
      labels: [B] int, -1 for unlabeled examples.
      logits: [B, C].

    Returns:
      (loss, {"supervised_loss": loss, "supervised_acc": (correct [B],
      weights [B])}); a pair is (values, sample_weight) for a Mean tracker.
    """
    loss, weights = losses.masked_cross_entropy(labels, logits)
    return loss, {"supervised_loss": loss,
                  "supervised_acc": labelled_accuracy(labels, logits, weights)}


def labelled_accuracy(labels, logits, weights):
    """Top-1 hits of logits [B, C] against labels [B], as a pair
    (correct [B], sample_weight [B]) for a Mean tracker that skips the
    examples of weight 0 (the unlabelled ones)."""
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                               tf.cast(labels, tf.int32)), tf.float32)
    return correct, weights


class Task:
    """One training mode. Subclasses set the class attributes and implement
    `compute_loss` and `metric_names`.

    Class attributes:
      name: the registry key (the --train_mode value).
      requires_classes: the model needs a supervised head (num_classes > 0).
      stop_gradient_to_head: the supervised head's input is detached, so
        labels never reach the encoder or projection head.
      needs_teacher: the run loads --teacher (`teacher.load_teacher`) and
        passes it to `from_config`.
      uses_label_subset: training may be restricted to a labelled subset
        (--label_fraction, --label_subset_file).
      hides_labels_outside_subset: training reads every example but only
        the labels of a labelled subset (--label_fraction,
        --label_subset_file); the others arrive as -1.
      supports_gradient_caching: `compute_loss` couples the whole batch
        (contrastive), so --micro_batch_size applies gradient caching.
      export_projection_head, export_supervised_head: what an export after
        evaluation keeps.

    Args:
      weight_decay: an `optim.WeightDecay`, the L2 term the loss carries
        (None: no decay); evaluation reports its total.
    """

    name = None
    requires_classes = True
    stop_gradient_to_head = False
    needs_teacher = False
    uses_label_subset = False
    hides_labels_outside_subset = False
    supports_gradient_caching = False
    export_projection_head = True
    export_supervised_head = True

    def __init__(self, *, weight_decay=None):
        self.weight_decay = weight_decay or WeightDecay(0.0)

    # ------------------------------------------------- from a run's config
    @classmethod
    def from_config(cls, config, teacher=None):
        """The task of a `config.RunConfig` (teacher: distillation only)."""
        raise NotImplementedError

    @classmethod
    def check_data(cls, config, num_classes, dataset_name):
        """Raises `errors.ConfigError` if the data cannot train this mode."""

    # ------------------------------------------------------- model wiring
    @classmethod
    def wants_supervised_head(cls, model_cfg):
        """Whether the model gets a classifier (when there are classes)."""
        return True

    @classmethod
    def standardises_features(cls, model_cfg):
        """Whether the classifier standardises h (SupervisedHead
        normalize_input): a linear layer on standardised h converges in a
        few epochs of momentum SGD, where raw h, whose scale varies by orders
        of magnitude between dimensions, needs many more. The classifier
        stays linear in h (at inference the normalisation is a fixed affine
        map)."""
        return False

    @classmethod
    def frozen_after_block(cls, model_cfg):
        """The --fine_tune_after_block to apply to the encoder, or None to
        train all of it."""
        return None

    # --------------------------------------------------------------- data
    @classmethod
    def train_transform(cls, image_size, color_jitter_strength, use_blur,
                        crop_min_area, random_flip=True):
        """The per-example training augmentation; by default one view,
        cropped and flipped (`pipeline.single_view_transform`: the
        pretraining colour and blur augmentations are not applied).

        Returns:
          fn(example {"image": uint8 [H, W, C], "label", "id"}, seed int [2])
          -> {"image": float32 [S, S, 3 or 6], "label", "id"}.
        """
        del color_jitter_strength, use_blur
        return pipeline.single_view_transform(image_size, crop_min_area,
                                              random_flip)

    def train_transform_for(self, data_config):
        """This task's per-example training augmentation for a run's
        `config.DataConfig` (see `train_transform`)."""
        return self.train_transform(
            data_config.image_size, data_config.color_jitter_strength,
            data_config.use_blur, data_config.crop_min_area,
            data_config.random_flip)

    @classmethod
    def views(cls, images):
        """Batch images -> list of [B, H, W, 3] views (one when the task
        trains on single images)."""
        return [images]

    def model_inputs(self, batch):
        """Batch {"image": [B, H, W, C], ...} -> the model's input images."""
        return batch["image"]

    # --------------------------------------------------------------- step
    def compute_loss(self, model, batch, outputs):
        """The task loss of one batch (no regulariser).

        Args:
          model: the `SimCLRModel` being trained (state a loss may read), or
            None when the loss needs none.
          batch: this replica's batch dict: "image", "label" [B] (-1:
            unlabeled), "id" [B] in training batches.
          outputs: the model's output dict for `model_inputs(batch)`.

        Returns:
          (float32 scalar loss, {metric name: tensor or (values, weights)}).
        """
        raise NotImplementedError

    def regularization(self, variables):
        """The weight-decay term the loss carries: (loss, metrics)."""
        loss = self.weight_decay.training_loss(variables)
        return loss, {"weight_decay": loss}

    def after_step(self, model):
        """Runs after every optimizer step (inside the traced train step)."""

    def build_state(self, model, image_shape):
        """Creates the task's own variables for a built `model` (e.g. the
        pretraining memory); called once under the strategy's scope.

        Args:
          model: the built `SimCLRModel`.
          image_shape: (H, W, 3) of one model input image.
        """

    def reset_state(self, model):
        """Restarts the task's own state from `model`'s current weights
        (after --checkpoint initialised them in a fresh run)."""

    def checkpoint_children(self):
        """{name: trackable} the run's checkpoint holds next to the model
        (the task's own state); empty when the task has none."""
        return {}

    def output_keys(self, has_supervised_head):
        """The model outputs `compute_loss` reads (gradient caching keeps
        only these)."""
        return [Z] + ([LOGITS] if has_supervised_head else [])

    def metric_names(self, has_supervised_head):
        """The task's own metrics, in report order."""
        raise NotImplementedError

    def result_names(self, has_supervised_head):
        """Metric names a train step reports, in order."""
        return ["loss", "weight_decay"] + self.metric_names(has_supervised_head)
