"""Behaviour of simclr_tf2/embedding/ that the mutation run (benchmarks/mutation.py)
found unpinned: the error line of an index folder without embeddings,
zero vectors in a cosine search, and the own row of a self-excluding query."""

import numpy as np
import pytest

from simclr_tf2.embedding import search
from simclr_tf2.errors import ConfigError


def test_an_index_folder_without_embeddings_says_how_to_write_one(tmp_path):
    with pytest.raises(ConfigError) as error:
        search.read_index(str(tmp_path))
    assert str(error.value) == (
        f"--index={tmp_path} holds no embeddings.npy; write one with "
        "--model=... --images=... --out=DIR.")


def test_a_zero_vector_is_at_cosine_zero_from_everything():
    bank = np.array([[1.0, 0.0], [0.0, 0.0], [-1.0, 0.0]], np.float32)
    rows, sims = search.nearest(bank, np.array([[0.0, 0.0], [2.0, 0.0]]), 3)
    assert not np.isnan(sims).any()
    np.testing.assert_allclose(sims[0], [0.0, 0.0, 0.0])
    assert rows[1].tolist() == [0, 1, 2]
    np.testing.assert_allclose(sims[1], [1.0, 0.0, -1.0])


def test_a_query_asked_for_every_row_gets_its_own_last_at_minus_infinity():
    bank = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], np.float32)
    rows, sims = search.nearest(bank, bank[1:2], 3, exclude_self_from=1)
    # Its own row is the worst match, never NaN (a NaN would sort anywhere).
    assert rows[0].tolist() == [0, 2, 1]
    np.testing.assert_array_equal(sims[0], [0.0, 0.0, -np.inf])
