"""Tests for the data sources (registry, digits, fashion_mnist, folder, tfds_source): digits, IDX/Fashion-MNIST, image folders, TFDS."""

import gzip
import logging
import os
import time
import types

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from simclr_tf2.data import fashion_mnist
from tests.tiny_tfds import SimclrSourcesTiny, SimclrSourcesTinyUnlabeled
from simclr_tf2.data.registry import (DataError, FolderSource, describe_datasets,
                                     open_source, parse_split)

FASHION_DIR = fashion_mnist.SYSTEM_FASHION_MNIST_DIRS[0]


def _examples(dataset):
    return list(dataset.as_numpy_iterator())


def _assert_one_line_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


# ----------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    return open_source("digits")


def test_digits_info(digits):
    info = digits.info
    assert info.name == "digits"
    assert info.num_classes == 10
    assert info.num_examples == {"train": 1437, "test": 360}
    assert info.image_shape == (8, 8, 1)
    assert digits.num_examples("validation") == 360


def test_digits_examples(digits):
    from sklearn.datasets import load_digits

    train = _examples(digits.split("train"))
    test = _examples(digits.split("validation"))
    assert len(train) == 1437 and len(test) == 360
    for split in (train, test):
        assert [e["id"] for e in split] == list(range(len(split)))
        # Stratified: every class is present in both splits.
        assert set(e["label"] for e in split) == set(range(10))
    ex = train[0]
    assert ex["image"].dtype == np.uint8 and ex["image"].shape == (8, 8, 1)
    assert ex["label"].dtype == np.int64 and ex["id"].dtype == np.int64
    # Together the splits are exactly the scaled scikit-learn digits.
    raw = load_digits()
    expected = sorted((np.round(im * 255 / 16).astype(np.uint8).tobytes(), y)
                      for im, y in zip(raw.images, raw.target))
    got = sorted((e["image"].tobytes(), e["label"]) for e in train + test)
    assert got == expected
    assert max(e["image"].max() for e in train) == 255


def test_digits_deterministic(digits):
    first = _examples(open_source("digits").split("test[:20]"))
    second = _examples(digits.split("test[:20]"))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a["image"], b["image"])
        assert a["label"] == b["label"] and a["id"] == b["id"]


@pytest.mark.parametrize("spec, size, first_id", [
    ("train[:10%]", 144, 0), ("train[100:200]", 100, 100), ("test[:5]", 5, 0),
    ("train[-10:]", 10, 1427), ("test[50%:]", 180, 180), ("train[:0]", 0, 0),
    ("train[:10%]+test[:5]", 149, 0)])
def test_split_slicing(digits, spec, size, first_id):
    assert digits.num_examples(spec) == size
    sliced = _examples(digits.split(spec))
    assert len(sliced) == size
    if not size:
        return
    assert sliced[0]["id"] == first_id
    full = _examples(digits.split(spec.split("[")[0]))
    for ex in sliced[:size - 5 if "+" in spec else size]:
        np.testing.assert_array_equal(ex["image"], full[ex["id"]]["image"])
        assert ex["label"] == full[ex["id"]]["label"]


def test_train_prefix_is_class_balanced(digits):
    labels = [e["label"] for e in _examples(digits.split("train[:10%]"))]
    assert np.bincount(labels, minlength=10).min() >= 13


@pytest.mark.parametrize("spec", [
    "train", "train[:10%]", "train[10%:25%]", "test[-7:]", "train[33:-3]",
    "train[-20%:]", "train[:33.3%]", "test[1:2]"])
def test_parse_split_matches_tfds(spec):
    sizes = {"train": 1437, "test": 360}
    infos = {k: types.SimpleNamespace(num_examples=v) for k, v in sizes.items()}
    (want,) = tfds.core.ReadInstruction.from_spec(spec).to_absolute(infos)
    (got,) = parse_split(spec, sizes, "x")
    assert (got.split, got.start, got.stop) == (
        want.splitname, want.from_ or 0, sizes[got.split] if want.to is None
        else want.to)


