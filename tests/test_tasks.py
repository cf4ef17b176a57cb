"""Tests of simclr_tf2/tasks/: one task per train mode, and the registry."""

import types

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2 import losses
from simclr_tf2 import optim
from simclr_tf2 import tasks
from simclr_tf2.data import augment
from simclr_tf2.models import simclr_model
from simclr_tf2.optim import WeightDecay
from tests.harness import tiny_config


def _outputs(n=4, p=6, c=3, views=2, seed=0):
    rng = np.random.default_rng(seed)
    return {tasks.Z: tf.constant(rng.normal(size=(views * n, p)), tf.float32),
            tasks.LOGITS: tf.constant(rng.normal(size=(views * n, c)),
                                           tf.float32)}


def _numpy_ce(labels, logits):
    logits = logits - logits.max(-1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    keep = labels >= 0
    return -log_p[keep, labels[keep]].mean() if keep.any() else 0.0


def test_pretrain_is_nt_xent_plus_the_linear_heads_cross_entropy():
    outputs, labels = _outputs(), tf.constant([0, 2, -1, 1], tf.int64)
    task = tasks.PretrainTask(temperature=0.5)
    loss, metrics = task.compute_loss(None, {"label": labels}, outputs)
    con, _, _ = losses.add_contrastive_loss(outputs[tasks.Z],
                                            temperature=0.5)
    both = np.concatenate([labels.numpy()] * 2)
    sup = _numpy_ce(both, outputs[tasks.LOGITS].numpy())
    np.testing.assert_allclose(loss, con + sup, rtol=1e-5)
    np.testing.assert_allclose(metrics["contrast_loss"], con, rtol=1e-6)
    np.testing.assert_allclose(metrics["supervised_loss"], sup, rtol=1e-5)
    correct, weights = metrics["supervised_acc"]
    np.testing.assert_array_equal(weights, both >= 0)
    assert correct.shape == (8,)


def test_pretrain_without_a_head_is_contrastive_only():
    outputs = {tasks.Z: _outputs()[tasks.Z]}
    loss, metrics = tasks.PretrainTask().compute_loss(
        None, {"label": tf.zeros([4], tf.int64)}, outputs)
    assert set(metrics) == {"contrast_loss", "contrast_acc", "contrast_entropy"}
    np.testing.assert_allclose(loss, metrics["contrast_loss"])


def test_a_new_contrastive_loss_is_one_table_entry(monkeypatch):
    seen = {}

    def doubled(hidden, labels, **kwargs):
        seen["labels"] = labels
        loss, logits, targets = losses.add_contrastive_loss(hidden, **kwargs)
        return 2.0 * loss, logits, targets

    monkeypatch.setitem(tasks.CONTRASTIVE_LOSSES, "doubled", doubled)
    outputs = {tasks.Z: _outputs()[tasks.Z]}
    labels = tf.constant([0, 1, 2, 0], tf.int64)
    plain, _ = tasks.PretrainTask().compute_loss(None, {"label": labels}, outputs)
    new, _ = tasks.PretrainTask(contrastive_loss="doubled").compute_loss(
        None, {"label": labels}, outputs)
    np.testing.assert_allclose(new, 2.0 * plain, rtol=1e-6)
    assert seen["labels"] is labels  # The labels reach the loss.


def test_finetune_ignores_unlabelled_examples():
    outputs = _outputs(views=1)
    labels = tf.constant([1, -1, 0, -1], tf.int64)
    loss, metrics = tasks.FinetuneTask().compute_loss(
        None, {"label": labels}, outputs)
    expected = _numpy_ce(labels.numpy(), outputs[tasks.LOGITS].numpy())
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert set(metrics) == {"supervised_loss", "supervised_acc"}


def test_cross_entropy_is_the_global_mean_over_replicas(two_replica_strategy):
    # One labelled example on replica 0, four on replica 1: the per-replica
    # losses (each divided by the replica count, then summed, as the
    # gradients are) must give the mean over all five labelled examples,
    # not the mean of the two replicas' means.
    labels = np.array([0, -1, -1, -1, 1, 2, 0, 1])
    logits = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    logits[0] = [-5.0, 5.0, 0.0]  # The lone labelled example is badly wrong.
    expected = _numpy_ce(labels, logits)
    strategy = two_replica_strategy

    def replica_loss(replica_labels, replica_logits):
        loss, _ = losses.masked_cross_entropy(replica_labels, replica_logits)
        return loss / strategy.num_replicas_in_sync

    def shard(array):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(array[4 * ctx.replica_id_in_sync_group:
                                          4 * ctx.replica_id_in_sync_group + 4]))

    per_replica = strategy.run(tf.function(replica_loss),
                               args=(shard(labels), shard(logits)))
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    np.testing.assert_allclose(total, expected, rtol=1e-5)
    mean_of_means = (_numpy_ce(labels[:4], logits[:4])
                     + _numpy_ce(labels[4:], logits[4:])) / 2
    assert abs(mean_of_means - expected) > 0.05  # The case tells them apart.


