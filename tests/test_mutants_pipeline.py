"""Behaviour of simclr_tf2/data/pipeline.py that the mutation run
(benchmarks/mutation.py) found unpinned: the seeds of a run from step 0 and
of a resumed one, the transforms' library defaults, the batch-copies line, the teacher's
image, and what build_train_dataset does by default and with id lists.
"""

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2.data import augment, pipeline, source as source_lib
from simclr_tf2.data.in_memory import ArraySource


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


def test_the_teacher_sees_the_eval_image_the_student_its_own_view():
    both = pipeline.student_and_teacher_transform(8, 0.3, True)
    student = pipeline.single_view_transform(8, 0.3, True)
    for seed in range(4):
        seeds = tf.constant([seed, 9], tf.int64)
        out = both(_example(seed), seeds)
        np.testing.assert_array_equal(
            out["teacher_image"], augment.preprocess_for_eval(_example(seed)["image"], 8))
        np.testing.assert_array_equal(out["image"], student(_example(seed), seeds)["image"])


@pytest.fixture(scope="module")
def numbered_source():
    """40 noise images; the first pixel holds the example's id."""
    images = np.random.default_rng(0).integers(0, 256, [40, 8, 8, 3]).astype(np.uint8)
    images[:, 0, 0, 0] = np.arange(40)
    info = source_lib.DatasetInfo(name="numbered", num_classes=4,
                                  num_examples={"train": 40}, image_shape=(8, 8, 3))
    return ArraySource(info, {"train": lambda: (images, np.arange(40) % 4)})


def _ids_and_labels(dataset, steps=4):
    batches = list(dataset.take(steps).as_numpy_iterator())
    return (np.concatenate([b["id"] for b in batches]),
            np.concatenate([b["label"] for b in batches]))


def _build(source, **kwargs):
    transform = pipeline.single_view_transform(8, 1.0, False)
    return pipeline.build_train_dataset(source, "train", 10, transform, **kwargs)


def test_build_train_dataset_defaults_are_a_fresh_uncached_run_of_seed_0(numbered_source):
    default = _ids_and_labels(_build(numbered_source))
    explicit = _ids_and_labels(_build(numbered_source, seed=0, cache=False, example_ids=None,
                                      labelled_ids=None, start_step=0))
    np.testing.assert_array_equal(default, explicit)
    # Each of those defaults matters: another value draws another order.
    for changed in (dict(seed=1), dict(cache=True), dict(start_step=1)):
        other = _ids_and_labels(_build(numbered_source, **changed))
        assert not np.array_equal(default[0], other[0]), changed


def test_a_label_subset_keeps_only_its_labels_and_an_id_list_is_cached(numbered_source):
    ids, labels = _ids_and_labels(_build(numbered_source, labelled_ids=[3, 7, 12]))
    assert len(set(ids)) == 40  # Every image still trains...
    np.testing.assert_array_equal(labels, np.where(np.isin(ids, [3, 7, 12]), ids % 4, -1))
    # An id list takes the cached path whether or not cache is asked for.
    subset = list(range(0, 40, 2))
    plain = _ids_and_labels(_build(numbered_source, example_ids=subset))
    cached = _ids_and_labels(_build(numbered_source, example_ids=subset, cache=True))
    np.testing.assert_array_equal(plain, cached)
    assert set(plain[0]) == set(subset)
