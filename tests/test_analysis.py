"""simclr_tf2.analysis: probes, event reading, pictures and the CLI."""

import json
import os
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2.analysis import pictures, probes
from simclr_tf2.data.registry import open_source
from tests import harness

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_logistic_regression_separates_blobs_and_not_noise():
    x, y = harness.blobs(600, 16, 0, separation=6.0)
    assert probes.logistic_regression_top1(x[:400], y[:400], x[400:], y[400:]) > 0.97
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(600, 16))
    chance = probes.logistic_regression_top1(noise[:400], y[:400], noise[400:], y[400:])
    assert chance < 0.5


def _numpy_knn_top1(train_x, train_y, test_x, test_y, k):
    """Majority vote of the k euclidean nearest neighbours (ties: lowest class)."""
    d = ((test_x[:, None, :] - train_x[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(d, axis=1, kind="stable")[:, :k]
    votes = np.stack([np.bincount(train_y[row], minlength=3) for row in nearest])
    return float(np.mean(np.argmax(votes, 1) == test_y))


def test_knn_top1_matches_a_numpy_knn_reading():
    # Overlapping blobs: accuracy well away from 0 and 1, so a wrong
    # neighbour rule or label reading shows.
    x, y = harness.blobs(900, 8, 2, separation=1.0)
    got = probes.knn_top1(x[:600], y[:600], x[600:], y[600:], k=15)
    assert 0.4 < got < 0.95
    assert got == pytest.approx(
        _numpy_knn_top1(x[:600], y[:600], x[600:], y[600:], 15), abs=1e-9)
    with pytest.raises(ValueError):  # k larger than the bank
        probes.knn_top1(x[:10], y[:10], x[600:], y[600:], k=200)


def test_cosine_knn_top1_is_a_similarity_weighted_vote_on_unit_rows():
    # Three training rows, one query: the two nearest by angle disagree, and
    # the vote weights exp(cos / 0.07) decide. Scaling a row (pixels vs
    # features of any norm) must not change the answer.
    train_x = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 5.0]])
    train_y = np.array([0, 1, 1])
    query = np.array([[0.95, 0.31]])  # cos 0.95 to row 0, 0.95 to row 1 ...
    sims = (train_x / np.linalg.norm(train_x, axis=1, keepdims=True)) @ (
        query[0] / np.linalg.norm(query[0]))
    expected = int(np.argmax([np.exp(sims[[0]] / 0.07).sum(),
                              np.exp(sims[[1, 2]] / 0.07).sum()]))
    for k, answer in ((1, int(train_y[np.argmax(sims)])), (3, expected)):
        got = probes.cosine_knn_top1(train_x, train_y, query, np.array([answer]), k=k)
        assert got == 1.0
        assert probes.cosine_knn_top1(100 * train_x, train_y, query,
                                      np.array([1 - answer]), k=k) == 0.0
    x, y = harness.blobs(900, 8, 2, separation=1.0)
    assert 0.4 < probes.cosine_knn_top1(x[:600], y[:600], x[600:], y[600:], k=10) < 1.0


def test_subset_rows_selects_ids_not_positions():
    ids = np.array([10, 11, 12, 13, 14])
    mask = probes.subset_rows(ids, {11, 14, 99})
    np.testing.assert_array_equal(mask, [False, True, False, False, True])


def test_read_scalars_keeps_scalars_in_step_order(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        for step in (20, 10, 30):
            tf.summary.scalar("train/contrast_loss", step / 10.0, step=step)
        tf.summary.image("view", tf.zeros([1, 4, 4, 3]), step=0)
    writer.flush()
    scalars = pictures.read_scalars(str(tmp_path))
    assert set(scalars) == {"train/contrast_loss"}
    steps, values = scalars["train/contrast_loss"]
    np.testing.assert_array_equal(steps, [10, 20, 30])
    np.testing.assert_allclose(values, [1.0, 2.0, 3.0])
    assert pictures.read_scalars(str(tmp_path / "absent")) == {}


def test_training_curves_png(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path / "train"))
    with writer.as_default():
        for step in range(1, 6):
            for tag in ("contrast_loss", "contrast_acc", "supervised_acc",
                        "knn_top_1_accuracy"):
                tf.summary.scalar(f"train/{tag}", 1.0 / step, step=step)
    writer.flush()
    path = pictures.training_curves(str(tmp_path), str(tmp_path / "c.png"))
    height, width, _ = matplotlib.image.imread(path).shape
    assert width > 2 * height  # three panels side by side
    with pytest.raises(ValueError, match="pretraining run"):
        pictures.training_curves(str(tmp_path / "train"), str(tmp_path / "d.png"))


