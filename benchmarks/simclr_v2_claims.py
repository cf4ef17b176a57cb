"""SimCLRv2's claims at small scale: Fashion-MNIST, two seeds per arm.

SimCLRv2 (Chen et al. 2020b) claims that (1) a 3-layer projection head,
fine-tuned from its first layer, beats a 2-layer head fine-tuned from h, most
at 1% labels; (2) a bigger encoder gains more at 1% labels than at 100%;
(3) distilling a fine-tuned teacher on unlabeled images gives a student that
beats it (same size) or beats the small network fine-tuned directly (smaller
student); (4) the MoCo-style memory adds about a point. Every arm here is a
`python run.py` command on Fashion-MNIST with the `cpu` budget's pretraining
recipe (benchmarks/fashion_mnist.py: batch 512, LARS, sqrt scaling) on a
smaller, shorter configuration that lets 8 pretrainings fit one sitting of
2 cores: ResNet-18 (CIFAR stem) at 1/8 width in float32 (1,065 images/s on
an Intel Xeon without AMX, where mixed bfloat16 ran slower), 5 epochs; the
smaller encoder is the 1/16 width. Seeds 0 and 1; a seed fixes the
pretraining, the 1% / 10% label subsets and the fine-tuning, so arms of one
seed are paired.

Arms per seed S (model_dir OUT/<name>_sS):

  pre3        ResNet-18 1/8 width, 3-layer head (the default)
  pre2        the same with a 2-layer head (--num_proj_layers=2)
  pre3_mem    pre3 with the memory (--memory_size, --memory_momentum)
  pre3_small  1/16 width, 3-layer head
  ft{1,10}_{pre}_{h,l1}   fine-tuned on 1% / 10% of the labels from h
                          (--ft_proj_selector=0) or from the head's first
                          layer (--ft_proj_selector=1)
  distill{1,10}_self      student of pre3's size, started from pre3,
                          taught by ft{1,10}_pre3_l1 on the 60k images
  distill1_small          student of pre3_small's size, started from
                          pre3_small, taught by the bigger ft1_pre3_l1
  probes_{pre}            L-BFGS logistic regression (all labels and the
                          seed's 1% subset) and cosine kNN-10 / kNN-200 on
                          frozen h, and on raw pixels

Usage (from a fresh clone; about 2 h on 2 cores):

    python benchmarks/simclr_v2_claims.py --out=/tmp/claims
    python benchmarks/simclr_v2_claims.py --out=/tmp/claims --report_only

Writes OUT/claims.json (every run's command, wall time and result) and
OUT/claims.md (the claims table). Rerunning with the same --out reuses runs
whose result exists for the same command, so a killed suite resumes; runs
are ordered claim by claim, so a partial suite still answers the first
claims. --report_only summarises what exists without running anything.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fashion_mnist as suite  # noqa: E402

SEEDS = (0, 1)
PRETRAIN_EPOCHS = 5
MODEL = ["--resnet_depth=18", "--cifar_stem=true"]
WIDTH = {"": ["--width_multiplier=0.125"], "_small": ["--width_multiplier=0.0625"]}
PRETRAIN = suite.PRETRAIN_FLAGS + [f"--train_epochs={PRETRAIN_EPOCHS}",
                                   "--warmup_epochs=0.5"]
# The memory at the suite's batch of 512: a buffer of 16 batches (the
# paper's 64K is 16 batches of 4,096) and a decay whose time constant
# (100 steps) fits a 585-step run; 0.999 (1,000 steps) would trail it.
MEMORY = ["--memory_size=8192", "--memory_momentum=0.99"]
FINETUNE = {1: ["--label_fraction=0.01", "--train_epochs=100", "--train_batch_size=128"],
            10: ["--label_fraction=0.1", "--train_epochs=10"]}
DISTILL = ["--train_mode=distill", "--train_epochs=3"]
SELECTOR = {"h": ["--ft_proj_selector=0"], "l1": ["--ft_proj_selector=1"]}


def pretrain_arms():
    """{pretraining name: its flags without the width}."""
    return {"pre3": PRETRAIN, "pre2": PRETRAIN + ["--num_proj_layers=2"],
            "pre3_mem": PRETRAIN + MEMORY, "pre3_small": PRETRAIN}


def _width(pre):
    return WIDTH["_small" if pre.endswith("_small") else ""]


PROBE = "probe"  # A run_list entry (name, PROBE): probe that pretraining's h.


def run_list(out, seed):
    """This seed's steps in claim order: [(name, run.py flags or PROBE)]."""
    def d(name):
        return os.path.join(out, f"{name}_s{seed}")
    pre = pretrain_arms()
    runs = []

    def pretrain(name):
        runs.append((f"{name}_s{seed}", _width(name) + pre[name]))

    def finetune(fraction, name, layer):
        runs.append((f"ft{fraction}_{name}_{layer}_s{seed}",
                     _width(name) + ["--train_mode=finetune", f"--checkpoint={d(name)}"]
                     + SELECTOR[layer] + FINETUNE[fraction]))

    def distill(fraction, student, teacher):
        tag = "self" if student == "pre3" else "small"
        runs.append((f"distill{fraction}_{tag}_s{seed}",
                     _width(student) + DISTILL + SELECTOR["l1"]
                     + [f"--teacher={d(teacher)}", f"--checkpoint={d(student)}"]))

    def probes(name):  # After ft1_pre3_l1, whose label subset the probe reads.
        runs.append((f"probes_{name}_s{seed}", PROBE))

    # Claim 1: head depth and the layer fine-tuning starts from.
    pretrain("pre3")
    pretrain("pre2")
    finetune(1, "pre3", "l1")
    finetune(1, "pre3", "h")
    finetune(1, "pre2", "h")
    probes("pre3")
    finetune(10, "pre3", "l1")
    finetune(10, "pre2", "h")
    # Claim 3a: self-distillation.
    for fraction in (1, 10):
        distill(fraction, "pre3", f"ft{fraction}_pre3_l1")
    # Claim 4: the memory.
    pretrain("pre3_mem")
    finetune(1, "pre3_mem", "l1")
    probes("pre3_mem")
    # Claims 2 and 3b: a smaller encoder, fine-tuned, and distilled from
    # the bigger one's 1% model.
    pretrain("pre3_small")
    finetune(1, "pre3_small", "l1")
    probes("pre3_small")
    finetune(10, "pre3_small", "l1")
    distill(1, "pre3_small", "ft1_pre3_l1")
    finetune(10, "pre3", "h")
    probes("pre2")
    return runs


