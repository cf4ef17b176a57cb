"""ResNet v1 encoder for SimCLR: width multiplier, SK/SE, CIFAR stem, sync BN.

Stride sits on the 3x3 conv of bottleneck blocks ("v1.5"); convs have no bias
and He init; every block's last BN starts with gamma = 0 so the residual branch
starts as zero. ``ResNet.call`` returns a dict of named intermediate outputs so
heads and exporters pick features by name. Every sub-layer is given its
parent's dtype policy, so both the global policy and
``ResNet(dtype="mixed_bfloat16")`` are honoured.
"""

import numbers

import keras
from keras import ops

from simclr_tf2.config import cifar_stem_for  # noqa: F401  (one rule, in config)
from simclr_tf2.errors import ConfigError
from simclr_tf2.models.layers import (
    BatchNormLayer, ConvBN, SelectiveKernel, SqueezeExcitation, Stem, build_chain,
    strided_shape)

# depth -> (bottleneck?, blocks per group)
BLOCK_SPECS = {
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
    152: (True, (3, 8, 36, 3)),
    200: (True, (3, 24, 36, 3)),
}
GROUP_FILTERS = (64, 128, 256, 512)
GROUP_STRIDES = (1, 2, 2, 2)
BOTTLENECK_EXPANSION = 4


def _scaled(channels, width_multiplier):
    return max(1, int(round(channels * width_multiplier)))


@keras.saving.register_keras_serializable(package="simclr_tf2")
class ResidualBlock(BatchNormLayer):
    """One residual block: basic (two 3x3) or bottleneck (1x1-3x3-1x1, x4).

    Args:
        filters: Width of the block (output is ``4 * filters`` if bottleneck).
        strides: Stride of the (first) 3x3 conv and of the shortcut.
        bottleneck: Bottleneck instead of basic block.
        use_projection: 1x1-conv+BN shortcut instead of identity.
        sk_ratio: > 0 turns a bottleneck's 3x3 conv into a selective kernel
            (basic blocks keep plain convs) and makes the projection shortcut
            average-pool 2x2 before its 1x1 conv (ResNet-D, SimCLRv2).
        se_ratio: > 0 adds squeeze-excitation before the residual sum; its
            reduce width is ``filters * se_ratio`` (the block width, not the
            4x expanded output of a bottleneck).
        **kwargs: ``BatchNormLayer`` arguments.
    """

    def __init__(self, filters, strides=1, bottleneck=True, use_projection=False,
                 sk_ratio=0.0, se_ratio=0.0, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.bottleneck = bottleneck
        self.use_projection = use_projection
        self.sk_ratio = sk_ratio
        self.se_ratio = se_ratio
        shared = self.shared_kwargs
        self.out_filters = filters * (BOTTLENECK_EXPANSION if bottleneck else 1)
        self.shortcut = self._make_shortcut(shared) if use_projection else []
        if sk_ratio > 0 and bottleneck:
            spatial = SelectiveKernel(filters, strides, sk_ratio, name="sk_conv", **shared)
        else:
            spatial = ConvBN(filters, 3, strides, name="conv3x3", **shared)
        last = ConvBN(self.out_filters, 1 if bottleneck else 3, activation=False,
                      zero_init=True, name="conv_last", **shared)
        self.branch = [spatial, last]
        if bottleneck:
            self.branch.insert(0, ConvBN(filters, 1, name="conv1x1", **shared))
        if se_ratio > 0:
            self.branch.append(SqueezeExcitation(
                self.out_filters, se_ratio, reduce_base=filters,
                dtype=self.dtype_policy, name="se"))

    def _make_shortcut(self, shared):
        projection = ConvBN(self.out_filters, 1, 1 if self.sk_ratio > 0 else self.strides,
                            activation=False, name="projection", **shared)
        if self.sk_ratio <= 0:
            return [projection]
        # ResNet-D (SimCLRv2): average each 2x2 window before the 1x1 conv.
        # Strided: zero-pad bottom/right by one and pool VALID, so an odd
        # border window averages over 4 (zeros included). Stride 1: 'same'
        # pooling, whose border windows average only the real pixels.
        policy = self.dtype_policy
        if self.strides == 1:
            return [keras.layers.AveragePooling2D(
                2, 1, padding="same", dtype=policy, name="avg_pool"), projection]
        return [keras.layers.ZeroPadding2D(((0, 1), (0, 1)), dtype=policy, name="pool_pad"),
                keras.layers.AveragePooling2D(
                    2, self.strides, padding="valid", dtype=policy, name="avg_pool"),
                projection]

    def build(self, input_shape):
        build_chain(self.shortcut, input_shape)
        build_chain(self.branch, input_shape)

    def compute_output_shape(self, input_shape):
        return strided_shape(input_shape, self.strides, self.out_filters)

    def call(self, inputs, training=None):
        """Applies the block.

        Args:
            inputs: ``[B, H, W, C_in]``.
            training: Whether BN uses batch statistics.

        Returns:
            ``[B, ceil(H / strides), ceil(W / strides), C_out]``.
        """
        # Sub-layers inherit `training` from this call's context (Keras 3);
        # pooling and SE take no such argument.
        shortcut = inputs
        for layer in self.shortcut:
            shortcut = layer(shortcut)
        x = inputs
        for layer in self.branch:
            x = layer(x)
        return ops.relu(x + shortcut)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides,
                      bottleneck=self.bottleneck, use_projection=self.use_projection,
                      sk_ratio=self.sk_ratio, se_ratio=self.se_ratio)
        return config


