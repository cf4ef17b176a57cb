"""benchmarks/claims_restore.py: the claims suite's recorded results written
back on a machine without the runs' folders (--resume_from)."""

import json

import pytest

from tests import harness

claims = harness.benchmark_module("simclr_v2_claims")
report = harness.benchmark_module("claims_report")

restore = harness.benchmark_module("claims_restore")


def _recorded_suite(path, out):
    """A claims.json as the suite writes it, its runs made under `out`."""
    runs = {
        "pre3_s0": {"run": "pre3_s0", "top1": 0.85, "seconds": 1800,
                    "command": f"python run.py --seed=0 --model_dir={out}/pre3_s0"},
        "ft1_pre3_l1_s0": {"run": "ft1_pre3_l1_s0", "top1": 0.83, "seconds": 200,
                           "command": f"python run.py --train_mode=finetune --seed=0 "
                                      f"--model_dir={out}/ft1_pre3_l1_s0 --label_fraction=0.01"},
        "scratch1_s0": {"run": "scratch1_s0", "top1": 0.68, "seconds": 300,
                        "command": f"python run.py --train_mode=finetune --seed=0 "
                                   f"--model_dir={out}/scratch1_s0 --label_fraction=0.01 "
                                   f"--label_subset_file={out}/ft1_pre3_l1_s0/label_subset.txt"},
        "probes_pre3_s0": {"run": "probes_pre3_s0", "values": {"knn10_pixels": 0.85},
                           "command": f"python -m simclr_tf2.analysis probes "
                                      f"--out={out}/probes_pre3_s0.json"},
        "svm_pixels": {"top1": 0.89, "command": "SVC(C=10.0) on 60000 x 784 pixels"}}
    path.write_text(json.dumps({"runs": runs, "images_per_s": {"pre3_s0": 620.0,
                                                                "pre3_mem_s0": None}}))
    return runs


def test_restore_reuses_recorded_results_and_rechooses_label_subsets(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    runs = _recorded_suite(tmp_path / "claims.json", out)
    # A result already in OUT is newer than the record: it stays.
    (out / "pre3_s0.done.json").write_text(json.dumps({"command": "kept", "top1": 0.9}))
    subsets = []
    restored = restore.restore(str(tmp_path / "claims.json"), str(out),
                               write_subset=lambda d, flags: subsets.append((d, flags)))
    assert sorted(restored) == ["ft1_pre3_l1_s0", "probes_pre3_s0", "scratch1_s0", "svm_pixels"]
    assert json.loads((out / "pre3_s0.done.json").read_text())["command"] == "kept"
    for name in restored:
        assert json.loads((out / f"{name}.done.json").read_text()) == runs[name]
    # Only the fine-tune that chose its subset from --label_fraction and --seed.
    assert [d for d, _ in subsets] == [f"{out}/ft1_pre3_l1_s0"]
    assert subsets[0][1]["label_fraction"] == "0.01" and subsets[0][1]["seed"] == "0"
    # Restoring again finds everything in place.
    assert restore.restore(str(tmp_path / "claims.json"), str(out)) == []
    # The pretraining rate survives without the log: the table reads it.
    (out / "pre3_s0.done.json").unlink()
    restore.restore(str(tmp_path / "claims.json"), str(out), write_subset=lambda *a: None)
    row = json.loads((out / "pre3_s0.done.json").read_text())
    assert row["images_per_s"] == 620.0
    assert report.run_images_per_s({"pre3_s0": row}, str(out), "pre3_s0") == 620.0
    (out / "pre3_s0.log").write_text("step 1/2 | 100.0 images/s\nstep 2/2 | 300.0 images/s\n")
    assert report.run_images_per_s({"pre3_s0": row}, str(out), "pre3_s0") == 300.0


def test_restore_refuses_another_out_and_other_files(tmp_path):
    _recorded_suite(tmp_path / "claims.json", "/elsewhere/claims")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        claims.main([f"--out={out}", "--seeds=0", "--only=pre3",
                     f"--resume_from={tmp_path / 'claims.json'}"])
    message = str(exit_info.value)
    assert "--out=/elsewhere/claims" in message and "\n" not in message
    assert not list(out.glob("*.done.json"))
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(restore.RestoreError, match="not a claims.json"):
        restore.restore(str(tmp_path / "other.json"), str(out))


def test_restored_label_subset_is_the_one_run_py_chose(tmp_path):
    """write_label_subset re-chooses a fine-tune's ids from its recorded
    command; run.py's own choice for that command is the reference."""
    model_dir = tmp_path / "ft"
    args = ["--mode=train", "--train_mode=finetune", "--label_fraction=0.05", "--seed=3",
            "--train_steps=1", f"--model_dir={model_dir}", *harness.TINY_FLAGS]
    proc = harness.run_py(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    chosen = (model_dir / "label_subset.txt").read_text().split()
    again = tmp_path / "restored"
    ids = restore.write_label_subset(str(again), restore._flags(" ".join(["python", "run.py", *args])))
    assert [str(i) for i in ids] == chosen
    assert (again / "label_subset.txt").read_text().split() == chosen
    # Another seed chooses other ids: the seed reaches the choice.
    other = restore.write_label_subset(str(tmp_path / "seed4"), {
        **restore._flags(" ".join(args)), "seed": "4"})
    assert other != ids
