"""SimCLRv2's memory in pretraining: flags, the task wiring, resume, export,
replicas and gradient caching (simclr_tf2/memory/training.py, tasks/pretrain.py)."""

import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import flags as simclr_flags
from simclr_tf2 import errors
from simclr_tf2 import optim
from simclr_tf2 import tasks
from simclr_tf2.config import RunConfig
from simclr_tf2.memory import ema_update
from simclr_tf2.models import build
from simclr_tf2.training.trainer import Trainer
from tests.harness import IMAGE, batch, cached_gradients, freeze_batch_norm, full_batch_gradients, model_cfg, parsed, tiny_experiment

MEMORY = dict(memory_size=40, memory_momentum=0.9)


# ------------------------------------------------------------------- flags
def test_memory_flags_default_off_and_are_recorded(tmp_path):
    values, _ = simclr_flags.effective_values(parsed())
    flat = simclr_flags.config_from_values(values, str(tmp_path)).to_flat()
    assert (flat["memory_size"], flat["memory_momentum"]) == (0, 0.999)
    values, _ = simclr_flags.effective_values(
        parsed("--memory_size=4096", "--memory_momentum=0.99"))
    config = simclr_flags.config_from_values(values, str(tmp_path))
    assert (config.loss.memory_size, config.loss.memory_momentum) == (4096, 0.99)
    assert RunConfig.from_flat(config.to_flat()) == config  # flags.json


@pytest.mark.parametrize("argv,message", [
    (["--memory_size=-1"], "--memory_size must be >= 0"),
    (["--memory_size=8", "--memory_momentum=1.0"], r"--memory_momentum must be in \[0, 1\)"),
    (["--memory_momentum=-0.1"], r"--memory_momentum must be in \[0, 1\)"),
    (["--train_mode=finetune", "--memory_size=8"],
     "--memory_size only applies to --train_mode=pretrain"),
])
def test_bad_memory_flags_are_refused_with_one_line(tmp_path, argv, message):
    values, _ = simclr_flags.effective_values(parsed(*argv))
    with pytest.raises(errors.ConfigError, match=message) as err:
        simclr_flags.config_from_values(values, str(tmp_path))
    assert "\n" not in str(err.value)


# ------------------------------------------------------------ task wiring
def memory_model(strategy=None, memory_size=40, momentum=0.9,
                 contrastive_loss="nt_xent", **cfg):
    """A tiny pretraining SimCLRModel compiled with a memory task."""
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build.build_model(model_cfg(**cfg), num_classes=3,
                                  task="pretrain", image_size=IMAGE)
        task = tasks.PretrainTask(
            contrastive_loss=contrastive_loss, temperature=0.5,
            weight_decay=optim.weight_decay_policy("lars", 1e-4),
            memory_size=memory_size, memory_momentum=momentum)
        model.compile(optimizer=optim.build_optimizer(
            "lars", 0.1, weight_decay=1e-4), task=task)
        model.optimizer.build(model.trainable_variables)
        task.build_state(model, (IMAGE, IMAGE, 3))
    return model


def test_memory_off_has_no_state_and_memory_on_leaves_the_model_alone():
    off = tasks.PretrainTask()
    assert off.memory is None and off.checkpoint_children() == {}
    model = memory_model()
    plain = memory_model(memory_size=0)
    # The memory is no part of the model: same weights, same model node.
    assert [v.path for v in model.weights] == [v.path for v in plain.weights]
    assert set(model.task.checkpoint_children()) == {"memory"}


def test_reset_copies_weights_loaded_after_build():
    """--checkpoint loads weights after the memory was built: reset_state
    makes the memory network a copy of them."""
    model = memory_model()
    trained = model.encoder.weights + model.projection_head.weights
    for v in trained:
        v.assign(v + 0.5)
    model.task.reset_state(model)
    for m, w in zip(model.task.memory.network.weights, trained):
        np.testing.assert_array_equal(m.numpy(), w.numpy())


