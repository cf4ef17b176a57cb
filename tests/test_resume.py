"""Resuming a run: the restored state is the checkpoint's and training
continues from the step after it.

A resumed run draws new data orders and augmentations (data/pipeline.py folds
the start step into the seeds), so its weights are not compared with an
uninterrupted run's.
"""

import numpy as np

from simclr_tf2.training.trainer import Trainer
from tests.harness import tiny_experiment


def _state(experiment):
    model = experiment.model
    return ([v.numpy().copy() for v in model.weights],
            [v.numpy().copy() for v in experiment.optimizer.variables])


def _assert_same(a, b, **tolerance):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, **tolerance)


def test_resume_restores_the_checkpoint_and_continues_after_it(tmp_path):
    first = tiny_experiment(tmp_path / "split", train_steps=2,
                            checkpoint_steps=2)
    Trainer(first).train()
    at_checkpoint = _state(first)

    lines = []
    resumed = tiny_experiment(tmp_path / "split", lines, train_steps=4,
                              checkpoint_steps=2)
    fresh = _state(resumed)
    Trainer(resumed).restore_or_initialise()
    assert resumed.global_step == 2
    # Weights, BN moving statistics and optimizer slots are the checkpoint's
    # (and a fresh model's differ from them, so this comparison can fail).
    assert any(not np.array_equal(x, y) for x, y in zip(fresh[0], at_checkpoint[0]))
    _assert_same(_state(resumed)[0], at_checkpoint[0], rtol=0, atol=0)
    _assert_same(_state(resumed)[1], at_checkpoint[1], rtol=0, atol=0)

    Trainer(resumed).train()
    steps = [int(line.split()[1].split("/")[0]) for line in lines
             if line.startswith("step ")]
    assert steps == [3, 4], lines  # Not 1, 2, 3, 4: no restart from 0.
    assert any("training steps 2..4" in line for line in lines), lines


