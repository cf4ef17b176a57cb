"""Pretraining: a contrastive loss on two views, plus the online linear head.

Each example is augmented twice (`augment.two_views`, stacked on channels);
the model sees the 2B views, view 1 rows first, and the contrastive loss
(`CONTRASTIVE_LOSSES`, chosen by --contrastive_loss) compares their
projections z. With --lineareval_while_pretraining a linear classifier on
detached, standardised h is trained at the same time on both views.
With --memory_size > 0 (SimCLRv2's memory, `memory.TrainingMemory`) the
contrastive loss compares z with an EMA network's keys and a buffer of
past keys instead (docs/memory.md).
"""

import tensorflow as tf

from simclr_tf2 import losses
from simclr_tf2.data import augment
from simclr_tf2.data import pipeline
from simclr_tf2.errors import ConfigError
from simclr_tf2.memory.training import TrainingMemory
from simclr_tf2.tasks import base


def _nt_xent(hidden, labels, *, hidden_norm, temperature, strategy,
             example_ids=None):
    # An example's positive is its other view, plus both views of any other
    # copy of the same image in the batch (example_ids; see losses).
    del labels
    return losses.add_contrastive_loss(hidden, hidden_norm=hidden_norm,
                                       temperature=temperature,
                                       strategy=strategy,
                                       example_ids=example_ids)


def _supcon(hidden, labels, *, hidden_norm, temperature, strategy,
            example_ids=None):
    # Every other view with the anchor's label is a positive (-1: none);
    # copies of an image share its label, so ids add nothing.
    del example_ids
    return losses.add_supervised_contrastive_loss(
        hidden, labels, hidden_norm=hidden_norm, temperature=temperature,
        strategy=strategy)


# name -> fn(hidden [2N, P], labels [N], *, hidden_norm, temperature,
# strategy, example_ids [N] or None) -> (loss, logits_con [N, N_g],
# labels_con [N, 2N_g]); `hidden` stacks view 1 of the N examples, then
# view 2. A new contrastive loss is
# one entry here (selected by --contrastive_loss).
CONTRASTIVE_LOSSES = {"nt_xent": _nt_xent, "supcon": _supcon}


class PretrainTask(base.Task):
    """SimCLR pretraining.

    Args:
      contrastive_loss: key of CONTRASTIVE_LOSSES.
      temperature: contrastive softmax temperature.
      hidden_norm: l2-normalise z before the contrastive loss.
      weight_decay: see `base.Task`.
      memory_size: keys in SimCLRv2's memory buffer; 0 (default) is the
        plain contrastive loss, without any memory state.
      memory_momentum: EMA decay of the memory network.
    """

    name = "pretrain"
    requires_classes = False
    stop_gradient_to_head = True
    supports_gradient_caching = True

    def __init__(self, *, contrastive_loss: str = "nt_xent",
                 temperature: float = 0.1, hidden_norm: bool = True,
                 weight_decay=None, memory_size: int = 0,
                 memory_momentum: float = 0.999):
        super().__init__(weight_decay=weight_decay)
        if contrastive_loss not in CONTRASTIVE_LOSSES:
            raise ValueError(
                f"contrastive_loss must be one of {sorted(CONTRASTIVE_LOSSES)}, "
                f"got {contrastive_loss!r}.")
        self.contrastive_loss = contrastive_loss
        self.temperature = temperature
        self.hidden_norm = hidden_norm
        self.memory = (TrainingMemory(
            memory_size, memory_momentum,
            supervised=contrastive_loss == "supcon") if memory_size else None)

    @classmethod
    def from_config(cls, config, teacher=None):
        del teacher
        return cls(contrastive_loss=config.loss.contrastive_loss,
                   temperature=config.loss.temperature,
                   hidden_norm=config.loss.hidden_norm,
                   weight_decay=base.weight_decay_of(config),
                   memory_size=config.loss.memory_size,
                   memory_momentum=config.loss.memory_momentum)

    @classmethod
    def check_data(cls, config, num_classes, dataset_name):
        if num_classes == 0 and config.loss.contrastive_loss == "supcon":
            raise ConfigError(
                f"--contrastive_loss=supcon needs labels, but dataset "
                f"{dataset_name} has none; use a labelled dataset or "
                "--contrastive_loss=nt_xent.")

    # Linear eval while pretraining: on standardised h, labels never reach
    # f or g (stop_gradient_to_head).
    @classmethod
    def wants_supervised_head(cls, model_cfg):
        return model_cfg.lineareval_while_pretraining

    @classmethod
    def standardises_features(cls, model_cfg):
        return True

    @classmethod
    def train_transform(cls, image_size, color_jitter_strength, use_blur,
                        crop_min_area, random_flip=True):
        return pipeline.two_view_transform(image_size, color_jitter_strength,
                                           use_blur, crop_min_area, random_flip)

    @classmethod
    def views(cls, images):
        return augment.split_views(images)

    def model_inputs(self, batch):
        """[B, H, W, 6] two views -> [2B, H, W, 3], view 1 rows first."""
        return tf.concat(self.views(batch["image"]), axis=0)

    def compute_loss(self, model, batch, outputs):
        """Contrastive loss of z [2B, P]; plus, with a head, the cross
        entropy of logits [2B, C] against the labels of both views."""
        labels = batch["label"]
        if self.memory is not None:
            loss, logits_con, labels_con = self.memory.loss(
                self.model_inputs(batch), outputs[base.Z], labels,
                hidden_norm=self.hidden_norm, temperature=self.temperature,
                strategy=tf.distribute.get_strategy())
        else:
            loss, logits_con, labels_con = CONTRASTIVE_LOSSES[
                self.contrastive_loss](
                    outputs[base.Z], labels, hidden_norm=self.hidden_norm,
                    temperature=self.temperature,
                    strategy=tf.distribute.get_strategy(),
                    example_ids=batch.get("id"))
        accuracy, entropy = losses.contrastive_metrics(logits_con, labels_con)
        metrics = {"contrast_loss": loss, "contrast_acc": accuracy,
                   "contrast_entropy": entropy}
        if base.LOGITS in outputs:
            sup_loss, sup_metrics = base.supervised_loss(
                tf.concat([labels, labels], 0), outputs[base.LOGITS])
            loss += sup_loss
            metrics.update(sup_metrics)
        return loss, metrics

    # ------------------------------------------- SimCLRv2's memory (if on)
    def build_state(self, model, image_shape):
        if self.memory is not None:
            self.memory.build(model, image_shape)

    def reset_state(self, model):
        if self.memory is not None:
            self.memory.reset(model)

    def checkpoint_children(self):
        return {"memory": self.memory.trackable()} if self.memory else {}

    def after_step(self, model):
        if self.memory is not None:
            self.memory.after_step(model, tf.distribute.get_strategy())

    def metric_names(self, has_supervised_head):
        return (["contrast_loss", "contrast_acc", "contrast_entropy"]
                + (["supervised_loss", "supervised_acc"]
                   if has_supervised_head else []))
