"""Tests of the projection head, the supervised head and SimCLRModel's steps."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2 import optim
from simclr_tf2.models import build
from simclr_tf2.models import heads
from simclr_tf2.models.simclr_model import SimCLRModel
from tests import harness
from tests.harness import batch, compile_model, make_model

IMAGE = harness.IMAGE
model_cfg = harness.model_cfg


@pytest.mark.parametrize("mode,layers,out", [
    ("none", 0, 32), ("linear", 1, 8), ("nonlinear", 3, 8)])
def test_projection_head_modes(mode, layers, out):
    head = heads.ProjectionHead(mode=mode, num_layers=3, out_dim=8)
    hiddens = head(tf.ones([5, 32]), training=False)
    assert len(hiddens) == layers + 1
    assert hiddens[-1].shape == (5, out)
    assert head.depth == layers
    # Hidden layers keep the input width.
    for h in hiddens[1:-1]:
        assert h.shape == (5, 32)
    config = head.get_config()
    assert heads.ProjectionHead.from_config(config).depth == layers


def test_projection_head_rejects_bad_mode():
    with pytest.raises(ValueError, match="proj_head_mode"):
        heads.ProjectionHead(mode="mlp")


@pytest.mark.parametrize("mode", ["none", "linear", "nonlinear"])
def test_pretrain_step_runs_for_every_head_mode(mode):
    model = make_model(proj_head_mode=mode)
    before = [v.numpy().copy() for v in model.encoder.trainable_variables]
    logs = model.train_step(batch())
    assert np.isfinite(float(logs["contrast_loss"]))
    after = model.encoder.trainable_variables
    assert any(not np.allclose(b, a.numpy()) for b, a in zip(before, after))


def test_supervised_loss_gives_encoder_zero_gradient():
    model = make_model()
    data = batch(views=1)
    with tf.GradientTape() as tape:
        outputs = model(data["image"], training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            data["label"], outputs["logits_sup"]))
    grads = tape.gradient(loss, model.encoder.trainable_variables
                          + model.projection_head.trainable_variables
                          + model.supervised_head.trainable_variables)
    n_enc = len(model.encoder.trainable_variables)
    n_head = len(model.projection_head.trainable_variables)
    assert all(g is None for g in grads[:n_enc + n_head])
    assert all(g is not None and np.any(g.numpy() != 0)
               for g in grads[n_enc + n_head:])


def test_finetune_gradient_reaches_encoder():
    model = make_model(train_mode="finetune")
    data = batch(views=1)
    with tf.GradientTape() as tape:
        logits = model(data["image"], training=True)["logits_sup"]
        loss = tf.reduce_mean(logits ** 2)
    grads = tape.gradient(loss, model.encoder.trainable_variables)
    assert any(g is not None and np.any(g.numpy() != 0) for g in grads)


def test_linear_eval_freezes_encoder_weights_and_bn_statistics():
    model = make_model(train_mode="finetune", fine_tune_after_block=4,
                       optimizer="momentum", weight_decay=0.0)
    assert not model.encoder.trainable_variables
    before = [v.numpy().copy() for v in model.encoder.variables]
    head_before = model.supervised_head.dense.kernel.numpy().copy()
    for seed in range(2):
        model.train_step(batch(views=1, seed=seed))
    for b, v in zip(before, model.encoder.variables):
        np.testing.assert_array_equal(b, v.numpy(), err_msg=v.path)
    assert not np.allclose(head_before, model.supervised_head.dense.kernel.numpy())


@pytest.mark.parametrize("train_mode,after_block,standardised", [
    ("pretrain", -1, True), ("finetune", 4, True), ("finetune", 2, False),
    ("finetune", -1, False)])
def test_classifier_standardises_h_in_pretraining_and_linear_eval(
        train_mode, after_block, standardised):
    model = make_model(train_mode=train_mode, fine_tune_after_block=after_block,
                       optimizer="momentum", weight_decay=0.0)
    norm = model.supervised_head.input_norm
    assert (norm is not None) == standardised
    if standardised and train_mode == "finetune":
        # Linear eval trains the standardisation's statistics, not the encoder's.
        mean_before = norm.moving_mean.numpy().copy()
        model.train_step(batch(views=1))
        assert not np.allclose(mean_before, norm.moving_mean.numpy())


def test_ft_proj_selector_feeds_the_chosen_layer():
    model = make_model(train_mode="finetune", ft_proj_selector=1)
    # The classifier reads the first projection layer, whose width is D.
    width = model.encoder.num_features
    assert model.supervised_head.dense.kernel.shape == (width, 3)
    with pytest.raises(ValueError, match="ft_proj_selector"):
        make_model(train_mode="finetune", ft_proj_selector=5)


def test_zero_init_logits_layer():
    model = make_model(train_mode="finetune", zero_init_logits_layer=True)
    assert not np.any(model.supervised_head.dense.kernel.numpy())


def test_unlabeled_examples_are_ignored_by_supervised_loss():
    model = make_model()
    data = batch()
    data["label"] = tf.constant([-1, -1, -1, -1], tf.int64)
    logs = model.train_step(data)
    assert float(logs["supervised_loss"]) == 0.0
    assert np.isfinite(float(logs["loss"]))


def test_test_step_reports_top1_and_top5():
    model = make_model(train_mode="finetune")
    logs = model.test_step(batch(views=1))
    assert set(logs) == {"label_top_1_accuracy", "label_top_5_accuracy",
                         "regularization_loss"}
    # Only 3 classes: top-5 is capped at 3 and therefore always right.
    assert float(logs["label_top_5_accuracy"]) == 1.0


def test_call_returns_the_named_outputs():
    model = make_model()
    outputs = model(tf.zeros([2, IMAGE, IMAGE, 3]), training=False)
    for key in ("initial_conv", "initial_max_pool", "block_group1",
                "block_group2", "block_group3", "block_group4",
                "final_avg_pool", "proj_head_input", "proj_head_output",
                "logits_sup"):
        assert key in outputs and outputs[key].dtype == tf.float32
    assert outputs["proj_head_output"].shape == (2, 8)


@pytest.mark.parametrize("policy,jit", [("mixed_bfloat16", True),
                                        ("mixed_float16", False),
                                        ("float32", True)])
def test_precision_and_xla_train_through_fit(policy, jit):
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = build.build_model(
            model_cfg(), num_classes=3, task="pretrain",
            image_size=IMAGE)
        compile_model(model, jit_compile=jit)
        if policy == "mixed_float16":
            assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        dataset = tf.data.Dataset.from_tensors(batch(n=8)).repeat()
        before = [v.numpy().copy() for v in model.encoder.trainable_variables]
        # float16 loss scaling starts at 2**15 and skips overflowing steps
        # while it halves the scale, so it needs a few more steps.
        steps = 16 if policy == "mixed_float16" else 2
        history = model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
        assert np.isfinite(history.history["contrast_loss"][-1])
        outputs = model(batch(views=1)["image"], training=False)
        assert outputs["final_avg_pool"].dtype == tf.float32
        # Variables stay float32 (mixed precision computes in low precision).
        assert all(v.dtype == "float32" for v in model.encoder.trainable_variables)
        changed = [not np.allclose(b, v.numpy()) for b, v in
                   zip(before, model.encoder.trainable_variables)]
        assert any(changed)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("train_mode,selector", [("pretrain", 0),
                                                 ("finetune", 1)])
def test_get_config_round_trip_rebuilds_the_same_network(train_mode, selector):
    model = make_model(train_mode=train_mode, ft_proj_selector=selector)
    config = model.get_config()
    json.dumps(config)  # Plain JSON: nested parts are serialised.
    clone = SimCLRModel.from_config(config)
    images = batch(views=1)["image"]
    clone(tf.zeros([1, IMAGE, IMAGE, 3]), training=False)  # As build_model.
    assert [v.path for v in clone.weights] == [v.path for v in model.weights]
    for target, source in zip(clone.weights, model.weights):
        target.assign(source)
    expected = model(images, training=False)
    got = clone(images, training=False)
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], atol=1e-6)
    assert clone.get_config() == config
    assert (clone.stop_gradient_to_head, clone.ft_proj_selector) == (
        train_mode == "pretrain", selector)
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(model))
    assert isinstance(revived, SimCLRModel)
    assert revived.supervised_head.units == 3


def test_training_needs_a_task():
    model = build.build_model(model_cfg(), num_classes=3,
                              task="pretrain", image_size=IMAGE)
    model.compile(optimizer=optim.build_optimizer("lars", 0.1))
    with pytest.raises(ValueError, match="task"):
        model.train_step(batch())
    # Evaluation works without one (no regulariser to report).
    logs = model.test_step(batch(views=1))
    assert float(logs["regularization_loss"]) == 0.0
