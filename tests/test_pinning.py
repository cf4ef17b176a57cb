"""Tests of simclr_tf2/rundir/pinning.py: reading a checkpoint a trainer may rotate away."""

import glob

import numpy as np
import tensorflow as tf

from simclr_tf2.rundir import checkpoints
from simclr_tf2.rundir import pinning


def _tiny_manager(model_dir, max_to_keep=1):
    step = tf.Variable(0, dtype=tf.int64)
    weights = tf.Variable(tf.zeros([64]))
    checkpoint = tf.train.Checkpoint(global_step=step, weights=weights)
    manager = tf.train.CheckpointManager(checkpoint, model_dir, max_to_keep)
    return step, weights, manager


def test_pinned_checkpoint_survives_rotation(tmp_path):
    step, weights, manager = _tiny_manager(str(tmp_path))
    weights.assign(tf.fill([64], 1.0))
    manager.save(checkpoint_number=1)
    with pinning.pinned(str(tmp_path)) as pin:
        assert pin.path.endswith("ckpt-1") and pin.readable != pin.path
        weights.assign(tf.fill([64], 2.0))
        manager.save(checkpoint_number=2)  # deletes ckpt-1
        assert not glob.glob(str(tmp_path / "ckpt-1.*"))
        reader = tf.train.load_checkpoint(pin.readable)
        np.testing.assert_array_equal(
            reader.get_tensor("weights/.ATTRIBUTES/VARIABLE_VALUE"), 1.0)
    assert not glob.glob(str(tmp_path / ".reading-*"))


def test_pinned_takes_the_newest_again_when_the_chosen_one_vanishes(
        tmp_path, monkeypatch):
    _, _, manager = _tiny_manager(str(tmp_path))
    manager.save(checkpoint_number=1)
    real_link = pinning._link

    def link_after_a_save(prefix):  # the trainer saves between choice and read
        if prefix.endswith("ckpt-1"):
            manager.save(checkpoint_number=2)
        return real_link(prefix)

    monkeypatch.setattr(pinning, "_link", link_after_a_save)
    with pinning.pinned(str(tmp_path)) as pin:
        assert pin.path.endswith("ckpt-2")
    # A named ckpt-N prefix is the user's choice: no retry.
    with pinning.pinned(str(tmp_path / "ckpt-1")) as pin:
        assert pin.readable == pin.path  # missing: the reader reports it


def test_restore_latest_lists_again_when_the_checkpoint_was_rotated(
        tmp_path, monkeypatch):
    step, _, manager = _tiny_manager(str(tmp_path))
    step.assign(1)
    manager.save(checkpoint_number=1)
    real_restore = checkpoints.restore
    calls = []

    def restore_after_a_save(checkpoint, path, what, name=None):
        calls.append(path)
        if len(calls) == 1:  # the trainer rotates before the read opens it
            step.assign(2)
            manager.save(checkpoint_number=2)
        return real_restore(checkpoint, path, what, name)

    monkeypatch.setattr(checkpoints, "restore", restore_after_a_save)
    target_step, _, target = _tiny_manager(str(tmp_path / "unused"))
    restored = checkpoints.restore_latest(target._checkpoint, str(tmp_path))
    assert restored.endswith("ckpt-2") and int(target_step.numpy()) == 2
