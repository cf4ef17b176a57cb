"""Training input order: class-mixed batches, new order per epoch, seeds, workers."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
# tf.distribute's own multi-worker input rewrite (rebatch + auto-shard), as
# MultiWorkerMirroredStrategy applies it on every worker.
from tensorflow.python.data.experimental.ops import distribute as tfdata_distribute
from tensorflow.python.distribute import input_ops

from simclr_tf2 import tasks
from simclr_tf2.data import pipeline, source as source_lib
from simclr_tf2.data.folder import FolderSource
from simclr_tf2.data.in_memory import ArraySource
from simclr_tf2.data.registry import open_source
from tests.tiny_tfds import SimclrSourcesTiny

NUM_CLASSES, PER_CLASS = 10, 60


def _class_sorted_arrays():
    """Noise images whose first pixel codes the example id; labels sorted by class."""
    num = NUM_CLASSES * PER_CLASS
    images = np.random.RandomState(0).randint(0, 256, [num, 8, 8, 3]).astype(
        np.uint8)
    images[:, 0, 0, 0] = np.arange(num) % 256
    images[:, 0, 0, 1] = np.arange(num) // 256
    return images, np.repeat(np.arange(NUM_CLASSES), PER_CLASS)


@pytest.fixture(scope="module")
def sorted_arrays():
    images, labels = _class_sorted_arrays()
    info = source_lib.DatasetInfo(
        name="sorted", num_classes=NUM_CLASSES,
        num_examples={"train": len(labels)}, image_shape=(8, 8, 3))
    return ArraySource(info, {"train": lambda: (images, labels)})


@pytest.fixture(scope="module")
def sorted_folder(tmp_path_factory):
    """A class-sorted folder: class_00/ ... class_09/, 60 tiny PNGs each."""
    root = tmp_path_factory.mktemp("sorted_folder")
    images, labels = _class_sorted_arrays()
    for i, (image, label) in enumerate(zip(images, labels)):
        directory = root / f"class_{label:02d}"
        directory.mkdir(exist_ok=True)
        Image.fromarray(image).save(directory / f"{i:04d}.png")
    return FolderSource(str(root))


@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    SimclrSourcesTiny(data_dir=data_dir).download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            try_download_gcs=False,
            compute_stats=tfds.download.ComputeStatsMode.SKIP))
    return open_source("simclr_sources_tiny", data_dir=data_dir)


def _batches(dataset, count):
    return list(dataset.take(count).as_numpy_iterator())


def _train(source, seed=0, batch=10 * NUM_CLASSES, mode="finetune", **kwargs):
    transform = tasks.get(mode).train_transform(8, 1.0, False, 0.08)
    return pipeline.build_train_dataset(source, "train", batch, transform,
                                        seed=seed, **kwargs)


@pytest.mark.parametrize("which", ["sorted_arrays", "sorted_folder"])
@pytest.mark.parametrize("cache", [False, True])
def test_class_sorted_data_gives_class_mixed_batches(which, cache, request,
                                                     monkeypatch):
    # A decoded-image buffer of one image: any mixing must come from the
    # whole-split shuffle before decoding, as for a folder far larger than RAM.
    monkeypatch.setattr(source_lib, "DECODED_SHUFFLE_BYTES", 1)
    monkeypatch.setattr(pipeline, "decoded_buffer_size",
                        lambda shape, count: 1)
    source = request.getfixturevalue(which)
    for batch in _batches(_train(source, cache=cache), 12):  # 2 epochs
        histogram = np.bincount(batch["label"], minlength=NUM_CLASSES)
        # 100 examples of 10 classes: about 10 each, never one class's run.
        assert histogram.min() >= 2 and histogram.max() <= 25, histogram


def _ids(dataset):
    return [int(e["id"]) for e in dataset.as_numpy_iterator()]


@pytest.mark.parametrize("which", ["sorted_arrays", "sorted_folder",
                                   "tiny_tfds"])
def test_every_epoch_is_a_new_permutation_fixed_by_the_seed(which, request):
    source = request.getfixturevalue(which)
    num = source.num_examples("train")
    ids = _ids(source.shuffled("train", seed=3).repeat(3))
    epochs = [ids[i * num:(i + 1) * num] for i in range(3)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(num))
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]
    assert epochs[0] != sorted(epochs[0])
    assert ids == _ids(source.shuffled("train", seed=3).repeat(3))
    assert ids != _ids(source.shuffled("train", seed=4).repeat(3))


def test_tfds_shuffled_ids_and_images_match_the_fixed_order(tiny_tfds):
    fixed = {int(e["id"]): e for e in tiny_tfds.split("train[25%:75%]")
             .as_numpy_iterator()}
    shuffled = list(tiny_tfds.shuffled("train[25%:75%]", seed=1)
                    .as_numpy_iterator())
    assert sorted(int(e["id"]) for e in shuffled) == list(range(3, 9))
    for example in shuffled:
        np.testing.assert_array_equal(example["image"],
                                      fixed[int(example["id"])]["image"])
        assert example["label"] == fixed[int(example["id"])]["label"]


@pytest.mark.parametrize("which", ["sorted_arrays", "tiny_tfds"])
def test_label_subset_is_shuffled_and_restricted(which, request):
    source = request.getfixturevalue(which)
    subset = [1, 2, 3, 5, 8, 11] if which == "tiny_tfds" else [1, 70, 130, 250, 400, 599]
    seen = _ids(source.shuffled("train", seed=0, example_ids=subset).repeat(3))
    epochs = [seen[:6], seen[6:12], seen[12:]]
    assert all(sorted(epoch) == subset for epoch in epochs)
    assert len({tuple(epoch) for epoch in epochs}) > 1
    labels = np.concatenate([b["label"] for b in _batches(
        _train(source, batch=6, example_ids=subset), 4)])
    all_labels, _ = source.labels_and_ids("train")
    assert sorted(labels.tolist()) == sorted(all_labels[subset].tolist() * 4)


def _same(a, b):
    return all(np.array_equal(x["image"], y["image"]) and
               np.array_equal(x["label"], y["label"]) for x, y in zip(a, b))


@pytest.mark.parametrize("mode", ["pretrain", "finetune", "distill"])
def test_seed_reproduces_and_resume_draws_new_batches(sorted_arrays, mode):
    first = _batches(_train(sorted_arrays, mode=mode), 3)
    assert _same(first, _batches(_train(sorted_arrays, mode=mode), 3))
    assert not _same(first, _batches(_train(sorted_arrays, seed=1, mode=mode), 3))
    # A run resumed at step 6 does not replay the batches of step 0.
    resumed = _batches(_train(sorted_arrays, mode=mode, start_step=6), 3)
    assert not _same(first, resumed)
    # Seeds fold (seed, step) together: seed 0 at step 1 != seed 1 at step 0.
    assert pipeline.derive_seeds(0, 1) != pipeline.derive_seeds(1, 0)


def _worker_batches(dataset, index, workers, global_batch, count):
    """The batches worker `index` of `workers` trains on (one replica each)."""
    sizes = tfdata_distribute.batch_sizes_for_worker(global_batch, workers, 1,
                                                     index)
    sharded = input_ops.auto_shard_dataset(dataset.rebatch(sizes), workers,
                                           index, workers)
    return _batches(sharded, count)


@pytest.mark.parametrize("which", ["sorted_arrays", "sorted_folder",
                                   "tiny_tfds"])
def test_two_workers_train_on_different_pairs(which, request):
    source = request.getfixturevalue(which)
    global_batch = 4
    dataset = _train(source, batch=global_batch, mode="pretrain")
    single = _batches(dataset, 3)
    workers = [_worker_batches(_train(source, batch=global_batch,
                                      mode="pretrain"), i, 2, global_batch, 3)
               for i in range(2)]
    for step, whole in enumerate(single):
        halves = [w[step]["image"] for w in workers]
        assert all(h.shape == (2, 8, 8, 6) for h in halves)
        # Together the workers train on exactly the single-worker batch: its
        # two halves, i.e. different examples with their own augmentation
        # seeds (the seed stream is zipped per example before batching)...
        np.testing.assert_array_equal(np.concatenate(halves), whole["image"])
        np.testing.assert_array_equal(
            np.concatenate([w[step]["label"] for w in workers]),
            whole["label"])
        # ...so no worker repeats the other's pairs, and the views differ.
        assert not np.array_equal(halves[0], halves[1])
        assert not np.allclose(halves[0][..., :3], halves[0][..., 3:])


def test_unreadable_files_are_skipped_counted_and_reported_once(tmp_path,
                                                                caplog):
    rng = np.random.RandomState(0)
    for label in range(3):
        (tmp_path / f"c{label}").mkdir()
        for i in range(4):
            Image.fromarray(rng.randint(0, 256, (6, 6, 3)).astype(np.uint8)).save(
                tmp_path / f"c{label}" / f"{i}.jpg")
    (tmp_path / "c1" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (tmp_path / "c2" / "empty.png").write_bytes(b"")
    source = FolderSource(str(tmp_path))
    assert source.num_examples("train") == 14 and source.skipped_files == []
    with caplog.at_level("WARNING"):
        batches = _batches(_train(source, batch=6), 6)  # 3 epochs of 12
    assert sorted(os.path.basename(p) for p in source.skipped_files) == [
        "broken.jpg", "empty.png"]
    reports = [r.getMessage() for r in caplog.records
               if "skipped unreadable image file" in r.getMessage()]
    assert len(reports) == 2
    labels = np.concatenate([b["label"] for b in batches])
    assert np.bincount(labels).tolist() == [12, 12, 12]


def test_a_batch_larger_than_the_split_says_how_many_copies(caplog):
    digits = open_source("digits")  # 1437 train examples
    with caplog.at_level("WARNING"):
        pipeline.build_train_dataset(digits, "train", 4096,
                                     pipeline.two_view_transform(8))
    assert "each batch holds 2.85 copies of every image" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        pipeline.build_train_dataset(digits, "train", 1024,
                                     pipeline.two_view_transform(8))
    assert "copies" not in caplog.text
