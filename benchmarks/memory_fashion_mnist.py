"""SimCLRv2's memory on Fashion-MNIST: the same short pretraining with and without it.

Two `python run.py --mode=train_then_eval` pretraining runs that differ only
in --memory_size (same seed, steps, batch and model: a 1/8-width
ResNet-18 in float32, the throughput benchmark's fmnist_cpu_budget row, the
size that lets two runs fit in about 20 minutes on 2 cores), then, on each run's
exported encoder, the probes of `simclr_tf2.analysis.probes`: L-BFGS
logistic regression and kNN-200 on frozen h of the 60k training and 10k
test images. Reports, per run: the probes, run.py's own online linear head
and cosine kNN (eval/label_top_1_accuracy, eval/knn_top_1_accuracy), the
wall time of training plus evaluation (flags.json to result.json) and the
median images/s of its progress lines.

Usage (2 shared cores: about 10 minutes per run of 940 steps, 2 epochs):

    python benchmarks/memory_fashion_mnist.py --out=/tmp/fm_memory \
        --train_steps=940 --batch=128 --memory_size=8192 \
        --memory_momenta=0.999,0.99

Writes OUT/memory_fashion_mnist.json and OUT/<run>/ (model_dir, log.txt,
row.json); a rerun with the same --out reuses the runs that have a row.json.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODEL = ["--resnet_depth=18", "--width_multiplier=0.125", "--cifar_stem=true",
         "--precision=float32"]


def pretrain(out, name, args, memory_size, momentum):
    """Runs one pretraining; returns its row (command, wall time, results)."""
    model_dir = os.path.join(out, name)
    command = [sys.executable, os.path.join(ROOT, "run.py"),
               "--mode=train_then_eval", "--train_mode=pretrain",
               "--dataset=fashion_mnist", f"--model_dir={model_dir}",
               f"--train_batch_size={args.batch}",
               f"--train_steps={args.train_steps}",
               f"--warmup_epochs={args.warmup_epochs}", f"--seed={args.seed}",
               f"--memory_size={memory_size}",
               f"--memory_momentum={momentum}", *MODEL]
    os.makedirs(model_dir, exist_ok=True)
    result_path = os.path.join(model_dir, "result.json")
    if not os.path.exists(result_path):  # Else: finished, only not probed.
        with open(os.path.join(model_dir, "log.txt"), "w") as log:
            subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                           check=True, cwd=ROOT)
    # From flags.json (written at start) to result.json: training + eval.
    wall = (os.path.getmtime(result_path)
            - os.path.getmtime(os.path.join(model_dir, "flags.json")))
    with open(os.path.join(model_dir, "log.txt")) as log:
        rates = [float(m.group(1)) for m in re.finditer(
            r"^step \d+/\d+ \| ([\d.]+) images/s", log.read(), re.M)]
    with open(os.path.join(model_dir, "result.json")) as f:
        result = json.load(f)
    exports = os.path.join(model_dir, "saved_model")
    export = os.path.join(exports, max(os.listdir(exports), key=int))
    return {"run": name, "memory_size": memory_size,
            "memory_momentum": momentum if memory_size else None,
            "command": " ".join(command[1:]), "wall_s": wall,
            # The first lines include tracing: the median is the steady rate.
            "images_per_s": statistics.median(rates[1:] or rates),
            "online_linear_top1": result.get("eval/label_top_1_accuracy"),
            "knn_cosine_top1": result.get("eval/knn_top_1_accuracy"),
            "export": export}


def probe(row):
    """L-BFGS logistic regression and kNN-200 on the export's frozen h."""
    from simclr_tf2.analysis import features, probes
    from simclr_tf2.data.registry import open_source
    source = open_source("fashion_mnist", None)
    train_x, train_y = features.split_features(row["export"], source, "train")
    test_x, test_y = features.split_features(row["export"], source, "test")
    row["lbfgs_top1"] = probes.logistic_regression_top1(
        train_x, train_y, test_x, test_y)
    row["knn200_top1"] = probes.knn_top1(train_x, train_y, test_x, test_y)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--train_steps", type=int, default=940)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--memory_size", type=int, default=8192)
    parser.add_argument("--memory_momenta", default="0.999",
                        help="comma-separated --memory_momentum values, one "
                        "memory run each")
    parser.add_argument("--warmup_epochs", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    runs = [("no_memory", 0, 0.999)] + [
        (f"memory{args.memory_size}_m{m}", args.memory_size, float(m))
        for m in args.memory_momenta.split(",")]
    rows = []
    for name, size, momentum in runs:
        done = os.path.join(args.out, name, "row.json")
        if os.path.exists(done):  # Finished earlier with the same --out.
            with open(done) as f:
                rows.append(json.load(f))
            continue
        rows.append(probe(pretrain(args.out, name, args, size, momentum)))
        with open(done, "w") as f:
            json.dump(rows[-1], f, indent=2)
    with open(os.path.join(args.out, "memory_fashion_mnist.json"), "w") as f:
        json.dump(rows, f, indent=2)
    print(f"{'run':<22}{'L-BFGS':>8}{'kNN-200':>9}{'online lin':>11}"
          f"{'cos kNN':>9}{'wall s':>8}{'img/s':>7}")
    for r in rows:
        print(f"{r['run']:<22}{r['lbfgs_top1']:>8.4f}{r['knn200_top1']:>9.4f}"
              f"{r['online_linear_top1']:>11.4f}{r['knn_cosine_top1']:>9.4f}"
              f"{r['wall_s']:>8.0f}{r['images_per_s']:>7.1f}")


if __name__ == "__main__":
    main()
