"""The embed command: a folder or split -> embeddings.npy + index.csv; search; precision@k."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2.export import saved_model
from simclr_tf2.embedding import command
from simclr_tf2.embedding import search
from simclr_tf2.embedding import writer
from simclr_tf2.config import RunConfig
from simclr_tf2.data import augment
from simclr_tf2.errors import ConfigError
from simclr_tf2.models import build

IMAGE = 16


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny ResNet-18 exported to model_dir/saved_model/3."""
    model_dir = tmp_path_factory.mktemp("run")
    config = RunConfig.from_flat(dict(
        resnet_depth=18, width_multiplier=0.125, cifar_stem="true",
        proj_out_dim=8, num_proj_layers=2, image_size=IMAGE, dataset="digits",
        model_dir=str(model_dir)))
    tf.keras.utils.set_random_seed(0)
    model = build.build_model(config.model, num_classes=10,
                              task="pretrain", image_size=IMAGE)
    saved_model.export_to_model_dir(model, config, 3)
    return model_dir


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two class folders of random PNGs (3 each, sizes vary) and one corrupt file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        os.makedirs(root / label / "nested")
        for i in range(3):
            pixels = rng.integers(0, 256, (12 + i, 20, 3), dtype=np.uint8)
            sub = "nested" if i == 2 else ""
            (root / label / sub / f"{i}.png").write_bytes(
                tf.io.encode_png(pixels).numpy())
    (root / "dogs" / "broken.png").write_bytes(b"not a png at all")
    (root / "notes.txt").write_text("ignored: not an image extension")
    return root


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_folder_is_embedded_with_index_and_skipped_list(exported, folder,
                                                        tmp_path, capsys):
    out = tmp_path / "emb"
    command.main([f"--model={exported}", f"--images={folder}", f"--out={out}",
                "--batch_size=4"])
    printed = capsys.readouterr().out
    vectors = np.load(out / writer.EMBEDDINGS)
    index = read_csv(out / writer.INDEX)
    assert vectors.shape == (6, 64) and vectors.dtype == np.float32
    assert [r["row"] for r in index] == [str(i) for i in range(6)]
    assert [r["label"] for r in index] == ["cats"] * 3 + ["dogs"] * 3
    broken = str(folder / "dogs" / "broken.png")
    assert broken not in {r["file"] for r in index}
    assert (out / writer.SKIPPED).read_text().splitlines() == [broken]
    assert broken in printed and "wrote 6 embeddings" in printed
    # Each row is the export's h of that file, preprocessed as for eval.
    module = tf.saved_model.load(str(exported / "saved_model" / "3"))
    for row in (0, 5):
        image = tf.io.decode_png(tf.io.read_file(index[row]["file"]), channels=3)
        want = module(augment.preprocess_for_eval(image, IMAGE)[None],
                      trainable=False)["final_avg_pool"]
        np.testing.assert_allclose(vectors[row], want[0], rtol=1e-4, atol=1e-5)


