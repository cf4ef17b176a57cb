"""Batch normalization on the fused kernel wherever that is exact.

Keras 3's ``BatchNormalization`` on the TensorFlow backend computes moments
and normalizes with separate ops, and under ``mixed_bfloat16`` upcasts the
activations to float32 around them: on a CPU that costs as much as the
convolutions. ``FusedBatchNormV3`` (oneDNN on CPU, cuDNN on GPU; bfloat16 or
float16 activations, float32 statistics) does the same arithmetic in one
pass. It is used whenever its batch statistics are the right ones: one
replica, or per-replica BN (``synchronized=False``). Synchronised BN across
several replicas keeps Keras' all-reduced moments.

Semantics are Keras 3's, not tf-keras': the moving variance is updated with
the biased batch variance (the kernel returns the Bessel-corrected one, which
is undone here), ``moving = moving * momentum + batch * (1 - momentum)``,
and ``trainable=False`` means inference mode.
"""

import contextlib

import keras
import tensorflow as tf

_FUSED_DTYPES = (tf.float32, tf.bfloat16, tf.float16)
# oneDNN's vectorised bfloat16 batch norm (bnorm_tbb_jit) needs the channel
# count to be a multiple of 16; other counts fall back to its generic kernel
# (nspc_bnorm:any), 3-18x slower than float32 on the same tensor
# (benchmarks/batch_norm_precision.py). Those layers normalise in float32.
_HALF_CHANNEL_BLOCK = 16
_fused_default = [True]


@contextlib.contextmanager
def fused_by_default(enabled):
    """Within the block, layers built with ``fused=None`` use ``enabled``.

    For benchmarks and tests that need today's unfused Keras path. The choice
    is read when a layer is called (traced), not when it is built.
    """
    previous = _fused_default[0]
    _fused_default[0] = bool(enabled)
    try:
        yield
    finally:
        _fused_default[0] = previous


def normalisation_dtype(dtype, channels):
    """The dtype the fused kernel runs in for ``dtype`` activations of ``channels``.

    Half-precision activations whose channel count oneDNN's vectorised
    kernel cannot block (not a multiple of 16) are normalised in float32;
    everything else in its own dtype. On a GPU the cast is cheap either way.
    """
    if dtype in (tf.bfloat16, tf.float16) and channels % _HALF_CHANNEL_BLOCK:
        return tf.float32
    return dtype


@keras.saving.register_keras_serializable(package="simclr_tf2")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` that runs the fused kernel.

    Same variables (gamma, beta, moving_mean, moving_variance, in that
    order), arguments and results as the Keras layer; inputs of rank 2
    (``[B, C]``) or 4 (``[B, H, W, C]``), channels last.

    Args:
        fused: ``None`` uses the fused kernel where exact (unless turned off
            by ``fused_by_default(False)``); ``False`` never does.
        **kwargs: ``keras.layers.BatchNormalization`` arguments.
    """

    def __init__(self, fused=None, **kwargs):
        super().__init__(**kwargs)
        if fused not in (None, False):
            raise ValueError(f"fused must be None or False. Received: fused={fused}")
        self.fused = fused

    def uses_fused(self, inputs, mask=None):
        """Whether a call on ``inputs`` (in the current context) is fused."""
        if self.fused is False or not _fused_default[0]:
            return False
        rank = len(inputs.shape)
        if mask is not None or self.renorm or rank not in (2, 4):
            return False
        if self.axis % rank != rank - 1 or inputs.dtype not in _FUSED_DTYPES:
            return False
        # Several replicas need all-reduced moments: Keras' synchronized path.
        return not (self.synchronized and
                    tf.distribute.get_strategy().num_replicas_in_sync > 1)

    def call(self, inputs, training=None, mask=None):
        """Normalizes ``inputs`` ``[B, C]`` or ``[B, H, W, C]``; same shape."""
        inputs = tf.convert_to_tensor(inputs)
        if not self.uses_fused(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        x = inputs if len(inputs.shape) == 4 else inputs[:, None, None, :]
        channels = x.shape[-1]
        x = tf.cast(x, normalisation_dtype(x.dtype, channels))
        scale = (tf.convert_to_tensor(self.gamma) if self.scale
                 else tf.ones([channels], tf.float32))
        offset = (tf.convert_to_tensor(self.beta) if self.center
                  else tf.zeros([channels], tf.float32))
        moving_mean = tf.convert_to_tensor(self.moving_mean)
        moving_variance = tf.convert_to_tensor(self.moving_variance)
        train = bool(training) and self.trainable
        empty = tf.zeros([0], tf.float32)
        outputs, mean, variance = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=scale, offset=offset,
            mean=empty if train else moving_mean,
            variance=empty if train else moving_variance,
            epsilon=self.epsilon, exponential_avg_factor=1.0,
            data_format="NHWC", is_training=train)[:3]
        if train:
            self._update_moving_statistics(x, mean, variance,
                                           moving_mean, moving_variance)
        if len(inputs.shape) == 2:
            outputs = outputs[:, 0, 0, :]
        return tf.cast(outputs, self.compute_dtype)

    def _update_moving_statistics(self, x, mean, variance, moving_mean,
                                  moving_variance):
        """Keras 3's update with the biased batch variance.

        The kernel scales the batch variance by ``n / max(n - 1, 1)``
        (``n`` values per channel); that factor is undone here.
        """
        count = tf.cast(tf.size(x, out_type=tf.int64) // x.shape[-1], tf.float32)
        variance = variance * (tf.maximum(count - 1.0, 1.0) / count)
        self.moving_mean.assign(
            moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            moving_variance * self.momentum + variance * (1.0 - self.momentum))

    def get_config(self):
        config = super().get_config()
        config.update(fused=self.fused)
        return config
