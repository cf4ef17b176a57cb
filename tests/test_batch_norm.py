"""FusedBatchNormalization against Keras 3's BatchNormalization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2.models import batch_norm
from simclr_tf2.models.batch_norm import FusedBatchNormalization

# (atol, rtol) per policy: bf16 activations carry 8 significant bits.
TOLERANCES = {"float32": (2e-5, 1e-4), "mixed_bfloat16": (3e-2, 2e-2)}


@pytest.fixture(params=["float32", "mixed_bfloat16"])
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


def _pair(shape, **kwargs):
    """A Keras BN and a fused BN with the same random weights."""
    kwargs = dict(momentum=0.9, epsilon=1e-5, **kwargs)
    reference = keras.layers.BatchNormalization(**kwargs)
    fused = FusedBatchNormalization(**kwargs)
    for layer in (reference, fused):
        layer.build(shape)
    rng = np.random.default_rng(0)
    weights = [rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
               for w in reference.get_weights()]
    reference.set_weights(weights)
    fused.set_weights(weights)
    return reference, fused


def _step(layer, x, upstream, training):
    """Output and gradients w.r.t. input and trainable weights."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
    grads = tape.gradient(loss, [x] + layer.trainable_variables)
    return [y] + grads


def _close(actual, expected, policy, scale=1.0):
    atol, rtol = TOLERANCES[policy]
    np.testing.assert_allclose(np.asarray(tf.cast(actual, tf.float32)),
                               np.asarray(tf.cast(expected, tf.float32)),
                               atol=atol * scale, rtol=rtol)


@pytest.mark.parametrize("shape,center,scale", [
    ((8, 5, 5, 6), True, True), ((4, 3, 3, 16), True, True),
    ((16, 7), True, True), ((16, 7), False, True),
    ((16, 7), False, False)])
def test_training_matches_keras(policy, shape, center, scale):
    reference, fused = _pair(shape, center=center, scale=scale)
    rng = np.random.default_rng(1)
    compute = keras.mixed_precision.global_policy().compute_dtype
    for step in range(3):  # Moving statistics compound over steps.
        x = tf.cast(rng.normal(2.0, 3.0, shape), compute)
        upstream = tf.constant(rng.normal(size=shape), tf.float32)
        assert fused.uses_fused(x)
        got = _step(fused, x, upstream, training=True)
        want = _step(reference, x, upstream, training=True)
        assert got[0].dtype == want[0].dtype == compute
        assert len(got) == len(want) == 2 + int(center) + int(scale)
        for a, b in zip(got, want):
            _close(a, b, policy, scale=max(1.0, float(tf.reduce_max(abs(
                tf.cast(b, tf.float32))))))
    for a, b in zip(fused.non_trainable_variables,
                    reference.non_trainable_variables):
        # float32 statistics of the same bf16 inputs: tight in both policies.
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(fused.moving_variance.numpy(), 1.0)


def test_moving_variance_is_biased():
    """Keras 3 semantics: the biased batch variance (tf-keras used n-1)."""
    layer = FusedBatchNormalization(momentum=0.0)
    x = tf.constant([[1.0], [3.0]])  # mean 2, biased variance 1, unbiased 2
    layer(x, training=True)
    np.testing.assert_allclose(layer.moving_mean.numpy(), [2.0])
    np.testing.assert_allclose(layer.moving_variance.numpy(), [1.0])


def test_inference_and_frozen_match_keras(policy):
    shape = (4, 3, 3, 5)
    reference, fused = _pair(shape)
    x = tf.cast(tf.random.normal(shape, seed=2),
                keras.mixed_precision.global_policy().compute_dtype)
    upstream = tf.random.normal(shape, seed=3)
    for a, b in zip(_step(fused, x, upstream, training=False),
                    _step(reference, x, upstream, training=False)):
        _close(a, b, policy, scale=4.0)
    fused.trainable = False  # Keras: a frozen BN layer runs in inference mode.
    stats = [v.numpy() for v in fused.non_trainable_variables]
    _close(fused(x, training=True), reference(x, training=False), policy, 4.0)
    for v, before in zip(fused.non_trainable_variables, stats):
        np.testing.assert_array_equal(v.numpy(), before)


