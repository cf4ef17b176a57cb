"""Tests of gradient caching: chunked NT-Xent gradients equal full-batch ones."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2.optim import gradcache
from tests.harness import batch, cached_gradients, distributed_step, freeze_batch_norm, full_batch_gradients, make_model, mirrored, tiny_model


def _stat_variables(model):
    return gradcache.moving_statistics(model.non_trainable_variables)


def _moving_stats(model):
    return [v.numpy() for v in _stat_variables(model)]


@pytest.mark.parametrize("graph", [False, True])
def test_gradient_equals_full_batch_gradient_with_inference_bn(graph):
    model = make_model()
    freeze_batch_norm(model)
    data = batch(n=8)
    ref_loss, ref_grads = full_batch_gradients(model, data)
    model.micro_batch_size = 2
    fn = cached_gradients
    loss, grads = (tf.function(fn) if graph else fn)(model, data)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    assert len(grads) == len(ref_grads) > 0
    for g, r, v in zip(grads, ref_grads, model.trainable_variables):
        assert g is not None and r is not None, v.path
        np.testing.assert_allclose(g, r, atol=1e-5, err_msg=v.path)


def test_gradients_carry_the_optimizer_loss_scale():
    # mixed_float16: the cached dL/dz is scaled so that the chunk backward
    # passes run on scaled gradients, as the regular step's would.
    model = make_model()
    freeze_batch_norm(model)
    data = batch(n=4)
    _, ref_grads = full_batch_gradients(model, data)
    model.optimizer = keras.optimizers.LossScaleOptimizer(model.optimizer)
    model.micro_batch_size = 2
    _, grads = cached_gradients(model, data)
    scale = float(model.optimizer.scale_loss(1.0))
    assert scale > 1.0
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g / scale, r, atol=1e-5)


def test_one_chunk_in_training_mode_equals_the_regular_step():
    data = batch(n=4)
    regular, cached = make_model(), make_model()
    cached.micro_batch_size = 4
    logs = {}
    for name, model in (("regular", regular), ("cached", cached)):
        logs[name] = tf.function(model.train_step)(data)
    for key, value in logs["regular"].items():
        np.testing.assert_allclose(logs["cached"][key], value, rtol=1e-5,
                                   err_msg=key)
    for a, b in zip(regular.variables, cached.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5,
                                   err_msg=a.path)


def test_moving_statistics_get_one_update_with_the_chunk_average():
    model = make_model()
    data = batch(n=4)
    before = _moving_stats(model)
    expected = []
    for half in tf.split(data["image"], 2):
        model(tf.concat(tf.split(half, 2, axis=-1), 0), training=True)
        expected.append(_moving_stats(model))
        for var, value in zip(_stat_variables(model), before):
            var.assign(value)
    model.micro_batch_size = 2
    model.train_step(data)
    for got, one, two in zip(_moving_stats(model), *expected):
        np.testing.assert_allclose(got, (one + two) / 2, atol=1e-6)


def _assert_same_variables(expected, got):
    assert len(expected.variables) == len(got.variables)
    for a, b in zip(expected.variables, got.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5,
                                   err_msg=a.path)


def test_two_replicas_match_full_batch_step_with_inference_bn():
    # Negatives and dL/dz cross replicas; the chunk loop is a tf.while_loop.
    data = batch(n=8)
    reference = tiny_model()
    freeze_batch_norm(reference)
    ref_logs = tf.function(reference.train_step)(data)
    strategy = mirrored()
    with strategy.scope():
        model = tiny_model(micro_batch_size=2)
        freeze_batch_norm(model)
    logs = distributed_step(strategy, model, data)
    for key in ("loss", "contrast_loss", "contrast_acc", "supervised_loss"):
        np.testing.assert_allclose(logs[key], ref_logs[key], rtol=1e-5,
                                   err_msg=key)
    _assert_same_variables(reference, model)


def test_two_replicas_with_global_bn_match_one_device_chunks():
    # Sync BN in training mode (unrolled loop): chunk k's statistics span
    # chunk k of both replicas, i.e. one device's chunk k of 2M examples
    # once the batch is reordered (NT-Xent does not depend on the order).
    data = batch(n=8)
    order = [0, 1, 4, 5, 2, 3, 6, 7]
    reordered = {k: tf.gather(v, order) for k, v in data.items()}
    reference = tiny_model(micro_batch_size=4)
    ref_logs = tf.function(reference.train_step)(reordered)
    strategy = mirrored()
    with strategy.scope():
        model = tiny_model(global_bn=True, micro_batch_size=2)
        assert gradcache.must_unroll(model._flatten_layers())
    logs = distributed_step(strategy, model, data)
    for key in ("loss", "contrast_loss", "contrast_acc", "supervised_loss"):
        np.testing.assert_allclose(logs[key], ref_logs[key], rtol=1e-5,
                                   err_msg=key)
    _assert_same_variables(reference, model)


def test_micro_batch_must_divide_the_per_replica_batch():
    model = make_model()
    model.micro_batch_size = 3
    with pytest.raises(ValueError, match="micro_batch_size=3 must divide"):
        model.train_step(batch(n=4))
