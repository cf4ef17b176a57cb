"""Digits recipe sweep: run.py variants and the baselines they must beat.

Every variant is `python run.py --mode=train_then_eval` on the embedded 8x8
digits (1437 train / 360 test, stratified) with a few flags added; it is
scored by run.py's own evaluation: the online linear head's top-1 and the
weighted kNN-200 top-1 of h on the 360 test images. Baselines use the same
split: L-BFGS logistic regression (simclr_tf2.analysis.probes) and weighted
cosine kNN-10 / kNN-200 (simclr_tf2.knn) on raw pixels scaled to [0, 1].

Runs go one at a time (the machine is shared); each finished variant is kept
in OUT/sweep.json and skipped on a rerun with the same flags, so the sweep
resumes after an interruption and grows when variants are added.

    python benchmarks/digits_sweep.py --out=/tmp/digits_sweep
    python benchmarks/digits_sweep.py --out=/tmp/digits_sweep --only=recipe_s0
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
BIG = ["--train_batch_size=4096"]

# name -> extra flags of `python run.py --mode=train_then_eval`. The empty
# list is the current digits recipe; explicit values reproduce the earlier
# recipe (lr rule: no short-run cap, 5 warmup epochs) for comparison.
OLD = ["--crop_min_area=0.08", "--color_jitter_strength=0.5",
       "--temperature=0.5", "--warmup_epochs=5", "--train_epochs=60",
       "--optimizer=lars", "--learning_rate=0.0625", "--image_size=16",
       "--checkpoint_epochs=10", "--random_flip=true"]
VARIANTS = {
    "untrained": ["--train_steps=1", "--learning_rate=0"],
    "old_recipe": OLD,
    "adam_crop0.4_t0.2": OLD + ["--optimizer=adam", "--learning_rate=1.25e-4",
                                "--crop_min_area=0.4", "--temperature=0.2"],
    "adam_lr2x_crop0.4_t0.2": OLD + [
        "--optimizer=adam", "--learning_rate=2.5e-4", "--crop_min_area=0.4",
        "--temperature=0.2"],
    "adam_crop0.4_t0.2_8px_e150": OLD + [
        "--optimizer=adam", "--learning_rate=1.25e-4", "--crop_min_area=0.4",
        "--temperature=0.2", "--image_size=8", "--train_epochs=150"],
    "adam_lr2x_crop0.4_t0.1_8px_e150": OLD + [
        "--optimizer=adam", "--learning_rate=2.5e-4", "--crop_min_area=0.4",
        "--temperature=0.1", "--image_size=8", "--train_epochs=150"],
    "adam_crop0.6_t0.2_8px_e150": OLD + [
        "--optimizer=adam", "--learning_rate=1.25e-4", "--crop_min_area=0.6",
        "--temperature=0.2", "--image_size=8", "--train_epochs=150"],
    "adam_crop0.4_t0.2_8px_e150_color1": OLD + [
        "--optimizer=adam", "--learning_rate=1.25e-4", "--crop_min_area=0.4",
        "--temperature=0.2", "--image_size=8", "--train_epochs=150",
        "--color_jitter_strength=1.0"],
    # The recipe with flips (as the paper), then without (the recipe).
    "flips_s0": ["--random_flip=true"],
    "b4096_flips_s0": BIG + ["--random_flip=true"],
    "b4096_flips_s1": BIG + ["--random_flip=true", "--seed=1"],
    "recipe_s0": [],
    "recipe_s1": ["--seed=1"],
    "recipe_s2": ["--seed=2"],
    "b4096_s0": BIG,
    "b4096_s1": BIG + ["--seed=1"],
    "b4096_s2": BIG + ["--seed=2"],
}


def raw_pixel_baselines():
    """Top-1 of the probes on raw pixels in [0, 1] (no TensorFlow model)."""
    import numpy as np
    from simclr_tf2 import knn
    from simclr_tf2.analysis import probes
    from simclr_tf2.data.registry import open_source

    source = open_source("digits")

    def arrays(split):
        xs, ys = [], []
        for example in source.split(split).as_numpy_iterator():
            xs.append(example["image"].reshape(-1) / 255.0)
            ys.append(example["label"])
        return np.array(xs, np.float32), np.array(ys)

    train_x, train_y = arrays("train")
    test_x, test_y = arrays("test")
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    row = {"run": "raw_pixels",
           "linear_top1": probes.logistic_regression_top1(
               train_x, train_y, test_x, test_y)}
    for k in (10, 200):
        row[f"knn{k}_top1"] = knn.knn_accuracy(
            unit(train_x), train_y, unit(test_x), test_y, 10, k=k)
    return row


def parse_log(text):
    """Steps run, last logged images/s and the eval line of a run.py log."""
    steps = re.findall(r"^step (\d+)/(\d+) \| ([\d.]+) images/s", text, re.M)
    evals = [l for l in text.splitlines() if l.startswith("eval at step")]
    return {"total_steps": int(steps[-1][1]) if steps else None,
            "images_per_s": [float(s[2]) for s in steps],
            "eval_line": evals[-1] if evals else None}


def run_variant(name, flags, out):
    """Runs one variant under /usr/bin/time -v; returns its row."""
    model_dir = os.path.join(out, name)
    command = [sys.executable, "run.py", "--mode=train_then_eval",
               f"--model_dir={model_dir}", "--export_after_eval=false", *flags]
    timed = ["/usr/bin/time", "-v", *command] if os.path.exists(
        "/usr/bin/time") else command
    log_path = os.path.join(out, name + ".log")
    start = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.run(timed, cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT, text=True)
    return row_from_log(name, flags, log_path, model_dir, proc.returncode,
                        time.time() - start)


def row_from_log(name, flags, log_path, model_dir, returncode, seconds=None):
    """A variant's row from its log (with /usr/bin/time -v output) and model_dir.

    `seconds` defaults to the log's "Elapsed (wall clock)" line, so a run made
    by hand with the same command and `/usr/bin/time -v` reads the same way.
    """
    text = open(log_path).read()
    if seconds is None:
        clock = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", text)
        seconds = (int(clock.group(1) or 0) * 3600 + int(clock.group(2)) * 60
                   + float(clock.group(3))) if clock else None
    row = {"run": name, "flags": " ".join(flags), "returncode": returncode,
           "wall_s": None if seconds is None else round(seconds, 1),
           "command": "python run.py --mode=train_then_eval " + " ".join(flags)}
    cpu = re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text)
    row["cpu_s"] = round(sum(map(float, cpu)), 1) if cpu else None
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    row["peak_rss_gb"] = round(int(rss.group(1)) / 1e6, 2) if rss else None
    info = parse_log(text)
    rates = info.pop("images_per_s")
    row.update(info)
    result_path = os.path.join(model_dir, "result.json")
    if returncode == 0 and os.path.exists(result_path):
        result = json.load(open(result_path))
        row["linear_top1"] = result["eval/label_top_1_accuracy"]
        row["knn200_top1"] = result.get("eval/knn_top_1_accuracy")
        row["steps"] = int(result["global_step"])
        if rates:
            row["median_images_per_s"] = sorted(rates)[len(rates) // 2]
    return row


# The old recipe's main job (337 steps) takes about 120 s of wall time on a
# quiet 2-core machine and 160 CPU s (user + system, /usr/bin/time); on a
# shared machine CPU seconds stay put while wall time stretches, so a run's
# quiet wall time is estimated as cpu_s * QUIET_WALL_PER_CPU_S.
QUIET_WALL_PER_CPU_S = 120 / 160


def markdown(rows):
    """The sweep as a markdown table, baselines first."""
    raw = rows.get("raw_pixels", {})
    lines = [f"Raw pixels in [0, 1]: L-BFGS logistic regression "
             f"{raw.get('linear_top1', float('nan')):.3f}, weighted cosine "
             f"kNN-10 {raw.get('knn10_top1', float('nan')):.3f}, kNN-200 "
             f"{raw.get('knn200_top1', float('nan')):.3f}.", "",
             "| run | flags of `python run.py --mode=train_then_eval` "
             "| steps | linear top-1 | kNN-200 top-1 | wall s (shared) "
             "| CPU s | est. quiet wall s | peak RSS GB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        if name == "raw_pixels" or row.get("linear_top1") is None:
            continue
        quiet = (round(row["cpu_s"] * QUIET_WALL_PER_CPU_S)
                 if row.get("cpu_s") else "")
        flags = row["flags"]
        old = " ".join(OLD)
        shown = (f"old recipe + `{flags[len(old):].strip()}`"
                 if flags.startswith(old) and flags != old else
                 "old recipe (`OLD` in this script)" if flags == old else
                 f"`{flags}`" if flags else "(none: the recipe)")
        if flags.startswith("--train_batch_size=4096 " + old):
            shown = ("`--train_batch_size=4096` + old recipe + `"
                     + flags[len("--train_batch_size=4096 " + old):].strip() + "`")
        lines.append(
            f"| {name} | {shown} | {row.get('steps')} | "
            f"{row['linear_top1']:.3f} | {row['knn200_top1']:.3f} | "
            f"{row['wall_s']} | {row.get('cpu_s', '')} | {quiet} | "
            f"{row.get('peak_rss_gb', '')} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--only", action="append", default=[],
                        help="run only these variants (repeatable)")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "sweep.json")
    rows = json.load(open(path))["rows"] if os.path.exists(path) else {}
    if "raw_pixels" not in rows:
        rows["raw_pixels"] = raw_pixel_baselines()
    for name, flags in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        done = rows.get(name)
        if done and done.get("returncode") == 0 and done["flags"] == " ".join(flags):
            continue
        print(f"running {name}: {' '.join(flags)}", flush=True)
        rows[name] = run_variant(name, flags, out)
        print(json.dumps(rows[name]), flush=True)
        with open(path, "w") as f:
            json.dump({"rows": rows, "cpu": _cpu()}, f, indent=1)
    with open(path, "w") as f:
        json.dump({"rows": rows, "cpu": _cpu()}, f, indent=1)
    with open(os.path.join(out, "sweep.md"), "w") as f:
        f.write(markdown(rows))
    print(markdown(rows))


def _cpu():
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return re.search(r"Model name:\s*(.*)", text).group(1)
    except (OSError, AttributeError):
        return None


if __name__ == "__main__":
    main()
