"""Behaviour of simclr_tf2/losses/ that the mutation run (benchmarks/mutation.py)
found unpinned: each test kills mutants that survived the module's own tests
(a default of the library API, an exact rule, an error a user acts on).
"""

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2 import losses


def _hidden(n=6, d=5, seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=(2 * n, d)),
                       tf.float32)


def test_contrastive_losses_default_to_temperature_one():
    hidden = _hidden()
    labels = tf.constant([0, 1, 0, 2, -1, 1])
    default = losses.add_contrastive_loss(hidden)[0]
    np.testing.assert_allclose(
        default, losses.add_contrastive_loss(hidden, temperature=1.0)[0])
    assert abs(float(default) - float(
        losses.add_contrastive_loss(hidden, temperature=2.0)[0])) > 1e-3
    sup = losses.add_supervised_contrastive_loss(hidden, labels)[0]
    np.testing.assert_allclose(
        sup, losses.add_supervised_contrastive_loss(hidden, labels,
                                                    temperature=1.0)[0])
    assert abs(float(sup) - float(losses.add_supervised_contrastive_loss(
        hidden, labels, temperature=2.0)[0])) > 1e-3


def test_strategy_outside_replica_context_is_one_clear_error(
        two_replica_strategy):
    with pytest.raises(ValueError, match=(
            r"^the contrastive losses with strategy=\.\.\. must be called "
            r"inside strategy\.run \(replica context\); call it there or pass "
            r"strategy=None\.$")):
        with two_replica_strategy.scope():  # cross-replica context
            losses.add_contrastive_loss(_hidden(), strategy=two_replica_strategy)



def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_contrastive_metrics_accuracy_and_entropy_per_anchor():
    # 2 anchors against 3 columns (N != N_g, as on one of several replicas).
    logits = np.array([[2.0, 0.5, -1.0], [0.0, -300.0, 1.0]], np.float32)
    labels = np.array([[1, 0, 0], [1, 0, 0]], np.float32)
    accuracy, entropy = losses.contrastive_metrics(tf.constant(logits),
                                                   tf.constant(labels))
    np.testing.assert_array_equal(accuracy, [1.0, 0.0])
    probs = _softmax(logits.astype(np.float64))
    want = -np.sum(probs * np.log(probs + 1e-8), axis=-1)
    np.testing.assert_allclose(entropy, want, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(entropy))  # a probability of 0 is no NaN


def test_distillation_loss_is_soft_cross_entropy_with_temperature_one_default():
    teacher = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], np.float32)
    student = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]], np.float32)

    def want(t):
        p = _softmax(teacher / t)
        return -np.sum(p * np.log(_softmax(student / t)), axis=1)

    np.testing.assert_allclose(losses.distillation_loss(teacher, student),
                               want(1.0), rtol=1e-5)
    np.testing.assert_allclose(
        losses.distillation_loss(teacher, student, temperature=2.0), want(2.0),
        rtol=1e-5)


def test_masked_cross_entropy_means_over_labelled_examples_label_0_included():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, -1.0]],
                      np.float32)
    labels = np.array([0, 1, -1, 0])
    loss, weights = losses.masked_cross_entropy(tf.constant(labels),
                                                tf.constant(logits))
    np.testing.assert_array_equal(weights, [1, 1, 0, 1])
    per_example = -np.log(_softmax(logits.astype(np.float64)))[
        np.arange(4), np.maximum(labels, 0)]
    np.testing.assert_allclose(float(loss), per_example[[0, 1, 3]].mean(),
                               rtol=1e-5)


def _on_two_replicas(strategy, loss_fn, seed):
    """loss_fn(labels [4], logits [4, 3]) on each of two replicas' halves of
    a batch of 8 whose labelled examples fall 1 / 4.

    Returns:
      (the two replicas' losses, per-example cross entropy [8], 0 where
      unlabelled).
    """
    logits = np.random.default_rng(seed).normal(size=(8, 3)).astype(np.float32)
    labels = np.array([2, -1, -1, -1, 0, 1, 2, 0])

    def step():
        i = tf.distribute.get_replica_context().replica_id_in_sync_group
        return loss_fn(tf.constant(labels.reshape(2, 4))[i],
                       tf.constant(logits.reshape(2, 4, 3))[i])[0]

    results = strategy.run(step)
    replica_losses = [float(v) for v in strategy.experimental_local_results(results)]
    per_example = -np.log(_softmax(logits.astype(np.float64)))[
        np.arange(8), np.maximum(labels, 0)] * (labels >= 0)
    return replica_losses, per_example


@pytest.mark.parametrize("loss_fn,replica_divisor,global_divisor", [
    # The heads' loss: each replica divides its sum by (global labelled count
    # 5) / 2 replicas; their mean is the mean over the 5 labelled examples.
    (losses.masked_cross_entropy, 2.5, 5),
    # Distillation's label term: each replica divides by its batch of 4;
    # their mean is the labelled sum per image of the global batch of 8.
    (losses.labelled_cross_entropy_per_image, 4, 8),
])
def test_label_losses_on_two_replicas_have_the_global_normaliser(
        two_replica_strategy, loss_fn, replica_divisor, global_divisor):
    # Labelled examples fall unevenly: 1 on replica 0, 4 on replica 1.
    replica_losses, per_example = _on_two_replicas(two_replica_strategy,
                                                   loss_fn, seed=3)
    np.testing.assert_allclose(
        replica_losses, [per_example[:4].sum() / replica_divisor,
                         per_example[4:].sum() / replica_divisor], rtol=1e-5)
    np.testing.assert_allclose(np.mean(replica_losses),
                               per_example.sum() / global_divisor, rtol=1e-5)


def test_masked_cross_entropy_in_cross_replica_context_is_the_local_mean(
        two_replica_strategy):
    # Inside strategy.scope() but outside strategy.run (e.g. a loss computed
    # for a report): no replica to all-reduce with, the plain labelled mean.
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    labels = np.array([0, -1, 1])
    want = -np.log(_softmax(logits.astype(np.float64)))[[0, 2], [0, 1]].mean()
    with two_replica_strategy.scope():
        loss, _ = losses.masked_cross_entropy(tf.constant(labels),
                                              tf.constant(logits))
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
