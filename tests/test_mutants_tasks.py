"""Behaviour of simclr_tf2/tasks/ that the mutation run (benchmarks/mutation.py)
found unpinned by tests/test_tasks.py: the wiring facts each task declares,
the library API's defaults, the memory's wiring and the errors a user reads.
"""

import types

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2 import losses
from simclr_tf2 import tasks
from simclr_tf2.tasks import base

FACTS = ("name", "requires_classes", "stop_gradient_to_head", "needs_teacher",
         "uses_label_subset", "hides_labels_outside_subset",
         "supports_gradient_caching", "export_projection_head",
         "export_supervised_head")


@pytest.mark.parametrize("task,facts", [
    # A new task inherits: labelled data, gradients reach the encoder, no
    # teacher, no subset handling, no gradient caching, both heads exported.
    (base.Task, (None, True, False, False, False, False, False, True, True)),
    # Pretraining: labels only train the detached linear head, so unlabelled
    # folders work; its loss couples the batch through the two views only.
    (tasks.PretrainTask, ("pretrain", False, True, False, False, False, True, True, True)),
    # Fine-tuning reads only the subset's examples.
    (tasks.FinetuneTask, ("finetune", True, False, False, True, False, False, True, True)),
    # Distillation reads every image but no label outside the subset.
    (tasks.DistillTask, ("distill", True, False, True, False, True, False, True, True)),
])
def test_each_task_declares_its_wiring(task, facts):
    assert tuple(getattr(task, name) for name in FACTS) == facts


def test_the_train_modes_are_the_registry_keys():
    assert tasks.TRAIN_MODES == ("pretrain", "finetune", "distill")
    assert [tasks.get(mode).name for mode in tasks.TRAIN_MODES] == list(tasks.TRAIN_MODES)


def test_library_defaults_follow_the_original_code():
    pretrain = tasks.PretrainTask()
    assert (pretrain.contrastive_loss, pretrain.temperature, pretrain.hidden_norm,
            pretrain.memory) == ("nt_xent", 0.1, True, None)
    distill = tasks.DistillTask(lambda images: images)
    assert (distill.distill_temperature, distill.distill_label_weight,
            distill.teacher_input) == (1.0, 0.0, "student_view")
    no_decay = tasks.FinetuneTask()
    loss, _ = no_decay.regularization([tf.Variable(tf.ones([3, 3]), name="kernel")])
    assert float(loss) == 0.0


def test_distillation_defaults_are_the_plain_soft_label_loss():
    rng = np.random.default_rng(0)
    student = tf.constant(rng.normal(size=(4, 3)), tf.float32)
    teacher = tf.constant(rng.normal(size=(4, 3)), tf.float32)
    task = tasks.DistillTask(lambda images: teacher)
    loss, metrics = task.compute_loss(
        None, {"image": tf.zeros([4, 2, 2, 3]), "label": tf.constant([0, 1, 2, 0])},
        {tasks.LOGITS: student})
    expected = tf.reduce_mean(losses.distillation_loss(teacher, student, 1.0))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    assert set(metrics) == {"distill_loss"}  # No label term by default...
    assert task.metric_names(True) == ["distill_loss"]  # ...nor its accuracy.
    labelled = tasks.DistillTask(lambda images: teacher, distill_label_weight=0.5)
    assert labelled.metric_names(True) == ["distill_loss", "supervised_acc"]


def test_the_memory_is_built_only_when_asked_and_follows_the_loss():
    assert tasks.PretrainTask(memory_size=0).checkpoint_children() == {}
    plain = tasks.PretrainTask(memory_size=8)
    supcon = tasks.PretrainTask(memory_size=8, contrastive_loss="supcon")
    assert plain.memory is not None and not plain.memory.supervised
    assert supcon.memory.supervised
    assert plain.memory.momentum == 0.999
    # Checkpoints name the memory's state "memory": a resumed run finds it.
    plain.memory.trackable = lambda: "the memory's state"
    assert plain.checkpoint_children() == {"memory": "the memory's state"}


def test_outputs_and_metrics_each_task_reports():
    assert tasks.PretrainTask().output_keys(True) == [tasks.Z, tasks.LOGITS]
    assert tasks.PretrainTask().output_keys(False) == [tasks.Z]
    assert tasks.FinetuneTask().metric_names(True) == ["supervised_loss", "supervised_acc"]


