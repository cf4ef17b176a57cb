"""Tests of simclr_tf2/rundir/__init__.py: model_dir names, atomic JSON, records, lookups."""

import json
import os

import pytest
import tensorflow as tf

from simclr_tf2 import rundir
from simclr_tf2.errors import ConfigError


def test_atomic_write_json_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / rundir.RESULT_JSON)
    rundir.atomic_write_json(path, {"b": 1.0, "a": 2})
    rundir.atomic_write_json(path, {"global_step": 3.0})
    assert json.load(open(path)) == {"global_step": 3.0}
    assert os.listdir(tmp_path) == [rundir.RESULT_JSON]
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o644)


def test_atomic_write_json_keeps_the_old_file_when_the_payload_fails(tmp_path):
    path = str(tmp_path / rundir.FLAGS_JSON)
    rundir.atomic_write_json(path, {"ok": True})
    try:
        rundir.atomic_write_json(path, {"bad": object()})
    except TypeError:
        pass
    else:
        raise AssertionError("an unserialisable payload must raise")
    assert json.load(open(path)) == {"ok": True}
    assert os.listdir(tmp_path) == [rundir.FLAGS_JSON]


def test_names_of_the_run_directory():
    assert rundir.result_json(12) == "result_12.json"
    assert rundir.eval_summaries() == "eval"
    assert rundir.eval_summaries("ft") == "eval_ft"
    assert rundir.export_dir("/m", 7) == os.path.join("/m", "saved_model", "7")
    assert rundir.worker_dir("/m", 2) == os.path.join("/m", ".worker_2")
    assert rundir.EXPORT_INFO == os.path.join("assets.extra",
                                              "simclr_export.json")


def test_recorded_final_step(tmp_path):
    assert rundir.recorded_final_step(str(tmp_path)) is None
    rundir.atomic_write_json(str(tmp_path / rundir.TRAINING_DONE),
                             {"final_step": 40})
    assert rundir.recorded_final_step(str(tmp_path)) == 40


def test_record_and_clear_the_final_step(tmp_path):
    rundir.record_final_step(str(tmp_path), 7)
    assert json.load(open(tmp_path / rundir.TRAINING_DONE)) == {"final_step": 7}
    assert rundir.recorded_final_step(str(tmp_path)) == 7
    rundir.clear_final_step(str(tmp_path))
    rundir.clear_final_step(str(tmp_path))  # Nothing to clear: no error.
    assert rundir.recorded_final_step(str(tmp_path)) is None


def test_checkpoint_names_round_trip():
    assert rundir.checkpoint_name(12) == "ckpt-12"
    assert rundir.checkpoint_step(os.path.join("/m", rundir.checkpoint_name(12))) == 12
    assert rundir.checkpoint_step("/m/variables/variables") == -1


def test_flags_json_is_written_flat_with_its_origins_and_read_back(tmp_path):
    model_dir = str(tmp_path)
    assert not rundir.has_flags_json(model_dir)
    with pytest.raises(ConfigError, match="no flags.json"):
        rundir.read_flags_json(model_dir)
    rundir.write_flags_json(model_dir, {"b": 1, "a": "x"}, {"a": "flag"})
    assert rundir.has_flags_json(model_dir)
    assert rundir.read_flags_json(model_dir) == {"a": "x", "b": 1}
    assert json.load(open(tmp_path / rundir.FLAGS_ORIGIN_JSON)) == {
        "a": "flag", "b": "default"}
    (tmp_path / rundir.FLAGS_JSON).write_text("[1, 2]")
    with pytest.raises(ConfigError, match="flat JSON object"):
        rundir.read_flags_json(model_dir)


def test_resolve_export_takes_an_export_or_a_model_dirs_newest(tmp_path):
    assert rundir.resolve_export(str(tmp_path)) is None
    newest = tmp_path / rundir.SAVED_MODEL_DIR / "5"
    os.makedirs(newest)
    (newest / "saved_model.pb").write_bytes(b"")
    assert rundir.resolve_export(str(tmp_path)) == str(newest)
    assert rundir.resolve_export(str(newest)) == str(newest)


def test_latest_export_is_the_highest_numbered_step(tmp_path):
    assert rundir.latest_export(str(tmp_path)) is None
    for name in ("9", "10", "tmp", ".10.old-x"):
        os.makedirs(tmp_path / rundir.SAVED_MODEL_DIR / name)
    assert rundir.export_steps(rundir.export_root(str(tmp_path))) == [9, 10]
    assert rundir.latest_export(str(tmp_path)) == rundir.export_dir(
        str(tmp_path), 10)


def test_latest_checkpoint_reads_the_checkpoint_state(tmp_path):
    assert rundir.latest_checkpoint(str(tmp_path)) is None
    step = tf.Variable(0)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=step),
                                         str(tmp_path), max_to_keep=3)
    manager.save(checkpoint_number=4)
    manager.save(checkpoint_number=8)
    assert rundir.latest_checkpoint(str(tmp_path)) == str(tmp_path / "ckpt-8")
