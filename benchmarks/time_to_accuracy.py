"""Fashion-MNIST: frozen-feature accuracy against minutes of SimCLR pretraining.

One `python run.py --mode=train` pretraining on the 60k training images
(labels unused by the encoder) saves a checkpoint every `--probe_every`
epochs. Each checkpoint is exported (`python -m export`) and probed on the
10k test images with `python -m simclr_tf2.analysis probes`: L-BFGS
logistic regression on h (all labels) and cosine kNN-10 / kNN-200, beside
the same probes on the raw pixels of the same split. The x axis is the
wall-clock time from the start of the pretraining process (TensorFlow
import and data loading included) to the moment the checkpoint's files were
written.

Writes OUT/time_to_accuracy.json, OUT/time_to_accuracy.md (a table) and
OUT/time_to_accuracy.png (the curve). A rerun with the same --out reuses
the finished pretraining and probes (a pretraining that was interrupted and
resumed is marked `resumed` in the JSON: its wall clock is not one run's).

Usage (from a fresh clone; needs Debian's dataset-fashion-mnist):

    python benchmarks/time_to_accuracy.py --out=/tmp/tta_s0 --seed=0
    python benchmarks/time_to_accuracy.py --out=/tmp/tta_s1 --seed=1
    python benchmarks/time_to_accuracy.py --out=/tmp/tta --epochs=2 --probe_every=1 \
        --train_split='train[:4096]'   # plumbing only, minutes
"""

import argparse
import glob
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from simclr_tf2.models import precision  # noqa: E402  (no TensorFlow)
PYTHON = sys.executable
TRAIN_EXAMPLES = 60000
# The recipe: the fashion_mnist dataset recipe (LARS, temperature 0.5,
# crops of 35-100%, jitter 1.0, no blur) on a 1/4-width ResNet-18 with the
# CIFAR stem, batch 512, square-root learning-rate scaling, 18 epochs with 2
# warmup epochs, probed every 6; the precision is run.py's automatic choice
# for the CPU found. The recipes tried against it are in docs/results.md.
RECIPE = {"width_multiplier": 0.25, "train_epochs": 18, "warmup_epochs": 2,
          "train_batch_size": 512, "learning_rate": 0.075, "temperature": 0.5,
          "probe_every": 6}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=float, default=RECIPE["width_multiplier"])
    parser.add_argument("--epochs", type=int, default=RECIPE["train_epochs"])
    parser.add_argument("--warmup_epochs", type=float, default=RECIPE["warmup_epochs"])
    parser.add_argument("--batch", type=int, default=RECIPE["train_batch_size"])
    parser.add_argument("--learning_rate", type=float, default=RECIPE["learning_rate"])
    parser.add_argument("--temperature", type=float, default=RECIPE["temperature"])
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--probe_every", type=int, default=RECIPE["probe_every"],
                        help="epochs between probed checkpoints (the last one "
                             "is always probed)")
    parser.add_argument("--probe_last_only", action="store_true",
                        help="probe only the final checkpoint")
    parser.add_argument("--train_split", default="train")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--extra_flag", action="append", default=[],
                        help="another run.py flag for the pretraining (repeatable)")
    return parser.parse_args(argv)


def display(command):
    return " ".join(shlex.quote(part) for part in ["python"] + command[1:])


