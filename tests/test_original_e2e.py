"""End to end with models of the original SimCLR TF2 code: fine-tune, export, distil.

Real subprocesses of run.py and `python -m export` on the fixtures in
tests/fixtures/original/ (see its README), tiny step counts.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tests.harness import ORIGINAL_KEYS, ROOT, assert_user_error, original_fixture, relative_error, run_py


SMALL = ["--train_batch_size=16", "--eval_batch_size=32", "--image_size=32",
         "--train_steps=2", "--eval_steps=1", "--log_every_steps=1"]


def export_py(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "export", *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env=env)


def test_export_converts_original_model_dir_with_parity(tmp_path):
    out = str(tmp_path / "export")
    proc = export_py(f"--model_dir={original_fixture('r18_ft')}", f"--export_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exported original SimCLR checkpoint" in proc.stdout
    module = tf.saved_model.load(out)
    assert {"serving_default", "serving_bytes"} <= set(module.signatures)
    reference = np.load(os.path.join(original_fixture("r18_ft"), "outputs.npz"))
    images = tf.constant(reference["images"])
    # Serving first: a trainable=True call updates the BN moving statistics.
    served = module.signatures["serving_default"](images)
    assert relative_error(served["logits_sup"].numpy(), reference["logits_sup/infer"]) <= 1e-4
    for mode in ("infer", "train"):
        outputs = module(images, trainable=mode == "train")
        for key in ORIGINAL_KEYS:
            error = relative_error(outputs[key].numpy(), reference[f"{key}/{mode}"])
            assert error <= 1e-4, (mode, key, error)
    with tf.GradientTape() as tape:  # The original's own export cannot do this.
        loss = tf.reduce_sum(module(images, trainable=True)["logits_sup"])
    grads = tape.gradient(loss, module.trainable_variables)
    assert grads and all(g is not None for g in grads)


def test_export_of_original_needs_export_dir():
    from simclr_tf2.export import original
    assert original.is_original_source(original_fixture("r18_v1"))
    assert not original.is_original_source(ROOT)
    with pytest.raises(ValueError, match="--export_dir"):
        original.export_original(original_fixture("r18_v1"), None)


def test_finetune_from_original_linear_eval_keeps_its_encoder(tmp_path):
    model_dir = str(tmp_path / "ft")
    proc = run_py("--mode=train_then_eval", "--train_mode=finetune",
                  f"--checkpoint={original_fixture('r18_v1')}", "--fine_tune_after_block=4",
                  "--ft_proj_selector=1", f"--model_dir={model_dir}", *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "from the original SimCLR checkpoint" in proc.stdout
    # Architecture flags not given were read from the original checkpoint.
    assert f"resnet_depth = 18  [checkpoint:{original_fixture('r18_v1')}]" in proc.stdout
    assert f"width_multiplier = 0.0625  [checkpoint:{original_fixture('r18_v1')}]" in proc.stdout
    # Frozen encoder (fine_tune_after_block=4): our export still computes
    # the original's representation.
    exports = os.path.join(model_dir, "saved_model")
    module = tf.saved_model.load(os.path.join(exports, os.listdir(exports)[0]))
    reference = np.load(os.path.join(original_fixture("r18_v1"), "outputs.npz"))
    ours = module(tf.constant(reference["images"]), trainable=False)["final_avg_pool"]
    assert relative_error(ours.numpy(), reference["final_avg_pool/infer"]) <= 1e-4


@pytest.mark.slow
def test_distill_from_original_checkpoint_teacher(tmp_path):
    proc = run_py("--mode=train", "--train_mode=distill", f"--teacher={original_fixture('r18_ft')}",
                  "--resnet_depth=18", "--width_multiplier=0.125", "--proj_out_dim=8",
                  f"--model_dir={tmp_path / 'student'}", *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"teacher: {original_fixture('r18_ft')}/ckpt-8 (10 classes)" in proc.stdout
    assert "distill_loss" in proc.stdout


def test_mismatched_original_checkpoint_is_one_line_naming_the_flag(tmp_path):
    proc = run_py("--mode=train", "--train_mode=finetune", "--se_ratio=0",
                  f"--checkpoint={original_fixture('r50_sk_se')}", f"--model_dir={tmp_path / 'x'}",
                  "--image_size=40", "--train_steps=1")
    assert_user_error(proc, "--se_ratio=0.25", "r50_sk_se")