def command_for(name, flags, out, data_dir):
    common = ["--mode=train_then_eval", "--dataset=fashion_mnist",
              f"--seed={name.rsplit('_s', 1)[1]}", "--export_after_eval=true",
              "--log_every_steps=100", f"--model_dir={os.path.join(out, name)}"]
    if data_dir:
        common.append(f"--data_dir={data_dir}")
    return [suite.PYTHON, "run.py"] + common + MODEL + flags


def probe(name, out, data_dir):
    """Frozen-feature probes of one pretraining (name probes_<pre>_s<seed>);
    returns its result with {row name: accuracy} under "values"."""
    pre, seed = name[len("probes_"):].rsplit("_s", 1)
    done_file = os.path.join(out, name + ".done.json")
    model_dir = os.path.join(out, f"{pre}_s{seed}")
    args = ["-m", "simclr_tf2.analysis", "probes", "--dataset=fashion_mnist",
            f"--pretrained={suite.latest_export(model_dir)}",
            f"--label_subset_file={os.path.join(out, f'ft1_pre3_l1_s{seed}', 'label_subset.txt')}",
            f"--out={os.path.join(out, name + '.json')}"]
    if data_dir:
        args.append(f"--data_dir={data_dir}")
    display = suite._display([suite.PYTHON] + args)
    if os.path.exists(done_file) and json.load(open(done_file))["command"] == display:
        print(f"[{name}] reused", flush=True)
        return json.load(open(done_file))
    _, seconds = suite.run_module(name, args, out)
    rows = json.load(open(os.path.join(out, name + ".json")))["rows"]
    result = {"run": name, "command": display, "seconds": seconds,
              "values": {row["run"]: row["top1"] if row["top1"] is not None
                         else row["knn_top1"] for row in rows}}
    with open(done_file, "w") as f:
        json.dump(result, f, indent=2)
    return result