@pytest.mark.parametrize("task", [tasks.FinetuneTask, tasks.DistillTask])
def test_single_view_transforms_flip_by_default(task):
    # Whole images (crop_min_area=1): the output is the image or its mirror.
    image = tf.constant(np.arange(4 * 4 * 3).reshape(4, 4, 3), tf.uint8)
    transform = task.train_transform(4, 1.0, False, 1.0)
    mirrored = 0
    for seed in range(12):
        out = transform({"image": image, "label": tf.constant(0, tf.int64),
                         "id": tf.constant(3, tf.int64)},
                        tf.constant([seed, 1], tf.int64))["image"].numpy()
        plain = tf.image.convert_image_dtype(image, tf.float32).numpy()
        assert np.allclose(out, plain, atol=1e-6) or np.allclose(out, plain[:, ::-1], atol=1e-6)
        mirrored += np.allclose(out, plain[:, ::-1], atol=1e-6)
    assert 0 < mirrored < 12


def test_pretraining_flips_by_default():
    image = tf.constant(np.arange(4 * 4 * 3).reshape(4, 4, 3), tf.uint8)
    transform = tasks.PretrainTask.train_transform(4, 0.0, False, 1.0)
    plain = tf.image.convert_image_dtype(image, tf.float32).numpy()
    mirrored = 0
    for seed in range(12):
        views = transform({"image": image, "label": tf.constant(0, tf.int64),
                         "id": tf.constant(3, tf.int64)},
                          tf.constant([seed, 1], tf.int64))["image"].numpy()
        for view in (views[..., :3], views[..., 3:]):
            mirrored += np.allclose(view, plain[:, ::-1], atol=1e-2)
    assert mirrored > 0


def test_errors_name_the_choices():
    with pytest.raises(ValueError) as raised:
        tasks.get("supervise")
    assert str(raised.value) == (
        "train_mode must be one of pretrain, finetune, distill, got 'supervise'.")
    with pytest.raises(ValueError) as raised:
        tasks.PretrainTask(contrastive_loss="infonce")
    assert str(raised.value) == (
        "contrastive_loss must be one of ['nt_xent', 'supcon'], got 'infonce'.")
    with pytest.raises(ValueError, match="^train_mode=distill needs a teacher.$"):
        tasks.DistillTask()


def test_supervised_tasks_want_a_classifier_and_supcon_says_what_to_do():
    for task in (tasks.FinetuneTask, tasks.DistillTask):
        assert task.wants_supervised_head(None) is True
    config = type("Config", (), {"loss": type("Loss", (), {"contrastive_loss": "supcon"})})
    with pytest.raises(ValueError) as raised:
        tasks.PretrainTask.check_data(config, 0, "folder:/x")
    assert str(raised.value) == (
        "--contrastive_loss=supcon needs labels, but dataset folder:/x has none; "
        "use a labelled dataset or --contrastive_loss=nt_xent.")


def test_every_mode_builds_its_task_from_a_run_config():
    # What run.py does for each --train_mode: the task class's from_config,
    # reached through the registry, carries the run's loss and decay values.
    from tests.harness import tiny_config

    def config(mode, **flags):
        return tiny_config("/tmp/unused", train_mode=mode, optimizer="momentum",
                           weight_decay=3e-4, **flags)

    pretrain = tasks.from_config(config("pretrain", temperature=0.3,
                                        contrastive_loss="supcon"))
    assert type(pretrain) is tasks.PretrainTask
    assert (pretrain.temperature, pretrain.contrastive_loss) == (0.3, "supcon")
    finetune = tasks.from_config(config("finetune"))
    assert type(finetune) is tasks.FinetuneTask
    distill = tasks.from_config(config("distill", distill_temperature=2.0),
                                teacher=lambda images: images)
    assert type(distill) is tasks.DistillTask and distill.distill_temperature == 2.0
    for task in (pretrain, finetune, distill):
        assert task.weight_decay.coefficient == 3e-4
        assert not task.weight_decay.optimizer_decays  # Momentum: the loss decays.


def test_distillation_freezes_what_fine_tuning_freezes():
    # Asked of the class, before any task object exists (the model's wiring).
    model_cfg = types.SimpleNamespace(fine_tune_after_block=2)
    assert tasks.DistillTask.frozen_after_block(model_cfg) == 2
    assert tasks.FinetuneTask.frozen_after_block(model_cfg) == 2
    assert tasks.PretrainTask.frozen_after_block(model_cfg) is None


def test_single_image_tasks_inherit_the_data_check_and_one_view():
    # Asked of the class: the experiment checks the data before building a
    # task; the step splits a batch into views through the class.
    from tests.harness import tiny_config
    for task in (tasks.FinetuneTask, tasks.DistillTask):
        assert task.check_data(tiny_config("/tmp/unused"), 10, "digits") is None
        images = tf.zeros([2, 4, 4, 3])
        assert task.views(images) == [images]