def test_tsne_keeps_well_separated_clusters_apart():
    x, y = harness.blobs(150, 32, 3, separation=8.0)
    points = pictures.tsne_2d(x)
    assert points.shape == (150, 2)
    centres = np.stack([points[y == c].mean(0) for c in range(3)])
    spread = max(np.linalg.norm(points[y == c] - centres[c], axis=1).mean()
                 for c in range(3))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a)]
    assert min(gaps) > 2 * spread


def test_embedding_maps_and_augmented_pairs_write_pngs(tmp_path):
    x, y = harness.blobs(60, 8, 4, separation=5.0)
    path = pictures.embedding_maps([("a", x), ("b", -x)], y, ("p", "q", "r"),
                                   str(tmp_path / "maps.png"))
    assert matplotlib.image.imread(path).shape[1] > 600
    source = open_source("digits")
    path = pictures.augmented_pairs(source, "train", 16, str(tmp_path / "v.png"),
                                    num_images=4)
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image[..., :3].std() > 0.05
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


def test_cli_missing_export_is_one_line_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "simclr_tf2.analysis", "pictures", "--dataset=digits",
         f"--pretrain_dir={tmp_path}", f"--pretrained={tmp_path}/nope",
         f"--untrained={tmp_path}/nope", f"--out={tmp_path}/pics"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "flags.json" in result.stderr.strip().splitlines()[-1]


def _suite_module():
    return harness.benchmark_module("fashion_mnist")


def test_suite_runs_chain_through_the_pretraining_run():
    fashion_mnist = _suite_module()
    for budget in fashion_mnist.BUDGETS:
        runs = dict(fashion_mnist.run_list(budget, "/o"))
        assert list(runs)[0] == "pretrain"
        for name in ("linear_eval_pretrained", "finetune_1pct", "finetune_10pct"):
            assert "--checkpoint=/o/pretrain" in runs[name]
        assert not any(f.startswith("--checkpoint") for f in runs["scratch_1pct"]
                       + runs["scratch_100pct"] + runs["linear_eval_untrained"])
        assert "--label_subset_file=/o/finetune_1pct/label_subset.txt" in runs["scratch_1pct"]
        assert "--teacher=/o/finetune_1pct" in runs["distill_1pct"]
        assert "--checkpoint=/o/pretrain" in runs["distill_1pct"]
        # Linear evaluation trains on whole images, as it is tested.
        assert "--crop_min_area=1.0" in runs["linear_eval_pretrained"]
        assert "--fine_tune_after_block=4" in runs["linear_eval_untrained"]
        command = fashion_mnist.command_for("pretrain", runs["pretrain"], budget, "/o")
        assert "--seed=0" in command and "--dataset=fashion_mnist" in command


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_smoke_suite_end_to_end(tmp_path):
    out = tmp_path / "suite"
    result = subprocess.run(
        [sys.executable, "benchmarks/fashion_mnist.py", "--budget=smoke", f"--out={out}",
         "--with_supcon"],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.load(open(out / "fashion_mnist.json"))
    runs = {row["run"]: row for row in summary["rows"]}
    assert {"pretrain", "finetune_1pct", "scratch_1pct", "distill_1pct",
            "logreg_pixels_100pct", "knn_pixels", "supcon_pretrain",
            "logreg_supcon_100pct", "logreg_supcon_1pct"} <= set(runs)
    assert "--contrastive_loss=supcon" in runs["supcon_pretrain"]["command"]
    for row in summary["rows"]:
        accuracy = row["top1"] if row["top1"] is not None else row["knn_top1"]
        assert 0.0 <= accuracy <= 1.0 and row["command"].startswith("python ")
    for name in ("augmented_views.png", "training_curves.png", "tsne.png"):
        assert (out / "pictures" / name).stat().st_size > 10_000
    assert "| pretrain |" in (out / "fashion_mnist.md").read_text()


def test_suite_supcon_step_is_opt_in_and_mirrors_the_pretraining_run():
    fashion_mnist = _suite_module()
    for budget in fashion_mnist.BUDGETS:
        assert "supcon_pretrain" not in dict(fashion_mnist.run_list(budget, "/o"))
        runs = dict(fashion_mnist.run_list(budget, "/o", with_supcon=True))
        assert runs["supcon_pretrain"] == runs["pretrain"] + ["--contrastive_loss=supcon"]
        assert "supcon_pretrain" in fashion_mnist.WHAT


def test_cli_bad_extra_export_is_one_line_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "simclr_tf2.analysis", "probes", "--dataset=digits",
         f"--pretrained={tmp_path}/a", f"--untrained={tmp_path}/b",
         "--extra=no_equals_sign", f"--out={tmp_path}/p.json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "NAME=EXPORT" in last
