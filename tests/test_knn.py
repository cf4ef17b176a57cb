"""kNN evaluation against a brute-force numpy reference."""

import numpy as np
import pytest

from simclr_tf2 import knn


def _normalised(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force_scores(bank, bank_labels, queries, num_classes, k, temperature):
    sims = queries.astype(np.float64) @ bank.T.astype(np.float64)
    scores = np.zeros((len(queries), num_classes))
    for q in range(len(queries)):
        top = np.argsort(-sims[q])[:k]
        for j in top:
            scores[q, bank_labels[j]] += np.exp(sims[q, j] / temperature)
    return scores


@pytest.mark.parametrize("k,bank_chunk,query_chunk", [
    (1, 7, 5), (5, 1000, 1000), (20, 13, 4), (200, 64, 9)])
def test_matches_brute_force(k, bank_chunk, query_chunk):
    rng = np.random.default_rng(k)
    bank, queries = _normalised(rng, 100, 6), _normalised(rng, 23, 6)
    labels = rng.integers(0, 4, size=100)
    got = knn.knn_predict(bank, labels, queries, 4, k=k, temperature=0.1,
                          query_chunk=query_chunk, bank_chunk=bank_chunk)
    expected = brute_force_scores(bank, labels, queries, 4, min(k, 100), 0.1)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_accuracy_on_separable_clusters_and_ignores_unlabelled():
    rng = np.random.default_rng(0)
    centres = _normalised(rng, 3, 8) * 10
    labels = np.repeat(np.arange(3), 30)
    bank = centres[labels] + rng.normal(size=(90, 8))
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    query_labels = np.array([0, 1, 2, -1])
    queries = centres[np.maximum(query_labels, 0)]
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    assert knn.knn_accuracy(bank, labels, queries, query_labels, 3, k=10) == 1.0
    # Shuffled bank labels: no better than chance on average.
    wrong = knn.knn_accuracy(bank, rng.permutation(labels), queries[:3],
                             query_labels[:3], 3, k=90)
    assert wrong < 1.0
