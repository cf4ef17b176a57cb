"""One pretraining step on 1 device equals the same step on 2 replicas."""

import numpy as np
import pytest
import tensorflow as tf
from tests.harness import batch, make_model



def _two_replicas():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    if len(devices) < 2:
        pytest.skip("needs 2 logical CPU devices (see tests/conftest.py)")
    return tf.distribute.MirroredStrategy(devices)


def _bn_moving_stats(model):
    return [v for v in model.variables if "moving_" in v.path]


def _fit_one_step(model, data):
    dataset = tf.data.Dataset.from_tensors(data).repeat()
    history = model.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0)
    return {k: v[-1] for k, v in history.history.items()}


@pytest.mark.parametrize("optimizer", ["lars", "momentum"])
def test_one_step_on_two_replicas_equals_one_device(optimizer):
    strategy = _two_replicas()
    data = batch(n=8, seed=3)
    single = make_model(global_bn=True, optimizer=optimizer)
    with strategy.scope():
        mirrored = make_model(global_bn=True, optimizer=optimizer)
    mirrored.set_weights(single.get_weights())
    stats_before = [v.numpy().copy() for v in _bn_moving_stats(single)]

    single_logs = _fit_one_step(single, data)
    mirrored_logs = _fit_one_step(mirrored, data)

    for name in ("contrast_loss", "supervised_loss", "loss", "weight_decay"):
        np.testing.assert_allclose(mirrored_logs[name], single_logs[name],
                                   atol=1e-5, err_msg=name)
    changed = 0
    # Float32 sums in a different order: 1e-5 absolute plus 1e-4 relative.
    for a, b in zip(single.trainable_variables, mirrored.trainable_variables):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5, rtol=1e-4,
                                   err_msg=a.path)
    for before, a, b in zip(stats_before, _bn_moving_stats(single),
                            _bn_moving_stats(mirrored)):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5,
                                   err_msg=a.path)
        changed += not np.allclose(before, a.numpy())
    assert changed > 0  # The step really updated BN statistics.


def test_local_bn_on_two_replicas_differs_from_one_device():
    """Control: without global BN the statistics differ, so the test above
    could not pass by accident."""
    strategy = _two_replicas()
    data = batch(n=8, seed=3)
    # Make the two replica halves statistically different.
    data["image"] = tf.concat([data["image"][:4] * 0.1, data["image"][4:]], 0)
    single = make_model(global_bn=False)
    with strategy.scope():
        mirrored = make_model(global_bn=False)
    mirrored.set_weights(single.get_weights())
    _fit_one_step(single, data)
    _fit_one_step(mirrored, data)
    diffs = [np.abs(a.numpy() - b.numpy()).max() for a, b in
             zip(_bn_moving_stats(single), _bn_moving_stats(mirrored))]
    assert max(diffs) > 1e-4
