"""Tests of the supervised contrastive loss (SupCon, L_sup_out) in losses/supcon.py."""

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2 import losses
from tests.replicas import assert_view_gradients_split_by_replica


def numpy_sup_out(hidden, labels, temperature, hidden_norm=True):
    """L_sup_out of Khosla et al. written from the paper over all 2N anchors.

    Anchor i's positives: its other view, plus every other view whose label
    equals its own (labels < 0 match nothing). Returns the NT-Xent code's
    convention: 2 x the mean over the 2N anchors.
    """
    z = hidden.astype(np.float64)
    if hidden_norm:
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
    two_n = z.shape[0]
    n = two_n // 2
    view_labels = np.concatenate([labels, labels])
    sim = z @ z.T / temperature
    per_anchor = []
    for i in range(two_n):
        others = [a for a in range(two_n) if a != i]
        row = sim[i, others]
        log_denominator = row.max() + np.log(np.exp(row - row.max()).sum())
        positives = [p for p in others if p == (i + n) % two_n or (
            view_labels[i] >= 0 and view_labels[p] == view_labels[i])]
        per_anchor.append(np.mean([log_denominator - sim[i, p]
                                   for p in positives]))
    return 2.0 * np.mean(per_anchor)


def _labels(pattern, batch, rng):
    if pattern == "distinct":
        return np.arange(batch)
    if pattern == "equal":
        return np.full(batch, 3)
    # Mixed: a few classes, repeated, and some unlabeled (-1) examples.
    labels = rng.integers(0, 3, size=batch)
    labels[rng.random(batch) < 0.3] = -1
    return labels


@pytest.mark.parametrize("batch", [1, 2, 5, 16])
@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("pattern", ["distinct", "equal", "mixed"])
def test_matches_numpy_reference(batch, temperature, pattern):
    rng = np.random.default_rng(batch)
    hidden = rng.normal(size=(2 * batch, 7)).astype(np.float32)
    labels = _labels(pattern, batch, rng)
    loss, logits, targets = losses.add_supervised_contrastive_loss(
        tf.constant(hidden), tf.constant(labels), temperature=temperature)
    np.testing.assert_allclose(
        loss.numpy(), numpy_sup_out(hidden, labels, temperature),
        rtol=1e-4, atol=1e-4)
    assert logits.shape == (batch, batch)
    assert targets.shape == (batch, 2 * batch)
    np.testing.assert_allclose(targets.numpy().sum(1), np.ones(batch),
                               rtol=1e-6)


def test_without_hidden_norm_matches_numpy_reference():
    rng = np.random.default_rng(11)
    hidden = rng.normal(size=(12, 5)).astype(np.float32)
    labels = np.array([0, 1, 0, -1, 1, 2])
    loss, _, _ = losses.add_supervised_contrastive_loss(
        hidden, labels, hidden_norm=False, temperature=0.5)
    np.testing.assert_allclose(
        loss.numpy(), numpy_sup_out(hidden, labels, 0.5, hidden_norm=False),
        rtol=1e-4)


@pytest.mark.parametrize("labels", [np.arange(6), np.full(6, -1)],
                         ids=["distinct", "unlabeled"])
def test_equals_nt_xent_exactly_without_shared_labels(labels):
    hidden = tf.random.stateless_normal([12, 8], seed=[5, 6])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(hidden)
        sup, sup_logits, sup_targets = losses.add_supervised_contrastive_loss(
            hidden, labels, temperature=0.2)
        nt, nt_logits, nt_labels = losses.add_contrastive_loss(
            hidden, temperature=0.2)
    np.testing.assert_array_equal(sup.numpy(), nt.numpy())
    np.testing.assert_array_equal(tape.gradient(sup, hidden).numpy(),
                                  tape.gradient(nt, hidden).numpy())
    np.testing.assert_array_equal(sup_logits.numpy(), nt_logits.numpy())
    np.testing.assert_array_equal(sup_targets.numpy(), nt_labels.numpy())


def test_shared_labels_change_the_loss_and_pull_classes_together():
    rng = np.random.default_rng(2)
    hidden = rng.normal(size=(8, 16)).astype(np.float32)
    labels = np.array([0, 0, 1, 1])
    sup, _, targets = losses.add_supervised_contrastive_loss(
        hidden, labels, temperature=0.5)
    nt, _, _ = losses.add_contrastive_loss(hidden, temperature=0.5)
    assert abs(sup.numpy() - nt.numpy()) > 1e-3
    # Anchor 0 (view 1, class 0): positives are both views of example 1 and
    # its own view 2; weights 1/3 each, nothing on itself or class 1.
    expected = np.zeros(8)
    expected[[0, 1, 4 + 1]] = 1.0 / 3.0
    np.testing.assert_allclose(targets.numpy()[0], expected, rtol=1e-6)
    # Collapsing each class to one point gives a lower loss than random z.
    clustered = np.eye(16, dtype=np.float32)[[0, 0, 1, 1]]
    tight, _, _ = losses.add_supervised_contrastive_loss(
        np.concatenate([clustered, clustered]), labels, temperature=0.5)
    assert tight.numpy() < sup.numpy()


