"""mixed_bfloat16 against float32 on the same weights: outputs and gradients.

bf16 activations carry 8 significant bits, so a tiny ResNet's outputs and
gradients differ from float32 by a few % of their norm; a wrong cast, a
dropped scale or a bf16 gradient routed to the wrong variable differs by far
more. The relative-norm tolerance is checked to fail on a mismatched pair.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import harness

# ||bf16 - f32|| / ||f32|| allowed per forward output (measured: <= 0.02).
REL_TOL = 0.08


def _relative_error(low, high):
    low = np.asarray(tf.cast(low, tf.float32), np.float64).ravel()
    high = np.asarray(tf.cast(high, tf.float32), np.float64).ravel()
    return np.linalg.norm(low - high) / max(np.linalg.norm(high), 1e-12)


def _pair(train_mode, **cfg):
    """A float32 SimCLRModel and a mixed_bfloat16 one with its weights."""
    high = harness.make_model(train_mode, num_classes=4, optimizer="momentum",
                              **cfg)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        low = harness.make_model(train_mode, num_classes=4,
                                 optimizer="momentum", **cfg)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    low.set_weights(high.get_weights())
    return high, low


def _batch(train_mode, n=8):
    views = 2 if train_mode == "pretrain" else 1
    rng = np.random.default_rng(1)
    return {"image": harness.random_images(n, channels=3 * views, seed=2),
            "label": tf.constant(rng.integers(0, 4, size=n), tf.int64)}


@pytest.fixture(scope="module")
def _finetune_models():
    high, low = _pair("finetune")
    return high, low, high.get_weights()


@pytest.fixture
def finetune_pair(_finetune_models):
    """The module's pair, back at their initial weights: training-mode calls
    move the two models' BN moving statistics apart."""
    high, low, initial = _finetune_models
    high.set_weights(initial)
    low.set_weights(initial)
    return high, low


def test_bf16_forward_outputs_match_float32(finetune_pair):
    high, low = finetune_pair
    images = harness.random_images(8, seed=5)
    want = high(images, training=True)
    got = low(images, training=True)
    assert low.encoder.compute_dtype == "bfloat16"
    assert all(v.dtype == "float32" for v in low.weights)
    for key in ("initial_conv", "block_group2", "block_group4",
                "final_avg_pool", "proj_head_output", "logits_sup"):
        assert _relative_error(got[key], want[key]) < REL_TOL, key


def test_bf16_gradients_match_float32_in_inference_mode(finetune_pair):
    """Through moving-statistics BN the only difference is bf16 rounding."""
    high, low = finetune_pair
    images = harness.random_images(16, seed=5)
    upstream = tf.constant(np.random.default_rng(0).normal(size=(16, 4)),
                           tf.float32)

    def gradients(model):
        with tf.GradientTape() as tape:
            logits = model(images, training=False)["logits_sup"]
            loss = tf.reduce_sum(logits * upstream)
        return tape.gradient(loss, model.trainable_variables)

    errors = []
    for v, g_lo, g_hi in zip(high.trainable_variables, gradients(low),
                             gradients(high)):
        assert (g_lo is None) == (g_hi is None), v.path
        if g_hi is not None and np.linalg.norm(g_hi.numpy()) > 1e-6:
            assert g_lo.dtype == tf.float32, v.path
            errors.append(_relative_error(g_lo, g_hi))
            # Measured: at most 0.09, median 0.03 (1/8-width ResNet-18).
            assert errors[-1] < 0.2, v.path
    assert len(errors) > 25 and np.median(errors) < 0.06


# Relative error of all of one train step's gradients, concatenated. Measured
# on this model and batch: 0.019 fine-tuning, 0.13 pretraining (training-mode
# BN over 8 or 16 rows amplifies bf16 rounding); a gradient scaled by 2 is 1.0.
STEP_TOLERANCE = {"finetune": 0.06, "pretrain": 0.3}


@pytest.mark.parametrize("train_mode", ["finetune", "pretrain"])
def test_bf16_train_step_loss_and_gradients_match_float32(train_mode,
                                                          finetune_pair):
    high, low = finetune_pair if train_mode == "finetune" else _pair(train_mode)
    data = _batch(train_mode)
    loss_hi, _, grads_hi = harness.compute_gradients(high, data)
    loss_lo, _, grads_lo = harness.compute_gradients(low, data)
    assert abs(float(loss_lo) - float(loss_hi)) < 0.01 * abs(float(loss_hi))
    assert [g is None for g in grads_lo] == [g is None for g in grads_hi]
    assert all(g.dtype == tf.float32 for g in grads_lo if g is not None)
    flat_lo = np.concatenate([g.numpy().ravel() for g in grads_lo if g is not None])
    flat_hi = np.concatenate([g.numpy().ravel() for g in grads_hi if g is not None])
    assert _relative_error(flat_lo, flat_hi) < STEP_TOLERANCE[train_mode]


def test_the_tolerance_fails_on_mismatched_weights(finetune_pair):
    """Control: the same comparison with one kernel perturbed by 10% fails."""
    high, low = finetune_pair
    images = harness.random_images(8, seed=5)
    kernel = low.encoder.trainable_variables[0]
    saved = kernel.numpy()
    rng = np.random.default_rng(3)
    try:
        kernel.assign(saved + 0.1 * np.linalg.norm(saved) / np.sqrt(saved.size)
                      * rng.normal(size=saved.shape))
        error = _relative_error(low(images, training=True)["initial_conv"],
                                high(images, training=True)["initial_conv"])
    finally:
        kernel.assign(saved)
    assert error > REL_TOL


# Measured ||bf16 - f32|| / ||f32||: ConvBN and SE < 0.02; SelectiveKernel
# 0.08 (its input gradient passes a softmax over branches and two BNs).
@pytest.mark.parametrize("cls_name,kwargs,shape,tolerance", [
    ("ConvBN", dict(filters=8, kernel_size=3, strides=2), (2, 8, 8, 4), 0.05),
    ("SelectiveKernel", dict(filters=8, sk_ratio=0.25, min_dim=4),
     (2, 8, 8, 4), 0.15),
    ("SqueezeExcitation", dict(filters=8, se_ratio=0.25), (2, 4, 4, 8), 0.05),
])
def test_encoder_layers_in_bf16_match_float32(cls_name, kwargs, shape,
                                              tolerance):
    from simclr_tf2.models import layers
    from tests.layer_test import run_layer_test
    # run_layer_test compares outputs and input gradients with float32.
    run_layer_test(getattr(layers, cls_name), kwargs, shape,
                   bf16_tolerance=tolerance)
