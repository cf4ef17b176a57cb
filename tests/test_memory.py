"""Tests of simclr_tf2.memory: the loss against numpy and the key buffer
(test_memory_ema.py: the EMA network, checkpoints, a training loop)."""

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2 import losses
from simclr_tf2 import memory
from tests.replicas import assert_view_gradients_split_by_replica

SIZE, DIM = 12, 6
# Key counts written before the loss: empty, partly full, exactly full
# (position back at 0), wrapped (position 3), one write larger than the buffer.
FILL_STATES = {"empty": [], "partial": [5], "full": [5, 7],
               "wrapped": [5, 5, 5], "oversized": [20]}


def _normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def numpy_fifo(chunks, size):
    """The last `size` rows written, oldest first (order does not matter)."""
    rows = np.concatenate(chunks) if chunks else np.zeros((0, DIM))
    return rows[-size:]


def numpy_memory_loss(queries, keys, past_keys, temperature, labels=None,
                      past_labels=None):
    """The module docstring's formula, one anchor at a time, in float64.

    `past_keys` holds only the filled buffer slots. With `labels`, positives
    are every candidate with the anchor's label (>= 0) plus its other view.
    """
    q = _normalize(queries.astype(np.float64))
    k = _normalize(keys.astype(np.float64))
    b = _normalize(past_keys.astype(np.float64)) if len(past_keys) else (
        np.zeros((0, q.shape[1])))
    n = q.shape[0] // 2
    view_of = lambda x, v: x[v * n:(v + 1) * n]  # noqa: E731
    total = 0.0
    for v in (0, 1):
        anchors, other, same = view_of(q, v), view_of(k, 1 - v), view_of(k, v)
        per_anchor = []
        for i in range(n):
            cands = [other, np.delete(same, i, axis=0), b]
            sims = np.concatenate([c @ anchors[i] for c in cands]) / temperature
            log_z = sims.max() + np.log(np.exp(sims - sims.max()).sum())
            if labels is None:
                per_anchor.append(log_z - sims[i])
                continue
            cand_labels = np.concatenate(
                [labels, np.delete(labels, i), past_labels])
            positive = (cand_labels == labels[i]) & (labels[i] >= 0)
            positive[i] = True
            per_anchor.append(log_z - sims[positive].mean())
        total += np.mean(per_anchor)
    return total


def filled_buffer(chunk_sizes, rng, labelled=False):
    buffer = memory.KeyBuffer(SIZE, DIM)
    chunks, label_chunks = [], []
    for count in chunk_sizes:
        chunks.append(rng.normal(size=(count, DIM)).astype(np.float32))
        label_chunks.append(rng.integers(0, 3, size=count).astype(np.int32))
        buffer.enqueue(tf.constant(chunks[-1]),
                       tf.constant(label_chunks[-1]) if labelled else None)
    return buffer, chunks, label_chunks


@pytest.mark.parametrize("batch", [1, 4, 16])
@pytest.mark.parametrize("state", sorted(FILL_STATES))
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_loss_matches_numpy_reference(batch, state, temperature):
    rng = np.random.default_rng(batch)
    buffer, chunks, _ = filled_buffer(FILL_STATES[state], rng)
    queries = rng.normal(size=(2 * batch, DIM)).astype(np.float32)
    keys = rng.normal(size=(2 * batch, DIM)).astype(np.float32)
    keys_buf, _, valid = buffer()
    loss, logits, labels = memory.memory_contrastive_loss(
        tf.constant(queries), tf.constant(keys), keys_buf, valid,
        temperature=temperature)
    expected = numpy_memory_loss(queries, keys, numpy_fifo(chunks, SIZE),
                                 temperature)
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-4, atol=1e-4)
    assert logits.shape == (batch, batch)
    assert labels.shape == (batch, 2 * batch + SIZE)
    np.testing.assert_array_equal(np.argmax(labels, 1), np.arange(batch))


