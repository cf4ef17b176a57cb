"""Linear and kNN probes of frozen features with scikit-learn.

The linear probe is the paper's transfer protocol (App. B.8): an
l2-regularised multinomial logistic regression fit with L-BFGS on frozen,
standardised features of un-augmented images. Raw pixels go through the same
probe, which makes them the reference point every encoder must beat.
"""

import time

import numpy as np
import threadpoolctl
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from simclr_tf2 import knn


# BLAS threads for the L-BFGS fit. Its products ([N, D] x [D, classes]) are
# too small to split: on 2 idle cores one thread fit 60k x 128 features in
# 8.2 s and two in 15.2 s, and beside a training job two threads spin for
# 10-80x longer (benchmarks/linear_probe.py).
FIT_BLAS_THREADS = 1


def logistic_regression_top1(train_x, train_y, test_x, test_y, c=1.0,
                             max_iter=1000, blas_threads=FIT_BLAS_THREADS):
    """Top-1 accuracy of L-BFGS logistic regression (one BLAS thread).

    Args:
      train_x: float [N, D] features; train_y: int [N] labels.
      test_x: float [M, D]; test_y: int [M].
      c: inverse l2 strength (scikit-learn's C).
      max_iter: L-BFGS iteration cap.
      blas_threads: BLAS threads for the fit (benchmarks time other counts).

    Returns:
      float accuracy on the test set.
    """
    probe = make_pipeline(StandardScaler(),
                          LogisticRegression(C=c, max_iter=max_iter))
    with threadpoolctl.threadpool_limits(blas_threads, user_api="blas"):
        probe.fit(train_x, train_y)
    return float(np.mean(probe.predict(test_x) == test_y))


def knn_top1(train_x, train_y, test_x, test_y, k=200):
    """Top-1 accuracy of scikit-learn's k-nearest neighbours (euclidean, uniform)."""
    classifier = KNeighborsClassifier(n_neighbors=k, n_jobs=-1).fit(train_x, train_y)
    return float(np.mean(classifier.predict(test_x) == test_y))


# kNN sizes reported for every input: a small and the usual large one.
COSINE_KNN_KS = (10, 200)


def cosine_knn_top1(train_x, train_y, test_x, test_y, k=200):
    """Top-1 accuracy of run.py's kNN evaluation on any rows.

    Rows are l2-normalised; each of the k most cosine-similar training rows
    votes for its label with weight exp(similarity / 0.07) (simclr_tf2.knn).
    The same probe serves raw pixels and features.

    Args:
      train_x: float [N, D]; train_y: int [N].
      test_x: float [M, D]; test_y: int [M].
      k: neighbours per query.

    Returns:
      float accuracy on the test set.
    """
    def unit(rows):
        rows = np.asarray(rows, np.float32)
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    return knn.knn_accuracy(unit(train_x), train_y, unit(test_x), test_y,
                            num_classes, k=k)


def subset_rows(ids, subset_ids):
    """Boolean mask [N] of the rows whose id is in subset_ids."""
    return np.isin(ids, np.asarray(sorted(subset_ids)))


def timed(function, *args, **kwargs):
    """(function(*args, **kwargs), seconds it took)."""
    start = time.time()
    value = function(*args, **kwargs)
    return value, round(time.time() - start)
