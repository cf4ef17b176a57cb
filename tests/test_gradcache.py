"""Tests of gradient caching: chunked NT-Xent gradients equal full-batch ones."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2 import gradcache
from tests.test_simclr_model import batch
from tests.test_simclr_model import make_model


def _freeze_batch_norm(model, seed=0):
    """BN in inference mode, with non-trivial moving statistics."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            shape = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.1, shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, shape))


def _full_batch_gradients(model, data):
    with tf.GradientTape() as tape:
        loss = model._pretrain_loss(data["image"], data["label"])
        loss += model._weight_decay_term()
    return loss, tape.gradient(loss, model.trainable_variables)


def _moving_stats(model):
    return [v.numpy() for v in gradcache._moving_statistics(model)]


@pytest.mark.parametrize("graph", [False, True])
def test_gradient_equals_full_batch_gradient_with_inference_bn(graph):
    model = make_model()
    _freeze_batch_norm(model)
    data = batch(n=8)
    ref_loss, ref_grads = _full_batch_gradients(model, data)
    model.micro_batch_size = 2
    fn = gradcache.compute_gradients
    loss, grads = (tf.function(fn) if graph else fn)(
        model, data["image"], data["label"])
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    assert len(grads) == len(ref_grads) > 0
    for g, r, v in zip(grads, ref_grads, model.trainable_variables):
        assert g is not None and r is not None, v.path
        np.testing.assert_allclose(g, r, atol=1e-5, err_msg=v.path)


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
        for var, value in zip(gradcache._moving_statistics(model), before):
            var.assign(value)
    model.micro_batch_size = 2
    model.train_step(data)
    for got, one, two in zip(_moving_stats(model), *expected):
        np.testing.assert_allclose(got, (one + two) / 2, atol=1e-6)


def _distributed_step(strategy, model, data):
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(
        int(data["label"].shape[0]), drop_remainder=True)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))

    @tf.function
    def step():
        logs = strategy.run(model.train_step, args=(next(iterator),))
        return {k: strategy.reduce("MEAN", v, axis=None)
                for k, v in logs.items()}

    return step()


@pytest.mark.parametrize("global_bn", [False, True])
def test_two_replicas_match_one_device_with_inference_bn(global_bn):
    # global_bn with frozen BN still takes the while-loop path; with BN in
    # training mode (below) sync BN forces the unrolled loop.
    data = batch(n=8)
    reference = make_model(global_bn=global_bn)
    _freeze_batch_norm(reference)
    ref_logs = tf.function(reference.train_step)(data)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = make_model(global_bn=global_bn)
        _freeze_batch_norm(model)
    model.micro_batch_size = 2
    logs = _distributed_step(strategy, model, data)
    np.testing.assert_allclose(logs["contrast_loss"],
                               ref_logs["contrast_loss"], rtol=1e-5)
    for a, b in zip(reference.trainable_variables, model.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5,
                                   err_msg=a.path)


def test_two_replicas_with_global_bn_in_training_mode():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = make_model(global_bn=True)
    model.micro_batch_size = 2
    assert gradcache._must_unroll.__name__  # the path this test exercises
    before = [v.numpy().copy() for v in model.trainable_variables]
    logs = _distributed_step(strategy, model, batch(n=8))
    assert np.isfinite(float(logs["loss"]))
    assert any(not np.allclose(b, v.numpy())
               for b, v in zip(before, model.trainable_variables))


def test_micro_batch_must_divide_the_per_replica_batch():
    model = make_model()
    model.micro_batch_size = 3
    with pytest.raises(ValueError, match="micro_batch_size=3 must divide"):
        model.train_step(batch(n=4))
