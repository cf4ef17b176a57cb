"""Checkpoint round trips: every variable (incl. BN statistics) and the step."""

import numpy as np
import pytest

from simclr_tf2 import checkpoints
from tests.test_simclr_model import batch, make_model


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
    with pytest.raises(checkpoints.CheckpointMismatchError, match="does not match"):
        checkpoints.init_from_checkpoint(wider, str(tmp_path))
    deeper = make_model(resnet_depth=34)
    with pytest.raises(checkpoints.CheckpointMismatchError):
        checkpoints.init_from_checkpoint(deeper, str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(checkpoints.CheckpointMismatchError, match="no checkpoint"):
        checkpoints.init_from_checkpoint(wider, str(tmp_path / "empty"))
    with pytest.raises(checkpoints.CheckpointMismatchError, match="does not exist"):
        checkpoints.init_from_checkpoint(wider, str(tmp_path / "missing"))
