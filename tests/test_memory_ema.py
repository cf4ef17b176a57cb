"""Tests of simclr_tf2.memory: the EMA copy of the encoder and head, the
memory's checkpoint, and a training loop on one device against two replicas
(test_memory.py: the loss and the key buffer)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2 import memory
from simclr_tf2.models.heads import ProjectionHead
from simclr_tf2.models.resnet import ResNet
from tests.test_memory import DIM, SIZE, filled_buffer


def _tiny_networks():
    encoder = ResNet(depth=18, width_multiplier=0.125, cifar_stem=True,
                     name="resnet")
    head = ProjectionHead(mode="nonlinear", num_layers=2, out_dim=4,
                          name="projection_head")
    head(encoder(tf.zeros([2, 8, 8, 3]))["final_avg_pool"])
    return encoder, head


def _train_mode_pass(encoder, head, seed):
    images = tf.random.stateless_uniform([4, 8, 8, 3], seed=[seed, 0])
    head(encoder(images, training=True)["final_avg_pool"], training=True)


def _perturb(variables, seed):
    rng = np.random.default_rng(seed)
    for v in variables:
        v.assign(v.numpy() + 0.1 * rng.normal(size=v.shape).astype(np.float32))


def test_ema_copy_and_update_follow_the_formula_for_every_variable():
    encoder, head = _tiny_networks()
    _train_mode_pass(encoder, head, 0)  # moving statistics away from init
    mem = memory.MemoryNetwork.from_networks(encoder, head, (8, 8, 3),
                                             momentum=0.9)
    source = encoder.weights + head.weights
    assert len(mem.weights) == len(source) and not mem.trainable_weights
    for m, w in zip(mem.weights, source):
        np.testing.assert_array_equal(m.numpy(), w.numpy())
    images = tf.random.stateless_uniform([3, 8, 8, 3], seed=[1, 2])
    # Keys normalise with batch statistics and leave the moving ones alone.
    stats = [m.numpy() for m in mem.weights]
    keys = mem(images).numpy()
    for m, value in zip(mem.weights, stats):
        np.testing.assert_array_equal(m.numpy(), value, err_msg=m.path)
    inference = memory.MemoryNetwork.from_networks(
        encoder, head, (8, 8, 3), batch_statistics=False)
    np.testing.assert_allclose(
        inference(images).numpy(),
        head(encoder(images)["final_avg_pool"])[-1].numpy(), atol=1e-6)
    np.testing.assert_allclose(
        keys, head(encoder(images, training=True)["final_avg_pool"],
                   training=True)[-1].numpy(), atol=1e-5)

    _perturb([v for v in source if v.trainable], 3)
    _train_mode_pass(encoder, head, 4)  # moves the moving statistics too
    before = [m.numpy() for m in mem.weights]
    mem.update(encoder, head)
    names = [m.path for m in mem.weights]
    assert any("moving_mean" in n for n in names)
    assert any("moving_variance" in n for n in names)
    for m, m0, w in zip(mem.weights, before, source):
        assert not np.array_equal(m0, w.numpy()), w.path
        np.testing.assert_allclose(m.numpy(), 0.9 * m0 + 0.1 * w.numpy(),
                                   rtol=1e-6, atol=1e-7, err_msg=m.path)


def test_ema_inside_strategy_run_updates_every_replica(two_replica_strategy):
    strategy = two_replica_strategy
    with strategy.scope():
        encoder, head = _tiny_networks()
        mem = memory.MemoryNetwork.from_networks(encoder, head, (8, 8, 3),
                                                 momentum=0.5)
    source = encoder.weights + head.weights
    _perturb(source, 8)
    before = [m.numpy() for m in mem.weights]
    strategy.run(tf.function(lambda: mem.update(encoder, head)))
    for m, m0, w in zip(mem.weights, before, source):
        for copy in strategy.experimental_local_results(m.value):
            np.testing.assert_allclose(copy.numpy(), 0.5 * m0 + 0.5 * w.numpy(),
                                       rtol=1e-6, atol=1e-7, err_msg=m.path)


def test_memory_network_has_no_gradient_and_round_trips_its_config():
    encoder, head = _tiny_networks()
    mem = memory.MemoryNetwork.from_networks(encoder, head, (8, 8, 3))
    images = tf.random.stateless_uniform([2, 8, 8, 3], seed=[5, 6])
    with tf.GradientTape() as tape:
        keys = mem(images)
    assert tape.gradient(keys, mem.weights)[0] is None
    clone = memory.MemoryNetwork.from_config(mem.get_config())
    assert clone.momentum == 0.999 and clone.batch_statistics
    assert clone.encoder.get_config() == encoder.get_config()


def test_bad_sizes_and_momentum_are_refused():
    with pytest.raises(ValueError, match="size"):
        memory.KeyBuffer(0, DIM)
    encoder, head = _tiny_networks()
    with pytest.raises(ValueError, match="momentum"):
        memory.MemoryNetwork(encoder, head, momentum=1.5)


def test_checkpoint_restores_buffer_position_and_ema(tmp_path):
    rng = np.random.default_rng(9)
    encoder, head = _tiny_networks()
    mem = memory.MemoryNetwork.from_networks(encoder, head, (8, 8, 3))
    buffer, _, _ = filled_buffer([5, 5, 5], rng, labelled=True)
    path = tf.train.Checkpoint(
        memory=memory.memory_trackable(mem, buffer)).save(
            str(tmp_path / "ckpt"))

    fresh_encoder, fresh_head = _tiny_networks()
    restored_mem = memory.MemoryNetwork.from_networks(
        fresh_encoder, fresh_head, (8, 8, 3))
    restored_buffer = memory.KeyBuffer(SIZE, DIM)
    tf.train.Checkpoint(
        memory=memory.memory_trackable(restored_mem, restored_buffer)).restore(
            path).assert_consumed()
    for got, want in zip(restored_buffer.weights + restored_mem.weights,
                         buffer.weights + mem.weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy(),
                                      err_msg=want.path)
    assert int(restored_buffer.position.numpy()) == 3


def _train_with_memory(strategy, batches, initial, steps):
    """A minimal training loop with the memory; returns its state.

    The order a training step with the memory follows: forward, keys, loss
    against the buffer, optimizer step, EMA update, enqueue of the global
    batch's keys.
    """
    with strategy.scope():
        encoder = ResNet(depth=18, width_multiplier=0.125, cifar_stem=True,
                         global_bn=True, name="resnet")
        head = ProjectionHead(num_layers=2, out_dim=4, global_bn=True,
                              name="projection_head")
        head(encoder(tf.zeros([1, 8, 8, 3]))["final_avg_pool"])
        for variable, value in zip(encoder.weights + head.weights, initial):
            variable.assign(value)
        mem = memory.MemoryNetwork.from_networks(encoder, head, (8, 8, 3),
                                                 momentum=0.9)
        buffer = memory.KeyBuffer(10, 4)
        variables = encoder.trainable_weights + head.trainable_weights
        optimizer = keras.optimizers.SGD(0.02)
        optimizer.build(variables)
    replicas = strategy.num_replicas_in_sync

    def replica_step(view1, view2):
        images = tf.concat([view1, view2], axis=0)
        with tf.GradientTape() as tape:
            features = encoder(images, training=True)["final_avg_pool"]
            queries = head(features, training=True)[-1]
            keys = mem(images)
            past, _, valid = buffer()
            loss, _, _ = memory.memory_contrastive_loss(
                queries, keys, past, valid, temperature=0.5,
                strategy=strategy)
            scaled = loss / replicas  # Keras sums the replicas' gradients.
        optimizer.apply_gradients(
            zip(tape.gradient(scaled, variables), variables))
        mem.update(encoder, head)
        buffer.enqueue_batch(keys, strategy=strategy)
        return loss

    step = tf.function(lambda a, b: strategy.run(replica_step, args=(a, b)))
    half = batches[0][0].shape[0] // replicas
    step_losses = []
    for view1, view2 in batches[:steps]:
        local = [strategy.experimental_distribute_values_from_function(
            lambda ctx, v=v: tf.constant(
                v[ctx.replica_id_in_sync_group * half:
                  (ctx.replica_id_in_sync_group + 1) * half]))
            for v in (view1, view2)]
        loss = step(*local)
        step_losses.append(
            strategy.reduce("MEAN", loss, axis=None).numpy())
    first = lambda v: strategy.experimental_local_results(  # noqa: E731
        v.value)[0].numpy()
    every = lambda v: [c.numpy() for c in  # noqa: E731
                       strategy.experimental_local_results(v.value)]
    return dict(
        loss=np.array(step_losses),
        weights=[first(v) for v in encoder.weights + head.weights],
        ema=[every(v) for v in mem.weights],
        buffer=[every(v) for v in buffer.weights])


@pytest.mark.slow
def test_training_loop_on_two_replicas_equals_one_device(two_replica_strategy):
    """3 steps: loss, weights, EMA weights and buffer match one device."""
    rng = np.random.default_rng(11)
    batches = [tuple(rng.uniform(size=(4, 8, 8, 3)).astype(np.float32)
                     for _ in range(2)) for _ in range(3)]
    encoder, head = _tiny_networks()
    initial = [v.numpy() for v in encoder.weights + head.weights]
    one = _train_with_memory(tf.distribute.get_strategy(), batches, initial, 3)
    two = _train_with_memory(two_replica_strategy, batches, initial, 3)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4)
    assert not np.allclose(one["loss"][0], one["loss"][2])  # it trains
    for got, want in zip(two["weights"], one["weights"]):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)
    for got, want in zip(two["ema"] + two["buffer"],
                         one["ema"] + one["buffer"]):
        assert len(got) == 2  # one copy per replica, the same values
        np.testing.assert_array_equal(got[0], got[1])
        np.testing.assert_allclose(got[0], want[0], rtol=1e-3, atol=1e-5)
    # 3 steps x 8 keys into 10 slots: wrapped to position 4.
    assert int(one["buffer"][2][0]) == 4


def test_ema_refuses_networks_of_different_shapes():
    encoder, head = _tiny_networks()
    mem = memory.MemoryNetwork.from_networks(encoder, head, (8, 8, 3))
    wider = ProjectionHead(num_layers=2, out_dim=5)
    wider(tf.zeros([1, encoder.num_features]))
    with pytest.raises(ValueError, match="same configuration"):
        mem.update(encoder, wider)
