"""A fine-tune with --label_subset_file trains on exactly those ids; a
distillation with it trains on every id and reads only those ids' labels.

Observed from outside: run.py runs unchanged under tests/train_step_probe.py,
which records the ids and labels of every example that reaches the training
step; the ids' true labels come from `embed --dataset=digits --split=train`
(index.csv's id and label columns), which names examples with the same ids.
"""

import csv
import json
import os
import subprocess
import sys

import pytest

from tests.harness import ROOT, TINY_FLAGS as TINY

PROBE = os.path.join(ROOT, "tests", "train_step_probe.py")
# 30 ids spread over digits' 1437 training examples, every class among them.
SUBSET = sorted({(i * 47 + 5) % 1437 for i in range(30)})


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT))


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("subset")
    subset_file = root / "my_subset.txt"
    subset_file.write_text("# ids to fine-tune on\n" +
                           "".join(f"{i}\n" for i in reversed(SUBSET)))
    model_dir, record = root / "ft", root / "steps.json"
    proc = _run(PROBE, str(record), "--mode=train_then_eval",
                "--train_mode=finetune", f"--label_subset_file={subset_file}",
                "--train_steps=4", "--checkpoint_steps=4", "--eval_steps=1",
                "--knn_eval=false", f"--model_dir={model_dir}", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = json.load(open(record))["steps"]
    # The true label of every training id, as embed writes it.
    out = root / "emb"
    proc = _run("-m", "simclr_tf2.embed", f"--model={model_dir}",
                "--dataset=digits", "--split=train", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "index.csv", newline="") as f:
        truth = {int(r["id"]): r["label"] for r in csv.DictReader(f)}
    return steps, truth, model_dir


def test_finetune_trains_on_exactly_the_subset_ids(finetuned):
    steps, _, _ = finetuned
    assert len(steps) == 4  # one record per training step, 4 steps
    seen = [i for step in steps for i in step["id"]]
    assert all(len(step["id"]) == 32 for step in steps)
    # Every example that reached the training step is in the subset...
    outside = sorted(set(seen) - set(SUBSET))
    assert not outside, f"trained on ids outside the subset: {outside[:10]}"
    # ...and the whole subset was used (128 examples drawn from 30 ids).
    assert set(seen) == set(SUBSET)


def test_finetune_labels_are_the_labels_of_those_ids(finetuned):
    steps, truth, _ = finetuned
    assert set(SUBSET) <= set(truth) and len(truth) == 1437
    wrong = [(i, l, truth[i]) for step in steps
             for i, l in zip(step["id"], step["label"]) if str(l) != truth[i]]
    assert not wrong, f"(id, label trained on, true label): {wrong[:10]}"
    assert len({truth[i] for i in SUBSET}) == 10  # all classes present


def test_finetune_records_the_subset_it_used(finetuned):
    _, _, model_dir = finetuned
    recorded = open(model_dir / "label_subset.txt").read().split()
    assert [int(i) for i in recorded] == SUBSET


@pytest.fixture(scope="module")
def distilled(finetuned, tmp_path_factory):
    """A distillation taught by the fine-tuned model, with the label term on
    and the subset's labels only."""
    _, _, teacher = finetuned
    root = tmp_path_factory.mktemp("distill")
    record = root / "steps.json"
    proc = _run(PROBE, str(record), "--mode=train", "--train_mode=distill",
                f"--teacher={teacher}", "--distill_label_weight=1",
                f"--label_subset_file={teacher / 'label_subset.txt'}",
                "--train_steps=12", "--checkpoint_steps=12", "--knn_eval=false",
                f"--model_dir={root / 'student'}", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.load(open(record))["steps"], root / "student"


def test_distill_trains_on_every_image_not_only_the_subset(distilled):
    steps, _ = distilled
    seen = {i for step in steps for i in step["id"]}
    # 12 steps of 32 from 1437 ids: far more distinct ids than the 30 labelled.
    assert len(steps) == 12 and len(seen - set(SUBSET)) > 200


def test_distill_reads_only_the_subset_labels(distilled, finetuned):
    steps, model_dir = distilled
    _, truth, _ = finetuned
    pairs = [(i, l) for step in steps for i, l in zip(step["id"], step["label"])]
    leaked = [(i, l) for i, l in pairs if i not in SUBSET and l != -1]
    assert not leaked, f"(id, label) read outside the subset: {leaked[:10]}"
    wrong = [(i, l, truth[i]) for i, l in pairs
             if i in SUBSET and str(l) != truth[i]]
    assert not wrong, f"(id, label trained on, true label): {wrong[:10]}"
    recorded = open(model_dir / "label_subset.txt").read().split()
    assert [int(i) for i in recorded] == SUBSET


def test_distill_teacher_input_flag_reaches_the_batches(finetuned, tmp_path):
    # --distill_teacher_input=whole_image: every training batch carries the
    # teacher's whole image beside the student's view; by default it does not.
    _, _, teacher = finetuned
    keys = {}
    for value in ("student_view", "whole_image"):
        record = tmp_path / f"{value}.json"
        proc = _run(PROBE, str(record), "--mode=train", "--train_mode=distill",
                    f"--teacher={teacher}", f"--distill_teacher_input={value}",
                    "--train_steps=2", "--checkpoint_steps=2", "--knn_eval=false",
                    f"--model_dir={tmp_path / value}", *TINY)
        assert proc.returncode == 0, proc.stderr[-3000:]
        keys[value] = json.load(open(record))["batch_keys"]
    assert "teacher_image" not in keys["student_view"]
    assert "teacher_image" in keys["whole_image"]
    assert "image" in keys["whole_image"]
