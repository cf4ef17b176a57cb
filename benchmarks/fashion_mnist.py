"""The Fashion-MNIST results suite: SimCLR against its baselines, with pictures.

Every row is one `python run.py` command (recorded verbatim, seed 0) or one
scikit-learn measurement, on Fashion-MNIST (60k train / 10k test) read from
Debian's `dataset-fashion-mnist` IDX files:

* pretrain            SimCLR on the 60k training images (labels unused by the
                      encoder; the online linear head reads them, as in the
                      original code's lineareval_while_pretraining);
* linear_eval_*       linear classifier on the frozen encoder, pretrained and
                      untrained (random init), trained with run.py;
* logreg_*            the paper's transfer protocol (App. B.8): L-BFGS
                      logistic regression on frozen features, pretrained,
                      untrained and raw pixels;
* knn                 weighted kNN (k=200) on the same features;
* finetune_{1,10}pct  fine-tuning the SimCLR checkpoint on class-balanced 1% /
                      10% label subsets (600 / 6000 images);
* scratch_{1,100}pct  the same architecture trained from random init on the
                      same 1% subset and on all labels;
* distill_1pct        the 1% fine-tuned model distilled into a student on the
                      60k images without their labels (SimCLRv2);
* supcon_pretrain     (opt-in, --with_supcon) supervised contrastive
                      pretraining (Khosla et al. 2020) with all 60k labels:
                      the pretraining run with --contrastive_loss=supcon,
                      same network, epochs and flags; its online linear head,
                      kNN-200, and L-BFGS probes (rows logreg_supcon_*).

Then the pictures (augmented views, training curves, t-SNE maps) are drawn
with `python -m simclr_tf2.analysis`.

Usage (from a fresh clone, no install step beyond requirements.txt):

    python benchmarks/fashion_mnist.py --budget=cpu --out=/tmp/fmnist  # ~85 min, 2 cores
    python benchmarks/fashion_mnist.py --budget=gpu --out=/tmp/fmnist  # one GPU, hours
    python benchmarks/fashion_mnist.py --budget=smoke --out=/tmp/fm    # minutes, plumbing only
    python benchmarks/fashion_mnist.py --budget=cpu --out=/tmp/fmnist --with_supcon  # + ~45 min

Writes OUT/fashion_mnist.json, OUT/fashion_mnist.md, OUT/commands.txt,
OUT/<run>/ (each run's model_dir and log) and OUT/pictures/*.png. Rerunning
with the same --out skips runs whose result.json exists with the same command.
"""

import argparse
import glob
import json
import os
import platform
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from simclr_tf2 import rundir  # noqa: E402  (no TensorFlow at import)
PYTHON = sys.executable
# How often a running step records its seconds so far (OUT/<name>.command.json),
# so that a killed call still counts in the run's total.
PROGRESS_EVERY_S = 60

# run.py's linear evaluation (frozen encoder, standardised h): whole images
# with flips only (crops would train the classifier on views it is never
# tested on) and 4x the fine-tuning learning rate; it then lands within a
# point of the L-BFGS probe on the same features (sweep notes).
LINEAR_EVAL_FLAGS = ["--crop_min_area=1.0", "--learning_rate=0.2"]
# Supervised from scratch: weight decay and milder crops than pretraining
# (the fine-tuning recipe has neither, which suits a pretrained start).
SCRATCH_FLAGS = ["--weight_decay=5e-4", "--crop_min_area=0.6"]

