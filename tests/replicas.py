"""Helpers for tests that compare a two-replica run with one device."""

import numpy as np


def assert_view_gradients_split_by_replica(replica_grads, full_grad, half, global_n,
                                           atol=1e-5):
    """Each replica's gradient equals its rows of the one-device gradient.

    Args:
      replica_grads: per replica, the gradient w.r.t. its local [2 * half, D]
        projections (view 1 rows then view 2 rows).
      full_grad: [2 * global_n, D] one-device gradient (all view-1 rows, then
        all view-2 rows).
      half: examples per replica.
      global_n: examples in the global batch.
    """
    for r, grad in enumerate(replica_grads):
        expected = np.concatenate([
            full_grad[r * half:(r + 1) * half],
            full_grad[global_n + r * half:global_n + (r + 1) * half]])
        np.testing.assert_allclose(grad, expected, atol=atol)
