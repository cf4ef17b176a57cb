"""SimCLRv2's distillation loss: softened teacher to student."""

import tensorflow as tf


def distillation_loss(teacher_logits, student_logits, temperature=1.0):
    """Cross entropy from softened teacher to student (SimCLRv2 step 3).

    Args:
      teacher_logits: [B, C] teacher logits (no gradient is taken through them).
      student_logits: [B, C] student logits.
      temperature: both distributions are softmax(logits / temperature).

    Returns:
      Per-example loss, float32 [B].
    """
    teacher_probs = tf.nn.softmax(
        tf.stop_gradient(tf.cast(teacher_logits, tf.float32)) / temperature)
    return tf.nn.softmax_cross_entropy_with_logits(
        teacher_probs, tf.cast(student_logits, tf.float32) / temperature)

