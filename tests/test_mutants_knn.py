"""Behaviour of simclr_tf2/knn.py that the mutation run (benchmarks/mutation.py)
found unpinned: each test kills mutants that survived the module's own tests
(a default of the library API, an exact rule, an error a user acts on).
"""

import numpy as np
import tensorflow as tf

from simclr_tf2 import knn


def _unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_knn_defaults_are_k_200_and_temperature_0_07():
    rng = np.random.default_rng(0)
    bank, queries = _unit(rng, 300, 4), _unit(rng, 9, 4)
    labels = rng.integers(0, 3, size=300)

    def scores(**kwargs):
        return knn.knn_predict(bank, labels, queries, 3, **kwargs)

    # k: at a high temperature every neighbour's vote counts.
    np.testing.assert_allclose(scores(temperature=10.0),
                               scores(k=200, temperature=10.0), rtol=1e-6)
    for k in (199, 201):
        assert not np.allclose(scores(temperature=10.0),
                               scores(k=k, temperature=10.0), rtol=1e-4), k
    np.testing.assert_allclose(scores(k=50), scores(k=50, temperature=0.07),
                               rtol=1e-6)
    assert not np.allclose(scores(k=50), scores(k=50, temperature=0.08),
                           rtol=1e-4)
    query_labels = rng.integers(0, 3, size=9)
    assert knn.knn_accuracy(bank, labels, queries, query_labels, 3) == (
        knn.knn_accuracy(bank, labels, queries, query_labels, 3, k=200,
                         temperature=0.07))


def test_knn_accuracy_default_k_and_temperature_change_the_answer():
    # Queries whose 1 nearest neighbour is of one class and whose 200 nearest
    # are mostly of another: k=200 answers the majority.
    near = np.array([[1.0, 0.0]], np.float32)
    far = np.repeat(np.array([[0.9, 0.43589]], np.float32), 250, axis=0)
    bank = np.concatenate([near, far])
    labels = np.array([0] + [1] * 250)
    accuracy = knn.knn_accuracy(bank, labels, near, np.array([1]), 2)
    assert accuracy == 1.0  # 199 votes of class 1 beat one of class 0
    assert knn.knn_accuracy(bank, labels, near, np.array([1]), 2, k=1) == 0.0
    # One neighbour at cos 1.0 against three at 0.9: exp(cos / 0.07) lets
    # the closest win; a temperature near 1 would let the three win.
    few, few_labels = bank[:4], labels[:4]
    assert knn.knn_accuracy(few, few_labels, near, np.array([0]), 2) == 1.0
    assert knn.knn_accuracy(few, few_labels, near, np.array([0]), 2,
                            temperature=1.07) == 0.0


def test_knn_bank_rows_with_label_0_vote_and_negative_labels_do_not():
    bank = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    scores = knn.knn_predict(bank, np.array([0, -1]), bank[:1], 2, k=2,
                             temperature=1.0)
    np.testing.assert_allclose(scores, [[np.e, 0.0]], rtol=1e-6)


def test_knn_predict_of_no_queries_is_an_empty_score_matrix():
    bank = np.eye(3, dtype=np.float32)
    scores = knn.knn_predict(bank, np.arange(3), np.zeros([0, 3], np.float32), 3)
    assert scores.shape == (0, 3)


def test_knn_bank_size_bounds():
    assert knn.bank_size(1437, 1) == 1
    assert knn.bank_size(1437, 1437) == 1437
    assert knn.bank_size(1437, -1) == 1437
    assert knn.bank_size(50_001) == 50_000 and knn.bank_size(49_999) == 49_999
    assert knn.bank_note(100, 10) == (
        "knn bank: seeded random 10 of 100 train examples "
        "(--knn_max_bank=10; 0 for all)")


class _FakeModel:
    """images -> {"final_avg_pool": 2 x row sums, "other": ones}."""

    def __call__(self, images, training=False):
        assert training is False
        total = tf.reduce_sum(images, axis=[1, 2])
        return {"final_avg_pool": 2.0 * total, "other": tf.ones_like(total)}


def test_extract_features_reads_h_l2_normalised_with_labels_in_order():
    images = tf.constant(np.random.default_rng(2).uniform(
        size=(5, 2, 2, 3)), tf.float32)
    dataset = tf.data.Dataset.from_tensor_slices(
        {"image": images, "label": tf.constant([3, 1, 4, 1, 5], tf.int64)}
    ).batch(2)
    features, labels = knn.extract_features(_FakeModel(), dataset)
    want = 2.0 * np.sum(images.numpy(), axis=(1, 2))
    np.testing.assert_allclose(
        features, want / np.linalg.norm(want, axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_array_equal(labels, [3, 1, 4, 1, 5])
    raw, _ = knn.extract_features(_FakeModel(), dataset, normalize=False)
    np.testing.assert_allclose(raw, want, rtol=1e-5)
    other, _ = knn.extract_features(_FakeModel(), dataset, key="other",
                                    normalize=False)
    np.testing.assert_allclose(other, np.ones((5, 3)))


def test_knn_accuracy_default_k_is_200_exactly():
    # 100 neighbours of class 0 at cos 0.9, 100 of class 1 at cos 0.8999 and
    # one more of class 1 at 0.89: the 200 nearest vote class 0 by a hair;
    # the 201st would tip the vote to class 1.
    def at(cos, n):
        return np.repeat([[cos, np.sqrt(1 - cos ** 2)]], n, axis=0)

    bank = np.concatenate([at(0.9, 100), at(0.8999, 100), at(0.89, 1)])
    labels = np.array([0] * 100 + [1] * 101)
    query = np.array([[1.0, 0.0]])
    assert knn.knn_accuracy(bank, labels, query, np.array([0]), 2) == 1.0
    assert knn.knn_accuracy(bank, labels, query, np.array([0]), 2, k=201) == 0.0
