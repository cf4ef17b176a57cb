"""Projection head (SimCLR v1/v2) and supervised linear head."""

import keras
import tensorflow as tf

from simclr_tf2.errors import ConfigError
from simclr_tf2.models.batch_norm import FusedBatchNormalization

PROJ_HEAD_MODES = ("none", "linear", "nonlinear")


def _dense_initializer():
    return keras.initializers.RandomNormal(stddev=0.01)


@keras.saving.register_keras_serializable(package="simclr_tf2")
class ProjectionHead(keras.layers.Layer):
    """MLP g(.) mapping the representation h to the contrastive space z.

    Each layer is Dense (no bias) + BatchNorm, with ReLU on all but the last;
    the last layer's BN has no offset (SimCLRv2). Hidden layers keep the input
    width; the last projects to `out_dim`.

    - "none": z = h (zero layers).
    - "linear": one linear layer to `out_dim`.
    - "nonlinear": `num_layers` layers (2 for SimCLR v1, 3 for v2).

    The call returns every layer's output so fine-tuning can start from layer
    `ft_proj_selector` (0 = h itself, k = output of the k-th layer).
    """

    def __init__(self, mode="nonlinear", num_layers=2, out_dim=128,
                 batch_norm_decay=0.9, global_bn=False, **kwargs):
        super().__init__(**kwargs)
        if mode not in PROJ_HEAD_MODES:
            raise ValueError(
                f"proj_head_mode must be one of {PROJ_HEAD_MODES}, got {mode!r}.")
        if mode == "nonlinear" and num_layers < 1:
            raise ConfigError(
                f"num_proj_layers must be >= 1 for a nonlinear head, got {num_layers}.")
        self.mode = mode
        self.num_layers = num_layers
        self.out_dim = out_dim
        self.batch_norm_decay = batch_norm_decay
        self.global_bn = global_bn
        self.dense_layers = []
        self.bn_layers = []

    @property
    def depth(self):
        """Number of layers actually used (0, 1 or num_layers)."""
        return {"none": 0, "linear": 1, "nonlinear": self.num_layers}[self.mode]

    def build(self, input_shape):
        in_dim = int(input_shape[-1])
        for j in range(self.depth):
            last = j == self.depth - 1
            self.dense_layers.append(keras.layers.Dense(
                self.out_dim if last else in_dim, use_bias=False,
                kernel_initializer=_dense_initializer(),
                name=f"nl_{j}_dense", dtype=self.dtype_policy))
            self.bn_layers.append(FusedBatchNormalization(
                momentum=self.batch_norm_decay, epsilon=1e-5, center=not last,
                synchronized=self.global_bn,
                name=f"nl_{j}_batch_normalization", dtype=self.dtype_policy))
        shape = tuple(input_shape)
        for dense, bn in zip(self.dense_layers, self.bn_layers):
            dense.build(shape)
            shape = dense.compute_output_shape(shape)
            bn.build(shape)

    def call(self, inputs, training=None):
        """Runs the head.

        Args:
          inputs: [B, D] representation h.
          training: BN mode.

        Returns:
          List of depth + 1 tensors: [h, z_1, ..., z_depth]; the last is z
          ([B, out_dim], or h itself in "none" mode).
        """
        hiddens = [inputs]
        x = inputs
        for j, (dense, bn) in enumerate(zip(self.dense_layers, self.bn_layers)):
            x = bn(dense(x), training=training)
            if j != self.depth - 1:
                x = tf.nn.relu(x)
            hiddens.append(x)
        return hiddens

    def output_dim(self, input_dim):
        """Width of z for an input of width `input_dim`."""
        return input_dim if self.mode == "none" else self.out_dim

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode, num_layers=self.num_layers,
                      out_dim=self.out_dim,
                      batch_norm_decay=self.batch_norm_decay,
                      global_bn=self.global_bn)
        return config


@keras.saving.register_keras_serializable(package="simclr_tf2")
class SupervisedHead(keras.layers.Layer):
    """Linear classifier on the representation, named for the optimizer.

    The layer name "head_supervised" matters: LARS excludes these variables
    from weight decay and trust-ratio adaptation, as the original does.

    With `normalize_input`, the features first pass a batch normalisation
    without scale or offset. The classifier stays linear in h (BN is a fixed
    affine map at inference), but its input is standardised, so the large
    learning rates of pretraining (lr x B/256 without LARS adaptation) do
    not make it diverge; MAE's linear probe uses the same device. It is used
    for the linear head trained while pretraining.

    Args:
      num_classes: number of logits C.
      zero_init: start from zero weights (`zero_init_logits_layer`).
      normalize_input: standardise h first (see above).
      batch_norm_decay: momentum of that normalisation's statistics.
      global_bn: synchronise its statistics across replicas.
    """

    def __init__(self, num_classes, zero_init=False, normalize_input=False,
                 batch_norm_decay=0.9, global_bn=False,
                 name="head_supervised", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.zero_init = zero_init
        self.normalize_input = normalize_input
        self.batch_norm_decay = batch_norm_decay
        self.global_bn = global_bn
        self.input_norm = FusedBatchNormalization(
            momentum=batch_norm_decay, center=False, scale=False,
            synchronized=global_bn,
            name="input_batch_normalization") if normalize_input else None
        self.dense = keras.layers.Dense(
            num_classes, name="linear",
            kernel_initializer="zeros" if zero_init else _dense_initializer())

    @property
    def units(self):
        return self.num_classes

    def build(self, input_shape):
        if self.input_norm is not None:
            self.input_norm.build(input_shape)
        self.dense.build(input_shape)

    def call(self, inputs, training=None):
        """Maps h [B, D] to logits [B, C]."""
        if self.input_norm is not None:
            inputs = self.input_norm(inputs, training=training)
        return self.dense(inputs)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, zero_init=self.zero_init,
                      normalize_input=self.normalize_input,
                      batch_norm_decay=self.batch_norm_decay,
                      global_bn=self.global_bn)
        return config


def supervised_head(num_classes, zero_init=False, normalize_input=False,
                    batch_norm_decay=0.9, global_bn=False):
    """The classifier layer; see SupervisedHead."""
    return SupervisedHead(num_classes, zero_init=zero_init,
                          normalize_input=normalize_input,
                          batch_norm_decay=batch_norm_decay,
                          global_bn=global_bn)