@pytest.mark.parametrize("spec, fragment", [
    ("nosuch", "unknown split 'nosuch'"), ("train[a:b]", "invalid split"),
    ("train[:2000]", "out of range"), ("train[1.5:]", "integers"),
    ("train[:150%]", "percentages"), ("", "empty split")])
def test_bad_split_specs(digits, spec, fragment):
    with pytest.raises(DataError) as excinfo:
        digits.split(spec)
    _assert_one_line_error(excinfo, fragment)


# ------------------------------------------------------------ IDX / Fashion


def _write_idx(path, array, type_code=0x08):
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = bytes([0, 0, type_code, array.ndim]) + dims + array.astype(
        array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx(tmp_path, suffix):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / f"a-idx3-ubyte{suffix}", images)
    np.testing.assert_array_equal(
        fashion_mnist.read_idx(str(tmp_path / f"a-idx3-ubyte{suffix}")), images)
    ints = np.array([1, -2, 70000], dtype=np.int32)
    _write_idx(tmp_path / f"b{suffix}", ints, type_code=0x0C)
    out = fashion_mnist.read_idx(str(tmp_path / f"b{suffix}"))
    np.testing.assert_array_equal(out, ints)
    assert fashion_mnist.read_idx_header(str(tmp_path / f"b{suffix}"))[1] == (3,)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "magic").write_bytes(b"\x12\x34\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(DataError) as excinfo:
        fashion_mnist.read_idx(str(tmp_path / "magic"))
    _assert_one_line_error(excinfo, "bad magic number")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09\x05")
    with pytest.raises(DataError) as excinfo:
        fashion_mnist.read_idx(str(tmp_path / "short"))
    _assert_one_line_error(excinfo, "expected 9 data bytes")


def _write_fashion(directory, n_train=6, n_test=4, gz=True):
    os.makedirs(directory, exist_ok=True)
    rng = np.random.RandomState(0)
    suffix = ".gz" if gz else ""
    for stem, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(os.path.join(directory, f"{stem}-images-idx3-ubyte{suffix}"),
                   rng.randint(0, 256, (n, 28, 28)).astype(np.uint8))
        _write_idx(os.path.join(directory, f"{stem}-labels-idx1-ubyte{suffix}"),
                   np.arange(n, dtype=np.uint8) % 10)


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_from_data_dir(tmp_path, gz):
    _write_fashion(str(tmp_path / "fashion_mnist_idx"), gz=gz)
    source = open_source("fashion_mnist", data_dir=str(tmp_path))
    assert source.info.num_examples == {"train": 6, "test": 4}
    assert source.info.image_shape == (28, 28, 1)
    assert source.info.num_classes == 10
    test = _examples(source.split("validation[1:]"))
    assert [e["label"] for e in test] == [1, 2, 3]
    assert [e["id"] for e in test] == [1, 2, 3]
    assert test[0]["image"].shape == (28, 28, 1)


def test_fashion_mnist_explicit_dir(tmp_path):
    _write_fashion(str(tmp_path / "x"), n_train=3, n_test=2)
    source = open_source(f"fashion_mnist:{tmp_path / 'x'}")
    assert source.num_examples("train") == 3
    with pytest.raises(DataError) as excinfo:
        open_source(f"fashion_mnist:{tmp_path}")
    _assert_one_line_error(excinfo, "no Fashion-MNIST IDX files",
                           "t10k-images-idx3-ubyte")


def test_fashion_mnist_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_FASHION_MNIST_DIRS", (str(tmp_path),))
    with pytest.raises(DataError) as excinfo:
        open_source("fashion_mnist", data_dir=str(tmp_path))
    _assert_one_line_error(excinfo, "apt-get install dataset-fashion-mnist",
                           "tfds build fashion_mnist", "--data_dir")


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_real_files():
    source = open_source("fashion_mnist")
    assert source.info.num_examples == {"train": 60000, "test": 10000}
    first = _examples(source.split("test[:3]"))
    assert [e["label"] for e in first] == [9, 2, 1]  # Ankle boot, Pullover...
    _, labels = source.arrays("train")
    assert np.bincount(labels).tolist() == [6000] * 10


# ----------------------------------------------------------------- folders


def _save(path, size, mode="RGB", fmt=None, seed=0):
    pixels = np.random.RandomState(seed).randint(0, 256, size + (3,))
    Image.fromarray(pixels.astype(np.uint8)).convert(mode).save(path, fmt)
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture()
def class_folder(tmp_path):
    root = tmp_path / "images"
    (root / "cats").mkdir(parents=True)
    (root / "dogs" / "puppies").mkdir(parents=True)
    (root / "empty_class").mkdir()
    pixels = _save(root / "cats" / "a.png", (10, 12))
    _save(root / "cats" / "b.JPG", (16, 8), fmt="JPEG")
    _save(root / "cats" / "c.gif", (9, 9), mode="P")
    _save(root / "dogs" / "d.bmp", (7, 5))
    _save(root / "dogs" / "puppies" / "e.png", (6, 6), mode="L")
    (root / "dogs" / "corrupt.jpg").write_bytes(
        np.random.RandomState(1).bytes(300))
    (root / "dogs" / "zero.png").write_bytes(b"")
    (root / "dogs" / "notes.txt").write_text("not an image")
    return root, pixels


def test_folder_with_classes(class_folder, caplog):
    root, pixels = class_folder
    source = open_source(f"folder:{root}")
    assert source.skipped_files == []  # Opening decodes only the first file.
    info = source.info
    assert info.class_names == ("cats", "dogs") and info.num_classes == 2
    # Unreadable files are found (and skipped) when the pipeline reads them.
    assert info.num_examples == {"train": 7}
    assert info.image_shape == (None, None, 3)
    with caplog.at_level(logging.WARNING):
        examples = _examples(source.split("train"))
        _examples(source.split("train"))  # Each file is reported once.
    assert sorted(os.path.basename(p) for p in source.skipped_files) == [
        "corrupt.jpg", "zero.png"]
    warnings = [r.getMessage() for r in caplog.records
                if "skipped unreadable image file" in r.getMessage()]
    assert len(warnings) == 2 and "(2 unreadable file(s)" in warnings[1]
    assert [e["label"] for e in examples] == [0, 0, 0, 1, 1]
    assert [e["id"] for e in examples] == [0, 1, 2, 4, 6]
    assert [e["image"].shape for e in examples] == [
        (10, 12, 3), (16, 8, 3), (9, 9, 3), (7, 5, 3), (6, 6, 3)]
    assert all(e["image"].dtype == np.uint8 for e in examples)
    np.testing.assert_array_equal(examples[0]["image"], pixels)
    sliced = _examples(source.split("train[3:]"))
    assert [e["id"] for e in sliced] == [4, 6]
    shuffled = _examples(source.shuffled("train", seed=0))
    assert sorted(e["id"] for e in shuffled) == [0, 1, 2, 4, 6]
    # Label lists come from the listing: no image is decoded.
    labels, ids = source.labels_and_ids("train[2:]")
    assert labels.tolist() == [0, 1, 1, 1, 1] and ids.tolist() == [2, 3, 4, 5, 6]


def test_flat_folder_is_unlabeled(tmp_path):
    for i in range(3):
        _save(tmp_path / f"img{i}.png", (8, 8), seed=i)
    source = open_source(f"folder:{tmp_path}")
    assert source.info.num_classes == 0
    assert [e["label"] for e in _examples(source.split("train"))] == [-1] * 3
    assert len(_examples(source.split("train[1:]"))) == 2


def test_folder_with_split_dirs(tmp_path):
    for split, n in (("train", 3), ("val", 2)):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                _save(tmp_path / split / cls / f"{i}.png", (4, 4), seed=i)
    source = FolderSource(str(tmp_path))
    assert source.info.num_examples == {"train": 6, "validation": 4}
    assert source.num_examples("test") == 4  # 'test' falls back to validation
    labels = [e["label"] for e in _examples(source.split("validation"))]
    assert labels == [0, 0, 1, 1]


def test_folder_errors(tmp_path):
    with pytest.raises(DataError) as excinfo:
        open_source(f"folder:{tmp_path / 'missing'}")
    _assert_one_line_error(excinfo, "does not exist", "folder:/path")
    with pytest.raises(DataError) as excinfo:
        open_source(f"folder:{tmp_path}")
    _assert_one_line_error(excinfo, "no readable images")
    (tmp_path / "bad.png").write_bytes(b"nope")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError) as excinfo:
        open_source(f"folder:{tmp_path}")
    _assert_one_line_error(excinfo, "2 skipped as unreadable")


