"""Behaviour the mutation run (benchmarks/mutation.py) found unpinned.

Each test here kills surviving mutants of a core module: a default value of
the library API, the exact rule of a schedule or a subset, an error a user
acts on. Grouped by module; the imports of each module are at the top.
"""

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2 import losses


# --- losses -----------------------------------------------------------------

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


def test_masked_cross_entropy_on_two_replicas_is_the_global_labelled_mean(
        two_replica_strategy):
    strategy = two_replica_strategy
    logits = np.random.default_rng(3).normal(size=(8, 3)).astype(np.float32)
    # Unlabelled examples fall unevenly: replica 0 has 1 labelled, replica 1 has 4.
    labels = np.array([2, -1, -1, -1, 0, 1, 2, 0])

    def step():
        i = tf.distribute.get_replica_context().replica_id_in_sync_group
        return losses.masked_cross_entropy(
            tf.constant(labels.reshape(2, 4))[i],
            tf.constant(logits.reshape(2, 4, 3))[i])[0]

    results = strategy.run(step)
    replica_losses = [float(v) for v in strategy.experimental_local_results(results)]
    per_example = -np.log(_softmax(logits.astype(np.float64)))[
        np.arange(8), np.maximum(labels, 0)] * (labels >= 0)
    # Each replica divides its sum by (global count 5) / 2 replicas; their
    # mean is the mean over the 5 labelled examples of the global batch.
    np.testing.assert_allclose(
        replica_losses, [per_example[:4].sum() / 2.5, per_example[4:].sum() / 2.5],
        rtol=1e-5)
    np.testing.assert_allclose(np.mean(replica_losses),
                               per_example.sum() / 5, rtol=1e-5)

# --- knn --------------------------------------------------------------------

from simclr_tf2 import knn  # noqa: E402


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


# --- data/subsets -----------------------------------------------------------

import types  # noqa: E402

from simclr_tf2.data import subsets  # noqa: E402
from simclr_tf2.data.source import DataError  # noqa: E402


def test_labels_and_ids_of_an_empty_split_is_one_clear_error():
    empty = types.SimpleNamespace(
        labels_and_ids=lambda split: (np.zeros([0], np.int64),
                                      np.zeros([0], np.int64)))
    with pytest.raises(DataError, match=(
            r"^split 'train\[:0\]' is empty; pass a non-empty --train_split\.$")):
        subsets.labels_and_ids(empty, "train[:0]")
    one = types.SimpleNamespace(
        labels_and_ids=lambda split: (np.array([4]), np.array([9])))
    labels, ids = subsets.labels_and_ids(one, "train")
    assert labels.tolist() == [4] and ids.tolist() == [9]


def test_balanced_subset_counts_per_class():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 1 + [-1] * 5)
    ids = np.arange(len(labels)) * 3 + 100
    # fraction 1: every labelled example, none of the unlabelled ones.
    assert subsets.balanced_subset(labels, ids, 1.0, seed=0) == sorted(
        ids[labels >= 0].tolist())
    # round(0.25 * n_c), at least 1: 10 -> 2 (2.5 rounds to even), 3 -> 1, 1 -> 1.
    chosen = subsets.balanced_subset(labels, ids, 0.25, seed=0)
    picked = labels[np.isin(ids, chosen)]
    assert np.bincount(picked).tolist() == [2, 1, 1]
    assert len(set(chosen)) == len(chosen) == 4
    assert all(isinstance(i, int) for i in chosen)
    # 0.35 * 10 = 3.5 -> 4; 0.35 * 3 = 1.05 -> 1.
    picked = labels[np.isin(ids, subsets.balanced_subset(labels, ids, 0.35, 0))]
    assert np.bincount(picked).tolist() == [4, 1, 1]


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.01])
def test_balanced_subset_fraction_outside_0_1_is_refused(fraction):
    with pytest.raises(ValueError, match=(
            rf"^label fraction must be in \(0, 1\], got {fraction}\.$")):
        subsets.balanced_subset(np.array([0, 1]), np.array([0, 1]), fraction, 0)


def test_balanced_subset_without_labels_is_one_clear_error():
    with pytest.raises(DataError, match=(
            r"^no labelled examples to choose a label subset from; use a "
            r"labelled --dataset/--train_split\.$")):
        subsets.balanced_subset(np.array([-1, -1]), np.array([0, 1]), 0.5, 0)


def test_subset_file_is_one_id_per_line_and_overwrites(tmp_path):
    path = str(tmp_path / "label_subset.txt")
    subsets.write_subset_file(path, [5, 17])
    assert open(path).read() == "5\n17\n"
    subsets.write_subset_file(path, [3])  # an existing file is replaced
    assert open(path).read() == "3\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["label_subset.txt"]


def test_subset_file_reader_skips_comments_and_blank_lines(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("# chosen by hand\n\n7  # a seven\n  3\n7\n#9\n")
    assert subsets.read_subset_file(str(path)) == [3, 7]
    path.write_text("1\n\n x1\n")
    with pytest.raises(DataError, match=(
            rf"^{path}:3: 'x1' is not an example id; the file holds one "
            r"integer id per line\.$")):
        subsets.read_subset_file(str(path))
    path.write_text("# nothing\n\n")
    with pytest.raises(DataError, match=rf"^label subset file {path} holds no ids\.$"):
        subsets.read_subset_file(str(path))
    missing = tmp_path / "missing.txt"
    with pytest.raises(DataError, match=(
            rf"^label subset file {missing} does not exist; pass a file written "
            r"by an earlier run \(model_dir/label_subset\.txt\)\.$")):
        subsets.read_subset_file(str(missing))