def test_unlabeled_examples_match_only_their_own_view():
    labels = np.array([-1, -1, 0, 0])
    hidden = tf.random.stateless_normal([8, 4], seed=[1, 1])
    _, _, targets = losses.add_supervised_contrastive_loss(hidden, labels)
    np.testing.assert_array_equal(targets.numpy()[0],
                                  np.eye(8, dtype=np.float32)[0])
    np.testing.assert_array_equal(targets.numpy()[1],
                                  np.eye(8, dtype=np.float32)[1])
    assert targets.numpy()[2, 3] > 0  # Labelled examples still match.


def test_metrics_count_any_positive_as_correct():
    # View 1 of example 0 is nearest to view 2 of example 1, same class.
    view1 = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    view2 = np.array([[0.0, 1.0], [1.0, 0.1]], np.float32)
    hidden = np.concatenate([view1, view2])
    _, logits, targets = losses.add_supervised_contrastive_loss(
        hidden, np.array([4, 4]), temperature=0.1)
    accuracy, _ = losses.contrastive_metrics(logits, targets)
    np.testing.assert_array_equal(accuracy.numpy(), [1.0, 1.0])
    _, logits, targets = losses.add_supervised_contrastive_loss(
        hidden, np.array([4, 5]), temperature=0.1)
    accuracy, _ = losses.contrastive_metrics(logits, targets)
    np.testing.assert_array_equal(accuracy.numpy(), [0.0, 0.0])


def test_bfloat16_input_is_computed_in_float32():
    hidden = tf.random.stateless_normal([8, 4], seed=[3, 4])
    labels = np.array([0, 1, 0, 1])
    loss32, _, _ = losses.add_supervised_contrastive_loss(hidden, labels, temperature=0.5)
    loss16, _, _ = losses.add_supervised_contrastive_loss(
        tf.cast(hidden, tf.bfloat16), labels, temperature=0.5)
    assert loss16.dtype == tf.float32
    np.testing.assert_allclose(loss16.numpy(), loss32.numpy(), rtol=2e-2)


@pytest.mark.parametrize("temperature", [0.1, 1.0])
def test_two_replicas_equal_single_device_loss_and_gradient(
        temperature, two_replica_strategy):
    strategy = two_replica_strategy
    global_n, half, dim = 6, 3, 5
    rng = np.random.default_rng(7)
    view1 = rng.normal(size=(global_n, dim)).astype(np.float32)
    view2 = rng.normal(size=(global_n, dim)).astype(np.float32)
    # Classes shared across the two replicas' halves, and one unlabeled.
    labels = np.array([0, 1, -1, 1, 0, 2], np.int32)

    full = tf.constant(np.concatenate([view1, view2]))
    with tf.GradientTape() as tape:
        tape.watch(full)
        ref_loss, _, ref_targets = losses.add_supervised_contrastive_loss(
            full, labels, temperature=temperature)
    ref_grad = tape.gradient(ref_loss, full).numpy()
    # Control: hiding the other replica's labels (-1) changes the loss, so
    # the equality below needs the labels to be gathered.
    owner = np.arange(global_n) // half
    local_only = np.mean([losses.add_supervised_contrastive_loss(
        full, np.where(owner == r, labels, -1), temperature=temperature
    )[0].numpy() for r in range(2)])
    assert abs(local_only - ref_loss.numpy()) > 1e-3

    inputs = [(np.concatenate([view1[r * half:(r + 1) * half],
                               view2[r * half:(r + 1) * half]]),
               labels[r * half:(r + 1) * half]) for r in range(2)]
    distributed = strategy.experimental_distribute_values_from_function(
        lambda ctx: tuple(tf.constant(x)
                          for x in inputs[ctx.replica_id_in_sync_group]))

    @tf.function
    def step(local):
        hidden, local_labels = local
        with tf.GradientTape() as tape:
            tape.watch(hidden)
            loss, _, targets = losses.add_supervised_contrastive_loss(
                hidden, local_labels, temperature=temperature,
                strategy=strategy)
            scaled = loss / strategy.num_replicas_in_sync
        return loss, tape.gradient(scaled, hidden), targets

    loss, grad, targets = strategy.run(step, args=(distributed,))
    mean_loss = strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None)
    np.testing.assert_allclose(mean_loss.numpy(), ref_loss.numpy(), atol=1e-5)
    assert_view_gradients_split_by_replica(
        [g.numpy() for g in strategy.experimental_local_results(grad)],
        np.asarray(ref_grad), half, global_n)
    replica1 = strategy.experimental_local_results(targets)[1].numpy()
    np.testing.assert_allclose(replica1, ref_targets.numpy()[half:], atol=0)
