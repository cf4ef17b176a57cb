"""Conv+BN, stem, selective-kernel and squeeze-excitation blocks for the ResNet encoder.

Naming contract: every batch-norm layer built here has a name containing
``batch_normalization`` (the optimizer keys weight-decay exclusion on that
substring of the variable path) and no other layer does.

Composite layers build their children explicitly in ``build()`` (shapes come
from ``compute_output_shape``) instead of letting Keras trace ``call()``
symbolically at every nesting level, which made a ResNet-50 build ~10x slower.
"""

import keras
from keras import ops

from simclr_tf2.models.batch_norm import FusedBatchNormalization
from simclr_tf2.models.conv import MatmulGradConv2D

# He (fan-in, truncated normal) init: the convs are followed by ReLU.
KERNEL_INITIALIZER = "he_normal"


def build_chain(layers, input_shape):
    """Builds ``layers`` as a sequence; returns the last output shape."""
    shape = tuple(input_shape)
    for layer in layers:
        layer.build(shape)
        shape = tuple(layer.compute_output_shape(shape))
    return shape


def strided_shape(input_shape, strides, channels):
    """``[B, ceil(H / strides), ceil(W / strides), channels]`` (None stays None)."""
    batch, height, width, _ = input_shape
    return (batch, *(None if n is None else -(-n // strides) for n in (height, width)),
            channels)


class BatchNormLayer(keras.layers.Layer):
    """Base for layers that own BatchNormalization: stores the BN settings.

    Args:
        batch_norm_decay: BN momentum.
        batch_norm_epsilon: BN epsilon.
        global_bn: Synchronise BN statistics across replicas.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    def __init__(self, batch_norm_decay=0.9, batch_norm_epsilon=1e-5,
                 global_bn=False, **kwargs):
        super().__init__(**kwargs)
        self.batch_norm_decay = batch_norm_decay
        self.batch_norm_epsilon = batch_norm_epsilon
        self.global_bn = global_bn

    @property
    def shared_kwargs(self):
        """Constructor kwargs for child ``BatchNormLayer``s (BN settings, dtype).

        Keras 3 does not propagate a parent's dtype policy to its children.
        """
        return dict(batch_norm_decay=self.batch_norm_decay,
                    batch_norm_epsilon=self.batch_norm_epsilon,
                    global_bn=self.global_bn, dtype=self.dtype_policy)

    def batch_norm(self, name, zero_init=False):
        """A BatchNormalization child; ``zero_init`` starts gamma at 0.

        Fused kernel where exact (``batch_norm.FusedBatchNormalization``).
        """
        if "batch_normalization" not in name:
            raise ValueError(f"BN layer name {name!r} must contain 'batch_normalization'.")
        return FusedBatchNormalization(
            momentum=self.batch_norm_decay, epsilon=self.batch_norm_epsilon,
            synchronized=self.global_bn, dtype=self.dtype_policy, name=name,
            gamma_initializer="zeros" if zero_init else "ones")

    def get_config(self):
        config = super().get_config()
        config.update(batch_norm_decay=self.batch_norm_decay,
                      batch_norm_epsilon=self.batch_norm_epsilon,
                      global_bn=self.global_bn)
        return config


@keras.saving.register_keras_serializable(package="simclr_tf2")
class ConvBN(BatchNormLayer):
    """Bias-free conv with input-size-independent padding, then BN (+ ReLU).

    Strided convs pad ``kernel_size - 1`` symmetrically and run VALID, so the
    sampling grid does not depend on whether the input size is even (unlike
    'same'); the output size is still ``ceil(H / strides)``. (A conv with
    explicit paddings instead of Pad + VALID has no oneDNN kernel in TF 2.21:
    forward + backward 1.3-3.4x slower in float32, ~30x in bfloat16.)

    Args:
        filters: Output channels.
        kernel_size: Square kernel size.
        strides: Conv stride.
        activation: Apply ReLU after BN.
        zero_init: Zero-initialise the BN gamma.
        **kwargs: ``BatchNormLayer`` arguments.
    """

    def __init__(self, filters, kernel_size, strides=1, activation=True,
                 zero_init=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.activation = activation
        self.zero_init = zero_init
        total = kernel_size - 1
        # A 1x1 conv needs no padding: a zero Pad would only cost its
        # gradient (a Slice, slow in bf16 on CPU).
        self.pad = keras.layers.ZeroPadding2D(
            ((total // 2, total - total // 2),) * 2, dtype=self.dtype_policy,
            name="pad") if strides > 1 and total > 0 else None
        self.conv = MatmulGradConv2D(
            filters, kernel_size, strides=strides,
            padding="valid" if strides > 1 else "same", use_bias=False,
            kernel_initializer=KERNEL_INITIALIZER, dtype=self.dtype_policy, name="conv")
        self.bn = self.batch_norm("batch_normalization", zero_init)

    def build(self, input_shape):
        build_chain([layer for layer in (self.pad, self.conv, self.bn) if layer],
                    input_shape)

    def compute_output_shape(self, input_shape):
        return strided_shape(input_shape, self.strides, self.filters)

    def call(self, inputs, training=None):
        """Applies the conv block.

        Args:
            inputs: ``[B, H, W, C_in]``.
            training: Whether BN uses batch statistics.

        Returns:
            ``[B, ceil(H / strides), ceil(W / strides), filters]``.
        """
        x = self.pad(inputs) if self.pad is not None else inputs
        x = self.bn(self.conv(x), training=training)
        return ops.relu(x) if self.activation else x

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size,
                      strides=self.strides, activation=self.activation,
                      zero_init=self.zero_init)
        return config


@keras.saving.register_keras_serializable(package="simclr_tf2")
class SelectiveKernel(BatchNormLayer):
    """Selective-kernel 3x3 conv (SKNet, as used by SimCLRv2), then BN-ReLU.

    One 3x3 conv produces ``2 * filters`` channels, split into two branches.
    Their sum is pooled and squeezed through a BN-ReLU bottleneck to per-branch
    channel logits; a softmax over the two branches weights their sum.

    Args:
        filters: Output channels.
        strides: Stride of the 3x3 conv.
        sk_ratio: Attention bottleneck width as a fraction of ``filters``.
        min_dim: Lower bound on the bottleneck width.
        **kwargs: ``BatchNormLayer`` arguments.
    """

    def __init__(self, filters, strides=1, sk_ratio=0.0625, min_dim=32, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.sk_ratio = sk_ratio
        self.min_dim = min_dim
        self.branches = ConvBN(2 * filters, 3, strides, name="branches",
                               **self.shared_kwargs)
        self.squeeze = keras.layers.Dense(
            max(int(filters * sk_ratio), min_dim), use_bias=False,
            kernel_initializer=KERNEL_INITIALIZER, dtype=self.dtype_policy,
            name="squeeze")
        self.squeeze_bn = self.batch_norm("squeeze_batch_normalization")
        self.mix = keras.layers.Dense(
            2 * filters, use_bias=False, kernel_initializer=KERNEL_INITIALIZER,
            dtype=self.dtype_policy, name="mix")

    def build(self, input_shape):
        build_chain([self.branches], input_shape)
        build_chain([self.squeeze, self.squeeze_bn, self.mix],
                    (input_shape[0], self.filters))

    def compute_output_shape(self, input_shape):
        return strided_shape(input_shape, self.strides, self.filters)

    def call(self, inputs, training=None):
        """Applies the selective-kernel conv.

        Args:
            inputs: ``[B, H, W, C_in]``.
            training: Whether BN uses batch statistics.

        Returns:
            ``[B, ceil(H / strides), ceil(W / strides), filters]``.
        """
        both = self.branches(inputs, training=training)            # [B,h,w,2F]
        first, second = ops.split(both, 2, axis=-1)                 # 2x [B,h,w,F]
        pooled = ops.mean(first + second, axis=(1, 2))              # [B, F]
        hidden = ops.relu(self.squeeze_bn(self.squeeze(pooled), training=training))
        logits = ops.reshape(self.mix(hidden), (-1, 2, self.filters))
        weights = ops.softmax(ops.cast(logits, "float32"), axis=1)  # [B, 2, F]
        weights = ops.cast(weights[:, :, None, None, :], first.dtype)
        return first * weights[:, 0] + second * weights[:, 1]

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides,
                      sk_ratio=self.sk_ratio, min_dim=self.min_dim)
        return config


@keras.saving.register_keras_serializable(package="simclr_tf2")
class SqueezeExcitation(keras.layers.Layer):
    """Squeeze-and-excitation channel gating.

    Args:
        filters: Channels of the input (and output).
        se_ratio: Bottleneck width as a fraction of ``reduce_base``.
        reduce_base: Width the ratio applies to (default ``filters``); a
            bottleneck block passes its unexpanded width, as SimCLRv2 does.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    def __init__(self, filters, se_ratio, reduce_base=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.se_ratio = se_ratio
        self.reduce_base = reduce_base
        self.reduce = keras.layers.Dense(
            max(1, int((reduce_base or filters) * se_ratio)), activation="relu",
            kernel_initializer=KERNEL_INITIALIZER, dtype=self.dtype_policy,
            name="reduce")
        self.expand = keras.layers.Dense(
            filters, activation="sigmoid", dtype=self.dtype_policy, name="expand")

    def build(self, input_shape):
        build_chain([self.reduce, self.expand], (input_shape[0], self.filters))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def call(self, inputs):
        """Rescales channels.

        Args:
            inputs: ``[B, H, W, filters]``.

        Returns:
            ``[B, H, W, filters]``, each channel scaled by a gate in (0, 1).
        """
        gate = self.expand(self.reduce(ops.mean(inputs, axis=(1, 2))))  # [B, F]
        return inputs * gate[:, None, None, :]

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, se_ratio=self.se_ratio,
                      reduce_base=self.reduce_base)
        return config


@keras.saving.register_keras_serializable(package="simclr_tf2")
class Stem(BatchNormLayer):
    """Initial convolution(s) + BN-ReLU, before any max-pool.

    ImageNet stem: 7x7/2 conv, or with ``deep`` the SimCLRv2 three 3x3 convs
    (stride 2, then 1, 1; widths ``filters // 2``, ``filters // 2``,
    ``filters``). CIFAR stem: a single 3x3/1 conv.

    Args:
        filters: Output channels.
        cifar_stem: Use the stride-1 CIFAR stem.
        deep: Use the three-conv deep stem (ImageNet stem only).
        **kwargs: ``BatchNormLayer`` arguments.
    """

    def __init__(self, filters, cifar_stem=False, deep=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.cifar_stem = cifar_stem
        self.deep = deep
        if cifar_stem:
            specs = [(filters, 3, 1)]
        elif deep:
            half = max(1, filters // 2)
            specs = [(half, 3, 2), (half, 3, 1), (filters, 3, 1)]
        else:
            specs = [(filters, 7, 2)]
        self.convs = [ConvBN(f, k, s, name=f"conv_{i}", **self.shared_kwargs)
                      for i, (f, k, s) in enumerate(specs)]

    def build(self, input_shape):
        build_chain(self.convs, input_shape)

    def compute_output_shape(self, input_shape):
        return strided_shape(input_shape, 1 if self.cifar_stem else 2, self.filters)

    def call(self, inputs, training=None):
        """Applies the stem.

        Args:
            inputs: ``[B, H, W, 3]``.
            training: Whether BN uses batch statistics.

        Returns:
            ``[B, H, W, filters]`` (CIFAR) or ``[B, ceil(H/2), ceil(W/2), filters]``.
        """
        return self.features(inputs, training=training)[1]

    def features(self, inputs, training=None):
        """The stem's output and, as the original exports it, its last conv's output.

        Args:
            inputs: ``[B, H, W, 3]``.
            training: Whether BN uses batch statistics.

        Returns:
            ``(initial_conv, output)``: the last conv's output before its BN
            (the original's ``initial_conv``) and the stem output after
            BN-ReLU, both ``[B, h, w, filters]``.
        """
        x = inputs
        for conv in self.convs[:-1]:
            x = conv(x, training=training)
        last = self.convs[-1]
        conv_output = last.conv(last.pad(x) if last.pad is not None else x)
        return conv_output, ops.relu(last.bn(conv_output, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, cifar_stem=self.cifar_stem, deep=self.deep)
        return config
