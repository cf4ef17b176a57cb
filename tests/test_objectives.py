"""Tests of simclr_tf2/objectives.py: the one training objective."""

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2 import losses
from simclr_tf2 import objectives
from simclr_tf2.optim import WeightDecay


def _outputs(n=4, p=6, c=3, views=2, seed=0):
    rng = np.random.default_rng(seed)
    return {objectives.Z: tf.constant(rng.normal(size=(views * n, p)), tf.float32),
            objectives.LOGITS: tf.constant(rng.normal(size=(views * n, c)),
                                           tf.float32)}


def _numpy_ce(labels, logits):
    logits = logits - logits.max(-1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    keep = labels >= 0
    return -log_p[keep, labels[keep]].mean() if keep.any() else 0.0


def test_pretrain_is_nt_xent_plus_the_linear_heads_cross_entropy():
    outputs, labels = _outputs(), tf.constant([0, 2, -1, 1], tf.int64)
    objective = objectives.Objective("pretrain", temperature=0.5)
    loss, metrics = objective(outputs, labels)
    con, _, _ = losses.add_contrastive_loss(outputs[objectives.Z],
                                            temperature=0.5)
    both = np.concatenate([labels.numpy()] * 2)
    sup = _numpy_ce(both, outputs[objectives.LOGITS].numpy())
    np.testing.assert_allclose(loss, con + sup, rtol=1e-5)
    np.testing.assert_allclose(metrics["contrast_loss"], con, rtol=1e-6)
    np.testing.assert_allclose(metrics["supervised_loss"], sup, rtol=1e-5)
    correct, weights = metrics["supervised_acc"]
    np.testing.assert_array_equal(weights, both >= 0)
    assert correct.shape == (8,)


def test_pretrain_without_a_head_is_contrastive_only():
    outputs = {objectives.Z: _outputs()[objectives.Z]}
    loss, metrics = objectives.Objective("pretrain")(outputs, tf.zeros([4], tf.int64))
    assert set(metrics) == {"contrast_loss", "contrast_acc", "contrast_entropy"}
    np.testing.assert_allclose(loss, metrics["contrast_loss"])


def test_a_new_contrastive_loss_is_one_table_entry(monkeypatch):
    seen = {}

    def doubled(hidden, labels, **kwargs):
        seen["labels"] = labels
        loss, logits, targets = losses.add_contrastive_loss(hidden, **kwargs)
        return 2.0 * loss, logits, targets

    monkeypatch.setitem(objectives.CONTRASTIVE_LOSSES, "doubled", doubled)
    outputs = {objectives.Z: _outputs()[objectives.Z]}
    labels = tf.constant([0, 1, 2, 0], tf.int64)
    plain, _ = objectives.Objective("pretrain")(outputs, labels)
    new, _ = objectives.Objective("pretrain", contrastive_loss="doubled")(
        outputs, labels)
    np.testing.assert_allclose(new, 2.0 * plain, rtol=1e-6)
    assert seen["labels"] is labels  # The labels reach the loss.


def test_finetune_ignores_unlabelled_examples():
    outputs = _outputs(views=1)
    labels = tf.constant([1, -1, 0, -1], tf.int64)
    loss, metrics = objectives.Objective("finetune")(outputs, labels)
    expected = _numpy_ce(labels.numpy(), outputs[objectives.LOGITS].numpy())
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
        loss, _ = objectives.masked_cross_entropy(replica_labels, replica_logits)
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
    teacher_logits = _outputs(views=1, seed=1)[objectives.LOGITS]
    labels = tf.constant([0, 1, 2, 0], tf.int64)
    objective = objectives.Objective(
        "distill", teacher=lambda x: teacher_logits, distill_temperature=2.0,
        distill_label_weight=0.5)
    loss, metrics = objective(outputs, labels, images)
    kd = tf.reduce_mean(losses.distillation_loss(
        teacher_logits, outputs[objectives.LOGITS], 2.0))
    sup = _numpy_ce(labels.numpy(), outputs[objectives.LOGITS].numpy())
    np.testing.assert_allclose(metrics["distill_loss"], kd, rtol=1e-6)
    np.testing.assert_allclose(loss, kd + 0.5 * sup, rtol=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    (dict(train_mode="supervise"), "train_mode"),
    (dict(contrastive_loss="infonce"), "contrastive_loss"),
    (dict(train_mode="distill"), "teacher"),
])
def test_bad_settings_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        objectives.Objective(**kwargs)


def test_model_inputs_split_the_views_for_pretraining_only():
    images = tf.reshape(tf.range(2 * 2 * 2 * 6, dtype=tf.float32), [2, 2, 2, 6])
    views = objectives.Objective("pretrain").model_inputs(images)
    np.testing.assert_array_equal(views[:2], images[..., :3])
    np.testing.assert_array_equal(views[2:], images[..., 3:])
    assert objectives.Objective("finetune").model_inputs(images) is images


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
    objective = objectives.Objective("finetune", weight_decay=in_loss)
    loss, metrics = objective.regularization(variables)
    np.testing.assert_allclose(loss, 0.4)
    assert metrics == {"weight_decay": loss}


class _Optimizer:
    """Records what it is asked to apply; scales losses by 4."""

    def scale_loss(self, loss):
        return 4.0 * loss

    def apply_gradients(self, pairs):
        self.applied = list(pairs)


def test_compute_gradients_scales_and_apply_skips_missing_gradients():
    w = tf.Variable([1.0, 2.0])
    unused = tf.Variable([3.0])

    def forward(inputs):
        return {objectives.LOGITS: tf.stack([inputs[:, 0] * w[0],
                                             inputs[:, 0] * w[1]], -1)}

    objective = objectives.Objective("finetune")
    data = {"image": tf.ones([2, 1]), "label": tf.constant([0, 1], tf.int64)}
    optimizer = _Optimizer()
    loss, metrics, grads = objectives.compute_gradients(
        forward, objective, data, [w, unused], optimizer)
    with tf.GradientTape() as tape:
        ref, _ = objective(forward(data["image"]), data["label"])
    np.testing.assert_allclose(loss, ref)
    np.testing.assert_allclose(grads[0], 4.0 * tape.gradient(ref, w), rtol=1e-6)
    assert grads[1] is None and "supervised_acc" in metrics
    objectives.apply_gradients(optimizer, grads, [w, unused])
    assert [v for _, v in optimizer.applied] == [w]
