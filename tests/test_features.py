"""analysis/features.py on a stand-in export (no training needed)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2.analysis import features
from simclr_tf2.data import pipeline, registry
from simclr_tf2.errors import ConfigError

SIZE = 8


class _MeanColourModule(tf.Module):
    """Export stand-in: "final_avg_pool" = per-channel mean, times 2."""

    @tf.function
    def __call__(self, images, trainable=False, training=None):
        return {"final_avg_pool": 2.0 * tf.reduce_mean(images, axis=[1, 2])}


def _export(tmp_path):
    path = str(tmp_path / "export")
    module = _MeanColourModule()
    spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    module.__call__.get_concrete_function(spec, training=False)
    tf.saved_model.save(module, path)
    os.makedirs(os.path.join(path, "assets.extra"))
    with open(os.path.join(path, "assets.extra", "simclr_export.json"), "w") as f:
        json.dump({"image_size": SIZE}, f)
    return path


def test_split_features_are_the_exports_outputs_in_split_order(tmp_path):
    path = _export(tmp_path)
    assert features.export_image_size(path) == SIZE
    source = registry.open_source("digits")
    got, labels = features.split_features(path, source, "test", batch_size=16,
                                          limit=40)
    images, want_labels = [], []
    for batch in pipeline.build_eval_dataset(source, "test", 40, SIZE).take(1):
        images, want_labels = batch["image"].numpy(), batch["label"].numpy()
    assert got.shape == (40, 3)
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_allclose(got, 2.0 * images.mean(axis=(1, 2)), atol=1e-6)


def test_split_pixels_and_a_foreign_directory(tmp_path):
    source = registry.open_source("digits")
    pixels, labels, ids = features.split_pixels(source, "test")
    assert pixels.shape[0] == labels.shape[0] == ids.shape[0] > 300
    assert 0.0 <= pixels.min() and pixels.max() <= 1.0 and pixels.max() > 0.5
    assert len(np.unique(ids)) == len(ids)
    assert set(np.unique(labels)) == set(range(10))
    with pytest.raises(ConfigError, match="not a simclr_tf2 export"):
        features.export_image_size(str(tmp_path))


def test_probes_cli_writes_every_row(tmp_path):
    from simclr_tf2.analysis import __main__ as analysis_cli
    from simclr_tf2.analysis import probes
    path = _export(tmp_path)
    subset_file = tmp_path / "label_subset.txt"
    source = registry.open_source("digits")
    _, train_y, train_ids = features.split_pixels(source, "train")
    subset_file.write_text("\n".join(str(i) for i in train_ids[:100]) + "\n")
    out = tmp_path / "probes" / "p.json"
    analysis_cli.main(["probes", "--dataset=digits", f"--pretrained={path}",
                       f"--untrained={path}", f"--extra=again={path}",
                       f"--label_subset_file={subset_file}", f"--out={out}"])
    rows = {r["run"]: r for r in json.load(open(out))["rows"]}
    inputs = ("pixels", "pretrained", "untrained", "again")
    assert set(rows) == ({f"logreg_{n}_{p}" for n in inputs for p in ("100pct", "1pct")}
                         | {f"knn{k}_{n}" for n in inputs for k in (10, 200)}
                         | {"knn_pixels"})
    assert "100 labels" in rows["logreg_pixels_1pct"]["what"]
    # The rows hold the probes' own numbers on the same inputs.
    train_f, _ = features.split_features(path, source, "train")
    test_f, test_y = features.split_features(path, source, "test")
    assert rows["logreg_pretrained_100pct"]["top1"] == probes.logistic_regression_top1(
        train_f, train_y, test_f, test_y)
    assert rows["logreg_pretrained_100pct"]["top1"] == rows["logreg_again_100pct"]["top1"]
    assert rows["knn10_pretrained"]["knn_top1"] == probes.cosine_knn_top1(
        train_f, train_y, test_f, test_y, k=10)
    # Pixels of digits are easy for a linear probe; 3 mean colours are not.
    assert rows["logreg_pixels_100pct"]["top1"] > 0.85
    assert rows["logreg_pretrained_100pct"]["top1"] < rows["logreg_pixels_100pct"]["top1"]
    assert 0.5 < rows["knn_pixels"]["knn_top1"] <= 1.0
    # A second probe into the same folder reuses the split-only pixel rows
    # (the file beside --out) and still fits its own subset's row.
    (tmp_path / "probes" / "pixel_probes_digits_train_test.json").write_text(json.dumps(
        {"rows": [dict(rows["logreg_pixels_100pct"], top1=0.123)]}))
    again = tmp_path / "probes" / "q.json"
    analysis_cli.main(["probes", "--dataset=digits", f"--pretrained={path}",
                       f"--label_subset_file={subset_file}", f"--out={again}"])
    rows2 = {r["run"]: r for r in json.load(open(again))["rows"]}
    assert rows2["logreg_pixels_100pct"]["top1"] == 0.123
    assert rows2["logreg_pixels_1pct"]["top1"] == rows["logreg_pixels_1pct"]["top1"]
    assert "untrained" not in " ".join(rows2)
