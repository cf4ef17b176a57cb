"""benchmarks/simclr_v2_claims.py: its arms (claims_arms), verdicts and
tables (claims_report), the SVM row (claims_svm), --plan and --only."""

import json
import os
import sys

import pytest

from tests import harness

claims = harness.benchmark_module("simclr_v2_claims")
arms = harness.benchmark_module("claims_arms")
report = harness.benchmark_module("claims_report")
svm = harness.benchmark_module("claims_svm")


def test_claims_runs_depend_only_on_earlier_runs_of_their_seed():
    settings = tuple(arms.DISTILL_SETTINGS)
    for budget in arms.BUDGETS:
        for seed in arms.SEEDS:
            done = set()
            for name, flags in arms.run_list("/o", seed, budget, settings):
                assert name.endswith(f"_s{seed}") and name not in done
                if flags != arms.PROBE:
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
    runs = dict(arms.run_list("/o", 0, "cpu", ("long", "short", "long_random")))
    for pre in ("pre3_s0", "pre2_s0", "pre3_mem_s0", "pre3_small_s0", "pre3_wide_s0"):
        assert "--train_epochs=18" in runs[pre] and "--temperature=0.5" in runs[pre]
    assert "--width_multiplier=0.25" in runs["pre3_s0"]
    assert "--width_multiplier=0.125" in runs["pre3_small_s0"]
    # The wider encoder is fine-tuned at its own width from its own pretraining.
    for fraction in (1, 10):
        wide = runs[f"ft{fraction}_pre3_wide_l1_s0"]
        assert "--width_multiplier=0.5" in wide and "--checkpoint=/o/pre3_wide_s0" in wide
    assert runs["probes_pre3_wide_s0"] == arms.PROBE
    assert "--memory_size=8192" in runs["pre3_mem_s0"]
    assert not any(f.startswith("--memory_size") for f in runs["pre3_s0"])
    assert "--precision=auto" in arms.MODEL
    for fraction in (1, 10):
        assert f"--teacher=/o/ft{fraction}_pre3_l1_s0" in runs[f"distill{fraction}_long_s0"]
        assert "--train_epochs=18" in runs[f"distill{fraction}_long_s0"]
        assert "--train_epochs=3" in runs[f"distill{fraction}_short_s0"]
        assert "--checkpoint=/o/pre3_s0" in runs[f"distill{fraction}_long_s0"]
        assert not any(f.startswith("--checkpoint") for f in runs[f"distill{fraction}_long_random_s0"])
        # Only the label arm reads labels, and only its teacher's subset.
        assert not any(f.startswith(("--label_subset_file", "--distill_label_weight"))
                       for f in runs[f"distill{fraction}_long_s0"])
    labelled = dict(arms.run_list("/o", 0, "cpu", ("long_labels",)))
    for fraction in (1, 10):
        flags = labelled[f"distill{fraction}_long_labels_s0"]
        assert "--distill_label_weight=1" in flags
        assert f"--label_subset_file=/o/ft{fraction}_pre3_l1_s0/label_subset.txt" in flags
    # Fine-tuning and distillation see whole images; long_crops crops them.
    for name in ("ft1_pre3_l1_s0", "ft10_pre2_h_s0", "distill1_long_s0", "distill10_short_s0"):
        assert "--crop_min_area=1.0" in runs[name], name
    crops = dict(arms.run_list("/o", 0, "cpu", ("long_crops",)))["distill1_long_crops_s0"]
    assert "--crop_min_area=0.35" in crops and "--crop_min_area=1.0" not in crops
    assert not any(f.startswith("--distill_teacher_input") for f in crops)
    # long_noisy: the same crops for the student, whole images for the teacher.
    noisy = dict(arms.run_list("/o", 0, "cpu", ("long_noisy",)))["distill1_long_noisy_s0"]
    assert "--crop_min_area=0.35" in noisy
    assert "--distill_teacher_input=whole_image" in noisy
    assert "--teacher=/o/ft1_pre3_l1_s0" in noisy
    assert "--crop_min_area=1.0" not in runs["pre3_s0"]
    # The smaller student learns from the first setting's recipe.
    assert "--train_epochs=18" in runs["distill1_small_s0"]
    assert "--checkpoint=/o/pre3_small_s0" in runs["distill1_small_s0"]
    # Label efficiency: the same 600 ids, and all labels, from random init.
    assert "--label_subset_file=/o/ft1_pre3_l1_s0/label_subset.txt" in runs["scratch1_s0"]
    for name in ("scratch1_s0", "scratch100_s0"):
        assert not any(f.startswith("--checkpoint") for f in runs[name])
    # Seeds are interleaved, step by step.
    names = [name for name, _ in arms.all_runs("/o", (0, 1, 2))]
    assert names[:4] == ["pre3_s0", "pre3_s1", "pre3_s2", "ft1_pre3_l1_s0"]


