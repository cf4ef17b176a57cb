"""Distillation (SimCLRv2 step 3): a student learns a teacher's soft labels.

The student is a freshly built network of this run's architecture with a
classifier; the teacher (`teacher.load_teacher`) maps the same training
images to logits. Optionally the true labels add a cross-entropy term; with
a label subset (--label_fraction, --label_subset_file) only the subset's
labels reach it.

What the teacher sees (--distill_teacher_input): "student_view", SimCLRv2's
recipe, gives teacher and student the same augmented image; "whole_image"
gives the teacher the image as evaluation preprocesses it and the student an
augmented view of it, so the student must predict the teacher's label of
the whole image from a crop (the noised student of Xie et al., 2020).
"""

import tensorflow as tf

from simclr_tf2 import losses
from simclr_tf2.data import pipeline
from simclr_tf2.tasks import base


TEACHER_INPUTS = ("student_view", "whole_image")


class DistillTask(base.Task):
    """Knowledge distillation from a teacher.

    Args:
      teacher: callable images [B, H, W, 3] -> logits [B, C].
      distill_temperature: softmax temperature of teacher and student.
      teacher_input: "student_view" or "whole_image" (see the module).
      distill_label_weight: weight of the true-label loss (0: none), per
        labelled image against one image's soft-label loss: the label
        cross entropy is summed over the labelled images of the batch and
        divided by the batch size, as SimCLRv2 weighs the two sums.
      weight_decay: see `base.Task`.
    """

    name = "distill"
    needs_teacher = True
    # Soft labels come from every image; a label subset bounds which true
    # labels the --distill_label_weight term may read.
    hides_labels_outside_subset = True

    def __init__(self, teacher=None, *, distill_temperature=1.0,
                 distill_label_weight=0.0, teacher_input="student_view",
                 weight_decay=None):
        super().__init__(weight_decay=weight_decay)
        if teacher is None:
            raise ValueError("train_mode=distill needs a teacher.")
        if teacher_input not in TEACHER_INPUTS:
            raise ValueError(
                f"teacher_input={teacher_input!r} is not one of "
                f"{', '.join(TEACHER_INPUTS)}; pick one.")
        self.teacher = teacher
        self.distill_temperature = distill_temperature
        self.distill_label_weight = distill_label_weight
        self.teacher_input = teacher_input

    @classmethod
    def from_config(cls, config, teacher=None):
        return cls(teacher,
                   distill_temperature=config.distillation.distill_temperature,
                   distill_label_weight=config.distillation.distill_label_weight,
                   teacher_input=config.distillation.distill_teacher_input,
                   weight_decay=base.weight_decay_of(config))

    @classmethod
    def frozen_after_block(cls, model_cfg):
        return model_cfg.fine_tune_after_block

    def train_transform_for(self, data_config):
        """The student's augmented view; with teacher_input="whole_image"
        also the teacher's whole image ("teacher_image")."""
        if self.teacher_input == "student_view":
            return super().train_transform_for(data_config)
        return pipeline.student_and_teacher_transform(
            data_config.image_size, data_config.crop_min_area,
            data_config.random_flip)

    def compute_loss(self, model, batch, outputs):
        """Soft-label cross entropy of logits [B, C] against the teacher's
        logits of the same images (mean over B), plus the weighted label
        loss (sum over the labelled images / B)."""
        logits = outputs[base.LOGITS]
        teacher_images = batch["image" if self.teacher_input == "student_view"
                               else "teacher_image"]
        per_example = losses.distillation_loss(
            self.teacher(teacher_images), logits, self.distill_temperature)
        loss = tf.reduce_mean(per_example)
        metrics = {"distill_loss": loss}
        if self.distill_label_weight:
            label_loss, weights = losses.labelled_cross_entropy_per_image(
                batch["label"], logits)
            loss += self.distill_label_weight * label_loss
            metrics["supervised_acc"] = base.labelled_accuracy(
                batch["label"], logits, weights)
        return loss, metrics

    def output_keys(self, has_supervised_head):
        return [base.LOGITS]

    def metric_names(self, has_supervised_head):
        # Training accuracy exists only where the label term reads labels.
        return ["distill_loss"] + (["supervised_acc"] if self.distill_label_weight
                                   else [])