# --------------------------------------------------------- names and TFDS


def test_describe_datasets():
    text = describe_datasets()
    assert "\n" not in text
    for name in ("digits", "fashion_mnist", "folder:", "cifar10"):
        assert name in text


@pytest.mark.parametrize("name", ["no_such_dataset", "huggingface:mnist", " "])
def test_unknown_dataset(tmp_path, name):
    with pytest.raises(DataError) as excinfo:
        open_source(name, data_dir=str(tmp_path))
    _assert_one_line_error(excinfo, "digits, fashion_mnist, folder:")


def test_unprepared_tfds_is_fast_and_explains_fix(tmp_path):
    start = time.monotonic()
    with pytest.raises(DataError) as excinfo:
        open_source("cifar10", data_dir=str(tmp_path))
    assert time.monotonic() - start < 5
    _assert_one_line_error(excinfo, "not prepared",
                           f"tfds build cifar10 --data_dir={tmp_path}",
                           f"--data_dir={tmp_path}")


@pytest.fixture(scope="module")
def tiny_tfds_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    config = tfds.download.DownloadConfig(
        try_download_gcs=False,
        compute_stats=tfds.download.ComputeStatsMode.SKIP)
    for builder_cls in (SimclrSourcesTiny, SimclrSourcesTinyUnlabeled):
        builder_cls(data_dir=data_dir).download_and_prepare(
            download_config=config)
    return data_dir


