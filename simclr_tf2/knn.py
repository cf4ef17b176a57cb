"""k-nearest-neighbour evaluation of representations (cosine, weighted votes).

As in instance discrimination (Wu et al., 2018): each test example takes its
k most cosine-similar training examples; neighbour j votes for its class with
weight exp(s_j / temperature); the class with the largest total wins. The
bank is scanned in chunks, keeping a running top-k, so memory is bounded by
(query chunk x bank chunk) rather than (queries x bank).

The bank is the train split, or above `DEFAULT_MAX_BANK` examples (e.g.
ImageNet's 1.28M) a seeded random subset of it, so that an evaluation costs
at most that many forward passes; `bank_note` says which in the output.
"""

import numpy as np
import tensorflow as tf

# Bank examples embedded per kNN evaluation unless configured otherwise.
DEFAULT_MAX_BANK = 50_000


def bank_size(num_train_examples, max_bank=DEFAULT_MAX_BANK):
    """Examples in the bank: all of them, or `max_bank` if that is smaller (> 0)."""
    if max_bank > 0:
        return min(num_train_examples, max_bank)
    return num_train_examples


def bank_note(num_train_examples, max_bank=DEFAULT_MAX_BANK):
    """One line saying whether the bank is the whole train split or a subset."""
    size = bank_size(num_train_examples, max_bank)
    if size == num_train_examples:
        return f"knn bank: all {num_train_examples} train examples"
    return (f"knn bank: seeded random {size} of {num_train_examples} train "
            f"examples (--knn_max_bank={max_bank}; 0 for all)")


def extract_features(model, dataset, key="final_avg_pool", normalize=True):
    """Representations of a dataset, l2-normalised unless normalize=False.

    Args:
      model: callable (images, training=False) -> dict of outputs (a
        SimCLRModel or an exported module).
      dataset: batches {"image": [b, S, S, 3], "label": [b]}.
      key: which output to use (h = "final_avg_pool" by default).
      normalize: l2-normalise each feature vector (as the kNN needs).

    Returns:
      (features float32 [N, D], labels int64 [N]) numpy arrays.
    """
    @tf.function
    def embed(images):
        features = model(images, training=False)[key]
        return tf.math.l2_normalize(features, -1) if normalize else features

    features, labels = [], []
    for batch in dataset:
        features.append(embed(batch["image"]).numpy())
        labels.append(batch["label"].numpy())
    return np.concatenate(features), np.concatenate(labels)


def _top_k_over_bank(queries, bank, bank_labels, k, bank_chunk):
    """Running top-k similarities [q, k] and labels [q, k] over bank chunks."""
    best_sims = tf.fill([tf.shape(queries)[0], 0], -np.inf)
    best_labels = tf.zeros([tf.shape(queries)[0], 0], tf.int64)
    for start in range(0, bank.shape[0], bank_chunk):
        sims = tf.matmul(queries, bank[start:start + bank_chunk],
                         transpose_b=True)
        labels = tf.broadcast_to(bank_labels[start:start + bank_chunk],
                                 tf.shape(sims))
        sims = tf.concat([best_sims, sims], 1)
        labels = tf.concat([best_labels, tf.cast(labels, tf.int64)], 1)
        best_sims, index = tf.math.top_k(sims, k=min(k, sims.shape[1]))
        best_labels = tf.gather(labels, index, batch_dims=1)
    return best_sims, best_labels


def knn_predict(bank, bank_labels, queries, num_classes, k=200,
                temperature=0.07, query_chunk=1024, bank_chunk=8192):
    """Weighted kNN class scores.

    Args:
      bank: float [N, D] l2-normalised training features.
      bank_labels: int [N] their labels (negative labels are ignored).
      queries: float [Q, D] l2-normalised test features.
      num_classes: C.
      k: neighbours per query (capped at N).
      temperature: vote weight exp(similarity / temperature).
      query_chunk, bank_chunk: chunk sizes bounding memory.

    Returns:
      float32 [Q, C] class scores (argmax = prediction).
    """
    keep = np.asarray(bank_labels) >= 0
    bank = tf.constant(np.asarray(bank)[keep], tf.float32)
    bank_labels = tf.constant(np.asarray(bank_labels)[keep], tf.int64)
    scores = []
    for start in range(0, len(queries), query_chunk):
        chunk = tf.constant(queries[start:start + query_chunk], tf.float32)
        sims, labels = _top_k_over_bank(chunk, bank, bank_labels, k, bank_chunk)
        votes = tf.one_hot(labels, num_classes) * tf.exp(sims / temperature)[..., None]
        scores.append(tf.reduce_sum(votes, axis=1).numpy())
    return np.concatenate(scores) if scores else np.zeros([0, num_classes])


def knn_accuracy(bank, bank_labels, queries, query_labels, num_classes,
                 k=200, temperature=0.07):
    """Top-1 accuracy of weighted kNN over labelled queries (label >= 0)."""
    query_labels = np.asarray(query_labels)
    labelled = query_labels >= 0
    scores = knn_predict(bank, bank_labels, np.asarray(queries)[labelled],
                         num_classes, k, temperature)
    return float(np.mean(np.argmax(scores, 1) == query_labels[labelled]))
