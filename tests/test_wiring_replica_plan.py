"""The run plan on 1 and 2 replicas: warmup, total steps, the learning rate
from the global batch, and what the training log says.

Flags are parsed as run.py parses them; the run is built on the default
strategy and on a MirroredStrategy over the 2 logical CPUs of
tests/conftest.py. Expected values are computed here from SimCLR's rules:
warmup round(warmup_epochs * N / B) steps, total ceil(epochs * N / B),
peak rate lr * B / 256 (linear scaling) with B the GLOBAL batch, linear
warmup from 0 and cosine decay to 0 at the total.
"""

import copy
import math

import numpy as np
import pytest
import tensorflow as tf
from absl import flags as absl_flags

import flags as run_flags
# The only library imports (paths may change when modules move).
from simclr_tf2.training.experiment import Experiment
from simclr_tf2.training.trainer import Trainer

N = 1437  # digits' training examples
BATCH, LR, WARMUP_EPOCHS, EPOCHS = 64, 0.3, 0.5, 2
TINY = ["--dataset=digits", "--image_size=16", "--resnet_depth=18",
        "--width_multiplier=0.125", "--proj_out_dim=8", "--num_proj_layers=2",
        f"--train_batch_size={BATCH}", "--optimizer=lars",
        f"--learning_rate={LR}", "--learning_rate_scaling=linear",
        f"--warmup_epochs={WARMUP_EPOCHS}", "--knn_eval=false",
        "--log_every_steps=1", "--use_blur=false"]


def experiment(model_dir, strategy, *argv, lines=None):
    values = absl_flags.FlagValues()
    for flag in absl_flags.FLAGS.get_flags_for_module(run_flags.definitions):
        values[flag.name] = copy.deepcopy(flag)
    values(["run.py", *TINY, *argv])
    effective, _ = run_flags.effective_values(values)
    config = run_flags.config_from_values(effective, str(model_dir))
    printer = lines.append if lines is not None else (lambda _: None)
    return Experiment(config, strategy, printer=printer)


def expected_rate(step, warmup, total):
    peak = LR * BATCH / 256
    if step >= total:
        return 0.0
    if step < warmup:
        return peak * step / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def rate_at(exp, step):
    """The optimizer's learning rate at `step` (Keras reads its schedule at
    the optimizer's iteration count)."""
    saved = int(exp.optimizer.iterations.numpy())
    exp.optimizer.iterations.assign(step)
    value = float(exp.optimizer.learning_rate.numpy())
    exp.optimizer.iterations.assign(saved)
    return value


@pytest.fixture
def strategies(two_replica_strategy):
    return {1: tf.distribute.get_strategy(), 2: two_replica_strategy}


def test_plan_and_learning_rate_do_not_depend_on_the_replica_count(
        tmp_path, strategies):
    warmup = round(WARMUP_EPOCHS * N / BATCH)  # 11
    total = math.ceil(EPOCHS * N / BATCH)      # 45
    for replicas, strategy in strategies.items():
        exp = experiment(tmp_path / str(replicas), strategy,
                         f"--train_epochs={EPOCHS}", "--checkpoint_epochs=1")
        assert strategy.num_replicas_in_sync == replicas
        assert (exp.warmup_steps, exp.total_steps) == (warmup, total), replicas
        assert exp.checkpoint_steps == round(N / BATCH)  # one epoch
        for step in (0, 1, 5, warmup, 20, total - 1, total):
            np.testing.assert_allclose(
                rate_at(exp, step), expected_rate(step, warmup, total),
                rtol=1e-5, atol=1e-7, err_msg=f"{replicas} replica(s), step {step}")


def _logged(lines):
    steps = [l for l in lines if l.startswith("step ")]
    return ([l.split()[1] for l in steps],
            [float(l.split("learning_rate ")[1].split()[0]) for l in steps])


def test_training_log_shows_the_same_plan_on_two_replicas(tmp_path, strategies):
    logs = {}
    for replicas, strategy in strategies.items():
        lines = []
        exp = experiment(tmp_path / str(replicas), strategy, "--train_steps=2",
                         "--checkpoint_steps=2", lines=lines)
        Trainer(exp).train()
        assert exp.global_step == 2
        plan = [l for l in lines if l.startswith("training steps")]
        assert plan == [f"training steps 0..2 of {BATCH} examples ({N} in the "
                        f"split), {replicas} replica(s), checkpoint every 2 "
                        "steps"], lines
        logs[replicas] = _logged(lines)
    warmup = round(WARMUP_EPOCHS * N / BATCH)
    assert logs[1][0] == logs[2][0] == ["1/2", "2/2"]
    want = [expected_rate(k, warmup, 2) for k in (1, 2)]
    for replicas in (1, 2):
        np.testing.assert_allclose(logs[replicas][1], want, rtol=1e-3,
                                   err_msg=f"{replicas} replica(s)")