def test_verdicts_use_the_seeds_that_measured_both_arms():
    def run(top1):
        return {"top1": top1}
    rows = [("two seeds", "distill1_long_t2", "ft1_pre3_l1", "top1"),
            ("one seed", "distill1_short", "ft1_pre3_l1", "top1")]
    results = {"ft1_pre3_l1_s0": run(0.80), "ft1_pre3_l1_s1": run(0.81),
               "ft1_pre3_l1_s2": run(0.82),
               "distill1_long_t2_s0": run(0.83), "distill1_long_t2_s1": run(0.84),
               "distill1_short_s0": run(0.85)}
    two, one = report.verdict_rows(results, seeds=(0, 1, 2), rows=rows).splitlines()[2:]
    assert "+3.0 (+3.0, +3.0)" in two and "(n=2)" in two and two.endswith("| holds |")
    assert one.endswith("| not measured |")


def test_claims_distillation_settings_are_selectable_and_unknown_ones_refused():
    args = claims.parse_args(["--seeds=0,2", "--distill_settings=short,long_t2"])
    assert args.seeds == (0, 2) and args.distill_settings == ("short", "long_t2")
    names = [name for name, _ in arms.run_list("/o", 0, "cpu", args.distill_settings)]
    assert "distill1_short_s0" in names and "distill10_long_t2_s0" in names
    assert not any(name.startswith("distill1_long_s") for name in names)
    for bad in ("--distill_settings=nope", "--distill_settings=", "--seeds=a"):
        with pytest.raises(SystemExit):
            claims.parse_args([bad])


def test_a_second_round_is_taught_by_the_first_rounds_student_of_its_seed(capsys):
    runs = dict(arms.run_list("/o", 1, "cpu", ("long", "long_noisy", "noisy_round2")))
    for fraction in (1, 10):
        flags = runs[f"distill{fraction}_noisy_round2_s1"]
        assert f"--teacher=/o/distill{fraction}_long_noisy_s1" in flags
        assert "--checkpoint=/o/pre3_s1" in flags
        assert "--distill_teacher_input=whole_image" in flags
    noisier = dict(arms.run_list("/o", 0, "cpu", ("long_noisier",)))
    assert "--crop_min_area=0.2" in noisier["distill1_long_noisier_s0"]
    assert "--teacher=/o/ft1_pre3_l1_s0" in noisier["distill1_long_noisier_s0"]
    longer = dict(arms.run_list("/o", 0, "cpu", ("longer_noisy",)))["distill1_longer_noisy_s0"]
    assert "--train_epochs=36" in longer and "--crop_min_area=0.35" in longer
    assert arms.teaching_setting("noisy_round2") == "long_noisy"
    assert arms.teaching_setting("long_noisy") is None
    # The teaching setting has to run first: named after it, or refused.
    for order in ("noisy_round2", "noisy_round2,long_noisy"):
        with pytest.raises(SystemExit):
            claims.parse_args([f"--distill_settings={order}"])
        assert "list long_noisy before noisy_round2" in capsys.readouterr().err


def test_claims_verdicts_read_paired_differences():

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
            for line in report.verdict_rows(results, seeds=(0, 1)).splitlines()[2:]}
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
    rows = report.verdict_rows(results, seeds=(0, 1)).splitlines()
    assert any("10% labels" in r and r.endswith("same sign, within the seed spread |")
               for r in rows)


