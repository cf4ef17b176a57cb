"""Conv2D with the matrix-product kernel gradient against TensorFlow's own."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2.models import conv
from simclr_tf2.models.conv import MatmulGradConv2D, kernel_gradient_by_matmul


@pytest.mark.parametrize("shape,kernel,stride,padding", [
    ((2, 4, 4, 3), 3, 1, "SAME"),
    ((2, 5, 7, 3), 3, 1, "SAME"),      # odd, rectangular
    ((2, 6, 6, 4), 3, 2, "SAME"),      # strided SAME pads (0, 1)
    ((2, 9, 9, 4), 3, 2, "VALID"),     # as ConvBN's pre-padded strided conv
    ((2, 8, 8, 5), 1, 1, "SAME"),
    ((2, 8, 8, 5), 1, 2, "VALID"),     # strided projection shortcut
    ((1, 12, 10, 2), 7, 2, "SAME"),
    ((3, 4, 4, 6), 2, 1, "SAME"),      # even kernel: TF pads (0, 1)
])
def test_kernel_gradient_equals_tensorflows(shape, kernel, stride, padding):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape), tf.float32)
    w = tf.constant(rng.normal(size=(kernel, kernel, shape[-1], 6)), tf.float32)
    dy = tf.constant(rng.normal(size=tf.nn.conv2d(x, w, stride, padding).shape),
                     tf.float32)
    expected = tf.raw_ops.Conv2DBackpropFilter(
        input=x, filter_sizes=w.shape, out_backprop=dy,
        strides=[1, stride, stride, 1], padding=padding)
    actual = kernel_gradient_by_matmul(x, dy, (kernel, kernel), (stride, stride),
                                       padding)
    assert actual.shape == w.shape
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def _pair(filters, kernel_size, input_shape, dtype):
    reference = keras.layers.Conv2D(filters, kernel_size, padding="same",
                                    use_bias=False, dtype=dtype)
    layer = MatmulGradConv2D(filters, kernel_size, padding="same", use_bias=False, dtype=dtype)
    for each in (reference, layer):
        each.build(input_shape)
    layer.set_weights(reference.get_weights())
    return reference, layer


def _output_and_gradients(layer, x, upstream):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
    return [tf.cast(t, tf.float32) for t in
            [y] + tape.gradient(loss, [x, layer.kernel])]


@pytest.mark.parametrize("kernel_size", [3, 1])
def test_bf16_layer_matches_keras_conv(kernel_size):
    shape = (4, 4, 4, 128)
    reference, layer = _pair(128, kernel_size, shape, "mixed_bfloat16")
    x = tf.random.stateless_uniform(shape, [0, 1])
    assert layer.uses_matmul_gradient(tf.cast(x, tf.bfloat16))
    upstream = tf.random.stateless_normal((4, 4, 4, 128), [0, 2])
    expected = _output_and_gradients(reference, x, upstream)
    actual = _output_and_gradients(layer, x, upstream)
    np.testing.assert_array_equal(actual[0], expected[0])   # same forward op
    np.testing.assert_array_equal(actual[1], expected[1])   # same input gradient op
    # Kernel gradient: another summation order, bf16 rounding of the result.
    scale = float(tf.reduce_max(tf.abs(expected[2])))
    np.testing.assert_allclose(actual[2], expected[2], atol=1e-2 * scale)
    assert actual[2].dtype == tf.float32 and layer.kernel.dtype == "float32"


def test_bf16_layer_trains_inside_tf_function():
    shape = (2, 4, 4, 128)
    reference, layer = _pair(128, 3, shape, "mixed_bfloat16")
    x = tf.random.stateless_uniform(shape, [1, 1])
    upstream = tf.random.stateless_normal(shape, [1, 2])
    assert layer.uses_matmul_gradient(tf.cast(x, tf.bfloat16))
    compiled = tf.function(lambda: _output_and_gradients(layer, x, upstream)[2])
    expected = _output_and_gradients(reference, x, upstream)[2]
    scale = float(tf.reduce_max(tf.abs(expected)))
    np.testing.assert_allclose(compiled(), expected, atol=1e-2 * scale)


def test_matmul_gradient_only_where_it_pays(monkeypatch):
    small = tf.zeros((2, 8, 8, 128), tf.bfloat16)
    layer = MatmulGradConv2D(128, 3, padding="same", dtype="mixed_bfloat16")
    assert layer.uses_matmul_gradient(small)                      # 8 x 8 = 64 pixels
    assert not layer.uses_matmul_gradient(tf.zeros((2, 9, 8, 128), tf.bfloat16))
    assert not layer.uses_matmul_gradient(small[..., :64])        # 64 x 128 channels
    assert not layer.uses_matmul_gradient(tf.cast(small, tf.float32))
    strided = MatmulGradConv2D(128, 3, strides=2, padding="valid", dtype="mixed_bfloat16")
    assert not strided.uses_matmul_gradient(small)                # slow strided slices
    monkeypatch.setattr(conv, "_on_cpu_only", lambda: False)
    assert not layer.uses_matmul_gradient(small)                  # GPU/TPU: native


def test_same_variables_as_keras_conv():
    reference, layer = _pair(8, 3, (1, 4, 4, 3), "float32")
    assert ([(v.path.split("/")[-1], tuple(v.shape)) for v in layer.weights] ==
            [(v.path.split("/")[-1], tuple(v.shape)) for v in reference.weights])
    config = layer.get_config()
    assert keras.layers.Conv2D.from_config(config).get_config() == config


def _encoder_kernel_gradients(encoder, images):
    with tf.GradientTape() as tape:
        features = encoder(images, training=True)["final_avg_pool"]
        loss = tf.reduce_sum(tf.square(tf.cast(features, tf.float32)))
    kernels = [v for v in encoder.trainable_variables if "kernel" in v.path]
    return dict(zip([v.path for v in kernels], tape.gradient(loss, kernels)))


def test_resnet_bf16_step_takes_matmul_gradient_and_matches_native(monkeypatch):
    from simclr_tf2.models.resnet import ResNet
    encoder = ResNet(depth=18, width_multiplier=0.25, cifar_stem=True,
                     dtype="mixed_bfloat16")  # last group: 128 channels at 4 x 4
    images = tf.random.stateless_uniform((4, 32, 32, 3), [2, 0])
    encoder(images)
    convs = [layer for layer in encoder._flatten_layers() if isinstance(layer, MatmulGradConv2D)]
    assert convs and all(type(layer) is MatmulGradConv2D for layer in convs)
    step = tf.function(lambda: _encoder_kernel_gradients(encoder, images))
    calls = []
    original = conv.kernel_gradient_by_matmul
    monkeypatch.setattr(conv, "kernel_gradient_by_matmul",
                        lambda *a: calls.append(a[2]) or original(*a))
    fast = step()
    assert len(calls) == 3  # block 1's second conv, block 2's two convs
    monkeypatch.setattr(conv, "_on_cpu_only", lambda: False)
    native = tf.function(lambda: _encoder_kernel_gradients(encoder, images))()
    for path, expected in native.items():
        scale = float(tf.reduce_max(tf.abs(expected))) + 1e-12
        np.testing.assert_allclose(fast[path], expected, atol=3e-2 * scale,
                                   err_msg=path)


class _Wrapper(tf.Module):
    """A [2, 4, 4, 128] -> [2, 4, 4, 128] bf16 conv as a SavedModel sees it."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.kernel = layer.kernel.value  # the tf.Variable, tracked here

    @tf.function(input_signature=[tf.TensorSpec((2, 4, 4, 128), tf.float32)])
    def __call__(self, images):
        return self.layer(images)