@keras.saving.register_keras_serializable(package="simclr_tf2")
class BlockGroup(BatchNormLayer):
    """A stack of residual blocks; only the first one strides and projects.

    Args:
        filters: Block width (see ``ResidualBlock``).
        num_blocks: Number of blocks.
        strides: Stride of the first block.
        bottleneck: Bottleneck instead of basic blocks.
        sk_ratio: Selective-kernel ratio (0 disables).
        se_ratio: Squeeze-excitation ratio (0 disables).
        **kwargs: ``BatchNormLayer`` arguments.
    """

    def __init__(self, filters, num_blocks, strides=1, bottleneck=True,
                 sk_ratio=0.0, se_ratio=0.0, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.num_blocks = num_blocks
        self.strides = strides
        self.bottleneck = bottleneck
        self.sk_ratio = sk_ratio
        self.se_ratio = se_ratio
        self.blocks = [ResidualBlock(
            filters, strides if b == 0 else 1, bottleneck,
            # As the original: every group's first block projects, even a
            # basic group 1 whose input already has the right shape.
            use_projection=b == 0,
            sk_ratio=sk_ratio, se_ratio=se_ratio, name=f"block{b + 1}",
            **self.shared_kwargs) for b in range(num_blocks)]

    def build(self, input_shape):
        build_chain(self.blocks, input_shape)

    def compute_output_shape(self, input_shape):
        return strided_shape(input_shape, self.strides, self.blocks[-1].out_filters)

    def call(self, inputs, training=None):
        """Applies the blocks.

        Args:
            inputs: ``[B, H, W, C_in]``.
            training: Whether BN uses batch statistics.

        Returns:
            ``[B, ceil(H / strides), ceil(W / strides), C_out]``.
        """
        x = inputs
        for block in self.blocks:
            x = block(x, training=training)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, num_blocks=self.num_blocks,
                      strides=self.strides, bottleneck=self.bottleneck,
                      sk_ratio=self.sk_ratio, se_ratio=self.se_ratio)
        return config