def test_unfused_switch_gives_keras_path():
    layer = FusedBatchNormalization()
    x = tf.ones([2, 3])
    assert layer.uses_fused(x)
    with batch_norm.fused_by_default(False):
        assert not layer.uses_fused(x)
    assert not FusedBatchNormalization(fused=False).uses_fused(x)
    assert not layer.uses_fused(tf.ones([2, 3, 4]))  # rank 3: Keras path
    with pytest.raises(ValueError, match="fused must be None or False"):
        FusedBatchNormalization(fused=True)


def test_synchronized_is_fused_only_on_one_replica():
    layer = FusedBatchNormalization(synchronized=True)
    x = tf.ones([4, 3])
    assert layer.uses_fused(x)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    if len(devices) < 2:
        pytest.skip("needs 2 logical CPU devices (see tests/conftest.py)")
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        assert not layer.uses_fused(x)
        assert FusedBatchNormalization(synchronized=False).uses_fused(x)


def test_config_round_trip_and_variables():
    layer = FusedBatchNormalization(momentum=0.8, epsilon=1e-4, center=False,
                                    fused=False, name="x_batch_normalization")
    clone = FusedBatchNormalization.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.fused is False and clone.momentum == 0.8 and not clone.center
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer))
    assert type(restored) is FusedBatchNormalization

    fused, reference = FusedBatchNormalization(), keras.layers.BatchNormalization()
    fused.build((2, 3))
    reference.build((2, 3))
    assert ([v.path.split("/")[-1] for v in fused.weights] ==
            [v.path.split("/")[-1] for v in reference.weights] ==
            ["gamma", "beta", "moving_mean", "moving_variance"])


def test_checkpoint_from_keras_layer_loads(tmp_path):
    """A checkpoint written with Keras' BN restores into the fused layer."""
    reference, _ = _pair((2, 3))
    prefix = tf.train.Checkpoint(bn=reference).save(str(tmp_path / "ckpt"))
    fused = FusedBatchNormalization()
    fused.build((2, 3))
    tf.train.Checkpoint(bn=fused).restore(prefix).assert_consumed()
    for a, b in zip(fused.weights, reference.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_fused_inside_xla_and_tf_function():
    layer = FusedBatchNormalization()
    reference = keras.layers.BatchNormalization()
    x = tf.random.normal([8, 4, 4, 3], seed=4)
    got = tf.function(lambda v: layer(v, training=True), jit_compile=True)(x)
    want = reference(x, training=True)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=2e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(),
                               reference.moving_variance.numpy(), rtol=1e-5)


@pytest.mark.parametrize("dtype,channels,expected", [
    (tf.bfloat16, 8, tf.float32), (tf.bfloat16, 24, tf.float32),
    (tf.bfloat16, 16, tf.bfloat16), (tf.bfloat16, 64, tf.bfloat16),
    (tf.float16, 8, tf.float32), (tf.float32, 8, tf.float32)])
def test_normalisation_dtype_blocks_of_16(dtype, channels, expected):
    assert batch_norm.normalisation_dtype(dtype, channels) == expected


@pytest.mark.parametrize("channels,kernel_dtype", [(8, tf.float32),
                                                   (16, tf.bfloat16)])
def test_bf16_layer_runs_kernel_in_chosen_dtype(channels, kernel_dtype):
    """Under mixed_bfloat16 the traced step normalises 8 channels in float32
    and 16 in bfloat16, and hands bfloat16 on either way."""
    layer = FusedBatchNormalization(dtype="mixed_bfloat16")
    x = tf.cast(tf.random.normal([4, 3, 3, channels]), tf.bfloat16)
    layer.build(x.shape)
    graph = tf.function(lambda v: layer(v, training=True)).get_concrete_function(
        x).graph
    kernels = [op for op in graph.get_operations()
               if op.type == "FusedBatchNormV3"]
    assert [op.get_attr("T") for op in kernels] == [kernel_dtype]
    assert layer(x, training=True).dtype == tf.bfloat16
