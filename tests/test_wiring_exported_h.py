"""h as the user gets it: the exported SavedModel's final_avg_pool is the
reference for the kNN figure in result.json and for every row `embed` writes.

One tiny run.py pretraining (train_then_eval, which exports the weights it
evaluated). Reference features are computed here, independently of the
library's pipelines: images read from the dataset by id (or from files),
converted to [0, 1], resized with TensorFlow's own bicubic resize (eval
preprocessing for images of at most 32 px), and passed through the export.
"""

import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf

# The only project imports (paths may change when modules move).
from simclr_tf2.embedding import command as embed_command
from simclr_tf2.data import registry
from tests.harness import TINY_FLAGS as TINY, run_py

IMAGE = 16
KNN_K, KNN_TEMPERATURE = 7, 0.2


def to_input(image, size=IMAGE):
    """uint8 [H, W, 1 or 3] -> float32 [size, size, 3] in [0, 1]."""
    image = tf.image.convert_image_dtype(tf.convert_to_tensor(image), tf.float32)
    if image.shape[-1] == 1:
        image = tf.tile(image, [1, 1, 3])
    image = tf.image.resize(image, [size, size], method="bicubic")
    return tf.clip_by_value(image, 0.0, 1.0)


def export_outputs(module, images, key="final_avg_pool", batch=256):
    out = [module(tf.stack(images[i:i + batch]), trainable=False)[key].numpy()
           for i in range(0, len(images), batch)]
    return np.concatenate(out)


def split_examples(split):
    """{id: (uint8 image, label)} of a digits split, read from the source."""
    source = registry.open_source("digits")
    return {int(e["id"]): (e["image"], int(e["label"]))
            for e in source.split(split).as_numpy_iterator()}


