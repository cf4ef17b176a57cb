"""Tests of simclr_tf2.losses against plain numpy formulas and across replicas."""

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2 import losses
from tests.replicas import assert_view_gradients_split_by_replica


def numpy_nt_xent(hidden, temperature, hidden_norm=True):
    """NT-Xent written from the paper's definition over all 2N anchors.

    Returns the original code's convention: mean over view-1 anchors plus mean
    over view-2 anchors (== 2 x the mean over all 2N anchors).
    """
    z = hidden.astype(np.float64)
    if hidden_norm:
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
    two_n = z.shape[0]
    n = two_n // 2
    sim = z @ z.T / temperature
    per_anchor = []
    for i in range(two_n):
        pos = (i + n) % two_n
        others = [k for k in range(two_n) if k != i]
        row = sim[i, others]
        log_denominator = row.max() + np.log(np.exp(row - row.max()).sum())
        per_anchor.append(log_denominator - sim[i, pos])
    return 2.0 * np.mean(per_anchor)


@pytest.mark.parametrize("batch", [1, 2, 5, 16])
@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("hidden_norm", [True, False])
def test_matches_numpy_reference(batch, temperature, hidden_norm):
    rng = np.random.default_rng(batch)
    hidden = rng.normal(size=(2 * batch, 7)).astype(np.float32)
    loss, logits, labels = losses.add_contrastive_loss(
        tf.constant(hidden), hidden_norm=hidden_norm, temperature=temperature)
    np.testing.assert_allclose(
        loss.numpy(), numpy_nt_xent(hidden, temperature, hidden_norm),
        rtol=1e-4, atol=1e-4)
    assert logits.shape == (batch, batch)
    assert labels.shape == (batch, 2 * batch)
    np.testing.assert_array_equal(np.argmax(labels, 1), np.arange(batch))


def test_identical_views_are_easy_and_random_views_are_not():
    rng = np.random.default_rng(0)
    view = rng.normal(size=(8, 32)).astype(np.float32)
    same, logits, labels = losses.add_contrastive_loss(
        tf.constant(np.concatenate([view, view])), temperature=0.1)
    other = rng.normal(size=(8, 32)).astype(np.float32)
    different, _, _ = losses.add_contrastive_loss(
        tf.constant(np.concatenate([view, other])), temperature=0.1)
    assert same.numpy() < 0.1 < different.numpy()
    accuracy, entropy = losses.contrastive_metrics(logits, labels)
    np.testing.assert_array_equal(accuracy.numpy(), np.ones(8))
    assert np.all(entropy.numpy() >= 0)


@pytest.mark.parametrize("temperature", [0.01, 1e3, 1e6])
def test_extreme_temperatures_stay_finite(temperature):
    hidden = tf.random.stateless_normal([32, 16], seed=[1, 2]) * 50.0
    with tf.GradientTape() as tape:
        tape.watch(hidden)
        loss, _, _ = losses.add_contrastive_loss(
            hidden, temperature=temperature)
    grad = tape.gradient(loss, hidden)
    assert np.isfinite(loss.numpy())
    assert np.all(np.isfinite(grad.numpy()))


def test_bfloat16_input_is_computed_in_float32():
    hidden = tf.random.stateless_normal([8, 4], seed=[3, 4])
    loss32, _, _ = losses.add_contrastive_loss(hidden, temperature=0.5)
    loss16, _, _ = losses.add_contrastive_loss(
        tf.cast(hidden, tf.bfloat16), temperature=0.5)
    assert loss16.dtype == tf.float32
    np.testing.assert_allclose(loss16.numpy(), loss32.numpy(), rtol=2e-2)


@pytest.mark.parametrize("temperature", [0.1, 1.0])
def test_two_replicas_equal_single_device_loss_and_gradient(
        temperature, two_replica_strategy):
    strategy = two_replica_strategy
    global_n, dim = 6, 5
    rng = np.random.default_rng(7)
    view1 = rng.normal(size=(global_n, dim)).astype(np.float32)
    view2 = rng.normal(size=(global_n, dim)).astype(np.float32)

    # Single device: the whole global batch at once.
    full = tf.constant(np.concatenate([view1, view2]))
    with tf.GradientTape() as tape:
        tape.watch(full)
        ref_loss, _, _ = losses.add_contrastive_loss(
            full, temperature=temperature)
    ref_grad = tape.gradient(ref_loss, full).numpy()

    # Two replicas: each holds half of the examples (both of their views).
    half = global_n // 2
    per_replica_inputs = [
        np.concatenate([view1[r * half:(r + 1) * half],
                        view2[r * half:(r + 1) * half]]) for r in range(2)]

    def value_fn(ctx):
        return tf.constant(per_replica_inputs[ctx.replica_id_in_sync_group])

    distributed = strategy.experimental_distribute_values_from_function(
        value_fn)

    @tf.function
    def step(local):
        with tf.GradientTape() as tape:
            tape.watch(local)
            loss, logits, labels = losses.add_contrastive_loss(
                local, temperature=temperature, strategy=strategy)
            # Keras sums replica gradients, so each replica scales by 1/R.
            scaled = loss / strategy.num_replicas_in_sync
        return loss, tape.gradient(scaled, local), logits, labels

    loss, grad, logits, labels = strategy.run(step, args=(distributed,))
    mean_loss = strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None)
    np.testing.assert_allclose(mean_loss.numpy(), ref_loss.numpy(), atol=1e-5)

    assert_view_gradients_split_by_replica(
        [g.numpy() for g in strategy.experimental_local_results(grad)],
        np.asarray(ref_grad), half, global_n)

    # Replica 1's positives sit at columns half..2*half-1 of the global batch.
    replica1_labels = strategy.experimental_local_results(labels)[1].numpy()
    np.testing.assert_array_equal(
        np.argmax(replica1_labels, 1), np.arange(half, 2 * half))
    replica1_logits = strategy.experimental_local_results(logits)[1].numpy()
    assert replica1_logits.shape == (half, global_n)


