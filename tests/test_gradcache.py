"""Tests of gradient caching: chunked NT-Xent gradients equal full-batch ones."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2 import gradcache
from simclr_tf2.models import heads
from simclr_tf2.models.simclr_model import SimCLRModel
from tests.test_simclr_model import IMAGE
from tests.test_simclr_model import batch
from tests.test_simclr_model import compile_model
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
    """Unscaled loss and gradients by one tape over the whole batch."""
    task = model.task
    with tf.GradientTape() as tape:
        outputs = model(task.model_inputs(data), training=True)
        loss, _ = task.compute_loss(model, data, outputs)
        loss += task.regularization(model.trainable_variables)[0]
    return loss, tape.gradient(loss, model.trainable_variables)


def _cached_gradients(model, data):
    loss, _, grads = model.loss_and_gradients(data)
    return loss, grads


def _stat_variables(model):
    return gradcache.moving_statistics(model.non_trainable_variables)


def _moving_stats(model):
    return [v.numpy() for v in _stat_variables(model)]


@pytest.mark.parametrize("graph", [False, True])
def test_gradient_equals_full_batch_gradient_with_inference_bn(graph):
    model = make_model()
    _freeze_batch_norm(model)
    data = batch(n=8)
    ref_loss, ref_grads = _full_batch_gradients(model, data)
    model.micro_batch_size = 2
    fn = _cached_gradients
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
    _freeze_batch_norm(model)
    data = batch(n=4)
    _, ref_grads = _full_batch_gradients(model, data)
    model.optimizer = keras.optimizers.LossScaleOptimizer(model.optimizer)
    model.micro_batch_size = 2
    _, grads = _cached_gradients(model, data)
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


class _TinyEncoder(keras.layers.Layer):
    """Conv + BN + pool: a SimCLRModel encoder that traces fast."""

    def __init__(self, global_bn, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(8, 3, strides=2, use_bias=False)
        self.bn = keras.layers.BatchNormalization(synchronized=global_bn)

    def call(self, images, training=None):
        x = tf.nn.relu(self.bn(self.conv(images), training=training))
        return {"final_avg_pool": tf.reduce_mean(x, axis=[1, 2])}


def _tiny_model(global_bn=False, micro_batch_size=0):
    keras.utils.set_random_seed(0)
    model = SimCLRModel(
        _TinyEncoder(global_bn, name="tiny_encoder"),
        heads.ProjectionHead(out_dim=8, global_bn=global_bn),
        heads.supervised_head(3))
    model(tf.zeros([1, IMAGE, IMAGE, 3]), training=False)
    return compile_model(model, micro_batch_size=micro_batch_size)


_KEY_BASE = [10_000]


def _mirrored():
    """A 2-replica MirroredStrategy with collective keys of its own.

    Strategies in one process otherwise share group and instance keys, and a
    later one running different collectives aborts ("Collective instance N
    expected type ...").
    """
    _KEY_BASE[0] += 1_000
    tf.distribute.MirroredStrategy._collective_key_base = _KEY_BASE[0]
    try:
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    finally:
        tf.distribute.MirroredStrategy._collective_key_base = 0


def _distributed_step(strategy, model, data):
    """One train_step on the global batch `data`, split over the replicas."""
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(
        int(data["label"].shape[0]), drop_remainder=True)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))

    @tf.function
    def step():
        logs = strategy.run(model.train_step, args=(next(iterator),))
        return {k: strategy.reduce("MEAN", v, axis=None)
                for k, v in logs.items()}

    return step()


def _assert_same_variables(expected, got):
    assert len(expected.variables) == len(got.variables)
    for a, b in zip(expected.variables, got.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5,
                                   err_msg=a.path)


def test_two_replicas_match_full_batch_step_with_inference_bn():
    # Negatives and dL/dz cross replicas; the chunk loop is a tf.while_loop.
    data = batch(n=8)
    reference = _tiny_model()
    _freeze_batch_norm(reference)
    ref_logs = tf.function(reference.train_step)(data)
    strategy = _mirrored()
    with strategy.scope():
        model = _tiny_model(micro_batch_size=2)
        _freeze_batch_norm(model)
    logs = _distributed_step(strategy, model, data)
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
    reference = _tiny_model(micro_batch_size=4)
    ref_logs = tf.function(reference.train_step)(reordered)
    strategy = _mirrored()
    with strategy.scope():
        model = _tiny_model(global_bn=True, micro_batch_size=2)
        assert gradcache.must_unroll(model._flatten_layers())
    logs = _distributed_step(strategy, model, data)
    for key in ("loss", "contrast_loss", "contrast_acc", "supervised_loss"):
        np.testing.assert_allclose(logs[key], ref_logs[key], rtol=1e-5,
                                   err_msg=key)
    _assert_same_variables(reference, model)


def test_micro_batch_must_divide_the_per_replica_batch():
    model = make_model()
    model.micro_batch_size = 3
    with pytest.raises(ValueError, match="micro_batch_size=3 must divide"):
        model.train_step(batch(n=4))
