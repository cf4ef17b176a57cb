"""Behaviour of simclr_tf2/optim/schedule.py that the mutation run
(benchmarks/mutation.py) found unpinned: each test kills mutants that
survived the module's own tests (a default of the library API, an exact
rule, an error a user acts on).
"""

import keras
import numpy as np
import pytest

from simclr_tf2 import optim
from simclr_tf2.optim import schedule


def test_schedule_is_registered_under_its_saved_name():
    # Saved .keras models and optimizers refer to the schedule by this name.
    assert keras.saving.get_registered_name(schedule.WarmupCosineDecay) == (
        "simclr_tf2>WarmupCosineDecay")


@pytest.mark.parametrize("warmup, total", [(-1, 10), (0, -1)])
def test_negative_step_counts_are_refused(warmup, total):
    with pytest.raises(ValueError, match=(
            rf"^warmup_steps and total_steps must be >= 0, got {warmup} and "
            rf"{total}\.$")):
        schedule.WarmupCosineDecay(1.0, warmup, total)


def test_edges_of_the_schedule():
    # A run of 0 steps (nothing to train) is a valid, all-zero schedule.
    assert float(schedule.WarmupCosineDecay(1.0, 0, 0)(0)) == 0.0
    rate = schedule.WarmupCosineDecay(2.0, 1, 3)
    values = [float(rate(step)) for step in range(5)]
    # 0 at step 0 (warmup), the peak at the end of warmup, half way down the
    # cosine at step 2, exactly 0 from the total on.
    np.testing.assert_allclose(values, [0.0, 2.0, 1.0, 0.0, 0.0], atol=1e-6)
    assert values[3] == 0.0 and values[4] == 0.0
    # warmup == total - 1: one decay step, from the peak straight to 0.
    np.testing.assert_allclose(
        [float(schedule.WarmupCosineDecay(2.0, 2, 3)(s)) for s in range(4)],
        [0.0, 1.0, 2.0, 0.0], atol=1e-6)


def test_unknown_scaling_is_one_clear_error():
    with pytest.raises(ValueError, match=(
            r"^Unknown learning rate scaling 'cubic'; use 'linear' or "
            r"'sqrt'\.$")):
        optim.scale_learning_rate(0.3, 4096, "cubic")


def test_warmup_floor_constants():
    assert (schedule.MIN_WARMUP_STEPS, schedule.MAX_WARMUP_FRACTION) == (10, 0.25)
    # The floor: min(10, 25% of the run), only when a warmup was asked for.
    assert optim.warmup_and_total_steps(100, 100, 0.01, 40) == (10, 40)
    assert optim.warmup_and_total_steps(100, 100, 0.01, 20) == (5, 20)
    assert optim.warmup_and_total_steps(100, 100, 0.0, 40) == (0, 40)
    assert optim.warmup_and_total_steps(100, 100, 12, 40) == (12, 40)


def test_build_learning_rate_schedule_passes_train_steps_and_scaling():
    rate = optim.build_learning_rate_schedule(0.1, "sqrt", 400, 100, 0, 5,
                                              train_steps=7)
    assert (rate.warmup_steps, rate.total_steps) == (0, 7)
    # sqrt scaling with the batch capped at the 100 examples: 0.1 * 10.
    assert rate.base_learning_rate == pytest.approx(1.0)
    assert float(rate(0)) == pytest.approx(1.0)