def test_distillation_loss_matches_numpy():
    rng = np.random.default_rng(3)
    teacher = rng.normal(size=(4, 5)).astype(np.float32)
    student = rng.normal(size=(4, 5)).astype(np.float32)
    temperature = 2.0

    def softmax(x):
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    expected = -(softmax(teacher / temperature)
                 * np.log(softmax(student / temperature))).sum(1)
    got = losses.distillation_loss(teacher, student, temperature)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    # Equal logits: the loss is the teacher's entropy, its minimum.
    same = losses.distillation_loss(teacher, teacher, temperature).numpy()
    assert np.all(same <= got.numpy() + 1e-6)


def numpy_nt_xent_with_ids(hidden, ids, temperature):
    """NT-Xent over all 2N anchors where views of the same id are positives.

    Anchor i's positives are every other view k whose example id equals its
    own (its partner view, and both views of any copy); the loss averages
    -log softmax over the positives (SupCon's L_sup_out), original reduction.
    """
    z = hidden.astype(np.float64)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    two_n = z.shape[0]
    view_ids = np.concatenate([ids, ids])
    sim = z @ z.T / temperature
    per_anchor = []
    for i in range(two_n):
        others = [k for k in range(two_n) if k != i]
        row = sim[i, others]
        log_denominator = row.max() + np.log(np.exp(row - row.max()).sum())
        positives = [k for k in others if view_ids[k] == view_ids[i]]
        per_anchor.append(np.mean([log_denominator - sim[i, k]
                                   for k in positives]))
    return 2.0 * np.mean(per_anchor)


def test_distinct_example_ids_give_plain_nt_xent():
    rng = np.random.default_rng(11)
    hidden = tf.constant(rng.normal(size=(10, 6)).astype(np.float32))
    plain, logits, labels = losses.add_contrastive_loss(hidden, temperature=0.5)
    with_ids, logits_ids, labels_ids = losses.add_contrastive_loss(
        hidden, temperature=0.5, example_ids=tf.constant([4, 0, 9, 2, 7]))
    np.testing.assert_allclose(with_ids.numpy(), plain.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(labels_ids.numpy(), labels.numpy())
    np.testing.assert_array_equal(logits_ids.numpy(), logits.numpy())


def test_a_copy_of_the_image_is_a_positive_not_a_negative():
    # Examples 0 and 2 are two copies of image 7 (a batch larger than the
    # split); 1 and 3 are distinct images.
    rng = np.random.default_rng(12)
    hidden = rng.normal(size=(8, 6)).astype(np.float32)
    ids = np.array([7, 3, 7, 5])
    loss, _, labels = losses.add_contrastive_loss(
        tf.constant(hidden), temperature=0.5, example_ids=tf.constant(ids))
    np.testing.assert_allclose(
        loss.numpy(), numpy_nt_xent_with_ids(hidden, ids, 0.5), rtol=1e-5)
    # Not the plain loss, which counts the copy as a negative.
    assert abs(loss.numpy() - numpy_nt_xent(hidden, 0.5)) > 1e-3
    # Anchor 0 (view 1): its partner (col 0), the copy's view 2 (col 2) and
    # the copy's view 1 (col 4 + 2) share the target; nothing else does.
    expected_row0 = np.zeros(8)
    expected_row0[[0, 2, 6]] = 1 / 3
    np.testing.assert_allclose(labels.numpy()[0], expected_row0)
    np.testing.assert_allclose(labels.numpy()[1], np.eye(8)[1])


def test_example_ids_across_two_replicas_match_single_device(
        two_replica_strategy):
    strategy = two_replica_strategy
    rng = np.random.default_rng(13)
    global_n, half = 6, 3
    view1 = rng.normal(size=(global_n, 5)).astype(np.float32)
    view2 = rng.normal(size=(global_n, 5)).astype(np.float32)
    # Image 1 has a copy on each replica, image 4 two on replica 1.
    ids = np.array([1, 0, 2, 4, 1, 4], np.int64)
    full = np.concatenate([view1, view2])
    ref_loss, _, _ = losses.add_contrastive_loss(
        tf.constant(full), temperature=0.2, example_ids=tf.constant(ids))
    np.testing.assert_allclose(
        ref_loss.numpy(), numpy_nt_xent_with_ids(full, ids, 0.2), rtol=1e-5)

    def value_fn(ctx):
        r = ctx.replica_id_in_sync_group
        part = slice(r * half, (r + 1) * half)
        return (tf.constant(np.concatenate([view1[part], view2[part]])),
                tf.constant(ids[part]))

    local = strategy.experimental_distribute_values_from_function(value_fn)

    @tf.function
    def step(values):
        hidden, local_ids = values
        loss, _, _ = losses.add_contrastive_loss(
            hidden, temperature=0.2, strategy=strategy,
            example_ids=local_ids)
        return loss

    loss = strategy.run(step, args=(local,))
    mean_loss = strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None)
    np.testing.assert_allclose(mean_loss.numpy(), ref_loss.numpy(), rtol=1e-5)
