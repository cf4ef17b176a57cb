"""An original SimCLR TF2 checkpoint as the distillation teacher, in-process
(the run.py end-to-end version is slow)."""

import os

import numpy as np
import tensorflow as tf

from simclr_tf2.training.teacher import load_teacher
from tests import harness
from tests.harness import original_fixture, relative_error


def test_original_checkpoint_teacher_gives_the_originals_logits():
    teacher = load_teacher(original_fixture("r18_ft"), 32)
    assert teacher.num_classes == 10
    reference = np.load(os.path.join(original_fixture("r18_ft"), "outputs.npz"))
    images = tf.constant(reference["images"])
    logits = teacher(images)
    # Inference-mode logits of the original code's own model.
    assert relative_error(logits.numpy(), reference["logits_sup/infer"]) <= 1e-4

    task = harness.make_task("distill", optimizer="momentum",
                             teacher=teacher)
    student = harness.make_model("distill", num_classes=10, image_size=32,
                                 compile=False)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(images)
        outputs = student(images, training=True)
        batch = {"image": images, "label": tf.zeros([len(images)], tf.int64)}
        loss, metrics = task.compute_loss(student, batch, outputs)
        teacher_logits = teacher(images)
    assert np.isfinite(float(loss)) and float(metrics["distill_loss"]) > 0
    # The teacher is a constant of the loss: no gradient flows back through
    # its logits (so none can reach its weights), while the student's flow.
    through_teacher = tape.gradient(teacher_logits, images)
    assert through_teacher is None or not np.any(through_teacher.numpy())
    grads = tape.gradient(loss, student.trainable_variables)
    assert sum(g is not None for g in grads) > 20
