"""Fine-tuning (and linear evaluation): cross entropy of the classifier.

Training images are one view each, cropped and flipped
(`augment.preprocess_for_finetune`). --fine_tune_after_block freezes the
encoder up to a block; with 4 (the whole encoder frozen: linear
evaluation) the classifier standardises h. Training may be restricted to a
class-balanced labelled subset (--label_fraction).
"""

from simclr_tf2.tasks import base


class FinetuneTask(base.Task):
    """Supervised training of the classifier (and the unfrozen encoder).

    Args:
      weight_decay: see `base.Task`.
    """

    name = "finetune"
    uses_label_subset = True

    @classmethod
    def from_config(cls, config, teacher=None):
        del teacher
        return cls(weight_decay=base.weight_decay_of(config))

    @classmethod
    def standardises_features(cls, model_cfg):
        return model_cfg.fine_tune_after_block >= 4

    @classmethod
    def frozen_after_block(cls, model_cfg):
        return model_cfg.fine_tune_after_block

    def compute_loss(self, model, batch, outputs):
        """Masked cross entropy of logits [B, C] (label -1: ignored)."""
        return base.supervised_loss(batch["label"], outputs[base.LOGITS])

    def output_keys(self, has_supervised_head):
        return [base.LOGITS]

    def metric_names(self, has_supervised_head):
        return ["supervised_loss", "supervised_acc"]