def test_claims_svm_row_is_computed_once_per_out_and_its_settings(tmp_path):
    x, y = harness.blobs(90, 4, 0, separation=6.0)
    calls = []

    def load(settings, data_dir):
        calls.append(settings["train_examples"])
        n = settings["train_examples"]
        return x[:n], y[:n], x[60:], y[60:]
    settings = svm.svm_settings(60)
    assert settings["C"] == 10.0 and settings["train_split"] == "train"
    row = svm.svm_row(str(tmp_path), settings, load)
    assert row["top1"] > 0.9 and row["train_examples"] == 60 and calls == [60]
    assert svm.svm_row(str(tmp_path), settings, load) == row and calls == [60]
    svm.svm_row(str(tmp_path), svm.svm_settings(30), load)  # Other settings.
    assert calls == [60, 30]
    smoke = svm.svm_settings(2000, "smoke")
    assert smoke["train_split"] == "train[:2048]" and smoke["eval_split"] == "test[:512]"


def test_claims_plan_prints_every_command_and_the_cost(capsys):
    claims.main(["--out=/o", "--plan", "--seeds=0,1", "--distill_settings=long",
                 "--images_per_s=300"])
    lines = capsys.readouterr().out.splitlines()
    runs = arms.all_runs("/o", (0, 1), "cpu", ("long",))
    assert len(lines) == len(runs) + 3  # + the SVM, the kinds and the estimate.
    assert lines[0].startswith("  1 pre3_s0 [18.0 eq]: python run.py ")
    assert "--model_dir=/o/pre3_s0" in lines[0]
    assert any("probes_pre3_s1" in line and "simclr_tf2.analysis probes" in line
               for line in lines)
    assert "svm_pixels: SVC(C=10.0" in lines[-3]
    assert lines[-2].startswith("by kind: pretraining ")
    # 5 pretrainings of 18 epochs per seed (pre3, pre2, pre3_mem, pre3_small,
    # pre3_wide), two seeds.
    assert "(180 of them pretraining epochs" in lines[-1]
    # A distillation reads every image, also when it reads a subset's labels.
    labelled = dict(arms.run_list("/o", 0, "cpu", ("long", "long_labels")))
    assert claims.cost("d", labelled["distill1_long_labels_s0"]) == \
        claims.cost("d", labelled["distill1_long_s0"])
    assert claims.cost("s", labelled["scratch1_s0"])[0] < 1  # 600 images.
    # The teacher's pass costs at the teacher's width: the 1/2-width teacher's
    # 1/4-width student costs more than a 1/4-width teacher's.
    noised = dict(arms.run_list("/o", 0, "cpu", ("long_noisy",)))
    own, from_wide = (claims.cost("d", noised[f"distill1_{tag}long_noisy_s0"])[0]
                      for tag in ("", "from_wide_"))
    assert from_wide == pytest.approx(own + 9 * (3.3 - 1) / 3)  # 18 epochs / 2 views.
    total = sum(claims.cost(name, flags)[0] for name, flags in runs)
    steps = sum(flags != arms.PROBE for _, flags in runs)
    hours = (total * 60000 / 300 + steps * claims.STEP_OVERHEAD_S) / 3600
    assert lines[-1].startswith(f"estimate: {total:.0f} pretraining-epoch equivalents")
    assert lines[-1].endswith(f"{hours:.1f} h, plus the SVM")