def _mean_spread(values):
    """'mean ± half-range' in percent over seeds, or '' if none."""
    values = [v for v in values if v is not None]
    if not values:
        return "", None
    mean = statistics.mean(values)
    half = (max(values) - min(values)) / 2
    return f"{100 * mean:.1f} ± {100 * half:.1f} (n={len(values)})", mean


# (claim, the arm the paper expects higher, the other arm, metric): the
# verdict rows. A metric "top1" reads run.py's result of that run name;
# "probe:<row>" reads probes_<pre>_s<seed>'s row for pretraining <pre>.
VERDICTS = [
    ("1: 3-layer head from layer 1 > 2-layer head from h, 1% labels",
     "ft1_pre3_l1", "ft1_pre2_h", "top1"),
    ("1: 3-layer head from layer 1 > 2-layer head from h, 10% labels",
     "ft10_pre3_l1", "ft10_pre2_h", "top1"),
    ("1: 3-layer head, from layer 1 > from h, 1% labels",
     "ft1_pre3_l1", "ft1_pre3_h", "top1"),
    ("2: 1/8 width > 1/16 width, 1% labels (fine-tuned)",
     "ft1_pre3_l1", "ft1_pre3_small_l1", "top1"),
    ("2: 1/8 width > 1/16 width, 10% labels (fine-tuned)",
     "ft10_pre3_l1", "ft10_pre3_small_l1", "top1"),
    ("2: 1/8 width > 1/16 width, 100% labels (L-BFGS on h)",
     "pre3", "pre3_small", "probe:logreg_pretrained_100pct"),
    ("3: self-distilled student > its teacher, 1% labels",
     "distill1_self", "ft1_pre3_l1", "top1"),
    ("3: self-distilled student > its teacher, 10% labels",
     "distill10_self", "ft10_pre3_l1", "top1"),
    ("3: 1/16-width student of the 1/8-width teacher > 1/16 width fine-tuned, 1%",
     "distill1_small", "ft1_pre3_small_l1", "top1"),
    ("4: memory > no memory, L-BFGS all labels",
     "pre3_mem", "pre3", "probe:logreg_pretrained_100pct"),
    ("4: memory > no memory, 1% labels (fine-tuned)",
     "ft1_pre3_mem_l1", "ft1_pre3_l1", "top1"),
    ("features > raw pixels, L-BFGS all labels",
     "pre3", "pre3", "probe:logreg_pretrained_100pct|logreg_pixels_100pct"),
    ("features > raw pixels, better of kNN-10 / kNN-200",
     "pre3", "pre3", "probe:best_knn_pretrained|best_knn_pixels"),
]


def _metric(results, run, metric, seed):
    """One seed's value of a VERDICTS metric ("top1" or a probe row name),
    or None if not run."""
    if metric == "top1":
        return results.get(f"{run}_s{seed}", {}).get("top1")
    values = results.get(f"probes_{run}_s{seed}", {}).get("values", {})
    if metric.startswith("best_knn_"):
        tag = metric[len("best_knn_"):]
        found = [values.get(f"knn{k}_{tag}") for k in (10, 200)]
        return None if None in found else max(found)
    return values.get(metric)


