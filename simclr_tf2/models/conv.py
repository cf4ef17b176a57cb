"""Conv2D whose kernel gradient is a matrix product where that is faster.

On CPUs, oneDNN's bfloat16 kernel-gradient convolution
(``Conv2DBackpropFilter``) is slow when the output is small: at 4x4 x 512
channels it runs at a quarter of the bf16 forward convolution's rate,
slower than float32 (README's Performance section has the figures). Those are ResNet's last two block groups on
32 px inputs, and the ImageNet ResNets' last group.

The kernel gradient of a convolution is a sum of matrix products, one per
kernel tap ``(i, j)``::

    dW[i, j] = X_ij^T @ dY

with ``dY`` the output gradient as ``[B * Ho * Wo, C_out]`` and ``X_ij`` the
input pixels that tap ``(i, j)`` reads, as ``[B * Ho * Wo, C_in]`` (a
slice of the padded input). When ``Ho * Wo`` is small, ``X_ij`` is small, and oneDNN's
bf16 matrix product runs near the machine's peak. The forward pass
and the input gradient are TensorFlow's own convolution ops.

The matrix-product kernel gradient is used only where it pays: bfloat16
compute, no GPU or TPU visible, stride 1 (strided slices are slow), output
of at most ``SMALL_OUTPUT_PIXELS`` pixels and at least ``MIN_CHANNEL_PAIRS``
input x output channels. Everywhere else the layer is exactly
``keras.layers.Conv2D`` (same variables, same ops).
"""

import keras
import tensorflow as tf

# Where the matrix-product kernel gradient overtakes oneDNN's bf16
# Conv2DBackpropFilter on an AVX512_BF16 CPU (AMD EPYC, TF 2.21): outputs of
# at most 8 x 8 pixels with at least 128 x 128 channel pairs (7 x 7 x 64 -> 64
# is 20% slower as matrix products; 4 x 4 x 512 -> 512 is 3x faster).
SMALL_OUTPUT_PIXELS = 64
MIN_CHANNEL_PAIRS = 128 * 128


def _on_cpu_only():
    return not (tf.config.list_logical_devices("GPU")
                or tf.config.list_logical_devices("TPU"))


def _same_padding(size, kernel, stride):
    """(before, after) padding of TF's 'SAME' along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _output_size(size, kernel, stride, padding):
    """Output length along one axis for Keras padding 'same' or 'valid'."""
    if padding == "same":
        return -(-size // stride)
    return (size - kernel) // stride + 1


def kernel_gradient_by_matmul(x, dy, kernel_size, strides, padding):
    """The kernel gradient of ``conv2d(x, W, strides, padding)`` as matrix products.

    Args:
        x: ``[B, H, W, C_in]``, the convolution's input.
        dy: ``[B, Ho, Wo, C_out]``, the gradient of its output.
        kernel_size: ``(kh, kw)``.
        strides: ``(sh, sw)``.
        padding: ``"SAME"`` or ``"VALID"`` (TensorFlow's definitions).

    Returns:
        ``[kh, kw, C_in, C_out]`` in ``dy``'s dtype (float32 accumulation).
    """
    (kh, kw), (sh, sw) = kernel_size, strides
    height, width, c_in = x.shape[1], x.shape[2], x.shape[3]
    out_h, out_w, c_out = dy.shape[1], dy.shape[2], dy.shape[3]
    if padding == "SAME":
        x = tf.pad(x, [[0, 0], _same_padding(height, kh, sh),
                       _same_padding(width, kw, sw), [0, 0]])
    dy_rows = tf.reshape(dy, [-1, c_out])                       # [B*Ho*Wo, C_out]
    taps = []
    for i in range(kh):
        for j in range(kw):
            window = x[:, i:i + sh * (out_h - 1) + 1:sh,
                       j:j + sw * (out_w - 1) + 1:sw, :]        # [B, Ho, Wo, C_in]
            taps.append(tf.linalg.matmul(tf.reshape(window, [-1, c_in]), dy_rows,
                                         transpose_a=True))     # [C_in, C_out]
    return tf.reshape(tf.stack(taps), [kh, kw, c_in, c_out])


@keras.saving.register_keras_serializable(package="simclr_tf2")
class MatmulGradConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` (channels last, no dilation) with the faster
    kernel gradient described in the module docstring.

    Same constructor, variables and outputs as ``keras.layers.Conv2D``.
    """

    def uses_matmul_gradient(self, inputs):
        """Whether a call on ``inputs`` ``[B, H, W, C]`` takes the matmul kernel gradient."""
        if (inputs.dtype != tf.bfloat16 or self.data_format != "channels_last"
                or tuple(self.strides) != (1, 1) or tuple(self.dilation_rate) != (1, 1)
                or self.groups != 1):
            return False
        sizes = inputs.shape[1:3]
        if None in sizes or inputs.shape[3] is None:
            return False
        out_h, out_w = (_output_size(n, k, s, self.padding) for n, k, s in
                        zip(sizes, self.kernel_size, self.strides))
        return (out_h * out_w <= SMALL_OUTPUT_PIXELS
                and inputs.shape[3] * self.filters >= MIN_CHANNEL_PAIRS
                and _on_cpu_only())

    def convolution_op(self, inputs, kernel):
        """``[B, H, W, C_in]`` conv ``[kh, kw, C_in, C_out]`` -> ``[B, Ho, Wo, C_out]``."""
        inputs = tf.convert_to_tensor(inputs)
        if not self.uses_matmul_gradient(inputs):
            return super().convolution_op(inputs, kernel)
        strides = [1, *self.strides, 1]
        padding = self.padding.upper()
        kernel_size = tuple(self.kernel_size)

        @tf.custom_gradient
        def conv(x, w):
            def grad(dy):
                dx = tf.raw_ops.Conv2DBackpropInput(
                    input_sizes=tf.shape(x), filter=w, out_backprop=dy,
                    strides=strides, padding=padding)
                dw = kernel_gradient_by_matmul(x, dy, kernel_size,
                                               self.strides, padding)
                return dx, dw
            return tf.nn.conv2d(x, w, strides, padding), grad

        return conv(inputs, tf.cast(kernel, inputs.dtype))
