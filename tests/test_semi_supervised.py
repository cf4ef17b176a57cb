"""End to end: pretrain -> fine-tune on a label fraction -> distil (run.py)."""

import json
import os

import numpy as np
import pytest
from tests.harness import TINY_FLAGS, assert_user_error, run_py



@pytest.fixture(scope="module")
def pipeline_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("semi")
    dirs = {name: str(root / name) for name in ("pre", "ft", "ft2", "student")}
    proc = run_py("--mode=train", "--train_steps=3", f"--model_dir={dirs['pre']}",
                  *TINY_FLAGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dirs


def test_finetune_on_label_fraction_writes_reproducible_subset(pipeline_dirs):
    dirs = pipeline_dirs
    args = ["--mode=train_then_eval", "--train_mode=finetune",
            f"--checkpoint={dirs['pre']}", "--label_fraction=0.05",
            "--train_steps=3", "--eval_steps=1", *TINY_FLAGS]
    proc = run_py(*args, f"--model_dir={dirs['ft']}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "initialised encoder" in proc.stdout
    ids = open(os.path.join(dirs["ft"], "label_subset.txt")).read().split()
    assert 60 <= len(ids) <= 80  # 5% of 1437, class-balanced per class.
    result = json.load(open(os.path.join(dirs["ft"], "result.json")))
    assert result["global_step"] == 3.0 and "eval/knn_top_1_accuracy" in result
    # Same seed, new run: the same ids. The file can be reused explicitly too.
    proc = run_py(*args, "--mode=train", "--train_steps=1",
                  f"--label_subset_file={os.path.join(dirs['ft'], 'label_subset.txt')}",
                  f"--model_dir={dirs['ft2']}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert open(os.path.join(dirs["ft2"], "label_subset.txt")).read().split() == ids


def test_distill_from_the_finetuned_export(pipeline_dirs):
    dirs = pipeline_dirs
    exports = os.path.join(dirs["ft"], "saved_model")
    assert os.listdir(exports) == ["3"]
    proc = run_py("--mode=train_then_eval", "--train_mode=distill",
                  f"--teacher={dirs['ft']}", "--train_steps=2", "--eval_steps=1",
                  "--distill_temperature=2.0", f"--model_dir={dirs['student']}",
                  *TINY_FLAGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "teacher:" in proc.stdout and "10 classes" in proc.stdout
    assert "distill_loss" in proc.stdout
    losses = [float(line.split("distill_loss ")[1].split()[0])
              for line in proc.stdout.splitlines() if "distill_loss" in line]
    assert all(np.isfinite(losses))


def test_distill_without_a_usable_teacher_is_a_clear_error(tmp_path):
    proc = run_py("--mode=train", "--train_mode=distill", f"--teacher={tmp_path}",
                  "--train_steps=1", f"--model_dir={tmp_path / 'm'}", *TINY_FLAGS)
    assert_user_error(proc, "teacher")
    proc = run_py("--mode=train", "--train_mode=distill", "--train_steps=1",
                  f"--model_dir={tmp_path / 'm'}", *TINY_FLAGS)
    assert_user_error(proc, "--teacher")
