"""Exports of a model trained in mixed_bfloat16 and of one trained on 2
replicas (synchronized BN): the SavedModel serves the trained weights, and
run.py's post-eval export equals `python -m export`'s from the checkpoint."""

import os

import keras
import numpy as np
import tensorflow as tf

from simclr_tf2.export import from_checkpoint
from simclr_tf2.export import saved_model
from simclr_tf2.training.experiment import Experiment
from simclr_tf2.training.trainer import Trainer
from tests import harness
from tests.harness import tiny_config

KEYS = ("final_avg_pool", "proj_head_output", "logits_sup", "block_group4")


def _train_and_export(tmp_path, strategy, **overrides):
    """Trains one step and exports as run.py does after its evaluation."""
    config = tiny_config(tmp_path / "run", train_steps=1, checkpoint_steps=1,
                         **overrides)
    try:
        experiment = Experiment(config, strategy, printer=lambda _: None)
        Trainer(experiment).train()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    path = saved_model.export_to_model_dir(experiment.model, config, 1)
    assert path.rstrip("/").endswith(os.path.join("saved_model", "1"))
    return experiment.model, tf.saved_model.load(path), config


def _multiset(values):
    """Sorted (shape, sum, sum of squares) of float32 arrays."""
    return sorted((tuple(v.shape), round(float(np.sum(v)), 4),
                   round(float(np.sum(np.square(v))), 4)) for v in values)


def _relative_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_export_of_a_bf16_trained_model(tmp_path):
    model, loaded, config = _train_and_export(
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
    _assert_cli_export_equals(loaded, config, tmp_path, images)


def _assert_cli_export_equals(loaded, config, tmp_path, images):
    """`python -m export`'s path (restore_model + export_model) from the
    run's checkpoint serves what run.py's post-eval export serves."""
    model, step, _ = from_checkpoint.restore_model(config, config.train.model_dir)
    assert step == 1
    cli = tf.saved_model.load(saved_model.export_model(
        model, config, str(tmp_path / "cli")))
    want = loaded(images, trainable=False)
    got = cli(images, trainable=False)
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=1e-6, err_msg=key)
    served = cli.signatures["serving_default"](images)
    want_served = loaded.signatures["serving_default"](images)
    assert set(served) == set(want_served)
    for key in want_served:
        np.testing.assert_allclose(served[key], want_served[key], atol=1e-6)


def test_export_of_a_two_replica_model_with_global_bn(tmp_path,
                                                      two_replica_strategy):
    model, loaded, _ = _train_and_export(tmp_path, two_replica_strategy,
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