def weighted_cosine_knn(bank, bank_labels, queries, k, temperature, classes=10):
    """Top-1 predictions: the k most cosine-similar bank rows each vote for
    their class with weight exp(cos / temperature)."""
    bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = queries.astype(np.float64) @ bank.T.astype(np.float64)
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    scores = np.zeros((len(queries), classes))
    for q in range(len(queries)):
        for j in top[q]:
            scores[q, bank_labels[j]] += np.exp(sims[q, j] / temperature)
    return scores.argmax(1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("h") / "model"
    proc = run_py("--mode=train_then_eval", "--train_steps=3",
                  "--checkpoint_steps=3", "--eval_steps=0",
                  f"--knn_k={KNN_K}", f"--knn_temperature={KNN_TEMPERATURE}",
                  f"--model_dir={model_dir}", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    export = model_dir / "saved_model" / "3"
    return model_dir, tf.saved_model.load(str(export))


@pytest.fixture(scope="module")
def digits_h(run):
    """Export outputs (h and z) and labels of the train and test splits."""
    _, module = run
    found = {}
    for split in ("train", "test"):
        examples = split_examples(split)
        ids = sorted(examples)
        images = [to_input(examples[i][0]) for i in ids]
        found[split] = dict(
            ids=ids, labels=np.array([examples[i][1] for i in ids]),
            h=export_outputs(module, images),
            z=export_outputs(module, images, "proj_head_output"))
    return found


# --- 2. the kNN figure ----------------------------------------------------

def test_knn_in_result_json_is_weighted_cosine_knn_of_exported_h(run, digits_h):
    model_dir, _ = run
    result = json.load(open(model_dir / "result.json"))
    train, test = digits_h["train"], digits_h["test"]
    assert len(train["ids"]) == 1437 and len(test["ids"]) == 360
    predicted = weighted_cosine_knn(train["h"], train["labels"], test["h"],
                                    KNN_K, KNN_TEMPERATURE)
    expected = float(np.mean(predicted == test["labels"]))
    # Equal to a tie or two (float32 h from the model vs from the export).
    assert abs(result["eval/knn_top_1_accuracy"] - expected) <= 2 / 360 + 1e-9, (
        result["eval/knn_top_1_accuracy"], expected)


def test_knn_reference_tells_the_wirings_apart(digits_h):
    """The comparison above can see a wrong bank, output, k or temperature:
    each gives an accuracy more than two test examples away."""
    train, test = digits_h["train"], digits_h["test"]

    def accuracy(bank, bank_labels, queries, k=KNN_K, t=KNN_TEMPERATURE):
        return float(np.mean(weighted_cosine_knn(bank, bank_labels, queries, k, t)
                             == test["labels"]))

    right = accuracy(train["h"], train["labels"], test["h"])
    wrong = {
        "z instead of h": accuracy(train["z"], train["labels"], test["z"]),
        "k=200": accuracy(train["h"], train["labels"], test["h"], k=200),
        "bank of 100 train examples": accuracy(train["h"][:100],
                                               train["labels"][:100], test["h"]),
    }
    for name, value in wrong.items():
        assert abs(value - right) > 2 / 360, (name, value, right)


# --- 3. embed rows, ids and labels ------------------------------------------

def read_index(out):
    with open(os.path.join(out, "index.csv"), newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Class folders created in a shuffled order, files of varied sizes and
    names, one nested sub-folder and one unreadable file among them."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    names = {"zebra": 4, "apple": 3, "mango": 5}
    for label in rng.permutation(list(names)):
        for i in rng.permutation(names[label]):
            sub = root / label / ("deep" if i == 1 else "")
            sub.mkdir(parents=True, exist_ok=True)
            shape = (8 + 3 * i, 20 - i, 3)
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            (sub / f"{rng.integers(1000)}_{i}.png").write_bytes(
                tf.io.encode_png(pixels).numpy())
    (root / "apple" / "b_broken.png").write_bytes(b"not a png")
    return root


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_embed_folder_rows_are_the_exports_h_of_their_files(run, folder,
                                                            tmp_path, batch_size):
    model_dir, module = run
    out = str(tmp_path / "emb")
    embed_command.main([f"--model={model_dir}", f"--images={folder}",
                        f"--out={out}", f"--batch_size={batch_size}"])
    vectors, index = np.load(os.path.join(out, "embeddings.npy")), read_index(out)
    assert len(index) == len(vectors) == 12
    files = [r["file"] for r in index]
    assert sorted(files) == sorted(
        str(p) for p in folder.rglob("*.png") if "broken" not in p.name)
    images = [to_input(tf.io.decode_png(tf.io.read_file(f), channels=3))
              for f in files]
    want = export_outputs(module, images)
    for row, entry in enumerate(index):
        assert int(entry["row"]) == row
        np.testing.assert_allclose(vectors[row], want[row], rtol=1e-4, atol=1e-5,
                                   err_msg=f"row {row}: {entry['file']}")
        # The label column is the class folder of that file.
        assert entry["label"] == os.path.relpath(entry["file"], folder).split(os.sep)[0]


@pytest.mark.parametrize("batch_size", [7, 100])
def test_embed_dataset_rows_are_the_exports_h_of_their_ids(run, tmp_path,
                                                           batch_size):
    model_dir, module = run
    out = str(tmp_path / "emb")
    embed_command.main([f"--model={model_dir}", "--dataset=digits",
                        "--split=test[17:67]", f"--out={out}",
                        f"--batch_size={batch_size}"])
    vectors, index = np.load(os.path.join(out, "embeddings.npy")), read_index(out)
    examples = split_examples("test")
    assert len(index) == len(vectors) == 50
    ids = [int(r["id"]) for r in index]
    assert sorted(ids) == list(range(17, 67))  # ids of the split, not rows
    want = export_outputs(module, [to_input(examples[i][0]) for i in ids])
    np.testing.assert_allclose(vectors, want, rtol=1e-4, atol=1e-5)
    assert [r["label"] for r in index] == [str(examples[i][1]) for i in ids]