# Per budget: the shared model flags and, per run, its length and batch.
# The cpu budget is sized for <= 90 min on 2 cores, pretraining <= 60 min: a
# 1/4-width ResNet-18 (CIFAR stem, 128-d representation) in mixed bfloat16;
# its settings come from the sweep in docs/results/fashion_mnist_sweep/.
BUDGETS = {
    "cpu": {
        "model": ["--resnet_depth=18", "--width_multiplier=0.25",
                  "--cifar_stem=true", "--precision=mixed_bfloat16"],
        "pretrain": ["--train_epochs=40", "--warmup_epochs=3",
                     "--knn_eval_every_steps=1170"],
        "linear_eval": LINEAR_EVAL_FLAGS + ["--train_epochs=10"],
        "subset_1pct": ["--train_epochs=100", "--train_batch_size=128"],
        "subset_10pct": ["--train_epochs=30"],
        "scratch_100pct": ["--train_epochs=15"] + SCRATCH_FLAGS,
        "distill": ["--train_epochs=8"],
        "tsne_points": 2000,
    },
    "gpu": {
        "model": ["--resnet_depth=18", "--width_multiplier=1",
                  "--cifar_stem=true"],
        "pretrain": ["--train_epochs=500", "--warmup_epochs=10",
                     "--knn_eval_every_steps=5850"],
        "linear_eval": LINEAR_EVAL_FLAGS + ["--train_epochs=90"],
        "subset_1pct": ["--train_epochs=300", "--train_batch_size=128"],
        "subset_10pct": ["--train_epochs=100"],
        "scratch_100pct": ["--train_epochs=200"] + SCRATCH_FLAGS,
        "distill": ["--train_epochs=100"],
        "tsne_points": 5000,
    },
    "smoke": {
        "model": ["--resnet_depth=18", "--width_multiplier=0.125",
                  "--cifar_stem=true", "--train_split=train[:2048]",
                  "--eval_split=test[:512]"],
        "pretrain": ["--train_steps=12", "--warmup_epochs=0",
                     "--knn_eval_every_steps=6"],
        "linear_eval": LINEAR_EVAL_FLAGS + ["--train_steps=4"],
        "subset_1pct": ["--train_steps=4", "--train_batch_size=16"],
        "fraction_1pct": 0.05,  # 1% of 2,048 would be 2 images per class.
        "subset_10pct": ["--train_steps=4"],
        "scratch_100pct": ["--train_steps=4"],
        "distill": ["--train_steps=4"],
        "tsne_points": 300,
    },
}

# Pretraining: the fashion_mnist recipe (the CIFAR one: LARS, batch 512,
# temperature 0.5, no blur; plus crops >= 35% of the area and jitter 1.0,
# flags/recipes.py) with the paper's square-root learning-rate scaling
# (App. B.1: 0.075 x sqrt(B), better for short runs and small batches).
PRETRAIN_FLAGS = ["--train_batch_size=512", "--learning_rate=0.075",
                  "--learning_rate_scaling=sqrt"]


def run_list(budget, out, with_supcon=False):
    """The run.py runs of a budget, in order: (name, extra flags)."""
    settings = BUDGETS[budget]
    pretrain = os.path.join(out, "pretrain")
    subset_1pct = settings["subset_1pct"]
    fraction_1pct = [f"--label_fraction={settings.get('fraction_1pct', 0.01)}"]
    subset_file = os.path.join(out, "finetune_1pct", "label_subset.txt")
    linear = ["--train_mode=finetune", "--fine_tune_after_block=4"] + settings["linear_eval"]
    supcon = [("supcon_pretrain", PRETRAIN_FLAGS + settings["pretrain"]
                + ["--contrastive_loss=supcon"])] if with_supcon else []
    return [
        ("pretrain", PRETRAIN_FLAGS + settings["pretrain"]),
        *supcon,
        ("linear_eval_pretrained", linear + [f"--checkpoint={pretrain}"]),
        ("linear_eval_untrained", linear),
        ("finetune_1pct", ["--train_mode=finetune", f"--checkpoint={pretrain}"]
         + fraction_1pct + subset_1pct),
        ("finetune_10pct", ["--train_mode=finetune", f"--checkpoint={pretrain}",
                            "--label_fraction=0.1"] + settings["subset_10pct"]),
        ("scratch_1pct", ["--train_mode=finetune", f"--label_subset_file={subset_file}"]
         + subset_1pct),
        ("scratch_100pct", ["--train_mode=finetune"] + settings["scratch_100pct"]),
        # The student starts from the SimCLR encoder (SimCLRv2 distils into a
        # pretrained student too), then learns the teacher's soft labels.
        ("distill_1pct", ["--train_mode=distill",
                          f"--teacher={os.path.join(out, 'finetune_1pct')}",
                          f"--checkpoint={pretrain}"]
         + settings["distill"]),
    ]


def command_for(name, flags, budget, out, data_dir=None):
    common = ["--mode=train_then_eval", "--dataset=fashion_mnist", "--seed=0",
              "--export_after_eval=true", "--log_every_steps=100",
              f"--model_dir={os.path.join(out, name)}"]
    if data_dir:
        common.append(f"--data_dir={data_dir}")
    return [PYTHON, "run.py"] + common + BUDGETS[budget]["model"] + flags


def _display(command):
    return " ".join(shlex.quote(part) for part in ["python"] + command[1:])