def test_claims_suite_rows_and_images_per_s(tmp_path):
    results = {f"ft1_pre3_l1_s{s}": {"top1": v, "seconds": 10, "command": f"c{s}"}
               for s, v in ((0, 0.85), (1, 0.87), (2, 0.86))}
    results.update({"distill1_long_s0": {"top1": 0.88}, "distill1_long_s2": {"top1": 0.86}})
    rows = {row["run"]: row for row in report.suite_rows(results)}
    assert abs(rows["finetune_1pct"]["top1"] - 0.86) < 1e-9
    assert rows["finetune_1pct"]["command"] == ["c0", "c1", "c2"]
    assert rows["distill_1pct"]["per_seed"] == [0.88, None, 0.86]
    assert abs(rows["distill_1pct"]["top1"] - 0.87) < 1e-9
    assert rows["scratch_100pct"]["top1"] is None
    log = tmp_path / "pre3_s0.log"
    log.write_text("step 100/300 | 50.0 images/s | loss 1\n"
                   "step 200/300 | 210.0 images/s | loss 1\n"
                   "step 300/300 | 230.0 images/s | loss 1\n")
    assert report.images_per_s(str(log)) == 220.0
    assert report.images_per_s(str(tmp_path / "missing.log")) is None


def test_claims_only_runs_the_named_arms_and_reports_the_rest(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "pre3_s0.done.json").write_text(json.dumps({"command": "python run.py x",
                                                       "top1": 0.5}))
    ran = []

    def run_one(name, command, out):  # Leaves a checkpoint, as run.py does.
        ran.append(name)
        os.makedirs(os.path.join(out, name))
        open(os.path.join(out, name, f"{claims.suite.rundir.CHECKPOINT_PREFIX}-117.index"),
             "w").close()
        return {"top1": 0.6}

    monkeypatch.setattr(claims.suite, "run_one", run_one)
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


def _fake_run(model_dir, top1):
    """A command that 'trains' in model_dir: records whether it found an
    earlier checkpoint there, then writes a checkpoint and result.json."""
    script = (
        "import json, os, sys\n"
        f"d = {model_dir!r}\n"
        "os.makedirs(d, exist_ok=True)\n"
        "resumed = os.path.exists(os.path.join(d, 'ckpt'))\n"
        "open(os.path.join(d, 'ckpt'), 'w').write('x')\n"
        f"json.dump({{'eval/label_top_1_accuracy': {top1}, 'eval/knn_top_1_accuracy': 0.5,"
        " 'global_step': 1, 'resumed': resumed}, open(os.path.join(d, 'result.json'), 'w'))\n")
    return [sys.executable, "-c", script]


def test_a_changed_command_does_not_resume_the_old_runs_checkpoint(tmp_path, capsys):
    suite = claims.suite
    out, name = str(tmp_path), "ft1_pre3_l1_s0"
    model_dir = os.path.join(out, name)
    first = suite.run_one(name, _fake_run(model_dir, 0.8), out)
    assert first["top1"] == 0.8
    assert suite.run_one(name, _fake_run(model_dir, 0.8), out) == first  # Reused.
    second = suite.run_one(name, _fake_run(model_dir, 0.9), out)  # Another command.
    assert second["top1"] == 0.9
    assert json.load(open(os.path.join(model_dir, "result.json")))["resumed"] is False
    aside = sorted(p for p in os.listdir(out) if p.startswith(name + ".before-"))
    assert aside[1:] == [aside[0] + ".done.json", aside[0] + ".log"]  # Kept, not deleted.
    assert json.load(open(os.path.join(out, aside[1])))["top1"] == 0.8
    assert os.path.exists(os.path.join(out, aside[0], "ckpt"))
    assert "written by another command" in capsys.readouterr().out
    assert second["resumed_at_step"] == 0
    # An interrupted run of the same command resumes from its checkpoint;
    # its row says at which step, and its log keeps both calls' output.
    os.remove(os.path.join(out, name + ".done.json"))
    open(os.path.join(model_dir, "ckpt-117.index"), "w").close()
    open(os.path.join(model_dir, "ckpt-9.index"), "w").close()
    resumed = suite.run_one(name, _fake_run(model_dir, 0.9), out)
    assert json.load(open(os.path.join(model_dir, "result.json")))["resumed"] is True
    assert resumed["resumed_at_step"] == 117
    assert "(resumed at step 117)" in capsys.readouterr().out
    log = open(os.path.join(out, name + ".log")).read()
    assert log.count("== ") == 2  # The second command's two calls.


