"""A shared check for Keras layers (after KerasHub's `run_layer_test`).

`run_layer_test(cls, init_kwargs, input_shape)` builds the layer, calls it
eagerly and inside a tf.function (same outputs), rebuilds it from
`get_config()` (same config; same outputs once the weights are copied), and
runs it under `mixed_bfloat16` with the same weights (float32 variables;
outputs and input gradients within a few % of float32's, by norm).
"""

import keras
import numpy as np
import tensorflow as tf


def _as_list(outputs):
    if isinstance(outputs, dict):
        return [outputs[k] for k in sorted(outputs)]
    if isinstance(outputs, (list, tuple)):
        return list(outputs)
    return [outputs]


def _assert_close(a, b, atol=1e-5):
    a, b = _as_list(a), _as_list(b)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(np.asarray(x, np.float32),
                                   np.asarray(y, np.float32), atol=atol)


def run_layer_test(cls, init_kwargs, input_shape, expected_shapes=None,
                   call_kwargs=None, mixed_precision=True, seed=0,
                   bf16_tolerance=0.05):
    """Checks a layer class; returns the built float32 layer.

    Args:
      cls: the layer class.
      init_kwargs: constructor arguments.
      input_shape: shape of the random float32 input (batch included).
      expected_shapes: output shape, or list/dict of shapes (as the layer
        returns its outputs), or None to skip.
      call_kwargs: extra call arguments (default: training=False).
      mixed_precision: also run under mixed_bfloat16.
      seed: input and initialisation seed.
      bf16_tolerance: allowed ||bf16 - float32|| / ||float32|| of each output
        and of the input gradient.
    """
    call_kwargs = {"training": False, **(call_kwargs or {})}
    keras.utils.set_random_seed(seed)
    x = tf.constant(np.random.default_rng(seed).uniform(size=input_shape),
                    tf.float32)
    layer = cls(**init_kwargs)
    eager = layer(x, **call_kwargs)
    if expected_shapes is not None:
        shapes = (_as_list(expected_shapes)
                  if not isinstance(expected_shapes, tuple)
                  else [expected_shapes])
        assert [tuple(o.shape) for o in _as_list(eager)] == [
            tuple(s) for s in shapes]
    _assert_close(tf.function(lambda t: layer(t, **call_kwargs))(x), eager)

    config = layer.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == config
    clone(x, **call_kwargs)
    assert len(clone.weights) == len(layer.weights)
    for target, source in zip(clone.weights, layer.weights):
        target.assign(source)
    _assert_close(clone(x, **call_kwargs), eager)

    if mixed_precision:
        low = cls(**dict(init_kwargs, dtype="mixed_bfloat16"))
        low(x, **call_kwargs)
        assert all(v.dtype == "float32" for v in low.weights)
        for target, source in zip(low.weights, layer.weights):
            target.assign(source)
        _assert_bf16_close(layer, low, x, call_kwargs, bf16_tolerance)
    return layer


def _output_and_input_gradient(layer, x, call_kwargs):
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = [tf.cast(o, tf.float32)
                   for o in _as_list(layer(x, **call_kwargs))]
        # A fixed, position-dependent weighting so every output element
        # contributes to the input gradient.
        loss = tf.add_n([
            tf.reduce_sum(o * tf.reshape(
                tf.sin(tf.range(tf.size(o), dtype=tf.float32)), tf.shape(o)))
            for o in outputs])
    return outputs, tape.gradient(loss, x)


def _assert_bf16_close(high, low, x, call_kwargs, tolerance=0.05):
    """bf16 outputs and input gradients within a few % of float32 (by norm)."""
    want, want_grad = _output_and_input_gradient(high, x, call_kwargs)
    got, got_grad = _output_and_input_gradient(low, x, call_kwargs)
    for a, b in zip(got + [got_grad], want + [want_grad]):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        error = np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12)
        assert error < tolerance, f"bf16 differs from float32 by {error:.3f}"