@pytest.mark.parametrize("contrastive_loss", ["nt_xent", "supcon"])
def test_train_step_uses_the_buffer_then_updates_ema_and_enqueues(contrastive_loss):
    model = memory_model(contrastive_loss=contrastive_loss)
    memory = model.task.memory
    data = batch(n=4)
    ema_before = [v.numpy() for v in memory.network.weights]
    logs = model.train_step(data)
    assert np.isfinite(float(logs["contrast_loss"]))
    # 8 keys (both views of 4 examples) in slots 0..7, labels kept for SupCon.
    assert int(memory.buffer.position.numpy()) == 8
    assert int(memory.buffer.filled.numpy()) == 8
    labels = memory.buffer.labels.numpy()[:8]
    want = np.tile(data["label"].numpy(), 2) if contrastive_loss == "supcon" \
        else -np.ones(8)
    np.testing.assert_array_equal(labels, want)
    # The enqueued keys are the memory network's keys of this step's views
    # computed before the EMA step.
    images = model.task.model_inputs(data)
    keys_before = memory.network.__class__.from_config(
        memory.network.get_config())
    keys_before(images[:1])
    for v, value in zip(keys_before.weights, ema_before):
        v.assign(value)
    np.testing.assert_allclose(memory.buffer.keys.numpy()[:8],
                               keys_before(images).numpy(), rtol=1e-5, atol=1e-6)
    # EMA: m <- 0.9 m + 0.1 w, for every variable (BN statistics too).
    trained = model.encoder.weights + model.projection_head.weights
    for m, before, w in zip(memory.network.weights, ema_before, trained):
        np.testing.assert_allclose(m.numpy(), 0.9 * before + 0.1 * w.numpy(),
                                   rtol=1e-5, atol=1e-6, err_msg=w.path)


def test_gradient_caching_equals_full_batch_with_the_memory():
    model = memory_model()
    freeze_batch_norm(model)
    memory = model.task.memory
    # A partly filled buffer, so the buffer's negatives enter the gradient.
    rng = np.random.default_rng(3)
    memory.buffer.enqueue(tf.constant(rng.normal(size=(12, 8)), tf.float32))
    data = batch(n=8)
    ref_loss, ref_grads = full_batch_gradients(model, data)
    network, calls = memory.network, []

    def counting(images):
        calls.append(images.shape[0])
        return network(images)

    memory.network = counting
    model.micro_batch_size = 2
    loss, grads = cached_gradients(model, data)
    memory.network = network
    assert calls == [16]  # keys once, for all 2 x 8 views
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    for g, r, v in zip(grads, ref_grads, model.trainable_variables):
        assert (g is None) == (r is None), v.path
        if r is not None:
            np.testing.assert_allclose(g, r, atol=1e-5, err_msg=v.path)


def _replica_batches(strategy, data):
    """Splits a global batch dict into per-replica rows (replica order)."""
    n = strategy.num_replicas_in_sync

    def value_fn(context):
        i = context.replica_id_in_sync_group
        return {k: tf.split(v, n)[i] for k, v in data.items()}
    return strategy.experimental_distribute_values_from_function(value_fn)


def _train(strategy, steps, initial):
    model = memory_model(strategy, global_bn=True,
                         lineareval_while_pretraining=False)
    with strategy.scope():
        for v, value in zip(model.weights, initial):
            v.assign(value)
        memory = model.task.memory
        ema_update(memory.network.weights,
                   model.encoder.weights + model.projection_head.weights, 0.0)

    @tf.function
    def step(data):
        logs = strategy.run(model.train_step, args=(data,))
        return strategy.reduce("MEAN", logs["contrast_loss"], axis=None)

    losses = [float(step(_replica_batches(strategy, batch(n=8, seed=s))))
              for s in range(steps)]
    first = lambda v: strategy.experimental_local_results(v)[0].numpy()  # noqa: E731
    every = lambda v: [x.numpy() for x in strategy.experimental_local_results(  # noqa: E731
        getattr(v, "value", v))]
    return dict(loss=np.array(losses),
                weights=[first(v.value) for v in model.trainable_variables],
                ema=[every(v) for v in memory.network.weights],
                buffer=[every(v) for v in memory.buffer.weights])


@pytest.mark.parametrize("steps", [
    1, pytest.param(3, marks=pytest.mark.slow)])
