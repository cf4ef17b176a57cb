"""A shared check for Keras layers (after KerasHub's `run_layer_test`).

`run_layer_test(cls, init_kwargs, input_shape)` builds the layer, calls it
eagerly and inside a tf.function (same outputs), rebuilds it from
`get_config()` (same config; same outputs once the weights are copied), and
runs it under `mixed_bfloat16` (float32 variables, finite outputs).
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
                   call_kwargs=None, mixed_precision=True, seed=0):
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
        outputs = low(x, **call_kwargs)
        assert all(v.dtype == "float32" for v in low.weights)
        assert all(np.all(np.isfinite(np.asarray(tf.cast(o, tf.float32))))
                   for o in _as_list(outputs))
    return layer
