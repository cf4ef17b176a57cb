"""Tests of simclr_tf2/rundir/same_run.py: resuming only with the recorded flags."""

import pytest
import tensorflow as tf

from simclr_tf2 import rundir
from simclr_tf2.config import RunConfig
from simclr_tf2.errors import ConfigError
from simclr_tf2.rundir import same_run


def _model_dir_with_checkpoint(tmp_path, flat):
    rundir.write_flags_json(str(tmp_path), flat, {})
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=tf.Variable(3)),
                                         str(tmp_path), max_to_keep=1)
    manager.save(checkpoint_number=3)
    return str(tmp_path)


def test_every_flag_that_may_change_on_resume_is_a_flag():
    flat = RunConfig().to_flat()
    assert same_run.MAY_CHANGE_ON_RESUME <= set(flat)
    # What is trained may not change: architecture, data, objective, subset.
    for name in ("width_multiplier", "dataset", "crop_min_area", "train_mode",
                 "label_subset_file", "teacher", "checkpoint", "seed",
                 "train_batch_size", "learning_rate"):
        assert name in flat and name not in same_run.MAY_CHANGE_ON_RESUME, name


def test_changed_flags_lists_only_what_changes_the_training():
    recorded = RunConfig().to_flat()
    new = dict(recorded, train_epochs=recorded["train_epochs"] + 5, log_every_steps=7,
               crop_min_area=1.0, seed=4, only_in_new=1)
    recorded = dict(recorded, only_in_recorded=2)
    assert same_run.changed_flags(recorded, new) == [
        ("crop_min_area", RunConfig().data.crop_min_area, 1.0),
        ("seed", 0, 4)]
    # flags.json stores tuples as lists and 2.0 == 2: no change.
    assert same_run.changed_flags({"a": [1, 2], "b": 2.0}, {"a": (1, 2), "b": 2}) == []


def test_resuming_a_checkpoint_with_other_flags_is_refused_in_one_line(tmp_path):
    flat = RunConfig().to_flat()
    model_dir = _model_dir_with_checkpoint(tmp_path, dict(flat, crop_min_area=0.35))
    with pytest.raises(ConfigError) as raised:
        same_run.check_resumable(model_dir, dict(flat, crop_min_area=1.0,
                                                 train_epochs=999))
    message = str(raised.value)
    assert "\n" not in message
    assert "--crop_min_area=0.35 (now 1.0)" in message and "train_epochs" not in message
    assert rundir.FLAGS_JSON in message and "new --model_dir" in message
    same_run.check_resumable(model_dir, dict(flat, crop_min_area=0.35, train_epochs=999))


def test_a_model_dir_without_checkpoint_or_record_starts_afresh(tmp_path):
    flat = RunConfig().to_flat()
    rundir.write_flags_json(str(tmp_path), dict(flat, seed=9), {})
    same_run.check_resumable(str(tmp_path), flat)  # flags.json but no checkpoint
    empty = tmp_path / "empty"
    empty.mkdir()
    same_run.check_resumable(str(empty), flat)


def test_the_refusal_spells_each_value_as_it_is_typed(tmp_path):
    flat = RunConfig().to_flat()
    model_dir = _model_dir_with_checkpoint(
        tmp_path, dict(flat, use_blur=True, teacher=None, random_flip=False))
    with pytest.raises(ConfigError) as raised:
        same_run.check_resumable(model_dir, dict(flat, use_blur=False, teacher="/t",
                                                 random_flip=True))
    assert str(raised.value) == (
        f"--model_dir={model_dir} holds a checkpoint trained with other flags: "
        "--random_flip=false (now true); --teacher='' (now /t); "
        "--use_blur=true (now false). Pass the same flags to resume it, a new "
        "--model_dir to start another run, or delete "
        f"{model_dir}/flags.json to continue its weights under the new flags.")