def verdict_rows(results):
    """Markdown rows: claim, expected-higher arm, other arm, paired difference,
    verdict ("holds" when every seed's difference has the paper's sign and
    their mean exceeds the larger half-range of the two arms)."""
    lines = ["| claim (the paper's direction) | higher arm | other arm | "
             "paired difference (per seed) | holds? |", "|---|---|---|---|---|"]
    for claim, high, low, metric in VERDICTS:
        # "probe:ROW" or "probe:HIGH_ROW|LOW_ROW" (the same run, two rows).
        high_row, _, low_row = metric.removeprefix("probe:").partition("|")
        a = [_metric(results, high, high_row, s) for s in SEEDS]
        b = [_metric(results, low, low_row or high_row, s) for s in SEEDS]
        if None in a or None in b:
            lines.append(f"| {claim} | {_mean_spread(a)[0]} | {_mean_spread(b)[0]} | | not measured |")
            continue
        diffs = [100 * (x - y) for x, y in zip(a, b)]
        spread = max(100 * (max(v) - min(v)) / 2 for v in (a, b))
        mean = statistics.mean(diffs)
        if all(d > 0 for d in diffs):
            verdict = "holds" if mean > spread else "same sign, within the seed spread"
        else:
            verdict = "does not hold"
        per_seed = ", ".join(f"{d:+.1f}" for d in diffs)
        lines.append(f"| {claim} | {_mean_spread(a)[0]} | {_mean_spread(b)[0]} | "
                     f"{mean:+.1f} ({per_seed}) | {verdict} |")
    return "\n".join(lines) + "\n"