def test_buffer_slots_position_and_fill():
    rng = np.random.default_rng(0)
    buffer, chunks, _ = filled_buffer([5, 5, 5], rng)
    rows = np.concatenate(chunks)
    # 15 keys in 12 slots: slots 0..2 were overwritten by keys 12..14.
    expected = np.concatenate([rows[12:15], rows[3:12]])
    np.testing.assert_array_equal(buffer.keys.numpy(), expected)
    assert int(buffer.position.numpy()) == 3
    assert int(buffer.filled.numpy()) == SIZE
    partial, _, _ = filled_buffer([5], rng)
    np.testing.assert_array_equal(partial.valid_mask().numpy(),
                                  np.arange(SIZE) < 5)
    big, chunks, _ = filled_buffer([20], rng)
    # Written one by one, key 19 lands in slot 19 % 12 = 7.
    np.testing.assert_array_equal(big.keys.numpy()[7], chunks[0][19])
    assert int(big.position.numpy()) == 8


def test_empty_buffer_and_keys_equal_to_queries_is_nt_xent():
    """The memory's in-batch candidates are NT-Xent's, with keys for queries."""
    rng = np.random.default_rng(1)
    hidden = tf.constant(rng.normal(size=(10, DIM)).astype(np.float32))
    labels = tf.constant([0, 1, 0, -1, 2])
    keys_buf, _, valid = memory.KeyBuffer(SIZE, DIM)()
    got, _, _ = memory.memory_contrastive_loss(
        hidden, hidden, keys_buf, valid, temperature=0.2)
    want, _, _ = losses.add_contrastive_loss(hidden, temperature=0.2)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)
    got, _, _ = memory.memory_supervised_contrastive_loss(
        hidden, hidden, labels, keys_buf, -tf.ones([SIZE], tf.int32), valid,
        temperature=0.2)
    want, _, _ = losses.add_supervised_contrastive_loss(
        hidden, labels, temperature=0.2)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)


@pytest.mark.parametrize("state", ["partial", "wrapped"])
def test_supcon_with_labelled_buffer_matches_numpy(state):
    rng = np.random.default_rng(5)
    buffer, chunks, label_chunks = filled_buffer(FILL_STATES[state], rng,
                                                  labelled=True)
    queries = rng.normal(size=(8, DIM)).astype(np.float32)
    keys = rng.normal(size=(8, DIM)).astype(np.float32)
    labels = np.array([0, 1, -1, 2], np.int32)
    keys_buf, labels_buf, valid = buffer()
    loss, _, targets = memory.memory_supervised_contrastive_loss(
        tf.constant(queries), tf.constant(keys), tf.constant(labels),
        keys_buf, labels_buf, valid, temperature=0.5)
    expected = numpy_memory_loss(
        queries, keys, numpy_fifo(chunks, SIZE), 0.5, labels=labels,
        past_labels=numpy_fifo([c[:, None] for c in label_chunks], SIZE)[:, 0])
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(targets.numpy().sum(1), np.ones(4), rtol=1e-6)
    # The unlabeled anchor has a single positive: its other view's key.
    assert np.count_nonzero(targets.numpy()[2]) == 1


def test_supcon_with_distinct_labels_equals_nt_xent_with_memory():
    rng = np.random.default_rng(6)
    buffer, _, _ = filled_buffer([7], rng)  # stored labels: -1
    queries = tf.constant(rng.normal(size=(8, DIM)).astype(np.float32))
    keys = tf.constant(rng.normal(size=(8, DIM)).astype(np.float32))
    keys_buf, labels_buf, valid = buffer()
    sup, _, _ = memory.memory_supervised_contrastive_loss(
        queries, keys, tf.range(4), keys_buf, labels_buf, valid)
    plain, _, _ = memory.memory_contrastive_loss(queries, keys, keys_buf, valid)
    np.testing.assert_allclose(sup.numpy(), plain.numpy(), rtol=1e-6)