def steps_per_epoch(args):
    """Steps of one epoch of --train_split ("train" or "train[:N]")."""
    examples = TRAIN_EXAMPLES
    if args.train_split.startswith("train[:") and args.train_split.endswith("]"):
        examples = int(args.train_split[len("train[:"):-1])
    return max(1, examples // args.batch)


def pretrain_command(args):
    data = [f"--data_dir={args.data_dir}"] if args.data_dir else []
    return [PYTHON, "run.py", "--mode=train", "--dataset=fashion_mnist",
            f"--seed={args.seed}", f"--model_dir={os.path.join(args.out, 'pretrain')}",
            f"--train_split={args.train_split}", "--resnet_depth=18",
            f"--width_multiplier={args.width}", "--cifar_stem=true",
            f"--precision={args.precision}", f"--train_batch_size={args.batch}",
            f"--learning_rate={args.learning_rate}", "--learning_rate_scaling=sqrt",
            f"--temperature={args.temperature}", f"--train_epochs={args.epochs}",
            f"--warmup_epochs={args.warmup_epochs}",
            f"--checkpoint_steps={args.probe_every * steps_per_epoch(args)}",
            "--keep_checkpoint_max=1000", "--log_every_steps=100",
            *data, *args.extra_flag]


def run_logged(name, command, out):
    """Runs `command` in the repository root with output to OUT/name.log.

    Returns:
      (start time, wall seconds, CPU seconds of the child).
    """
    print(f"[{name}] {display(command)}", flush=True)
    log_path = os.path.join(out, name + ".log")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    with open(log_path, "w") as log:
        code = subprocess.call(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    wall = time.time() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        tail = open(log_path).read().splitlines()[-3:]
        sys.exit(f"error: {name} failed (exit {code}); see {log_path}:\n" + "\n".join(tail))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return start, wall, cpu


def checkpoint_times(model_dir, start):
    """{step: seconds from `start` to the write of ckpt-<step>}."""
    times = {}
    for index in glob.glob(os.path.join(model_dir, "ckpt-*.index")):
        step = int(os.path.basename(index)[len("ckpt-"):-len(".index")])
        times[step] = os.path.getmtime(index) - start
    return times


def pretrain(args):
    """Runs (or reuses) the pretraining; its record dict."""
    done_path = os.path.join(args.out, "pretrain.done.json")
    command = pretrain_command(args)
    if os.path.exists(done_path):
        done = json.load(open(done_path))
        if done["command"] == display(command):
            print(f"[pretrain] reused ({done['wall_seconds']:.0f} s)", flush=True)
            return done
    model_dir = os.path.join(args.out, "pretrain")
    resumed = bool(glob.glob(os.path.join(model_dir, "ckpt-*.index")))
    # The first attempt's start time: a resumed run's checkpoints are timed
    # from it (the gap while nothing ran counts; the JSON says "resumed").
    start_path = os.path.join(args.out, "pretrain.start")
    first_start = float(open(start_path).read()) if os.path.exists(start_path) else None
    if first_start is None:
        with open(start_path, "w") as f:
            f.write(repr(time.time()))
    start, wall, cpu = run_logged("pretrain", command, args.out)
    start = first_start or start
    times = checkpoint_times(model_dir, start)
    done = {"command": display(command), "wall_seconds": wall, "cpu_seconds": cpu,
            "resumed": resumed, "checkpoint_seconds": {
                str(step): seconds for step, seconds in sorted(times.items())}}
    if resumed:  # This process only finished the run: time it from the start.
        done.update(wall_seconds=max(times.values()), cpu_seconds=None)
    with open(os.path.join(model_dir, "flags.json")) as f:
        done["precision"] = json.load(f)["precision"]
    with open(done_path, "w") as f:
        json.dump(done, f, indent=2)
    return done


def probe(args, step):
    """Export + probes of ckpt-<step> (reused when done); the probe rows."""
    model_dir = os.path.join(args.out, "pretrain")
    probes_path = os.path.join(args.out, "probes", f"step_{step}.json")
    if not os.path.exists(probes_path):
        export_dir = os.path.join(args.out, "exports", str(step))
        if not os.path.exists(os.path.join(export_dir, "saved_model.pb")):
            run_logged(f"export_{step}", [
                PYTHON, "-m", "export", f"--model_dir={model_dir}",
                f"--checkpoint={os.path.join(model_dir, f'ckpt-{step}')}",
                f"--export_dir={export_dir}"], args.out)
        data = [f"--data_dir={args.data_dir}"] if args.data_dir else []
        run_logged(f"probes_{step}", [
            PYTHON, "-m", "simclr_tf2.analysis", "probes", "--dataset=fashion_mnist",
            f"--train_split={args.train_split}", f"--pretrained={export_dir}",
            f"--out={probes_path}", *data], args.out)
    return {row["run"]: row for row in json.load(open(probes_path))["rows"]}


def score(rows, name):
    row = rows.get(name) or {}
    return row.get("top1") if row.get("top1") is not None else row.get("knn_top1")


def probed_steps(done, args):
    """The checkpoint steps to probe: all but one that lies within an epoch
    of the next (the final step a few steps after a periodic save)."""
    steps = sorted(int(step) for step in done["checkpoint_seconds"])
    if args.probe_last_only:
        return steps[-1:]
    return [step for i, step in enumerate(steps)
            if i + 1 == len(steps) or steps[i + 1] - step >= steps_per_epoch(args)]


def curve_rows(args, done):
    rows = []
    for step in probed_steps(done, args):
        seconds = done["checkpoint_seconds"][str(step)]
        probes = probe(args, step)
        rows.append({"step": step, "epochs": step / steps_per_epoch(args),
                     "minutes": seconds / 60,
                     "logreg_h": score(probes, "logreg_pretrained_100pct"),
                     "knn10_h": score(probes, "knn10_pretrained"),
                     "knn200_h": score(probes, "knn200_pretrained")})
    pixels = {"logreg": score(probes, "logreg_pixels_100pct"),
              "knn10": score(probes, "knn10_pixels"),
              "knn200": score(probes, "knn200_pixels")}
    return rows, pixels


def markdown(rows, pixels, done):
    def pct(value):
        return "" if value is None else f"{100 * value:.1f}%"
    lines = ["| minutes of pretraining | epochs | L-BFGS on h | cosine kNN-10 on h "
             "| cosine kNN-200 on h |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['minutes']:.1f} | {row['epochs']:.0f} | "
                     f"{pct(row['logreg_h'])} | {pct(row['knn10_h'])} | "
                     f"{pct(row['knn200_h'])} |")
    lines.append(f"| raw pixels | | {pct(pixels['logreg'])} | {pct(pixels['knn10'])} "
                 f"| {pct(pixels['knn200'])} |")
    lines.append("")
    cpu = "" if done["cpu_seconds"] is None else f", {done['cpu_seconds']:.0f} CPU s"
    lines.append(f"Pretraining: {done['wall_seconds'] / 60:.1f} min wall{cpu}, "
                 f"precision {done['precision']}"
                 + (" (resumed: not one run's wall clock)" if done["resumed"] else ""))
    return "\n".join(lines) + "\n"


def plot(rows, pixels, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    minutes = [row["minutes"] for row in rows]
    for key, label, color in (("logreg_h", "L-BFGS on h", "C0"),
                              ("knn10_h", "cosine kNN-10 on h", "C1"),
                              ("knn200_h", "cosine kNN-200 on h", "C2")):
        ax.plot(minutes, [100 * row[key] for row in rows], "o-", color=color, label=label)
    for key, label, color in (("logreg", "L-BFGS on pixels", "C0"),
                              ("knn10", "cosine kNN-10 on pixels", "C1")):
        if pixels[key] is not None:
            ax.axhline(100 * pixels[key], color=color, linestyle=":", label=label)
    ax.set_xlabel("minutes of pretraining (wall clock)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("Fashion-MNIST: frozen features vs pretraining time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cpu_model():
    """(model name, sorted bf16/AMX feature flags) of this machine's CPU."""
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                           if line.startswith("model name")), model)
    except OSError:
        pass
    flags = precision.cpu_flags()
    return model, sorted(f for f in flags if "bf16" in f or f.startswith("amx"))


def main(argv=None):
    args = parse_args(argv)
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    done = pretrain(args)
    rows, pixels = curve_rows(args, done)
    model, bf16_flags = cpu_model()
    summary = {"seed": args.seed, "recipe": vars(args), "pretrain": done,
               "curve": rows, "pixels": pixels,
               "machine": {"cpu": model, "bf16_flags": bf16_flags,
                           "cores": len(os.sched_getaffinity(0))}}
    with open(os.path.join(args.out, "time_to_accuracy.json"), "w") as f:
        json.dump(summary, f, indent=2)
    table = markdown(rows, pixels, done)
    with open(os.path.join(args.out, "time_to_accuracy.md"), "w") as f:
        f.write(table)
    plot(rows, pixels, os.path.join(args.out, "time_to_accuracy.png"))
    print(table)
    print(f"{model}, {summary['machine']['cores']} cores, {' '.join(bf16_flags)}")


if __name__ == "__main__":
    main()
