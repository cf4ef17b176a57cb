"""Cosine search and precision@k over an embedding directory (see `writer`).

The .npy file is read memory-mapped and compared in chunks of `_CHUNK`
rows, so memory is bounded by a chunk times the number of queries.
"""

import csv
import json
import os

import numpy as np

from simclr_tf2.embedding.writer import EMBEDDINGS, INDEX, INFO
from simclr_tf2.errors import ConfigError

_CHUNK = 2048  # Rows compared at once.


def read_index(index_dir):
    """(embeddings memmap [N, D], index rows as dicts, info dict)."""
    path = os.path.join(index_dir, EMBEDDINGS)
    if not os.path.isfile(path):
        raise ConfigError(f"--index={index_dir} holds no {EMBEDDINGS}; write "
                          "one with --model=... --images=... --out=DIR.")
    with open(os.path.join(index_dir, INDEX), newline="") as f:
        index = list(csv.DictReader(f))
    info_path = os.path.join(index_dir, INFO)
    info = json.load(open(info_path)) if os.path.isfile(info_path) else {}
    return np.load(path, mmap_mode="r"), index, info


def _unit(rows):
    rows = np.asarray(rows, np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def nearest(embeddings, queries, k, exclude_self_from=None):
    """Top-k cosine neighbours of each query among the rows of `embeddings`.

    Args:
      embeddings: float [N, D] (a memmap is read in chunks).
      queries: float [Q, D].
      k: neighbours per query (at most N).
      exclude_self_from: if an int s, query q is row s + q of `embeddings`
        and never its own neighbour.

    Returns:
      (rows int64 [Q, k], similarities float32 [Q, k]), best first.
    """
    queries = _unit(queries)
    k = min(k, len(embeddings))
    best_sims = np.full((len(queries), 0), -np.inf, np.float32)
    best_rows = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(embeddings), _CHUNK):
        sims = queries @ _unit(embeddings[start:start + _CHUNK]).T
        if exclude_self_from is not None:
            q = np.arange(len(queries))
            own = exclude_self_from + q - start
            hit = (own >= 0) & (own < sims.shape[1])
            sims[q[hit], own[hit]] = -np.inf
        rows = np.broadcast_to(np.arange(start, start + sims.shape[1]), sims.shape)
        best_sims = np.concatenate([best_sims, sims], axis=1)
        best_rows = np.concatenate([best_rows, rows], axis=1)
        keep = np.argsort(-best_sims, axis=1, kind="stable")[:, :k]
        best_sims = np.take_along_axis(best_sims, keep, 1)
        best_rows = np.take_along_axis(best_rows, keep, 1)
    return best_rows, best_sims


def precision_at_k(embeddings, labels, k):
    """Mean fraction of each labelled row's k nearest others sharing its label.

    Args:
      embeddings: float [N, D].
      labels: N labels (strings; "" = unlabelled, not scored as a query).
      k: neighbours per row.

    Returns:
      (precision in [0, 1], number of rows scored).
    """
    labels = np.asarray(labels)
    hits, scored = 0.0, 0
    for start in range(0, len(embeddings), _CHUNK):
        queries = np.asarray(embeddings[start:start + _CHUNK])
        rows, _ = nearest(embeddings, queries, k, exclude_self_from=start)
        own = labels[start:start + len(queries)]
        mask = own != ""
        same = labels[rows] == own[:, None]
        hits += same[mask].mean(axis=1).sum()
        scored += int(mask.sum())
    if not scored:
        raise ConfigError("precision@k needs labels; the index has none.")
    return hits / scored, scored