def _call_logged(name, command, out, on_progress=None):
    """Runs command in the repository root, output appended to OUT/name.log
    (an interrupted run's earlier output stays); returns this call's seconds.
    on_progress(seconds so far) is called about every PROGRESS_EVERY_S
    seconds while it runs.

    Exits with a one-line error (and the log's last lines) if it fails.
    """
    print(f"[{name}] {_display(command)}", flush=True)
    log_path = os.path.join(out, name + ".log")
    start = time.time()
    with open(log_path, "a") as log:
        log.write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')}: {_display(command)}\n")
        log.flush()
        with subprocess.Popen(command, cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT) as process:
            try:
                while True:
                    try:
                        code = process.wait(timeout=PROGRESS_EVERY_S)
                        break
                    except subprocess.TimeoutExpired:
                        if on_progress:
                            on_progress(round(time.time() - start))
            except BaseException:  # Ctrl-C or an error: no orphaned run.
                process.kill()
                raise
    if code != 0:
        tail = open(log_path).read().splitlines()[-3:]
        sys.exit(f"error: {name} failed (exit {code}); see {log_path}:\n" + "\n".join(tail))
    return round(time.time() - start)


def _read_json(path):
    """The JSON object at path, or {} when there is no such file."""
    return json.load(open(path)) if os.path.exists(path) else {}


def _set_aside(name, out):
    """Moves OUT/<name> (and its done file and log) to OUT/<name>.before-<time>,
    so that run.py starts afresh instead of resuming another configuration's
    checkpoint. Nothing is deleted."""
    model_dir = os.path.join(out, name)
    aside = f"{model_dir}.before-{time.strftime('%Y%m%d-%H%M%S')}"
    os.replace(model_dir, aside)
    for suffix in (".done.json", ".log"):
        if os.path.exists(os.path.join(out, name + suffix)):
            os.replace(os.path.join(out, name + suffix), aside + suffix)
    print(f"[{name}] {model_dir} was written by another command; moved to {aside}",
          flush=True)


def _write_whole(path, data):
    """Writes data as JSON to path whole or not at all (a kill may come)."""
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=2)
    os.replace(path + ".tmp", path)


def run_one(name, command, out):
    """Runs (or reuses) one run.py command; returns its result row.

    A result of the same command is reused and an interrupted run of it
    resumes from its checkpoint; a model_dir of another command is set
    aside first (`_set_aside`).
    """
    model_dir, display = os.path.join(out, name), _display(command)
    done_file = os.path.join(out, name + ".done.json")
    started_path = os.path.join(out, name + ".command.json")
    done = _read_json(done_file)
    if done.get("command") == display:
        print(f"[{name}] reused ({done['seconds']} s)", flush=True)
        return done
    # The command of the latest start, else of the result (a folder written
    # before starts were recorded), else None.
    started = _read_json(started_path) or {"command": done.get("command"), "seconds": 0}
    same_command = started["command"] == display
    if started["command"] is not None and not same_command and os.path.exists(model_dir):
        _set_aside(name, out)
    # Earlier calls of this command (killed before they finished) ran too.
    earlier = started["seconds"] if same_command else 0

    def record_seconds(seconds_this_call):
        _write_whole(started_path, {"command": display, "seconds": earlier + seconds_this_call})

    record_seconds(0)
    resumed_at = latest_checkpoint_step(model_dir)
    seconds = _call_logged(name, command, out, on_progress=record_seconds)
    result = json.load(open(os.path.join(model_dir, "result.json")))
    # seconds: every call of this command (to within PROGRESS_EVERY_S for a
    # killed one); last_call_seconds: this one, from resumed_at_step.
    row = {"run": name, "command": display, "seconds": earlier + seconds,
           "last_call_seconds": seconds, "resumed_at_step": resumed_at,
           "top1": result.get("eval/label_top_1_accuracy"),
           "knn_top1": result.get("eval/knn_top_1_accuracy"),
           "global_step": result.get("global_step")}
    _write_whole(done_file, row)
    resumed = f" (resumed at step {resumed_at})" if resumed_at else ""
    print(f"[{name}] {row['seconds']} s{resumed} | top-1 {row['top1']:.4f} | "
          f"kNN {row['knn_top1']:.4f}", flush=True)
    return row


def latest_checkpoint_step(model_dir):
    """The step of model_dir's newest checkpoint, 0 when there is none."""
    indexes = glob.glob(os.path.join(model_dir, f"{rundir.CHECKPOINT_PREFIX}-*.index"))
    steps = [rundir.checkpoint_step(path[:-len(".index")]) for path in indexes]
    return max(steps + [0])


def run_module(name, args, out):
    """Runs a `python -m` / script step, logging it; returns (command, seconds)."""
    command = [PYTHON] + args
    return _display(command), _call_logged(name, command, out)


def latest_export(model_dir):
    """model_dir's newest saved_model/<step> (a local listing: rundir's own
    lookup goes through TensorFlow's file system)."""
    steps = sorted(int(d) for d in os.listdir(rundir.export_root(model_dir)) if d.isdigit())
    return rundir.export_dir(model_dir, steps[-1])