def test_query_finds_itself_first(exported, folder, tmp_path, capsys):
    out = tmp_path / "emb"
    command.main([f"--model={exported}", f"--images={folder}", f"--out={out}"])
    capsys.readouterr()
    target = str(folder / "dogs" / "1.png")
    command.main([f"--index={out}", f"--query={target}", "--k=3"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("3 nearest of 6")
    rank, similarity, label, name = lines[2].split()
    assert (rank, label, name) == ("1", "dogs", target)
    assert float(similarity) == pytest.approx(1.0, abs=1e-4)
    assert len(lines) == 2 + 3


def test_projection_output_and_dataset_split(exported, tmp_path, capsys):
    out = tmp_path / "z"
    command.main([f"--model={exported}/saved_model/3", "--dataset=digits",
                "--split=test[:20]", "--output=z", f"--out={out}",
                "--eval_precision_at=3"])
    printed = capsys.readouterr().out
    assert np.load(out / writer.EMBEDDINGS).shape == (20, 8)
    index = read_csv(out / writer.INDEX)
    assert list(index[0]) == ["row", "id", "label"] and len(index) == 20
    assert "precision@3 of same-label neighbours" in printed
    assert "(20 labelled rows of 20)" in printed


def test_model_dir_without_export_says_how_to_export(tmp_path):
    with pytest.raises(ConfigError, match="python -m export --model_dir="):
        writer.find_export(str(tmp_path))


def test_user_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        command.main([f"--model={tmp_path}", f"--images={tmp_path}",
                    f"--out={tmp_path / 'o'}"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_truncate_npy_keeps_leading_rows(tmp_path):
    path = str(tmp_path / "a.npy")
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                      shape=(100000, 3))
    array[:] = np.arange(300000, dtype=np.float32).reshape(-1, 3)
    array.flush()
    del array
    writer.truncate_npy(path, 7, 3)  # "(7, 3)" is shorter than "(100000, 3)".
    loaded = np.load(path)
    np.testing.assert_array_equal(loaded, np.arange(21).reshape(7, 3))
    assert os.path.getsize(path) == 128 + 7 * 3 * 4


def test_nearest_matches_brute_force_across_chunks(monkeypatch):
    monkeypatch.setattr(search, "_CHUNK", 3)
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(10, 4)).astype(np.float32)
    rows, sims = search.nearest(bank, bank[2:5], 4, exclude_self_from=2)
    unit = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    full = unit[2:5] @ unit.T
    full[np.arange(3), np.arange(2, 5)] = -np.inf
    np.testing.assert_array_equal(rows, np.argsort(-full, axis=1)[:, :4])
    np.testing.assert_allclose(sims, -np.sort(-full, axis=1)[:, :4], rtol=1e-5)


def test_precision_at_k():
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    assert search.precision_at_k(vectors, ["a", "a", "b", "b"], 1) == (1.0, 4)
    assert search.precision_at_k(vectors, ["a", "b", "a", "b"], 1) == (0.0, 4)
    # Unlabelled rows are neighbours (never a match) but not queries: rows
    # 0 and 1 find each other and row 3; row 2 finds rows 3 and 1.
    assert search.precision_at_k(vectors, ["a", "a", "b", ""], 2) == (
        pytest.approx(1 / 3), 3)


def test_keras_file_with_a_custom_encoder_is_embedded(folder, tmp_path, capsys):
    """The library-only route: a SimCLRModel saved as .keras, no export."""
    import keras
    from simclr_tf2.models import backbones, heads
    from simclr_tf2.models.simclr_model import SimCLRModel
    inputs = keras.Input([None, None, 3])
    features = keras.layers.Conv2D(5, 3, name="c")(inputs)
    model = SimCLRModel(
        backbones.BackboneEncoder(keras.Model(inputs, features)),
        heads.ProjectionHead(mode="linear", num_layers=1, out_dim=4))
    model(tf.zeros([1, IMAGE, IMAGE, 3]))
    path = str(tmp_path / "m.keras")
    model.save(path)
    out = tmp_path / "emb"
    command.main([f"--model={path}", f"--images={folder}", f"--out={out}"])
    capsys.readouterr()
    vectors = np.load(out / writer.EMBEDDINGS)
    index = read_csv(out / writer.INDEX)
    image = tf.io.decode_png(tf.io.read_file(index[3]["file"]), channels=3)
    want = model(augment.preprocess_for_eval(image, IMAGE)[None])
    np.testing.assert_allclose(vectors[3], want["final_avg_pool"][0], rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("module", ["simclr_tf2.embedding", "simclr_tf2.embed"])
def test_python_m_embedding_and_its_short_name(module):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=root,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=root))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "python -m simclr_tf2.embedding" in proc.stdout
    assert "--eval_precision_at" in proc.stdout


def test_progress_writes_to_the_stderr_of_its_creation(monkeypatch):
    """Not to the stream that was sys.stderr when the module was imported."""
    import io

    from simclr_tf2.embedding import writer
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    writer.Progress(4).update(4, final=True)
    assert "embedded 4/4 images" in stream.getvalue()