def test_two_replicas_equal_one_device(two_replica_strategy, steps):
    """Loss, weights, EMA weights and buffer (train_step, synchronised BN)."""
    initial = [v.numpy() for v in memory_model(
        global_bn=True, lineareval_while_pretraining=False).weights]
    one = _train(tf.distribute.get_strategy(), steps, initial)
    two = _train(two_replica_strategy, steps, initial)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4)
    for got, want in zip(two["weights"], one["weights"]):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)
    for got, want in zip(two["ema"] + two["buffer"],
                         one["ema"] + one["buffer"]):
        assert len(got) == 2  # one copy per replica, the same values
        np.testing.assert_array_equal(got[0], got[1])
        np.testing.assert_allclose(got[0], want[0], rtol=1e-3, atol=1e-5)
    assert int(one["buffer"][2][0]) == (16 * steps) % 40  # position


# ------------------------------------------------ runs: resume and export
def _state(experiment):
    memory = experiment.task.memory
    return ([v.numpy() for v in experiment.model.weights],
            [v.numpy() for v in memory.network.weights],
            [v.numpy() for v in memory.buffer.weights])


def _assert_same_state(got, want):
    for got_part, want_part in zip(got, want):
        assert len(got_part) == len(want_part)
        for g, w in zip(got_part, want_part):
            np.testing.assert_array_equal(g, w)


class SameBatchesTrainer(Trainer):
    """A resumed run that sees the batches an uninterrupted one would.

    (run.py's resumed runs draw new data orders on purpose, see
    data/pipeline.py; the state must match when the data does.)
    """

    def train_dataset(self, seed_offset=0):
        return super().train_dataset(0).skip(seed_offset)


def test_killed_and_resumed_run_continues_bit_identically(tmp_path):
    run = dict(train_steps=4, checkpoint_steps=2, train_batch_size=8, **MEMORY)
    straight = tiny_experiment(tmp_path / "straight", **run)
    SameBatchesTrainer(straight).train()
    # A run killed after its step-2 checkpoint leaves exactly ckpt-2.
    killed = tmp_path / "killed"
    killed.mkdir()
    for name in os.listdir(tmp_path / "straight"):
        if name.startswith("ckpt-2."):
            shutil.copy(tmp_path / "straight" / name, killed / name)
    (killed / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-2"\n'
        'all_model_checkpoint_paths: "ckpt-2"\n')
    resumed = tiny_experiment(killed, **run)
    SameBatchesTrainer(resumed).train()
    assert resumed.global_step == straight.global_step == 4
    # 4 steps x 16 keys into 40 slots: wrapped to position 24.
    assert int(resumed.task.memory.buffer.position.numpy()) == 24
    _assert_same_state(_state(resumed), _state(straight))

    # Fine-tuning from a model_dir trained with the memory reads the model.
    finetune = tiny_experiment(tmp_path / "ft", train_mode="finetune",
                               checkpoint=str(tmp_path / "straight"),
                               train_steps=1)
    Trainer(finetune).restore_or_initialise()
    for got, want in zip(finetune.model.encoder.weights,
                         straight.model.encoder.weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_export_of_a_memory_run_holds_the_trained_encoder(tmp_path):
    from simclr_tf2.export import from_checkpoint
    from simclr_tf2.export import saved_model
    config_dir = tmp_path / "run"
    experiment = tiny_experiment(config_dir, train_steps=2, checkpoint_steps=2,
                                 train_batch_size=8, **MEMORY)
    Trainer(experiment).train()
    model, step, _ = from_checkpoint.restore_model(experiment.config,
                                                   str(config_dir))
    out = saved_model.export_model(model, experiment.config,
                                   str(tmp_path / "export"))
    loaded = tf.saved_model.load(out)
    images = tf.random.stateless_uniform([4, 16, 16, 3], [1, 2])
    got = loaded(images, trainable=False)["proj_head_output"].numpy()
    trained = experiment.model(images, training=False)["proj_head_output"]
    keys = experiment.task.memory.network(images)
    np.testing.assert_allclose(got, trained.numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(got, keys.numpy(), atol=1e-3)
    assert step == 2
    n_model = len(model.weights)
    assert len(loaded.variables) <= n_model  # no memory network inside