def test_gradient_flows_to_queries_only():
    rng = np.random.default_rng(2)
    queries, keys, past = (tf.constant(rng.normal(size=s).astype(np.float32))
                           for s in [(8, DIM), (8, DIM), (SIZE, DIM)])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([queries, keys, past])
        loss, _, _ = memory.memory_contrastive_loss(
            queries, keys, past, tf.ones([SIZE], tf.bool), temperature=0.1)
    assert tape.gradient(loss, keys) is None
    assert tape.gradient(loss, past) is None
    assert np.abs(tape.gradient(loss, queries).numpy()).sum() > 0


def _local_rows(array, replica, half, global_n):
    """One replica's [view-1 rows; view-2 rows] from a [2 global_n, D] array."""
    return np.concatenate([array[replica * half:(replica + 1) * half],
                           array[global_n + replica * half:
                                 global_n + (replica + 1) * half]])


def test_two_replicas_equal_one_device(two_replica_strategy):
    """Loss, query gradient and labelled buffer after 3 steps match one device."""
    strategy = two_replica_strategy
    global_n, half, size, steps = 6, 3, 16, 3
    rng = np.random.default_rng(7)
    batches = [(rng.normal(size=(2 * global_n, DIM)).astype(np.float32),
                rng.normal(size=(2 * global_n, DIM)).astype(np.float32),
                rng.integers(0, 5, size=global_n).astype(np.int32))
               for _ in range(steps)]

    def one_step(buffer, queries, keys, labels, strategy=None):
        with tf.GradientTape() as tape:
            tape.watch(queries)
            keys_buf, _, valid = buffer()
            loss, _, _ = memory.memory_contrastive_loss(
                queries, keys, keys_buf, valid, temperature=0.5,
                strategy=strategy)
            scaled = loss / (strategy.num_replicas_in_sync if strategy else 1)
        buffer.enqueue_batch(keys, labels, strategy)
        return loss, tape.gradient(scaled, queries)

    reference = memory.KeyBuffer(size, DIM)
    ref = [one_step(reference, *map(tf.constant, b)) for b in batches]
    with strategy.scope():
        mirrored = memory.KeyBuffer(size, DIM)
    step = tf.function(lambda *a: one_step(mirrored, *a, strategy=strategy))
    for (queries, keys, labels), (ref_loss, ref_grad) in zip(batches, ref):
        local = [strategy.experimental_distribute_values_from_function(
            lambda ctx, a=a: tf.constant(_local_rows(
                a, ctx.replica_id_in_sync_group, half, global_n)))
            for a in (queries, keys)]
        local.append(strategy.experimental_distribute_values_from_function(
            lambda ctx, a=labels: tf.constant(
                a[ctx.replica_id_in_sync_group * half:
                  (ctx.replica_id_in_sync_group + 1) * half])))
        loss, grad = strategy.run(step, args=tuple(local))
        mean_loss = strategy.reduce("MEAN", loss, axis=None)
        np.testing.assert_allclose(mean_loss.numpy(), ref_loss.numpy(),
                                   atol=1e-5)
        assert_view_gradients_split_by_replica(
            [g.numpy() for g in strategy.experimental_local_results(grad)],
            ref_grad.numpy(), half, global_n)
    # 3 steps x 12 keys in 16 slots: wrapped, every replica holds the same.
    for variable in mirrored.weights:
        for copy in strategy.experimental_local_results(variable.value):
            np.testing.assert_array_equal(
                copy.numpy(), getattr(reference, variable.name).numpy())
    assert int(reference.position.numpy()) == (3 * 2 * global_n) % size


def test_enqueue_batch_writes_view1_then_view2_with_labels():
    keys = np.arange(8 * DIM, dtype=np.float32).reshape(8, DIM)
    buffer = memory.KeyBuffer(SIZE, DIM)
    buffer.enqueue_batch(tf.constant(keys), tf.constant([3, -1, 0, 2]))
    np.testing.assert_array_equal(buffer.keys.numpy()[:8], keys)
    np.testing.assert_array_equal(buffer.labels.numpy(),
                                  [3, -1, 0, 2] * 2 + [-1] * (SIZE - 8))
