"""SupCon pretraining end to end: model step, gradient caching, replicas, run.py."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from simclr_tf2.optim import gradcache
from simclr_tf2 import losses
from simclr_tf2 import tasks
from tests.harness import TINY_FLAGS, assert_user_error, batch, distributed_step, full_batch_gradients, make_model, mirrored, run_py, tiny_model


def _with_loss(model, name):
    """The model's task with contrastive loss `name` (same temperature
    and weight decay)."""
    old = model.task
    model.task = tasks.PretrainTask(
        contrastive_loss=name, temperature=old.temperature,
        hidden_norm=old.hidden_norm, weight_decay=old.weight_decay)
    return model


def _supcon(model):
    return _with_loss(model, "supcon")


def _cached_gradients(model, data, micro_batch_size):
    """gradcache.compute_gradients on the model's task: the loss runs
    once on all z with all labels."""
    loss, _, grads = gradcache.compute_gradients(
        model, model.task, data, micro_batch_size=micro_batch_size)
    return loss, grads


def _calibrated_frozen_bn(model, data, passes=40):
    """BN in inference mode with the batch's own statistics.

    A fresh network's projections of noise images are nearly parallel
    (cosines > 0.999), where every contrastive loss looks the same; BN moving
    statistics that centre this batch spread them out (cosines down to ~0.7).
    """
    views = tf.concat(tf.split(data["image"], 2, axis=-1), axis=0)
    forward = tf.function(lambda: model(views, training=True))
    for _ in range(passes):
        forward()
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def test_task_rejects_an_unknown_contrastive_loss():
    assert set(tasks.CONTRASTIVE_LOSSES) == {"nt_xent", "supcon"}
    with pytest.raises(ValueError, match="contrastive_loss must be one of"):
        tasks.PretrainTask(contrastive_loss="triplet")


def test_pretraining_step_uses_the_chosen_loss():
    data = batch(n=8, seed=1)  # Labels 0..2: classes repeat in the batch.
    model = _supcon(make_model())
    _, metrics, _ = model.loss_and_gradients(data)
    logged = metrics["contrast_loss"].numpy()
    views = tf.concat(tf.split(data["image"], 2, axis=-1), axis=0)
    z = model(views, training=True)["proj_head_output"]
    temperature = model.task.temperature
    supcon, _, _ = losses.add_supervised_contrastive_loss(
        z, data["label"], temperature=temperature)
    nt_xent, _, _ = losses.add_contrastive_loss(z, temperature=temperature)
    np.testing.assert_allclose(logged, supcon.numpy(), rtol=1e-6)
    assert abs(supcon.numpy() - nt_xent.numpy()) > 1e-3


@pytest.mark.parametrize("graph", [False, True])
def test_gradient_caching_equals_the_full_batch_gradient(graph):
    model = _supcon(make_model())
    data = batch(n=8, seed=1)
    _calibrated_frozen_bn(model, data)
    ref_loss, ref_grads = full_batch_gradients(model, data)
    fn = _cached_gradients
    loss, grads = (tf.function(fn) if graph else fn)(model, data, 2)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    for g, r, v in zip(grads, ref_grads, model.trainable_variables):
        assert g is not None and r is not None, v.path
        np.testing.assert_allclose(g, r, atol=1e-5, err_msg=v.path)
    # Control: NT-Xent gives a clearly different gradient on this batch.
    _with_loss(model, "nt_xent")
    _, nt_grads = _cached_gradients(model, data, 2)
    assert tf.linalg.global_norm([a - b for a, b in zip(grads, nt_grads)
                                  if a is not None]) > 0.1


@pytest.mark.parametrize("micro_batch_size", [0, 2])
def test_two_replicas_match_one_device(micro_batch_size):
    # Same-label positives sit on the other replica: labels are gathered.
    data = batch(n=8, seed=1)
    # (No -1 here: the linear head's masked mean is per replica.)
    data["label"] = tf.constant([0, 1, 2, 0, 1, 0, 2, 1], tf.int64)
    reference = _supcon(make_model())
    _calibrated_frozen_bn(reference, data)
    strategy = mirrored()
    with strategy.scope():
        model = _supcon(make_model())
        model.micro_batch_size = micro_batch_size
        _calibrated_frozen_bn(model, batch(n=8, seed=5))
    model.set_weights(reference.get_weights())
    ref_logs = tf.function(reference.train_step)(data)
    logs = distributed_step(strategy, model, data)
    for key in ("loss", "contrast_loss", "contrast_acc", "supervised_loss"):
        np.testing.assert_allclose(logs[key], ref_logs[key], rtol=1e-5,
                                   err_msg=key)
    for a, b in zip(reference.trainable_variables, model.trainable_variables):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5, rtol=1e-4,
                                   err_msg=a.path)


def test_mixed_bfloat16_step_is_close_to_float32():
    data = batch(n=8, seed=1)
    logs = {}
    try:
        for policy in ("float32", "mixed_bfloat16"):
            keras.mixed_precision.set_global_policy(policy)
            model = _supcon(tiny_model(micro_batch_size=4))
            logs[policy] = tf.function(model.train_step)(data)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(float(logs["mixed_bfloat16"]["contrast_loss"]))
    np.testing.assert_allclose(logs["mixed_bfloat16"]["contrast_loss"],
                               logs["float32"]["contrast_loss"], rtol=3e-2)


@pytest.mark.slow  # ~50 s on a shared 2-core machine.
def test_run_py_pretrains_with_supcon_on_two_replicas(tmp_path):
    model_dir = tmp_path / "m"
    proc = run_py("--mode=train_then_eval", "--train_steps=2",
                  "--eval_steps=1", "--contrastive_loss=supcon",
                  "--micro_batch_size=8", "--num_logical_cpu_devices=2",
                  "--export_after_eval=false", "--knn_eval=false",
                  f"--model_dir={model_dir}", *TINY_FLAGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 replica(s)" in proc.stdout and "step 2/2" in proc.stdout
    flags_json = json.load(open(model_dir / "flags.json"))
    assert flags_json["contrastive_loss"] == "supcon"
    assert json.load(open(model_dir / "result.json"))["global_step"] == 2.0


def test_supcon_on_an_unlabeled_dataset_is_one_line_error(tmp_path):
    images = tmp_path / "flat"
    images.mkdir()
    for i in range(4):
        Image.fromarray(np.full((12, 12, 3), 40 * i, np.uint8)).save(
            images / f"img{i}.png")
    proc = run_py("--mode=train", "--train_steps=1",
                  "--contrastive_loss=supcon", f"--dataset=folder:{images}",
                  f"--model_dir={tmp_path / 'm'}", *TINY_FLAGS)
    assert_user_error(proc, "--contrastive_loss=supcon needs labels",
                      "--contrastive_loss=nt_xent")


def test_supcon_outside_pretraining_is_one_line_error(tmp_path):
    proc = run_py("--mode=train", "--train_steps=1", "--train_mode=finetune",
                  "--contrastive_loss=supcon",
                  f"--model_dir={tmp_path / 'm'}", *TINY_FLAGS)
    assert_user_error(proc, "--contrastive_loss=supcon only applies")