def test_a_killed_calls_seconds_count_in_the_runs_total(tmp_path, monkeypatch):
    suite = claims.suite
    monkeypatch.setattr(suite, "PROGRESS_EVERY_S", 0.25)
    out, name = str(tmp_path), "pre3_s0"
    model_dir = os.path.join(out, name)
    marker = os.path.join(out, "fail")
    open(marker, "w").close()
    # While the marker exists the run trains for 2.5 s and then dies.
    command = _fake_run(model_dir, 0.8)
    command[-1] = (f"import os, sys, time\nif os.path.exists({marker!r}):\n"
                   "    time.sleep(2.5); sys.exit(3)\n" + command[-1])
    with pytest.raises(SystemExit, match="pre3_s0 failed"):
        suite.run_one(name, command, out)
    os.remove(marker)
    row = suite.run_one(name, command, out)
    assert row["last_call_seconds"] <= 1
    assert row["seconds"] >= 2 + row["last_call_seconds"]
    # Another command starts its count afresh.
    assert suite.run_one(name, _fake_run(model_dir, 0.9), out)["seconds"] <= 1


def test_an_interrupted_suite_leaves_no_run_behind(tmp_path, monkeypatch):
    suite = claims.suite
    monkeypatch.setattr(suite, "PROGRESS_EVERY_S", 0.25)
    pid_file, finished = str(tmp_path / "pid"), str(tmp_path / "finished")
    command = [sys.executable, "-c",
               f"import os, time; open({pid_file!r}, 'w').write(str(os.getpid())); "
               f"time.sleep(20); open({finished!r}, 'w')"]

    def interrupt(seconds):
        if os.path.exists(pid_file):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        suite._call_logged("pre3_s0", command, str(tmp_path), on_progress=interrupt)
    with pytest.raises(ProcessLookupError):  # Killed and reaped...
        os.kill(int(open(pid_file).read()), 0)
    assert not os.path.exists(finished)  # ...not waited for.


def test_a_step_whose_input_model_is_missing_fails_with_one_line(tmp_path, monkeypatch, capsys):
    """A pretraining restored from a record has no folder: the fine-tune
    that starts from it is refused before run.py starts, the others run."""
    out = tmp_path / "out"
    out.mkdir()
    restored = claims.command_for("pre3_mem_s0", [], str(out), None)
    (out / "pre3_mem_s0.done.json").write_text(json.dumps(
        {"command": claims.suite._display(restored), "top1": 0.8}))
    monkeypatch.setattr(claims, "command_for", lambda name, flags, *rest: (
        restored if name == "pre3_mem_s0" else ["python", "run.py", *flags]))
    ran = []
    monkeypatch.setattr(claims.suite, "run_one",
                        lambda name, command, out: ran.append(name) or {"top1": 0.6})
    with pytest.raises(SystemExit, match="2 steps failed"):
        claims.main([f"--out={out}", "--seeds=0", "--distill_settings=long",
                     "--only=pre3_mem,ft1_pre3_mem_l1,scratch1"])
    # The restored pretraining is reused (run_one returns its record); scratch1
    # reads ft1_pre3_l1's label subset, missing too.
    assert ran == ["pre3_mem_s0"]
    printed = capsys.readouterr().out
    assert (f"[ft1_pre3_mem_l1_s0] failed: --checkpoint={out}/pre3_mem_s0 "
            "(no checkpoint or export there): the step that writes it failed") in printed
    assert f"[scratch1_s0] failed: --label_subset_file={out}/ft1_pre3_l1_s0" in printed
    # With the model there (or a checkpoint), the fine-tune runs.
    (out / "pre3_mem_s0" / "saved_model").mkdir(parents=True)
    claims.main([f"--out={out}", "--seeds=0", "--distill_settings=long",
                 "--only=ft1_pre3_mem_l1"])
    assert ran == ["pre3_mem_s0", "ft1_pre3_mem_l1_s0"]
    assert claims.missing_input([f"--label_subset_file={out}/none.txt"]) == (
        f"--label_subset_file={out}/none.txt (no such file)")
    assert claims.missing_input(["--teacher=" + str(out / "pre3_mem_s0")]) is None
