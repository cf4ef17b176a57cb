"""Unit tests of export/ that need no fresh process: heads, atomic writes,
pruning, request validation, decoding, and the export of a whole run."""

import errno
import os
import subprocess
import sys
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2.export import module as module_lib
from simclr_tf2.export import saved_model
from simclr_tf2.export import single_replica_bn
from simclr_tf2 import errors
from simclr_tf2.data import augment
from simclr_tf2.models import build
from tests.harness import IMAGE, ROOT, fresh_python, model_config, png_bytes, tool


@pytest.mark.parametrize("train_mode", ["pretrain", "finetune"])
def test_module_can_leave_out_heads(train_mode):
    cfg = dict(model_config(), global_bn=False)
    model = build.build_model(types.SimpleNamespace(**cfg), num_classes=3,
                              task=train_mode, image_size=IMAGE)
    bare = saved_model.build_module(model, IMAGE,
                                    include_projection_head=False,
                                    include_supervised_head=False)
    out = bare(tf.zeros([2, IMAGE, IMAGE, 3]))
    assert "final_avg_pool" in out and "block_group4" in out
    assert not {"proj_head_input", "proj_head_output", "logits_sup"} & set(out)
    head = model.supervised_head.weights
    assert len(bare.variables) == len(model.weights) - len(head)
    assert len(bare.trainable_variables) == len(model.encoder.trainable_weights)
    assert bare.regularization_losses == []


def test_single_replica_moments_equal_keras_synchronized_moments():
    x = tf.constant(np.random.default_rng(4).normal(3.0, 2.0, (5, 4, 4, 6)),
                    tf.float32)
    expected = keras.ops.moments(x, axes=[0, 1, 2], synchronized=True)
    actual = single_replica_bn.single_replica_moments(x, [0, 1, 2])
    for a, b in zip(actual, expected):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


class _TinyModule(tf.Module):
    """Stands in for a SimCLRHubModule where only the writing is tested."""

    variables = trainable_variables = ()

    def __init__(self):
        super().__init__()
        self.scale = tf.Variable(2.0)
        self.variables = self.trainable_variables = [self.scale]

    def __call__(self, images, trainable=False):
        return {"final_avg_pool": self.scale * tf.reduce_mean(images, [1, 2])}


def _half_write_then_fail(obj, path, *args, **kwargs):
    os.makedirs(os.path.join(path, "variables"), exist_ok=True)
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(b"partial")
    raise OSError(errno.ENOSPC, "No space left on device", path)


def test_failed_save_leaves_nothing_and_keeps_previous(tmp_path, monkeypatch):
    target = tmp_path / "out"
    module = _TinyModule()
    monkeypatch.setattr(tf.saved_model, "save", _half_write_then_fail)
    with pytest.raises(errors.WriteError, match="no space left on device") as raised:
        saved_model.save_module(module, str(target), 8)
    assert "\n" not in str(raised.value) and str(target) in str(raised.value)
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()

    saved_model.save_module(module, str(target), 8)
    with pytest.raises(errors.ExportError, match="already exists"):
        saved_model.save_module(module, str(target), 8)
    monkeypatch.setattr(tf.saved_model, "save", _half_write_then_fail)
    with pytest.raises(errors.WriteError):
        saved_model.save_module(module, str(target), 8, overwrite=True)
    assert os.listdir(tmp_path) == ["out"]
    assert tf.saved_model.load(str(target)).scale.numpy() == 2.0


def test_unwritable_export_dir_is_one_user_error(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(errors.ExportError, match="cannot be written"):
        saved_model.save_module(_TinyModule(), str(tmp_path / "a_file" / "out"), 8)


def test_prune_keeps_newest_numbered_exports(tmp_path):
    for name in ("2", "10", "9", ".10.tmp-x", "notes"):
        os.makedirs(tmp_path / name)
    saved_model.prune_exports(str(tmp_path), keep=2)
    assert sorted(os.listdir(tmp_path)) == [".10.tmp-x", "10", "9", "notes"]
    saved_model.prune_exports(str(tmp_path), keep=0)  # 0 keeps everything
    assert len(os.listdir(tmp_path)) == 4


def test_validate_images_rejects_wrong_rank_and_channels():
    with pytest.raises(ValueError, match="3 \\(RGB\\) channels"):
        module_lib.validate_images(tf.zeros([1, 4, 4, 1]))
    with pytest.raises(ValueError, match="batch of shape"):
        module_lib.validate_images(tf.zeros([4, 4, 3]))
    dynamic = tf.function(module_lib.validate_images, input_signature=[
        tf.TensorSpec(None, tf.float32)])
    assert dynamic(tf.zeros([2, 4, 4, 3])).shape == (2, 4, 4, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="3 \\(RGB\\)"):
        dynamic(tf.zeros([2, 4, 4, 4]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="batch of shape"):
        dynamic(tf.zeros([4, 4, 3]))


def test_decoding_matches_eval_preprocessing():
    rng = np.random.default_rng(3)
    color, pixels = png_bytes(rng, 40, 48)
    gray, gray_pixels = png_bytes(rng, 12, 10, channels=1)
    jpeg = tf.io.encode_jpeg(pixels).numpy()
    images = module_lib.decode_and_preprocess(tf.constant([color, gray, jpeg]), IMAGE)
    assert images.shape == (3, IMAGE, IMAGE, 3)
    np.testing.assert_allclose(images[0], augment.preprocess_for_eval(pixels, IMAGE),
                               atol=1e-6)
    np.testing.assert_allclose(images[1], augment.preprocess_for_eval(gray_pixels, IMAGE),
                               atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError):
        module_lib.decode_and_preprocess(tf.constant([b"not an image"]), IMAGE)


@pytest.mark.slow
def test_run_py_export_equals_python_m_export(tmp_path):
    model_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "run.py"), "--mode=train_then_eval",
         "--train_steps=2", f"--model_dir={model_dir}", "--resnet_depth=18",
         "--width_multiplier=0.125", f"--image_size={IMAGE}", "--proj_out_dim=8",
         "--train_batch_size=32", "--eval_steps=1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_export = model_dir / "saved_model" / "2"
    assert run_export.is_dir()
    out = tmp_path / "cli"
    cli = tool("export", f"--model_dir={model_dir}", f"--export_dir={out}",
               cwd=ROOT, project=True)
    assert cli.returncode == 0, cli.stderr[-3000:]
    np.savez(tmp_path / "ref.npz", x=np.random.default_rng(0).uniform(
        size=(4, IMAGE, IMAGE, 3)).astype(np.float32))
    fresh_python("""
a, b = tf.saved_model.load(path), tf.saved_model.load(sys.argv[3])
for trainable in (False, True):
    out_a, out_b = a(ref["x"], trainable), b(ref["x"], trainable)
    for k in out_a:
        close(out_a[k], out_b[k])
""", str(run_export), str(tmp_path / "ref.npz"), str(out), cwd=tmp_path)