def test_distill_matches_the_teachers_soft_labels():
    outputs = _outputs(views=1)
    images = tf.zeros([4, 8, 8, 3])
    teacher_logits = _outputs(views=1, seed=1)[tasks.LOGITS]
    labels = tf.constant([0, -1, 2, -1], tf.int64)  # Two of four labelled.
    task = tasks.DistillTask(
        lambda x: teacher_logits, distill_temperature=2.0,
        distill_label_weight=0.5)
    loss, metrics = task.compute_loss(
        None, {"image": images, "label": labels}, outputs)
    kd = tf.reduce_mean(losses.distillation_loss(
        teacher_logits, outputs[tasks.LOGITS], 2.0))
    # The label term is a sum over the labelled images per image of the
    # batch (SimCLRv2's two sums), not a mean over the labelled ones.
    mean_over_labelled = _numpy_ce(labels.numpy(), outputs[tasks.LOGITS].numpy())
    sup = mean_over_labelled * 2 / 4
    np.testing.assert_allclose(metrics["distill_loss"], kd, rtol=1e-6)
    np.testing.assert_allclose(loss, kd + 0.5 * sup, rtol=1e-5)
    assert abs(0.5 * (mean_over_labelled - sup)) > 0.05  # Tells them apart.
    correct, weights = metrics["supervised_acc"]
    np.testing.assert_array_equal(weights, [1, 0, 1, 0])
    predicted = np.argmax(outputs[tasks.LOGITS].numpy(), -1)
    np.testing.assert_array_equal(correct, predicted == labels.numpy())


