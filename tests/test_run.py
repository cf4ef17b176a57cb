"""End-to-end tests of run.py as users run it: real subprocesses, tiny models."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from tests.harness import ROOT, TINY_FLAGS, assert_user_error, run_py


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("run") / "model")
    proc = run_py("--mode=train_then_eval", "--train_steps=6",
                  "--checkpoint_steps=3", "--eval_steps=2",
                  f"--model_dir={model_dir}", "--temperature=0.3", *TINY_FLAGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return model_dir, proc


def test_train_then_eval_writes_every_output(trained_dir):
    model_dir, proc = trained_dir
    files = os.listdir(model_dir)
    assert "checkpoint" in files
    assert "ckpt-6.index" in files and "ckpt-3.index" in files
    result = json.load(open(os.path.join(model_dir, "result.json")))
    assert set(result) >= {"eval/label_top_1_accuracy",
                           "eval/label_top_5_accuracy",
                           "eval/regularization_loss", "global_step"}
    assert result["global_step"] == 6.0
    assert 0.0 <= result["eval/label_top_1_accuracy"] <= 1.0
    assert result == json.load(open(os.path.join(model_dir, "result_6.json")))
    events = [f for d, _, fs in os.walk(model_dir) for f in fs
              if f.startswith("events.out.tfevents")]
    assert len(events) >= 2  # train and eval writers
    assert "eval at step 6" in proc.stdout
    assert "images/s" in proc.stdout and "contrast_acc" in proc.stdout


def test_flags_json_records_effective_values_and_precedence(trained_dir):
    model_dir, proc = trained_dir
    saved = json.load(open(os.path.join(model_dir, "flags.json")))
    origin = json.load(open(os.path.join(model_dir, "flags_origin.json")))
    # Flat, as the original code writes it: {flag_name: value}.
    assert all(not isinstance(v, dict) for v in saved.values())
    assert saved["train_batch_size"] == 32 and saved["model_dir"] == model_dir
    # Explicit flag beats the digits recipe (0.5); recipe beats default (224).
    assert saved["temperature"] == 0.3 and origin["temperature"] == "flag"
    assert saved["use_blur"] is False
    assert origin["use_blur"] == "recipe:digits"
    assert saved["momentum"] == 0.9 and origin["momentum"] == "default"
    assert saved["cifar_stem"] == "true"  # auto, resolved for 16 px
    assert set(origin) == set(saved)
    assert "temperature = 0.3  [flag]" in proc.stdout


def test_rerun_resumes_and_eval_mode_evaluates_latest(trained_dir):
    model_dir, _ = trained_dir
    flags_json = os.path.join(model_dir, "flags.json")
    recorded = open(flags_json).read()
    # No length flags: the finished run's recorded final step ends the wait.
    proc = run_py("--mode=eval", "--eval_steps=1", "--eval_timeout_secs=120",
                  f"--model_dir={model_dir}", *TINY_FLAGS, timeout=110)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "eval at step 6" in proc.stdout
    # The evaluator keeps the trainer's record of its flags.
    assert open(flags_json).read() == recorded
    assert json.load(open(os.path.join(model_dir, "training_done.json"))) == {
        "final_step": 6}
    proc = run_py("--mode=train", "--train_steps=6", f"--model_dir={model_dir}",
                  "--temperature=0.3", *TINY_FLAGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "nothing to train" in proc.stdout


def test_resuming_with_other_flags_is_refused_and_changes_nothing(trained_dir):
    model_dir, _ = trained_dir
    flags_json = os.path.join(model_dir, "flags.json")
    recorded, files = open(flags_json).read(), sorted(os.listdir(model_dir))
    # The run used --temperature=0.3; the digits recipe's value would train
    # another objective on its weights.
    proc = run_py("--mode=train", "--train_steps=8", f"--model_dir={model_dir}",
                  *TINY_FLAGS)
    assert_user_error(proc, "--temperature=0.3 (now 0.2)", "flags.json")
    assert open(flags_json).read() == recorded
    assert sorted(os.listdir(model_dir)) == files


def test_resume_after_sigkill_reaches_the_same_final_step(tmp_path):
    model_dir = str(tmp_path / "model")
    args = [sys.executable, os.path.join(ROOT, "run.py"), "--mode=train",
            "--train_steps=40", "--checkpoint_steps=2", f"--model_dir={model_dir}",
            *TINY_FLAGS]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(os.path.join(model_dir, "ckpt-4.index")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    import tensorflow as tf
    killed_at = tf.train.latest_checkpoint(model_dir)
    assert killed_at is not None
    assert int(killed_at.rsplit("-", 1)[1]) < 40
    resumed = run_py("--mode=train", "--train_steps=40", "--checkpoint_steps=2",
                     f"--model_dir={model_dir}", *TINY_FLAGS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    step = int(killed_at.rsplit("-", 1)[1])
    assert f"resumed from {killed_at} (step {step})" in resumed.stdout
    # The first step trained is the one after the checkpoint, not step 1
    # (a silent restart from 0 would also end at ckpt-40).
    trained = [int(l.split()[1].split("/")[0])
               for l in resumed.stdout.splitlines() if l.startswith("step ")]
    assert trained[0] == step + 1 and trained[-1] == 40, trained
    assert f"training steps {step}..40" in resumed.stdout
    assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-40")


def _write_image_folder(root):
    rng = np.random.default_rng(0)
    for label, name in enumerate(["cats", "dogs"]):
        os.makedirs(root / name)
        for i in range(6):
            size = (12 + i, 10 + 2 * i)
            pixels = rng.integers(0, 255, size=size + (3,), dtype=np.uint8)
            pixels[..., label] = 255  # A class-dependent colour.
            ext = ["png", "jpg", "bmp"][i % 3]
            Image.fromarray(pixels).save(root / name / f"img{i}.{ext}")
    (root / "cats" / "broken.jpg").write_bytes(b"\x00not a jpeg at all")
    (root / "dogs" / "empty.png").write_bytes(b"")


def test_folder_dataset_skips_corrupt_files(tmp_path):
    _write_image_folder(tmp_path / "images")
    proc = run_py("--mode=train_then_eval", "--train_steps=2",
                  f"--dataset=folder:{tmp_path / 'images'}", "--eval_split=train",
                  f"--model_dir={tmp_path / 'model'}", "--train_batch_size=8",
                  "--resnet_depth=18", "--width_multiplier=0.125",
                  "--image_size=16", "--proj_out_dim=8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Both unreadable files are named, and the running count reaches 2.
    skipped = [l for l in proc.stderr.splitlines()
               if "skipped unreadable image file" in l]
    assert any("broken.jpg" in l for l in skipped), proc.stderr[-3000:]
    assert any("empty.png" in l for l in skipped), proc.stderr[-3000:]
    assert any("(2 unreadable file(s)" in l for l in skipped), skipped
    result = json.load(open(tmp_path / "model" / "result.json"))
    assert result["global_step"] == 2.0


@pytest.mark.parametrize("flags,fragments", [
    (["--dataset=no_such_dataset_xyz"], ["no_such_dataset_xyz"]),
    (["--dataset=folder:/definitely/not/here"], ["/definitely/not/here"]),
    (["--train_batch_size=3", "--num_logical_cpu_devices=2"],
     ["not divisible", "replicas"]),
    (["--learning_rate_scaling=cubic"], ["learning_rate_scaling"]),
    (["--fine_tune_after_block=7", "--train_mode=finetune"],
     ["fine_tune_after_block"]),
])
def test_user_errors_are_one_line(tmp_path, flags, fragments):
    proc = run_py("--mode=train", "--train_steps=1",
                  f"--model_dir={tmp_path / 'm'}", *TINY_FLAGS, *flags)
    assert_user_error(proc, *fragments)


def test_unprepared_tfds_dataset_says_how_to_prepare(tmp_path):
    proc = run_py("--mode=train", "--train_steps=1", "--dataset=cifar10",
                  f"--data_dir={tmp_path / 'tfds'}",
                  f"--model_dir={tmp_path / 'm'}", *TINY_FLAGS, timeout=120)
    assert_user_error(proc, "cifar10", "data_dir")


def test_eval_without_any_checkpoint_times_out_with_a_clear_error(tmp_path):
    proc = run_py("--mode=eval", "--eval_timeout_secs=1",
                  f"--model_dir={tmp_path / 'empty'}", *TINY_FLAGS)
    assert_user_error(proc, "no checkpoint appeared")


def test_unwritable_model_dir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    proc = run_py("--mode=train", "--train_steps=1",
                  f"--model_dir={blocker / 'model'}", *TINY_FLAGS)
    assert_user_error(proc, "model_dir", "cannot be written")


def test_checkpoint_that_does_not_match_the_model(trained_dir, tmp_path):
    model_dir, _ = trained_dir
    proc = run_py("--mode=train", "--train_steps=1", "--train_mode=finetune",
                  f"--checkpoint={model_dir}", f"--model_dir={tmp_path / 'ft'}",
                  *TINY_FLAGS, "--width_multiplier=0.25")
    assert_user_error(proc, "does not match")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    model_dir = tmp_path / "m"
    # The same optimizer for both runs: its slots are in the checkpoint.
    good = run_py("--mode=train", "--train_steps=2", "--checkpoint_steps=2",
                  "--optimizer=momentum", f"--model_dir={model_dir}", *TINY_FLAGS)
    assert good.returncode == 0, good.stderr[-3000:]
    # Continuing a checkpoint under another learning rate: deleting flags.json
    # is how a user overrides the refusal to resume with changed flags.
    os.remove(model_dir / "flags.json")
    proc = run_py("--mode=train", "--train_steps=12", "--checkpoint_steps=2",
                  "--optimizer=momentum", "--learning_rate=1e30",
                  "--warmup_epochs=0", f"--model_dir={model_dir}", *TINY_FLAGS)
    assert_user_error(proc, "loss became", "checkpoint")
    import tensorflow as tf
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-2")


def test_micro_batching_on_two_logical_devices(tmp_path):
    proc = run_py("--mode=train", "--train_steps=2", "--micro_batch_size=8",
                  "--num_logical_cpu_devices=2", f"--model_dir={tmp_path / 'm'}",
                  *TINY_FLAGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 replica(s)" in proc.stdout and "step 2/2" in proc.stdout
    proc = run_py("--mode=train", "--train_steps=1", "--micro_batch_size=5",
                  f"--model_dir={tmp_path / 'bad'}", *TINY_FLAGS)
    assert_user_error(proc, "micro_batch_size")