def markdown_table(rows):
    lines = ["| run | what | top-1 | kNN-200 top-1 | wall s |", "|---|---|---|---|---|"]
    for row in rows:
        def pct(value):
            return "" if value is None else f"{100 * value:.1f}%"
        lines.append(f"| {row['run']} | {row['what']} | {pct(row['top1'])} | "
                     f"{pct(row.get('knn_top1'))} | {row['seconds']} |")
    return "\n".join(lines) + "\n"


WHAT = {
    "pretrain": "SimCLR pretraining; online linear head on stop-grad features",
    "linear_eval_pretrained": "linear eval, frozen SimCLR encoder (run.py)",
    "linear_eval_untrained": "linear eval, frozen random-init encoder (run.py)",
    "finetune_1pct": "SimCLR fine-tuned on 1% labels",
    "finetune_10pct": "SimCLR fine-tuned on 10% labels",
    "scratch_1pct": "supervised from scratch, same 1% subset",
    "scratch_100pct": "supervised from scratch, 100% labels",
    "distill_1pct": "1% fine-tuned teacher distilled on 60k unlabeled",
    "supcon_pretrain": "SupCon pretraining (all labels); online linear head "
                       "on stop-grad features",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--out", default="/tmp/simclr_fashion_mnist")
    parser.add_argument("--with_supcon", action="store_true",
                        help="Also pretrain with --contrastive_loss=supcon (same "
                             "network and epochs) and probe its frozen encoder.")
    parser.add_argument("--data_dir", default=None,
                        help="Folder with the four Fashion-MNIST IDX files; default: "
                             "/usr/share/datasets/fashion-mnist (Debian package).")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    suite_start = time.time()

    rows = []
    with open(os.path.join(out, "commands.txt"), "w") as commands:
        for name, flags in run_list(args.budget, out, args.with_supcon):
            command = command_for(name, flags, args.budget, out, args.data_dir)
            commands.write(f"{name}: {_display(command)}\n")
            commands.flush()
            row = run_one(name, command, out)
            rows.append(dict(row, what=WHAT[name]))

        # Frozen-feature probes (L-BFGS logistic regression, kNN) and raw pixels.
        probes_json = os.path.join(out, "probes.json")
        model_flags = [f for f in BUDGETS[args.budget]["model"]
                       if f.startswith(("--train_split", "--eval_split"))]
        if args.data_dir:
            model_flags.append(f"--data_dir={args.data_dir}")
        extra = ([f"--extra=supcon={latest_export(os.path.join(out, 'supcon_pretrain'))}"]
                 if args.with_supcon else [])
        probe_cmd, probe_seconds = run_module("probes", [
            "-m", "simclr_tf2.analysis", "probes", "--dataset=fashion_mnist",
            f"--pretrained={latest_export(os.path.join(out, 'pretrain'))}",
            f"--untrained={latest_export(os.path.join(out, 'linear_eval_untrained'))}",
            f"--label_subset_file={os.path.join(out, 'finetune_1pct', 'label_subset.txt')}",
            f"--out={probes_json}"] + extra + model_flags, out)
        commands.write(f"probes: {probe_cmd}\n")
        probes = json.load(open(probes_json))
        for probe in probes["rows"]:
            rows.append({"run": probe["run"], "what": probe["what"],
                         "top1": probe["top1"], "knn_top1": probe.get("knn_top1"),
                         "seconds": probe["seconds"], "command": probe_cmd})

        pictures_cmd, pictures_seconds = run_module("pictures", [
            "-m", "simclr_tf2.analysis", "pictures", "--dataset=fashion_mnist",
            f"--pretrain_dir={os.path.join(out, 'pretrain')}",
            f"--pretrained={latest_export(os.path.join(out, 'pretrain'))}",
            f"--untrained={latest_export(os.path.join(out, 'linear_eval_untrained'))}",
            f"--tsne_points={BUDGETS[args.budget]['tsne_points']}",
            f"--out={os.path.join(out, 'pictures')}"] + model_flags, out)
        commands.write(f"pictures: {pictures_cmd}\n")

    summary = {
        "budget": args.budget,
        "hardware": {"machine": platform.machine(), "processor": platform.processor(),
                     "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "total_seconds": round(time.time() - suite_start),
        "pictures_seconds": pictures_seconds,
        "rows": rows,
    }
    with open(os.path.join(out, "fashion_mnist.json"), "w") as f:
        json.dump(summary, f, indent=2)
    table = markdown_table(rows)
    with open(os.path.join(out, "fashion_mnist.md"), "w") as f:
        f.write(table)
    print(table)
    print(f"total {summary['total_seconds']} s; wrote {out}/fashion_mnist.json, "
          f"{out}/fashion_mnist.md and {out}/pictures/")


if __name__ == "__main__":
    main()