@pytest.mark.parametrize("make,message", [
    (lambda: tasks.get("supervise"), "train_mode"),
    (lambda: tasks.PretrainTask(contrastive_loss="infonce"), "contrastive_loss"),
    (lambda: tasks.DistillTask(), "teacher"),
])
def test_bad_settings_name_the_problem(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_model_inputs_split_the_views_for_pretraining_only():
    images = tf.reshape(tf.range(2 * 2 * 2 * 6, dtype=tf.float32), [2, 2, 2, 6])
    views = tasks.PretrainTask().model_inputs({"image": images})
    np.testing.assert_array_equal(views[:2], images[..., :3])
    np.testing.assert_array_equal(views[2:], images[..., 3:])
    assert tasks.FinetuneTask().model_inputs({"image": images}) is images


def test_weight_decay_policy_decides_what_the_loss_decays():
    kernel = tf.Variable(tf.ones([2, 2]), name="kernel")
    head = tf.Variable(tf.ones([2, 2]), name="head_supervised/kernel")
    bn = tf.Variable(tf.ones([2]), name="batch_normalization/gamma")
    variables = [kernel, head, bn]
    in_optimizer = WeightDecay(0.1, optimizer_decays=True)
    in_loss = WeightDecay(0.1, optimizer_decays=False)
    # LARS decays everything but the head itself: the loss has the head only.
    np.testing.assert_allclose(in_optimizer.training_loss(variables), 0.1 * 2)
    np.testing.assert_allclose(in_loss.training_loss(variables), 0.1 * 4)
    # Evaluation reports every non-BN weight whatever the optimizer.
    np.testing.assert_allclose(in_optimizer.total_loss(variables), 0.1 * 4)
    task = tasks.FinetuneTask(weight_decay=in_loss)
    loss, metrics = task.regularization(variables)
    np.testing.assert_allclose(loss, 0.4)
    assert metrics == {"weight_decay": loss}


class _Optimizer:
    """Records what it is asked to apply; scales losses by 4."""

    def scale_loss(self, loss):
        return 4.0 * loss

    def apply_gradients(self, pairs):
        self.applied = list(pairs)


def test_scale_and_apply_skip_missing_gradients():
    w = tf.Variable([1.0, 2.0])
    unused = tf.Variable([3.0])
    optimizer = _Optimizer()
    np.testing.assert_allclose(optim.scale_for_replicas(optimizer, 2.0), 8.0)
    optim.apply_gradients(optimizer, [tf.ones([2]), None], [w, unused])
    assert [v for _, v in optimizer.applied] == [w]


def test_registry_maps_every_train_mode_to_its_task():
    assert tasks.get("pretrain") is tasks.PretrainTask
    assert tasks.get("finetune") is tasks.FinetuneTask
    assert tasks.get("distill") is tasks.DistillTask
    assert tasks.get(tasks.FinetuneTask) is tasks.FinetuneTask
    assert {name: t.name for name, t in tasks.TASKS.items()} == {
        name: name for name in tasks.TASKS}


def test_result_names_follow_the_task_and_the_head():
    names = tasks.PretrainTask().result_names(has_supervised_head=True)
    assert names == ["loss", "weight_decay", "contrast_loss", "contrast_acc",
                     "contrast_entropy", "supervised_loss", "supervised_acc"]
    assert "supervised_acc" not in tasks.PretrainTask().result_names(False)
    assert tasks.DistillTask(lambda x: x).result_names(True)[2:] == ["distill_loss"]
    assert tasks.DistillTask(lambda x: x, distill_label_weight=1.0).result_names(
        True)[2:] == ["distill_loss", "supervised_acc"]
    assert set(simclr_model.METRIC_NAMES) >= set(names)


def _cfg(**overrides):
    base = dict(lineareval_while_pretraining=True, fine_tune_after_block=-1)
    base.update(overrides)
    return types.SimpleNamespace(**base)


def test_head_wiring_is_decided_by_the_task():
    pretrain, finetune, distill = (tasks.PretrainTask, tasks.FinetuneTask,
                                   tasks.DistillTask)
    assert pretrain.stop_gradient_to_head and not finetune.stop_gradient_to_head
    assert pretrain.standardises_features(_cfg())
    assert not finetune.standardises_features(_cfg(fine_tune_after_block=2))
    assert finetune.standardises_features(_cfg(fine_tune_after_block=4))
    assert not distill.standardises_features(_cfg(fine_tune_after_block=4))
    assert not pretrain.wants_supervised_head(
        _cfg(lineareval_while_pretraining=False))
    assert pretrain.frozen_after_block(_cfg()) is None
    assert finetune.frozen_after_block(_cfg(fine_tune_after_block=3)) == 3
    assert finetune.uses_label_subset and not distill.uses_label_subset
    assert distill.needs_teacher and not pretrain.needs_teacher


def test_training_transforms_keep_label_and_id():
    example = {"image": tf.zeros([12, 12, 3], tf.uint8),
               "label": tf.constant(2, tf.int64), "id": tf.constant(7, tf.int64)}
    seed = tf.constant([1, 2], tf.int64)
    two = tasks.PretrainTask.train_transform(8, 1.0, True, 0.08)(example, seed)
    one = tasks.FinetuneTask.train_transform(8, 1.0, True, 0.08)(example, seed)
    assert two["image"].shape == (8, 8, 6) and one["image"].shape == (8, 8, 3)
    assert int(two["id"]) == int(one["id"]) == 7
    assert len(tasks.PretrainTask.views(two["image"][None])) == 2


def test_supcon_pretraining_needs_labelled_data():
    config = types.SimpleNamespace(
        loss=types.SimpleNamespace(contrastive_loss="supcon"))
    with pytest.raises(ValueError, match="needs labels"):
        tasks.PretrainTask.check_data(config, 0, "folder:x")
    tasks.PretrainTask.check_data(config, 10, "digits")  # Labelled: fine.
    config.loss.contrastive_loss = "nt_xent"
    tasks.PretrainTask.check_data(config, 0, "folder:x")


class _RecordingTask(tasks.PretrainTask):
    """Pretraining that counts optimizer steps and sees the batch ids."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.steps = None
        self.seen_ids = None

    def compute_loss(self, model, batch, outputs):
        self.seen_ids = batch["id"]
        return super().compute_loss(model, batch, outputs)

    def after_step(self, model):
        # A variable on the model: state a task keeps lives with the model.
        self.steps.assign_add(1)


def test_train_step_asks_the_task_and_runs_after_step_each_step():
    from tests.harness import batch, make_model
    model = make_model()
    task = _RecordingTask(temperature=0.5, weight_decay=model.task.weight_decay)
    task.steps = tf.Variable(0)
    model.compile(optimizer=model.optimizer, task=task)
    data = dict(batch(n=4), id=tf.constant([5, 6, 7, 8], tf.int64))
    model.fit(tf.data.Dataset.from_tensors(data).repeat(), steps_per_epoch=3,
              epochs=1, verbose=0)
    assert int(task.steps.numpy()) == 3
    assert task.seen_ids is not None  # The whole batch reached the loss.
    assert model.optimizer.iterations.numpy() == 3


def test_pretrain_loss_counts_a_copy_of_the_image_as_positive_not_negative():
    # A batch larger than the split holds copies: examples 0 and 2 are the
    # same image (id 7). The task hands the batch's ids to NT-Xent.
    rng = np.random.default_rng(3)
    z = tf.constant(rng.normal(size=(8, 5)), tf.float32)
    labels = tf.constant([-1, -1, -1, -1], tf.int64)
    ids = tf.constant([7, 8, 7, 9], tf.int64)
    task = tasks.PretrainTask(temperature=0.5)
    loss, _ = task.compute_loss(None, {"label": labels, "id": ids},
                                {tasks.Z: z})
    with_ids = losses.add_contrastive_loss(z, temperature=0.5,
                                           example_ids=ids)[0]
    as_negative = losses.add_contrastive_loss(z, temperature=0.5)[0]
    np.testing.assert_allclose(float(loss), float(with_ids), rtol=1e-6)
    assert abs(float(loss) - float(as_negative)) > 1e-3
    # Without an "id" key (a user's own batches) it is plain NT-Xent.
    plain, _ = task.compute_loss(None, {"label": labels}, {tasks.Z: z})
    np.testing.assert_allclose(float(plain), float(as_negative), rtol=1e-6)


def test_distill_whole_image_teacher_labels_the_eval_image_student_a_crop():
    image = tf.constant(np.random.default_rng(0).integers(
        0, 255, (16, 16, 3)), tf.uint8)
    example = {"image": image, "label": tf.constant(1, tf.int64),
               "id": tf.constant(7, tf.int64)}
    seen = []

    def teacher(images):
        seen.append(images)
        return tf.zeros([images.shape[0], 3])

    config = tiny_config("/tmp/unused", train_mode="distill", crop_min_area=0.08,
                         distill_teacher_input="whole_image")
    task = tasks.from_config(config, teacher=teacher)
    out = task.train_transform_for(config.data)(example, tf.constant([3, 4], tf.int64))
    whole = augment.preprocess_for_eval(image, config.data.image_size)
    np.testing.assert_allclose(out["teacher_image"], whole)
    assert not np.allclose(out["image"], whole)  # A random crop.
    batch = {k: v[None] for k, v in out.items()}
    task.compute_loss(None, batch, {tasks.LOGITS: tf.zeros([1, 3])})
    np.testing.assert_allclose(seen[-1], batch["teacher_image"])
    # The default (SimCLRv2): the teacher sees the student's own view.
    default = tasks.from_config(
        tiny_config("/tmp/unused", train_mode="distill"), teacher=teacher)
    plain = default.train_transform_for(config.data)(example, tf.constant([3, 4], tf.int64))
    assert "teacher_image" not in plain
    default.compute_loss(None, {k: v[None] for k, v in plain.items()},
                         {tasks.LOGITS: tf.zeros([1, 3])})
    np.testing.assert_allclose(seen[-1], plain["image"][None])
    with pytest.raises(ValueError) as refused:
        tasks.DistillTask(teacher, teacher_input="clean")
    assert str(refused.value) == ("teacher_input='clean' is not one of "
                                  "student_view, whole_image; pick one.")