def test_tfds_source(tiny_tfds_dir):
    source = open_source("simclr_sources_tiny", data_dir=tiny_tfds_dir)
    info = source.info
    assert info.num_examples == {"train": 12, "test": 4}
    assert info.num_classes == 3 and info.class_names == ("a", "b", "c")
    assert info.image_shape == (6, 5, 3)
    full = _examples(source.split("train"))
    assert [e["id"] for e in full] == list(range(12))
    assert sorted(int(e["image"][0, 0, 0]) for e in full) == list(range(1, 13))
    for ex in full:
        assert ex["label"] == (ex["image"][0, 0, 0] - 1) % 3
        assert ex["image"].dtype == np.uint8 and ex["label"].dtype == np.int64
    sliced = _examples(source.split("train[25%:50%]"))
    assert [e["id"] for e in sliced] == [3, 4, 5]
    for ex in sliced:
        np.testing.assert_array_equal(ex["image"], full[ex["id"]]["image"])
    assert source.num_examples("train[:0]") == 0
    assert not _examples(source.split("train[:0]"))
    assert source.num_examples("validation") == 4
    labels, ids = source.labels_and_ids("train[2:5]+test")
    assert ids.tolist() == [2, 3, 4, 0, 1, 2, 3]
    expected = [e["label"] for e in _examples(source.split("train[2:5]+test"))]
    assert labels.tolist() == expected


def test_tfds_source_unlabeled(tiny_tfds_dir):
    source = open_source("simclr_sources_tiny_unlabeled",
                         data_dir=tiny_tfds_dir)
    assert source.info.num_classes == 0
    labels = [e["label"] for e in _examples(source.split("test"))]
    assert labels == [-1] * 4
