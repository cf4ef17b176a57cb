"""Behaviour of simclr_tf2/data/pipeline.py that the mutation run
(benchmarks/mutation.py) found unpinned: the seeds of a run from step 0 and
of a resumed one, the transforms' library defaults, the batch-copies line.
"""

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2.data import pipeline


def test_a_run_from_step_0_uses_its_seed_a_resumed_run_hashes_seed_and_step():
    assert pipeline.derive_seeds(7) == (7, 7)
    assert pipeline.derive_seeds(7, 0) == (7, 7)
    resumed = pipeline.derive_seeds(7, 3)
    assert resumed == pipeline.derive_seeds(7, 3)  # Reproducible...
    assert resumed != (7, 7) and resumed[0] != resumed[1]  # ...and new.
    assert pipeline.derive_seeds(7, 1) != resumed


def test_copies_note_names_the_batch_the_split_and_the_copies():
    assert pipeline.copies_note(1024, 600) == (
        "train_batch_size 1024 is larger than the 600 training examples: each "
        "batch holds 1.71 copies of every image on average, each in its own "
        "augmentations; NT-Xent counts them as positives of each other, a step "
        "counts as one epoch, and the learning rate is scaled as for a batch "
        "of 600.")


def _example(seed=0):
    image = np.random.default_rng(seed).integers(0, 255, (12, 12, 3))
    return {"image": tf.constant(image, tf.uint8),
            "label": tf.constant(1, tf.int64), "id": tf.constant(5, tf.int64)}


@pytest.mark.parametrize("make,explicit", [
    (lambda: pipeline.two_view_transform(8),
     lambda: pipeline.two_view_transform(8, 1.0, True, 0.08, True)),
    (lambda: pipeline.single_view_transform(8),
     lambda: pipeline.single_view_transform(8, 0.08, True)),
    (lambda: pipeline.student_and_teacher_transform(8),
     lambda: pipeline.student_and_teacher_transform(8, 0.08, True)),
])
def test_transforms_default_to_the_papers_augmentation(make, explicit):
    # Crops of 8-100% of the area, flips, colour strength 1, blur: the same
    # views as the explicit call, seed for seed (a changed default shows on
    # some of the 16 seeds: blur and flips apply to half of them).
    default, named = make(), explicit()
    for seed in range(16):
        seeds = tf.constant([seed, 2], tf.int64)
        a, b = default(_example(seed), seeds), named(_example(seed), seeds)
        assert set(a) == set(b)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