def claims_table(results):
    """Markdown rows: claim, arm, mean ± half-range over seeds."""
    def top1(name):
        return [_metric(results, name, "top1", s) for s in SEEDS]

    def probe_value(pre, row):
        return [_metric(results, pre, row, s) for s in SEEDS]

    arms = [
        ("1 head depth", "3-layer head, fine-tuned from layer 1, 1% labels", top1("ft1_pre3_l1")),
        ("1 head depth", "3-layer head, fine-tuned from h, 1% labels", top1("ft1_pre3_h")),
        ("1 head depth", "2-layer head, fine-tuned from h, 1% labels", top1("ft1_pre2_h")),
        ("1 head depth", "3-layer head, from layer 1, 10% labels", top1("ft10_pre3_l1")),
        ("1 head depth", "3-layer head, from h, 10% labels", top1("ft10_pre3_h")),
        ("1 head depth", "2-layer head, from h, 10% labels", top1("ft10_pre2_h")),
        ("2 bigger encoder", "1/16 width, 1% labels (ft from layer 1)", top1("ft1_pre3_small_l1")),
        ("2 bigger encoder", "1/8 width, 1% labels (ft from layer 1)", top1("ft1_pre3_l1")),
        ("2 bigger encoder", "1/16 width, 10% labels", top1("ft10_pre3_small_l1")),
        ("2 bigger encoder", "1/8 width, 10% labels", top1("ft10_pre3_l1")),
        ("2 bigger encoder", "1/16 width, 100% labels (L-BFGS on h)",
         probe_value("pre3_small", "logreg_pretrained_100pct")),
        ("2 bigger encoder", "1/8 width, 100% labels (L-BFGS on h)",
         probe_value("pre3", "logreg_pretrained_100pct")),
        ("3 distillation", "teacher: 1/8 width fine-tuned on 1%", top1("ft1_pre3_l1")),
        ("3 distillation", "self-distilled 1/8-width student, 1%", top1("distill1_self")),
        ("3 distillation", "teacher: 1/8 width fine-tuned on 10%", top1("ft10_pre3_l1")),
        ("3 distillation", "self-distilled 1/8-width student, 10%", top1("distill10_self")),
        ("3 distillation", "1/16 width fine-tuned on 1% directly", top1("ft1_pre3_small_l1")),
        ("3 distillation", "1/16-width student of the 1/8-width 1% teacher", top1("distill1_small")),
        ("4 memory", "no memory: 1% labels (ft from layer 1)", top1("ft1_pre3_l1")),
        ("4 memory", "memory: 1% labels (ft from layer 1)", top1("ft1_pre3_mem_l1")),
    ]
    for pre, label in (("pre3", "no memory"), ("pre3_mem", "memory")):
        for row, what in (("logreg_pretrained_100pct", "L-BFGS, all labels"),
                          ("logreg_pretrained_1pct", "L-BFGS, 1% labels"),
                          ("knn10_pretrained", "kNN-10"), ("knn200_pretrained", "kNN-200")):
            arms.append(("4 memory", f"{label}: {what}", probe_value(pre, row)))
    for pre, label in (("pre3", "SimCLR h, 1/8 width"), ("pre2", "SimCLR h, 2-layer head"),
                       ("pre3_mem", "SimCLR h, memory"), ("pre3_small", "SimCLR h, 1/16 width"),
                       ("pre3", "raw pixels")):
        tag = "pixels" if label == "raw pixels" else "pretrained"
        for row, what in (("logreg_{}_100pct", "L-BFGS all labels"),
                          ("logreg_{}_1pct", "L-BFGS 1% labels"),
                          ("knn10_{}", "kNN-10"), ("knn200_{}", "kNN-200")):
            arms.append(("probes", f"{label}: {what}", probe_value(pre, row.format(tag))))
    lines = ["| claim | arm | top-1 % (mean ± half-range over seeds) |", "|---|---|---|"]
    for claim, arm, values in arms:
        text, _ = _mean_spread(values)
        lines.append(f"| {claim} | {arm} | {text} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/simclr_v2_claims")
    parser.add_argument("--data_dir", default=None,
                        help="Folder with the four Fashion-MNIST IDX files; default: "
                             "/usr/share/datasets/fashion-mnist (Debian package).")
    parser.add_argument("--report_only", action="store_true",
                        help="Only summarise the runs already in --out.")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    start = time.time()
    results, failed = {}, []
    runs = [(name, flags) for block in zip(*(run_list(out, s) for s in SEEDS))
            for name, flags in block]
    # --report_only leaves commands.txt as the runs wrote it.
    commands_path = (os.devnull if args.report_only
                     else os.path.join(out, "commands.txt"))
    with open(commands_path, "w") as commands:
        for name, flags in runs:
            done_file = os.path.join(out, name + ".done.json")
            if args.report_only:
                if os.path.exists(done_file):
                    results[name] = json.load(open(done_file))
                continue
            try:
                if flags == PROBE:
                    results[name] = probe(name, out, args.data_dir)
                    commands.write(f"{name}: {results[name]['command']}\n")
                else:
                    command = command_for(name, flags, out, args.data_dir)
                    commands.write(f"{name}: {suite._display(command)}\n")
                    results[name] = suite.run_one(name, command, out)
            except (SystemExit, OSError) as failure:  # Later arms still run.
                print(f"[{name}] failed: {failure}", flush=True)
                failed.append(name)
            commands.flush()
    summary = {"hardware": {"machine": platform.machine(),
                            "processor": platform.processor(),
                            "cpu_count": os.cpu_count(),
                            "python": platform.python_version()},
               "seeds": list(SEEDS), "pretrain_epochs": PRETRAIN_EPOCHS,
               "total_seconds": round(time.time() - start), "runs": results}
    with open(os.path.join(out, "claims.json"), "w") as f:
        json.dump(summary, f, indent=2)
    table = verdict_rows(results) + "\n" + claims_table(results)
    with open(os.path.join(out, "claims.md"), "w") as f:
        f.write(table)
    print(table)
    if failed:
        sys.exit(f"error: {len(failed)} steps failed ({', '.join(failed)}); "
                 f"see their logs in {out}, then rerun the same command to resume.")


if __name__ == "__main__":
    main()
