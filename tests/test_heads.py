"""Tests of models/heads.py through the shared layer test."""

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2.models import heads
from tests.layer_test import run_layer_test


@pytest.mark.parametrize("mode,depth,shapes", [
    ("none", 0, [(4, 12)]),
    ("linear", 1, [(4, 12), (4, 6)]),
    ("nonlinear", 3, [(4, 12), (4, 12), (4, 12), (4, 6)]),
])
def test_projection_head(mode, depth, shapes):
    head = run_layer_test(heads.ProjectionHead,
                          dict(mode=mode, num_layers=3, out_dim=6),
                          (4, 12), expected_shapes=shapes)
    assert head.depth == depth


@pytest.mark.parametrize("normalize_input", [False, True])
def test_supervised_head(normalize_input):
    head = run_layer_test(heads.SupervisedHead,
                          dict(num_classes=5, normalize_input=normalize_input),
                          (4, 12), expected_shapes=(4, 5))
    assert head.units == 5
    names = [v.path for v in head.weights]
    # LARS matches this name to skip the classifier's weight decay.
    assert all(name.startswith("head_supervised/") for name in names)


def test_supervised_head_zero_init_gives_zero_logits():
    head = heads.SupervisedHead(3, zero_init=True)
    logits = head(tf.ones([2, 4]))
    np.testing.assert_array_equal(logits.numpy(), np.zeros([2, 3]))