@keras.saving.register_keras_serializable(package="simclr_tf2")
class ResNet(BatchNormLayer):
    """ResNet v1 encoder returning named intermediate features.

    Args:
        depth: One of 18, 34 (basic blocks), 50, 101, 152, 200 (bottleneck).
        width_multiplier: Scales every channel count (``max(1, round(c * w))``).
        cifar_stem: 3x3/1 stem without max-pool (for images <= 64 px).
        sk_ratio: > 0 enables selective kernels and the deep ImageNet stem.
        se_ratio: > 0 enables squeeze-excitation in every block.
        batch_norm_decay: BN momentum.
        batch_norm_epsilon: BN epsilon.
        global_bn: Synchronise BN statistics across replicas.
        **kwargs: ``keras.layers.Layer`` arguments (name, dtype, trainable).
    """

    def __init__(self, depth=50, width_multiplier=1.0, cifar_stem=False,
                 sk_ratio=0.0, se_ratio=0.0, batch_norm_decay=0.9,
                 batch_norm_epsilon=1e-5, global_bn=False, **kwargs):
        _validate(depth, width_multiplier, sk_ratio, se_ratio)
        super().__init__(batch_norm_decay, batch_norm_epsilon, global_bn, **kwargs)
        self.depth = depth
        self.width_multiplier = width_multiplier
        self.cifar_stem = cifar_stem
        self.sk_ratio = sk_ratio
        self.se_ratio = se_ratio
        bottleneck, num_blocks = BLOCK_SPECS[depth]
        self.stem = Stem(_scaled(64, width_multiplier), cifar_stem, deep=sk_ratio > 0,
                         name="initial_conv", **self.shared_kwargs)
        self.max_pool = None if cifar_stem else keras.layers.MaxPooling2D(
            3, 2, padding="same", dtype=self.dtype_policy, name="initial_max_pool")
        self.block_groups = [
            BlockGroup(_scaled(f, width_multiplier), n, s, bottleneck, sk_ratio,
                       se_ratio, name=f"block_group{i + 1}", **self.shared_kwargs)
            for i, (f, n, s) in enumerate(zip(GROUP_FILTERS, num_blocks, GROUP_STRIDES))]

    @property
    def num_features(self):
        """Channels of ``final_avg_pool``."""
        return self.block_groups[-1].blocks[-1].out_filters

    def build(self, input_shape):
        pool = [self.max_pool] if self.max_pool is not None else []
        build_chain([self.stem, *pool, *self.block_groups], input_shape)

    def call(self, inputs, training=None):
        """Encodes images.

        Args:
            inputs: float ``[B, H, W, 3]``.
            training: Whether BN uses batch statistics.

        Returns:
            Dict of feature maps in the compute dtype (bfloat16 under
            ``mixed_bfloat16``), as the original exports them:
            ``initial_conv`` (the last stem conv's output, before its BN),
            ``initial_max_pool`` (the stem output after BN-ReLU and, unless
            CIFAR stem, max-pool), ``block_group1``..``block_group4``
            (``[B, h, w, C]``), and ``final_avg_pool`` ``[B, num_features]``,
            always cast to float32 so heads and losses get full precision.
        """
        conv_output, x = self.stem.features(inputs, training=training)
        outputs = {"initial_conv": conv_output}
        if self.max_pool is not None:
            x = self.max_pool(x)
        outputs["initial_max_pool"] = x
        for i, group in enumerate(self.block_groups):
            x = group(x, training=training)
            outputs[f"block_group{i + 1}"] = x
        outputs["final_avg_pool"] = ops.cast(ops.mean(x, axis=(1, 2)), "float32")
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(depth=self.depth, width_multiplier=self.width_multiplier,
                      cifar_stem=self.cifar_stem, sk_ratio=self.sk_ratio,
                      se_ratio=self.se_ratio)
        return config


def _validate(depth, width_multiplier, sk_ratio, se_ratio):
    if depth not in BLOCK_SPECS:
        raise ConfigError(
            f"Unsupported ResNet depth {depth!r}; expected one of {sorted(BLOCK_SPECS)}.")
    if not isinstance(width_multiplier, numbers.Real) or width_multiplier <= 0:
        raise ValueError(
            f"width_multiplier must be a positive number, got {width_multiplier!r}.")
    if sk_ratio < 0 or se_ratio < 0:
        raise ConfigError(f"sk_ratio and se_ratio must be >= 0, got {sk_ratio}, {se_ratio}.")


def set_fine_tune_after_block(encoder, fine_tune_after_block):
    """Freezes the encoder up to and including a block group.

    Frozen layers get ``trainable = False``, which in Keras 3 also runs their
    BatchNormalization in inference mode (moving statistics stay put). Call
    before ``compile()``; Keras snapshots trainability at compile time.

    Args:
        encoder: A ``ResNet``.
        fine_tune_after_block: -1 trains everything; 0 freezes the stem;
            k in 1..4 freezes the stem and block groups 1..k (4 = linear eval).
    """
    if fine_tune_after_block not in range(-1, 5):
        raise ValueError(
            f"fine_tune_after_block must be in -1..4, got {fine_tune_after_block!r}.")
    encoder.trainable = True  # Reset, so calling twice with different k works.
    for index, part in enumerate([encoder.stem, *encoder.block_groups]):
        part.trainable = index > fine_tune_after_block