def test_saved_model_keeps_a_trainable_bf16_conv(tmp_path):
    layer = MatmulGradConv2D(128, 3, padding="same", use_bias=False, dtype="mixed_bfloat16")
    x = tf.random.stateless_uniform((2, 4, 4, 128), [3, 0])
    assert layer.uses_matmul_gradient(tf.cast(x, tf.bfloat16))
    layer(x)
    module = _Wrapper(layer)
    tf.saved_model.save(module, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    gradients = []
    for model in (module, loaded):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(model(x), tf.float32) ** 2)
        gradients.append(tape.gradient(loss, model.kernel))
    assert gradients[1] is not None
    np.testing.assert_allclose(gradients[1], gradients[0], rtol=1e-6)


def test_step_profile_can_put_every_kernel_gradient_on_onednn(monkeypatch):
    """benchmarks/step_profile.py --onednn_kernel_gradient profiles the step
    with the matrix-product kernel gradient switched off."""
    from tests import harness
    step_profile = harness.benchmark_module("step_profile")
    monkeypatch.setattr(conv, "SMALL_OUTPUT_PIXELS", conv.SMALL_OUTPUT_PIXELS)
    small = tf.zeros((2, 8, 8, 128), tf.bfloat16)
    layer = MatmulGradConv2D(128, 3, padding="same", dtype="mixed_bfloat16")
    decisions = []
    monkeypatch.setattr(step_profile, "profile", lambda *args: decisions.append(
        layer.uses_matmul_gradient(small)) or {})
    monkeypatch.setattr(step_profile, "print_profile", lambda result: None)
    step_profile.main(["--precision=mixed_bfloat16"])
    step_profile.main(["--precision=mixed_bfloat16", "--onednn_kernel_gradient"])
    assert decisions == [True, False]
