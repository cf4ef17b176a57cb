"""The L-BFGS probe fits with one BLAS thread and still learns."""

import threadpoolctl
from sklearn.linear_model import LogisticRegression

from simclr_tf2.analysis import probes
from tests import harness


def test_logistic_regression_fits_with_one_blas_thread(monkeypatch):
    seen = []
    original_fit = LogisticRegression.fit

    def recording_fit(self, x, y, *args, **kwargs):
        seen.extend(info["num_threads"] for info in threadpoolctl.threadpool_info()
                    if info["user_api"] == "blas")
        return original_fit(self, x, y, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", recording_fit)
    rows, labels = harness.blobs(300, 8, 0, separation=4.0)
    top1 = probes.logistic_regression_top1(rows[:200], labels[:200],
                                           rows[200:], labels[200:])
    assert seen and set(seen) == {probes.FIT_BLAS_THREADS} == {1}
    assert top1 > 0.9  # Separable clusters: a probe that learned nothing scores ~1/3.
