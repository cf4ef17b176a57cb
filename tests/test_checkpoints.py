"""Checkpoint round trips: every variable (incl. BN statistics) and the step."""

import glob
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2.rundir import checkpoints
from simclr_tf2 import errors
from tests.harness import batch, make_model


def _train_a_step(model):
    model.train_step(batch())
    return model


def test_round_trip_restores_weights_bn_statistics_optimizer_and_step(tmp_path):
    source = _train_a_step(make_model())
    ckpt, manager = checkpoints.make_manager(source, source.optimizer,
                                             str(tmp_path), 2)
    manager.save(checkpoint_number=1)
    sizes = checkpoints._saved_part_sizes(manager.latest_checkpoint)
    # Non-trainable BN moving statistics are saved too, not just weights.
    assert sizes["encoder"] == len(source.encoder.variables)
    assert sizes["supervised_head"] == 4  # kernel, bias, 2 BN statistics
    assert len(source.encoder.non_trainable_variables) > 0

    target = make_model()
    ckpt2, manager2 = checkpoints.make_manager(target, target.optimizer,
                                               str(tmp_path), 2)
    assert checkpoints.restore_latest(ckpt2, str(tmp_path))
    for a, b in zip(source.variables, target.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert int(target.optimizer.iterations.numpy()) == 1
    for a, b in zip(source.optimizer.variables, target.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_init_from_checkpoint_loads_encoder_but_not_classifier(tmp_path):
    source = _train_a_step(make_model())
    _, manager = checkpoints.make_manager(source, source.optimizer,
                                          str(tmp_path), 1)
    manager.save(checkpoint_number=1)
    target = make_model(train_mode="finetune", zero_init_logits_layer=True)
    checkpoints.init_from_checkpoint(target, str(tmp_path))
    for a, b in zip(source.encoder.variables, target.encoder.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.any(target.supervised_head.dense.kernel.numpy())
    assert int(target.optimizer.iterations.numpy()) == 0


def test_mismatched_architecture_is_a_clear_error(tmp_path):
    source = make_model()
    _, manager = checkpoints.make_manager(source, source.optimizer,
                                          str(tmp_path), 1)
    manager.save(checkpoint_number=1)
    wider = make_model(width_multiplier=0.25)
    with pytest.raises(errors.CheckpointMismatchError, match="does not match"):
        checkpoints.init_from_checkpoint(wider, str(tmp_path))
    deeper = make_model(resnet_depth=34)
    with pytest.raises(errors.CheckpointMismatchError):
        checkpoints.init_from_checkpoint(deeper, str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.CheckpointMismatchError, match="no checkpoint"):
        checkpoints.init_from_checkpoint(wider, str(tmp_path / "empty"))
    with pytest.raises(errors.CheckpointMismatchError, match="does not exist"):
        checkpoints.init_from_checkpoint(wider, str(tmp_path / "missing"))


def _two_checkpoints(tmp_path):
    """ckpt-1 and ckpt-2 of a model with different weights; ckpt-1's weights."""
    model = _train_a_step(make_model())
    _, manager = checkpoints.make_manager(model, model.optimizer,
                                          str(tmp_path), 5)
    manager.save(checkpoint_number=1)
    at_first = [v.numpy().copy() for v in model.variables]
    model.train_step(batch(seed=1))
    manager.save(checkpoint_number=2)
    return at_first


def _truncate(path, keep=0.5):
    with open(path, "r+b") as f:
        f.truncate(int(os.path.getsize(path) * keep))


def test_damaged_newest_checkpoint_falls_back_with_a_warning(tmp_path, caplog):
    at_first = _two_checkpoints(tmp_path)
    newest_data = glob.glob(str(tmp_path / "ckpt-2.data-*"))[0]
    _truncate(newest_data)  # As after a full disk.
    size = os.path.getsize(newest_data)

    target = make_model()
    ckpt, manager = checkpoints.make_manager(target, target.optimizer,
                                             str(tmp_path), 5)
    with caplog.at_level(logging.WARNING):
        restored = checkpoints.restore_latest(ckpt, str(tmp_path))
    assert restored.endswith("ckpt-1")
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and "damaged" in r.getMessage()]
    assert len(warnings) == 1 and "ckpt-2" in warnings[0], warnings
    assert "Read less bytes" in warnings[0]
    for a, b in zip(at_first, target.variables):
        np.testing.assert_array_equal(a, b.numpy(), err_msg=b.path)
    assert int(target.optimizer.iterations.numpy()) == 1
    assert os.path.getsize(newest_data) == size  # Kept, not deleted.
    # Training goes on from there: the next save and resume work.
    manager.save(checkpoint_number=3)
    again = make_model()
    ckpt3, _ = checkpoints.make_manager(again, again.optimizer, str(tmp_path), 5)
    assert checkpoints.restore_latest(ckpt3, str(tmp_path)).endswith("ckpt-3")


@pytest.mark.parametrize("damage", ["checksum", "no_index"])
def test_other_kinds_of_damage_also_fall_back(tmp_path, damage):
    _two_checkpoints(tmp_path)
    if damage == "checksum":
        path = glob.glob(str(tmp_path / "ckpt-2.data-*"))[0]
        data = bytearray(open(path, "rb").read())
        data[len(data) // 2] ^= 0xFF
        open(path, "wb").write(bytes(data))
    else:
        os.remove(tmp_path / "ckpt-2.index")
    target = make_model()
    ckpt, _ = checkpoints.make_manager(target, target.optimizer, str(tmp_path), 5)
    assert checkpoints.restore_latest(ckpt, str(tmp_path)).endswith("ckpt-1")


def test_no_readable_checkpoint_is_one_user_error(tmp_path):
    _two_checkpoints(tmp_path)
    for path in glob.glob(str(tmp_path / "ckpt-*.data-*")):
        _truncate(path, keep=0.3)
    target = make_model()
    ckpt, _ = checkpoints.make_manager(target, target.optimizer, str(tmp_path), 5)
    with pytest.raises(errors.DamagedCheckpointError,
                       match="no readable checkpoint .*ckpt-2, ckpt-1") as info:
        checkpoints.restore_latest(ckpt, str(tmp_path))
    assert isinstance(info.value, errors.UserError)
    assert "\n" not in str(info.value)
    # An explicit damaged checkpoint (fine-tuning, export) is one line too.
    with pytest.raises(errors.DamagedCheckpointError, match="ckpt-2 is damaged"):
        checkpoints.init_from_checkpoint(make_model(), str(tmp_path))
    _truncate(str(tmp_path / "ckpt-2.index"))
    with pytest.raises(errors.DamagedCheckpointError, match="ckpt-2 is damaged"):
        checkpoints.resolve_checkpoint_path(str(tmp_path / "ckpt-2"))


def test_failed_save_is_one_line_removes_partial_files_keeps_previous(
        tmp_path, monkeypatch):
    source = _train_a_step(make_model())
    ckpt, manager = checkpoints.make_manager(source, source.optimizer,
                                             str(tmp_path), 3)
    checkpoints.save(manager, 1)
    saved = [v.numpy() for v in source.variables]
    source.train_step(batch())  # the weights move on

    def fill_the_disk(checkpoint_number):
        partial = tmp_path / f"ckpt-{checkpoint_number}_temp"
        partial.mkdir()
        (partial / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"xx")
        (tmp_path / f"ckpt-{checkpoint_number}.index").write_bytes(b"x")
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{partial}/part.tempstate1; No space left on device")

    monkeypatch.setattr(manager, "save", fill_the_disk)
    with pytest.raises(errors.WriteError) as raised:
        checkpoints.save(manager, 2)
    message = str(raised.value)
    assert "\n" not in message
    assert "no space left on device" in message and "ckpt-1 is the last good" in message
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index"]

    target = make_model()
    ckpt2, _ = checkpoints.make_manager(target, target.optimizer, str(tmp_path), 3)
    assert checkpoints.restore_latest(ckpt2, str(tmp_path)).endswith("ckpt-1")
    for expected, variable in zip(saved, target.variables):
        np.testing.assert_array_equal(variable.numpy(), expected)


def test_failed_resave_of_a_listed_step_keeps_its_files(tmp_path, monkeypatch):
    source = make_model()
    _, manager = checkpoints.make_manager(source, source.optimizer, str(tmp_path), 3)
    checkpoints.save(manager, 1)

    def fail(checkpoint_number):
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(manager, "save", fail)
    with pytest.raises(errors.WriteError, match="permission denied"):
        checkpoints.save(manager, 1)
    assert "ckpt-1.index" in os.listdir(tmp_path)
