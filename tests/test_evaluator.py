"""Tests of simclr_tf2/training/evaluator.py on a tiny digits run."""

import glob
import json
import logging
import os
import time
import types

import pytest

from simclr_tf2.data.registry import DataError
from simclr_tf2.training.evaluator import Evaluator, resolve_eval_split
from simclr_tf2.training.trainer import Trainer
from tests.harness import tiny_experiment


def _source(*splits):
    info = types.SimpleNamespace(name="fake", num_examples={s: 1 for s in splits})
    return types.SimpleNamespace(info=info)


def test_eval_split_falls_back_to_test_only_for_validation():
    assert resolve_eval_split(_source("train", "test"), "validation") == "test"
    assert resolve_eval_split(_source("train", "validation"), "validation") == "validation"
    assert resolve_eval_split(_source("train"), "train[:10%]") == "train[:10%]"
    with pytest.raises(DataError, match="--eval_split"):
        resolve_eval_split(_source("train"), "validation")


def test_evaluate_writes_the_original_result_keys(tmp_path):
    lines = []
    experiment = tiny_experiment(tmp_path, lines, eval_name="probe",
                                 knn_eval=True, knn_k=5)
    result = Evaluator(experiment).evaluate()
    assert set(result) == {"eval/label_top_1_accuracy",
                           "eval/label_top_5_accuracy",
                           "eval/regularization_loss",
                           "eval/knn_top_1_accuracy", "global_step"}
    assert 0.0 <= result["eval/knn_top_1_accuracy"] <= 1.0
    with open(os.path.join(tmp_path, "result.json")) as f:
        assert json.load(f) == result
    assert os.path.isdir(os.path.join(tmp_path, "eval_probe"))
    assert lines[-1].startswith("eval at step 0:")


def test_evaluate_checkpoints_stops_at_the_recorded_final_step(tmp_path):
    trained = tiny_experiment(tmp_path, train_steps=2, checkpoint_steps=1)
    Trainer(trained).train()
    # Other length flags than the training run's: the recorded step ends it.
    evaluator = Evaluator(tiny_experiment(tmp_path, train_steps=50,
                                          eval_timeout_secs=5))
    seen = []
    result = evaluator.evaluate_checkpoints(on_result=seen.append)
    assert result["global_step"] == 2.0 and seen[-1] is result


def test_evaluate_checkpoints_without_any_checkpoint_is_one_clear_error(tmp_path):
    evaluator = Evaluator(tiny_experiment(tmp_path, train_steps=2,
                                          eval_timeout_secs=1))
    with pytest.raises(ValueError, match="no checkpoint appeared"):
        evaluator.evaluate_checkpoints()


def test_evaluate_checkpoints_falls_back_from_a_damaged_final_checkpoint(
        tmp_path, caplog):
    trained = tiny_experiment(tmp_path, train_steps=2, checkpoint_steps=1)
    Trainer(trained).train()
    final_data = glob.glob(str(tmp_path / "ckpt-2.data-*"))[0]
    with open(final_data, "r+b") as f:  # truncated, as by a full disk
        f.truncate(os.path.getsize(final_data) // 2)
    evaluator = Evaluator(tiny_experiment(tmp_path, train_steps=2,
                                          eval_timeout_secs=60))
    start = time.time()
    with caplog.at_level(logging.WARNING):
        result = evaluator.evaluate_checkpoints()
    assert result["global_step"] == 1.0  # ckpt-1, the newest readable one
    assert time.time() - start < 30  # ends at the final step: no 60 s wait
    assert any("ckpt-2" in r.getMessage() and "damaged" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)
