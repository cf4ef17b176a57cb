"""kNN evaluation against a brute-force numpy reference."""

import numpy as np
import pytest

from simclr_tf2 import knn
from simclr_tf2.data import pipeline, registry


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
    # Shuffled bank labels: the accuracy is the brute-force reading of the
    # same scores, and near chance (1/3) over many queries.
    shuffled = rng.permutation(labels)
    many = _normalised(rng, 600, 8)
    many_labels = rng.integers(0, 3, size=600)
    wrong = knn.knn_accuracy(bank, shuffled, many, many_labels, 3, k=10,
                             temperature=0.1)
    expected = np.mean(np.argmax(brute_force_scores(
        bank, shuffled, many, 3, 10, 0.1), 1) == many_labels)
    assert wrong == pytest.approx(expected, abs=1e-9)
    assert abs(wrong - 1 / 3) < 0.08


def _bank_images(source, max_examples, seed):
    dataset = pipeline.build_eval_dataset(source, "train", 64, 8,
                                          max_examples=max_examples, seed=seed)
    return np.concatenate([b["image"] for b in dataset.as_numpy_iterator()])


def test_bank_above_the_bound_is_a_seeded_subset():
    source = registry.open_source("digits")  # 1437 train examples
    bank = _bank_images(source, 100, seed=0)
    assert bank.shape[0] == 100
    np.testing.assert_array_equal(bank, _bank_images(source, 100, seed=0))
    assert not np.array_equal(bank, _bank_images(source, 100, seed=1))
    # Not the first 100 of the split: a random subset of all of it.
    assert not np.array_equal(bank, _bank_images(source, 0, seed=0)[:100])
    assert _bank_images(source, 5000, seed=0).shape[0] == 1437
    assert _bank_images(source, 0, seed=0).shape[0] == 1437


def test_bank_size_and_note():
    assert knn.DEFAULT_MAX_BANK == 50_000
    assert knn.bank_size(1_281_167) == 50_000
    assert knn.bank_size(1_281_167, 0) == 1_281_167
    assert knn.bank_size(1437, 50_000) == 1437
    note = knn.bank_note(1_281_167, 50_000)
    assert "50000 of 1281167" in note and "--knn_max_bank" in note
    assert knn.bank_note(1437, 50_000) == "knn bank: all 1437 train examples"
