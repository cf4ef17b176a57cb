"""simclr_tf2.analysis: probes, event reading, pictures and the CLI."""

import importlib
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blobs(n, d, seed, separation):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    centres = rng.normal(size=(3, d)) * separation
    return (centres[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


def test_logistic_regression_separates_blobs_and_not_noise():
    x, y = _blobs(600, 16, 0, separation=6.0)
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
    x, y = _blobs(900, 8, 2, separation=1.0)
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
    x, y = _blobs(900, 8, 2, separation=1.0)
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
    x, y = _blobs(150, 32, 3, separation=8.0)
    points = pictures.tsne_2d(x)
    assert points.shape == (150, 2)
    centres = np.stack([points[y == c].mean(0) for c in range(3)])
    spread = max(np.linalg.norm(points[y == c] - centres[c], axis=1).mean()
                 for c in range(3))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a)]
    assert min(gaps) > 2 * spread


def test_embedding_maps_and_augmented_pairs_write_pngs(tmp_path):
    x, y = _blobs(60, 8, 4, separation=5.0)
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


def _benchmark_module(name):
    """benchmarks/<name>.py, imported as a module."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def _suite_module():
    return _benchmark_module("fashion_mnist")


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


def _claims_module():
    return _benchmark_module("simclr_v2_claims")


def test_claims_runs_depend_only_on_earlier_runs_of_their_seed():
    claims = _claims_module()
    settings = tuple(claims.DISTILL_SETTINGS)
    for budget in claims.BUDGETS:
        for seed in claims.SEEDS:
            done = set()
            for name, flags in claims.run_list("/o", seed, budget, settings):
                assert name.endswith(f"_s{seed}") and name not in done
                if flags != claims.PROBE:
                    for flag in flags:
                        if flag.startswith(("--checkpoint=", "--teacher=")):
                            assert os.path.basename(flag.split("=", 1)[1]) in done, (name, flag)
                        if flag.startswith("--label_subset_file="):
                            assert flag.split("/")[-2] in done, (name, flag)
                else:  # A probe reads its pretraining and the 1% fine-tune's subset.
                    pre = name[len("probes_"):]
                    assert {pre, f"ft1_pre3_l1_s{seed}"} <= done, name
                done.add(name)


def test_claims_arms_cover_the_budget_and_every_distillation_setting():
    claims = _claims_module()
    runs = dict(claims.run_list("/o", 0, "cpu", ("long", "short", "long_random")))
    for pre in ("pre3_s0", "pre2_s0", "pre3_mem_s0", "pre3_small_s0"):
        assert "--train_epochs=18" in runs[pre] and "--temperature=0.5" in runs[pre]
    assert "--width_multiplier=0.25" in runs["pre3_s0"]
    assert "--width_multiplier=0.125" in runs["pre3_small_s0"]
    assert "--memory_size=8192" in runs["pre3_mem_s0"]
    assert not any(f.startswith("--memory_size") for f in runs["pre3_s0"])
    assert "--precision=auto" in claims.MODEL
    for fraction in (1, 10):
        assert f"--teacher=/o/ft{fraction}_pre3_l1_s0" in runs[f"distill{fraction}_long_s0"]
        assert "--train_epochs=18" in runs[f"distill{fraction}_long_s0"]
        assert "--train_epochs=3" in runs[f"distill{fraction}_short_s0"]
        assert "--checkpoint=/o/pre3_s0" in runs[f"distill{fraction}_long_s0"]
        assert not any(f.startswith("--checkpoint") for f in runs[f"distill{fraction}_long_random_s0"])
        # Only the label arm reads labels, and only its teacher's subset.
        assert not any(f.startswith(("--label_subset_file", "--distill_label_weight"))
                       for f in runs[f"distill{fraction}_long_s0"])
    labelled = dict(claims.run_list("/o", 0, "cpu", ("long_labels",)))
    for fraction in (1, 10):
        flags = labelled[f"distill{fraction}_long_labels_s0"]
        assert "--distill_label_weight=1" in flags
        assert f"--label_subset_file=/o/ft{fraction}_pre3_l1_s0/label_subset.txt" in flags
    # The smaller student learns from the first setting's recipe.
    assert "--train_epochs=18" in runs["distill1_small_s0"]
    assert "--checkpoint=/o/pre3_small_s0" in runs["distill1_small_s0"]
    # Label efficiency: the same 600 ids, and all labels, from random init.
    assert "--label_subset_file=/o/ft1_pre3_l1_s0/label_subset.txt" in runs["scratch1_s0"]
    for name in ("scratch1_s0", "scratch100_s0"):
        assert not any(f.startswith("--checkpoint") for f in runs[name])
    # Seeds are interleaved, step by step.
    names = [name for name, _ in claims.all_runs("/o", (0, 1, 2))]
    assert names[:4] == ["pre3_s0", "pre3_s1", "pre3_s2", "ft1_pre3_l1_s0"]


def test_claims_distillation_settings_are_selectable_and_unknown_ones_refused():
    claims = _claims_module()
    args = claims.parse_args(["--seeds=0,2", "--distill_settings=short,long_t2"])
    assert args.seeds == (0, 2) and args.distill_settings == ("short", "long_t2")
    names = [name for name, _ in claims.run_list("/o", 0, "cpu", args.distill_settings)]
    assert "distill1_short_s0" in names and "distill10_long_t2_s0" in names
    assert not any(name.startswith("distill1_long_s") for name in names)
    for bad in ("--distill_settings=nope", "--distill_settings=", "--seeds=a"):
        with pytest.raises(SystemExit):
            claims.parse_args([bad])


def test_claims_verdicts_read_paired_differences():
    claims = _claims_module()

    def run(top1):
        return {"top1": top1}
    results = {"ft1_pre3_l1_s0": run(0.82), "ft1_pre3_l1_s1": run(0.83),
               "ft1_pre2_h_s0": run(0.80), "ft1_pre2_h_s1": run(0.805),
               "ft1_pre3_h_s0": run(0.815), "ft1_pre3_h_s1": run(0.84),
               "scratch1_s0": run(0.815), "scratch1_s1": run(0.83),
               "probes_pre3_s0": {"values": {"logreg_pretrained_100pct": 0.88}},
               "probes_pre3_s1": {"values": {"logreg_pretrained_100pct": 0.885}},
               "svm_pixels": {"top1": 0.897}}
    rows = {line.split(" | ")[0].lstrip("| "): line
            for line in claims.verdict_rows(results, seeds=(0, 1)).splitlines()[2:]}
    head = rows["1: 3-layer head from layer 1 > 2-layer head from h, 1% labels"]
    assert "+2.2 (+2.0, +2.5)" in head and head.endswith("| holds |")
    mixed = rows["1: 3-layer head, from layer 1 > from h, 1% labels"]
    assert "(+0.5, -1.0)" in mixed and mixed.endswith("| does not hold |")
    small = rows["headline: 1% labels fine-tuned from layer 1 > supervised on the same 600"]
    assert "(+0.5, +0.0)" in small and small.endswith("| does not hold |")
    svm = rows["L-BFGS on h > RBF-SVM on raw pixels, all labels"]
    assert "(-1.7, -1.2)" in svm and svm.endswith("| does not hold |")
    assert rows["4: memory > no memory, 1% labels (fine-tuned)"].endswith("| not measured |")
    # Within the spread: both seeds positive, mean below the larger half-range.
    results.update({"ft10_pre3_l1_s0": run(0.85), "ft10_pre3_l1_s1": run(0.87),
                    "ft10_pre2_h_s0": run(0.845), "ft10_pre2_h_s1": run(0.86)})
    rows = claims.verdict_rows(results, seeds=(0, 1)).splitlines()
    assert any("10% labels" in r and r.endswith("same sign, within the seed spread |")
               for r in rows)


def test_claims_svm_row_is_computed_once_per_out_and_its_settings(tmp_path):
    claims = _claims_module()
    x, y = _blobs(90, 4, 0, separation=6.0)
    calls = []

    def load(settings, data_dir):
        calls.append(settings["train_examples"])
        n = settings["train_examples"]
        return x[:n], y[:n], x[60:], y[60:]
    settings = claims.svm_settings(60)
    assert settings["C"] == 10.0 and settings["train_split"] == "train"
    row = claims.svm_row(str(tmp_path), settings, load)
    assert row["top1"] > 0.9 and row["train_examples"] == 60 and calls == [60]
    assert claims.svm_row(str(tmp_path), settings, load) == row and calls == [60]
    claims.svm_row(str(tmp_path), claims.svm_settings(30), load)  # Other settings.
    assert calls == [60, 30]
    smoke = claims.svm_settings(2000, "smoke")
    assert smoke["train_split"] == "train[:2048]" and smoke["eval_split"] == "test[:512]"


def test_claims_plan_prints_every_command_and_the_cost(capsys):
    claims = _claims_module()
    claims.main(["--out=/o", "--plan", "--seeds=0,1", "--distill_settings=long",
                 "--images_per_s=300"])
    lines = capsys.readouterr().out.splitlines()
    runs = claims.all_runs("/o", (0, 1), "cpu", ("long",))
    assert len(lines) == len(runs) + 3  # + the SVM, the kinds and the estimate.
    assert lines[0].startswith("  1 pre3_s0 [18.0 eq]: python run.py ")
    assert "--model_dir=/o/pre3_s0" in lines[0]
    assert any("probes_pre3_s1" in line and "simclr_tf2.analysis probes" in line
               for line in lines)
    assert "svm_pixels: SVC(C=10.0" in lines[-3]
    assert lines[-2].startswith("by kind: pretraining ")
    # 8 pretrainings of 18 epochs (3 at 1/4 width, the small one at half cost,
    # the memory at 1.3x) per seed.
    assert "(144 of them pretraining epochs" in lines[-1]
    total = sum(claims.cost(name, flags)[0] for name, flags in runs)
    steps = sum(flags != claims.PROBE for _, flags in runs)
    hours = (total * 60000 / 300 + steps * claims.STEP_OVERHEAD_S) / 3600
    assert lines[-1].startswith(f"estimate: {total:.0f} pretraining-epoch equivalents")
    assert lines[-1].endswith(f"{hours:.1f} h, plus the SVM")


def test_claims_suite_rows_and_images_per_s(tmp_path):
    claims = _claims_module()
    results = {f"ft1_pre3_l1_s{s}": {"top1": v, "seconds": 10, "command": f"c{s}"}
               for s, v in ((0, 0.85), (1, 0.87), (2, 0.86))}
    results.update({"distill1_long_s0": {"top1": 0.88}, "distill1_long_s2": {"top1": 0.86}})
    rows = {row["run"]: row for row in claims.suite_rows(results)}
    assert abs(rows["finetune_1pct"]["top1"] - 0.86) < 1e-9
    assert rows["finetune_1pct"]["command"] == ["c0", "c1", "c2"]
    assert rows["distill_1pct"]["per_seed"] == [0.88, None, 0.86]
    assert abs(rows["distill_1pct"]["top1"] - 0.87) < 1e-9
    assert rows["scratch_100pct"]["top1"] is None
    log = tmp_path / "pre3_s0.log"
    log.write_text("step 100/300 | 50.0 images/s | loss 1\n"
                   "step 200/300 | 210.0 images/s | loss 1\n"
                   "step 300/300 | 230.0 images/s | loss 1\n")
    assert claims.images_per_s(str(log)) == 220.0
    assert claims.images_per_s(str(tmp_path / "missing.log")) is None


def test_claims_only_runs_the_named_arms_and_reports_the_rest(tmp_path, monkeypatch, capsys):
    claims = _claims_module()
    out = tmp_path / "out"
    out.mkdir()
    (out / "pre3_s0.done.json").write_text(json.dumps({"command": "python run.py x",
                                                       "top1": 0.5}))
    ran = []
    monkeypatch.setattr(claims.suite, "run_one",
                        lambda name, command, out: ran.append(name) or {"top1": 0.6})
    claims.main([f"--out={out}", "--seeds=0", "--distill_settings=long",
                 "--only=pre3_mem,ft1_pre3_mem_l1"])
    assert ran == ["pre3_mem_s0", "ft1_pre3_mem_l1_s0"]
    summary = json.loads((out / "claims.json").read_text())
    assert set(summary["runs"]) == {"pre3_s0", "pre3_mem_s0", "ft1_pre3_mem_l1_s0"}
    assert "pre3_s0: python run.py x" in (out / "commands.txt").read_text()
    assert "svm_pixels" not in summary["runs"]  # Only when named or with the whole suite.
    rows = json.loads((out / "fashion_mnist.json").read_text())["rows"]
    assert {"finetune_1pct", "distill_1pct"} <= {row["run"] for row in rows}
    with pytest.raises(SystemExit):
        claims.main([f"--out={out}", "--only=nope"])
