"""The run's wiring as Experiment + Trainer + Evaluator put it together:
steps per execution, the learning rate at step k, no linear-eval head, and
the distillation teacher."""

import os

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2.errors import ConfigError
from simclr_tf2.training.evaluator import Evaluator
from simclr_tf2.training.teacher import Teacher
from simclr_tf2.training.trainer import Trainer
from tests import harness
from tests.harness import tiny_experiment


def _logged_steps(lines):
    return [int(l.split()[1].split("/")[0]) for l in lines if l.startswith("step ")]


def _checkpoint_steps(model_dir):
    return sorted(int(f[5:-6]) for f in os.listdir(model_dir)
                  if f.startswith("ckpt-") and f.endswith(".index"))


def test_steps_per_execution_step_arithmetic_and_warmup_learning_rate(tmp_path):
    lines = []
    # digits: 1437 training examples; batch 32 -> warmup round(1437/32) = 45.
    experiment = tiny_experiment(tmp_path, lines, train_steps=4,
                                 checkpoint_steps=2, steps_per_execution=2,
                                 warmup_epochs=1.0, learning_rate=0.2,
                                 learning_rate_scaling="linear")
    assert experiment.warmup_steps == 45
    Trainer(experiment).train()
    assert experiment.global_step == 4
    assert _checkpoint_steps(tmp_path) == [2, 4]
    # Callbacks see every execution (2 steps): logs at 2 and 4, not 1..4.
    assert _logged_steps(lines) == [2, 4], lines
    # The logged rate after step k is the schedule at k: k / warmup * peak
    # (linear scaling: peak = lr * batch / 256), and 0 from total_steps on.
    peak = 0.2 * 32 / 256
    logged = [float(l.split("learning_rate ")[1].split()[0]) for l in lines
              if l.startswith("step ")]
    np.testing.assert_allclose(logged, [peak * 2 / 45, 0.0], rtol=1e-3)
    schedule = experiment.optimizer._learning_rate  # the run's schedule
    np.testing.assert_allclose(float(schedule(3)), peak * 3 / 45, rtol=1e-6)


def test_steps_per_execution_that_would_overshoot_is_refused(tmp_path):
    # Keras ends fit epochs only between executions: 5 steps in blocks of 2
    # would train and checkpoint step 6. The plan refuses it in one line.
    with pytest.raises(ConfigError, match="must divide the run's 5 steps"):
        tiny_experiment(tmp_path, [], train_steps=5, checkpoint_steps=2,
                        steps_per_execution=2)
    with pytest.raises(ConfigError, match="checkpoint interval of 3 steps"):
        tiny_experiment(tmp_path, [], train_steps=6, checkpoint_steps=3,
                        steps_per_execution=2)


def test_pretraining_without_linear_eval_head_end_to_end(tmp_path):
    lines = []
    experiment = tiny_experiment(tmp_path, lines, train_steps=1,
                                 checkpoint_steps=1,
                                 lineareval_while_pretraining=False)
    model = experiment.model
    assert model.supervised_head is None
    assert not any("head_supervised" in v.path for v in model.weights)
    Trainer(experiment).train()
    step_line = [l for l in lines if l.startswith("step 1/1")][0]
    assert "contrast_loss" in step_line and "supervised" not in step_line
    reader = tf.train.load_checkpoint(str(tmp_path))
    assert not any("head_supervised" in k or "supervised_head" in k
                   for k in reader.get_variable_to_shape_map())
    assert "logits_sup" not in model(harness.random_images(2))
    result = Evaluator(experiment).evaluate()
    # No classifier: accuracies are reported as 0, the regulariser is real.
    assert result["eval/label_top_1_accuracy"] == 0.0
    assert result["eval/regularization_loss"] > 0.0
    assert result["global_step"] == 1.0


class _LinearTeacherModule(tf.Module):
    """A hub-style SavedModel: images -> {"logits_sup"}, one trainable kernel."""

    def __init__(self, classes):
        super().__init__()
        rng = np.random.default_rng(0)
        self.kernel = tf.Variable(rng.normal(size=(3, classes)), dtype=tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3]),
                                  tf.TensorSpec([], tf.bool)])
    def __call__(self, images, trainable):
        pooled = tf.reduce_mean(images, axis=[1, 2])
        return {"logits_sup": 5.0 * pooled @ self.kernel}


def test_distillation_teacher_is_frozen_and_gets_no_gradient(tmp_path):
    path = str(tmp_path / "teacher")
    tf.saved_model.save(_LinearTeacherModule(4), path)
    teacher = Teacher(path, harness.IMAGE)
    assert teacher.num_classes == 4
    teacher_vars = [teacher.module.kernel]
    before = [v.numpy().copy() for v in teacher_vars]

    task = harness.make_task("distill", optimizer="momentum",
                             teacher=teacher)
    model = harness.make_model("distill", num_classes=4, compile=False)
    harness.compile_model(model, "distill", "momentum", learning_rate=1.0,
                          task=task)
    data = {"image": harness.random_images(8, seed=6),
            "label": tf.zeros([8], tf.int64)}
    # The teacher is not part of the student: its variables are not trained.
    student = {id(v) for v in model.trainable_variables}
    assert not any(id(v) in student for v in teacher_vars)
    # And no gradient flows into it through the distillation loss.
    with tf.GradientTape() as tape:
        outputs = model(data["image"], training=True)
        loss, _ = task.compute_loss(model, data, outputs)
    grads = tape.gradient(loss, teacher_vars + model.trainable_variables)
    assert all(g is None for g in grads[:len(teacher_vars)])
    assert any(g is not None for g in grads[len(teacher_vars):])
    model.train_step(data)  # A real step moves the student only.
    for b, v in zip(before, teacher_vars):
        np.testing.assert_array_equal(b, v.numpy())
    assert float(loss) > 0
