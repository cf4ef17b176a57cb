"""Exports of a model trained in mixed_bfloat16 and of one trained on 2
replicas (synchronized BN): the SavedModel serves the trained weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from export import saved_model
from simclr_tf2.experiment import Experiment
from simclr_tf2.trainer import Trainer
from tests import harness
from tests.test_trainer import tiny_config

KEYS = ("final_avg_pool", "proj_head_output", "logits_sup", "block_group4")


def _train_and_export(tmp_path, strategy, **overrides):
    config = tiny_config(tmp_path / "run", train_steps=1, checkpoint_steps=1,
                         **overrides)
    try:
        experiment = Experiment(config, strategy, printer=lambda _: None)
        Trainer(experiment).train()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    path = saved_model.export_model(experiment.model, config,
                                    str(tmp_path / "export"))
    return experiment.model, tf.saved_model.load(path)


def _multiset(values):
    """Sorted (shape, sum, sum of squares) of float32 arrays."""
    return sorted((tuple(v.shape), round(float(np.sum(v)), 4),
                   round(float(np.sum(np.square(v))), 4)) for v in values)


def _relative_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_export_of_a_bf16_trained_model(tmp_path):
    model, loaded = _train_and_export(
        tmp_path, tf.distribute.get_strategy(), precision="mixed_bfloat16")
    assert model.encoder.compute_dtype == "bfloat16"
    images = harness.random_images(4)
    out = loaded(images, trainable=False)
    want = model(images, training=False)
    for key in KEYS:
        assert out[key].dtype == tf.float32, key
        # The export computes in float32: bf16 rounding apart, the same.
        assert _relative_error(out[key], want[key]) < 0.05, key
    # Every trained variable (weights, BN statistics) is in the export as is.
    exported = _multiset(v.numpy() for v in loaded.variables)
    trained = _multiset(v.numpy() for v in model.weights)
    assert trained == exported


def test_export_of_a_two_replica_model_with_global_bn(tmp_path,
                                                      two_replica_strategy):
    model, loaded = _train_and_export(tmp_path, two_replica_strategy,
                                      global_bn=True)
    moving = [v for v in model.weights if "moving_variance" in v.path]
    assert any(not np.allclose(v.numpy(), 1.0) for v in moving)  # trained
    images = harness.random_images(4)
    out = loaded(images, trainable=False)
    want = model(images, training=False)
    for key in KEYS:
        np.testing.assert_allclose(out[key], want[key], atol=1e-5, rtol=1e-4,
                                   err_msg=key)
    # Training mode in the export: batch statistics of this one batch.
    out_train = loaded(images, trainable=True)
    assert not np.allclose(out_train["final_avg_pool"], out["final_avg_pool"])
