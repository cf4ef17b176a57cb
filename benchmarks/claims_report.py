"""Verdicts and tables of the SimCLRv2 claims suite from its runs' results.

A claim holds when every seed's paired difference has the paper's sign and
their mean exceeds the larger half-range of the two arms over seeds; the
seeds are those that measured both arms (two at least).
"""

import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from claims_arms import (DEFAULT_DISTILL, DISTILL_SETTINGS, SEEDS,  # noqa: E402
                         WIDE_TEACHER_SETTING, WIDTH_NAMES, WIDTHS,
                         every_seed_settings)

# Width suffixes from the narrowest up (claim 2's table rows).
WIDTHS_UP = tuple(sorted(WIDTHS, key=WIDTHS.get))
# The wider teacher's students: at the 1/4 width and at its own 1/2 width.
FROM_WIDE = f"distill1_from_wide_{WIDE_TEACHER_SETTING}"
WIDE_STUDENT = f"distill1_wide_{WIDE_TEACHER_SETTING}"


def images_per_s(log_path):
    """Median images/s of a run.py log's progress lines (the first, which
    includes tracing, left out when there are others), or None."""
    if not os.path.exists(log_path):
        return None
    rates = [float(m.group(1)) for m in re.finditer(
        r"^step \d+/\d+ \| ([\d.]+) images/s", open(log_path).read(), re.M)]
    return statistics.median(rates[1:] or rates) if rates else None


def run_images_per_s(results, out, name):
    """images/s of pretraining run `name`: from its log in OUT, else the rate
    its result carries (a result restored from another machine's suite)."""
    rate = images_per_s(os.path.join(out, f"{name}.log")) if out else None
    return rate if rate is not None else results.get(name, {}).get("images_per_s")


def _mean_spread(values, scale=100, digits=1, unit=""):
    """'mean ± half-range' over seeds, or '' if none."""
    values = [v for v in values if v is not None]
    if not values:
        return "", None
    mean = statistics.mean(values)
    half = (max(values) - min(values)) / 2
    return (f"{scale * mean:.{digits}f}{unit} ± {scale * half:.{digits}f}{unit} "
            f"(n={len(values)})"), mean


def _width_arms(*suffixes):
    """(what, run names, metric) of claim 2's three comparisons, one run name
    per width suffix: 1% and 10% fine-tuned from layer 1, L-BFGS on h."""
    return [("1% labels (fine-tuned)", [f"ft1_pre3{s}_l1" for s in suffixes], "top1"),
            ("10% labels (fine-tuned)", [f"ft10_pre3{s}_l1" for s in suffixes], "top1"),
            ("100% labels (L-BFGS on h)", [f"pre3{s}" for s in suffixes],
             "probe:logreg_pretrained_100pct")]


def verdicts(distill_settings=DEFAULT_DISTILL):
    """(claim, the arm the paper expects higher, the other arm, metric): the
    verdict rows. A metric "top1" reads run.py's result of that run name;
    "probe:<row>" reads probes_<pre>_s<seed>'s row for pretraining <pre>;
    "probe:<row>|<other row>" compares two rows of the same probe; the arm
    "svm_pixels" is the seedless SVM row."""
    big, small, wide = WIDTH_NAMES[""], WIDTH_NAMES["_small"], WIDTH_NAMES["_wide"]
    main = distill_settings[0]
    rows = [
        ("1: 3-layer head from layer 1 > 2-layer head from h, 1% labels",
         "ft1_pre3_l1", "ft1_pre2_h", "top1"),
        ("1: 3-layer head from layer 1 > 2-layer head from h, 10% labels",
         "ft10_pre3_l1", "ft10_pre2_h", "top1"),
        ("1: 3-layer head, from layer 1 > from h, 1% labels",
         "ft1_pre3_l1", "ft1_pre3_h", "top1"),
        ("headline: 1% labels fine-tuned from layer 1 > supervised on the same 600",
         "ft1_pre3_l1", "scratch1", "top1"),
    ] + [
        (f"2: {WIDTH_NAMES[higher]} > {WIDTH_NAMES[lower]}, {what}", *pair, metric)
        for higher, lower in (("", "_small"), ("_wide", ""))
        for what, pair, metric in _width_arms(higher, lower)
    ] + [
        (f"3: self-distilled student ({main}) > its teacher, 1% labels",
         f"distill1_{main}", "ft1_pre3_l1", "top1"),
        (f"3: self-distilled student ({main}) > its teacher, 10% labels",
         f"distill10_{main}", "ft10_pre3_l1", "top1"),
        (f"3: self-distilled student ({main}) > its teacher, 1% labels, "
         "pretrained with the memory",
         f"distill1_mem_{main}", "ft1_pre3_mem_l1", "top1"),
        (f"3: self-distilled student ({main}) > its teacher, 10% labels, "
         "pretrained with the memory",
         f"distill10_mem_{main}", "ft10_pre3_mem_l1", "top1"),
        (f"3: {small} student of the {big} teacher > {small} fine-tuned, 1%",
         "distill1_small", "ft1_pre3_small_l1", "top1"),
        (f"3: {big} noised student of the {wide} teacher > {big} fine-tuned, 1%",
         FROM_WIDE, "ft1_pre3_l1", "top1"),
        (f"3: {wide} noised student ({WIDE_TEACHER_SETTING}) > its teacher, 1% labels",
         WIDE_STUDENT, "ft1_pre3_wide_l1", "top1"),
        ("4: memory > no memory, L-BFGS all labels",
         "pre3_mem", "pre3", "probe:logreg_pretrained_100pct"),
        ("4: memory > no memory, 1% labels (fine-tuned)",
         "ft1_pre3_mem_l1", "ft1_pre3_l1", "top1"),
        ("4: memory > no memory, 10% labels (fine-tuned)",
         "ft10_pre3_mem_l1", "ft10_pre3_l1", "top1"),
        ("features > raw pixels, L-BFGS all labels",
         "pre3", "pre3", "probe:logreg_pretrained_100pct|logreg_pixels_100pct"),
        ("features > raw pixels, better of kNN-10 / kNN-200",
         "pre3", "pre3", "probe:best_knn_pretrained|best_knn_pixels"),
        ("L-BFGS on h > RBF-SVM on raw pixels, all labels",
         "pre3", "svm_pixels", "probe:logreg_pretrained_100pct|top1"),
    ]
    return rows


def distill_verdicts(distill_settings=DEFAULT_DISTILL):
    """One verdict row per distillation setting and label fraction."""
    return [(f"{setting}, {fraction}% labels: {DISTILL_SETTINGS[setting]['what']}",
             f"distill{fraction}_{setting}", f"ft{fraction}_pre3_l1", "top1")
            for setting in distill_settings for fraction in (1, 10)] + [
        (f"{setting}, {fraction}% labels, pretrained with the memory",
         f"distill{fraction}_mem_{setting}", f"ft{fraction}_pre3_mem_l1", "top1")
        for setting in every_seed_settings(distill_settings) for fraction in (1, 10)]


def _metric(results, run, metric, seed):
    """One seed's value of a verdict metric ("top1" or a probe row name),
    or None if not run."""
    if run == "svm_pixels":
        return results.get("svm_pixels", {}).get("top1")
    if metric == "top1":
        return results.get(f"{run}_s{seed}", {}).get("top1")
    values = results.get(f"probes_{run}_s{seed}", {}).get("values", {})
    if metric.startswith("best_knn_"):
        tag = metric[len("best_knn_"):]
        found = [values.get(f"knn{k}_{tag}") for k in (10, 200)]
        return None if None in found else max(found)
    return values.get(metric)


# A verdict needs both arms measured on at least this many seeds.
MIN_SEEDS = 2


def verdict_rows(results, seeds=SEEDS, rows=None):
    """Markdown rows: claim, expected-higher arm, other arm, paired difference,
    verdict ("holds" when every seed's difference has the paper's sign and
    their mean exceeds the larger half-range of the two arms), over the
    seeds that measured both arms (at least MIN_SEEDS)."""
    lines = ["| claim (the paper's direction) | higher arm | other arm | "
             "paired difference (per seed) | holds? |", "|---|---|---|---|---|"]
    for claim, high, low, metric in (verdicts() if rows is None else rows):
        # "probe:ROW" or "probe:HIGH_ROW|LOW_ROW" (the same run, two rows).
        high_row, _, low_row = metric.removeprefix("probe:").partition("|")
        pairs = [(_metric(results, high, high_row, s),
                  _metric(results, low, low_row or high_row, s)) for s in seeds]
        # The seeds that measured both arms (comparison settings run on two).
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        a, b = [x for x, _ in pairs], [y for _, y in pairs]
        if len(pairs) < MIN_SEEDS:
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


def claims_table(results, seeds=SEEDS, distill_settings=DEFAULT_DISTILL, out=None):
    """Markdown rows: claim, arm, mean ± half-range over seeds."""
    big, small, wide = WIDTH_NAMES[""], WIDTH_NAMES["_small"], WIDTH_NAMES["_wide"]

    def top1(name):
        return [_metric(results, name, "top1", s) for s in seeds]

    def probe_value(pre, row):
        return [_metric(results, pre, row, s) for s in seeds]

    arms = [
        ("1 head depth", "3-layer head, fine-tuned from layer 1, 1% labels", top1("ft1_pre3_l1")),
        ("1 head depth", "3-layer head, fine-tuned from h, 1% labels", top1("ft1_pre3_h")),
        ("1 head depth", "2-layer head, fine-tuned from h, 1% labels", top1("ft1_pre2_h")),
        ("1 head depth", "3-layer head, from layer 1, 10% labels", top1("ft10_pre3_l1")),
        ("1 head depth", "3-layer head, from h, 10% labels", top1("ft10_pre3_h")),
        ("1 head depth", "2-layer head, from h, 10% labels", top1("ft10_pre2_h")),
        ("label efficiency", "SimCLR 1% labels (600), fine-tuned from layer 1",
         top1("ft1_pre3_l1")),
        ("label efficiency", "supervised from scratch, the same 600", top1("scratch1")),
        ("label efficiency", "supervised from scratch, all 60,000", top1("scratch100")),
    ] + [
        ("2 bigger encoder", f"{WIDTH_NAMES[suffix]}, {what}",
         top1(run) if metric == "top1" else probe_value(run, metric.removeprefix("probe:")))
        for what, runs, metric in _width_arms(*WIDTHS_UP)
        for suffix, run in zip(WIDTHS_UP, runs)
    ] + [
        ("3 distillation", f"teacher: {big} fine-tuned on 1%", top1("ft1_pre3_l1")),
        ("3 distillation", f"teacher: {big} fine-tuned on 10%", top1("ft10_pre3_l1")),
    ]
    for setting in distill_settings:
        for fraction in (1, 10):
            arms.append(("3 distillation", f"self-distilled student, {fraction}%, {setting}: "
                         f"{DISTILL_SETTINGS[setting]['what']}",
                         top1(f"distill{fraction}_{setting}")))
    for fraction in (1, 10):
        arms.append(("3 distillation", f"teacher: {big} pretrained with the memory, "
                     f"fine-tuned on {fraction}%", top1(f"ft{fraction}_pre3_mem_l1")))
        for setting in every_seed_settings(distill_settings):
            arms.append(("3 distillation", f"its self-distilled student, {fraction}%, "
                         f"{setting}", top1(f"distill{fraction}_mem_{setting}")))
    arms += [
        ("3 distillation", f"{small} fine-tuned on 1% directly", top1("ft1_pre3_small_l1")),
        ("3 distillation", f"{small} student of the {big} 1% teacher ({distill_settings[0]})",
         top1("distill1_small")),
        ("3 distillation", f"teacher: {wide} fine-tuned on 1%", top1("ft1_pre3_wide_l1")),
        ("3 distillation", f"{big} noised student of the {wide} 1% teacher "
         f"({WIDE_TEACHER_SETTING}, started from the memory's pretraining)",
         top1(FROM_WIDE)),
        ("3 distillation", f"{wide} noised student of the {wide} 1% teacher "
         f"({WIDE_TEACHER_SETTING}, started from its pretraining)", top1(WIDE_STUDENT)),
        ("4 memory", "no memory: 1% labels (ft from layer 1)", top1("ft1_pre3_l1")),
        ("4 memory", "memory: 1% labels (ft from layer 1)", top1("ft1_pre3_mem_l1")),
        ("4 memory", "no memory: 10% labels (ft from layer 1)", top1("ft10_pre3_l1")),
        ("4 memory", "memory: 10% labels (ft from layer 1)", top1("ft10_pre3_mem_l1")),
    ]
    for pre, label in (("pre3", "no memory"), ("pre3_mem", "memory")):
        for row, what in (("logreg_pretrained_100pct", "L-BFGS, all labels"),
                          ("logreg_pretrained_1pct", "L-BFGS, 1% labels"),
                          ("knn10_pretrained", "kNN-10"), ("knn200_pretrained", "kNN-200")):
            arms.append(("4 memory", f"{label}: {what}", probe_value(pre, row)))
    lines = ["| claim | arm | top-1 % (mean ± half-range over seeds) |", "|---|---|---|"]
    for claim, arm, values in arms:
        lines.append(f"| {claim} | {arm} | {_mean_spread(values)[0]} |")
    if out is not None:
        for pre, label in (("pre3", "no memory"), ("pre3_mem", "memory")):
            rates = [run_images_per_s(results, out, f"{pre}_s{s}") for s in seeds]
            text = _mean_spread(rates, scale=1, digits=0)[0]
            lines.append(f"| 4 memory | {label}: pretraining images/s (median of the "
                         f"log's progress lines) | {text} |")
    for pre, label in (("pre3", f"SimCLR h, {big}"), ("pre2", "SimCLR h, 2-layer head"),
                       ("pre3_mem", "SimCLR h, memory"), ("pre3_small", f"SimCLR h, {small}"),
                       ("pre3_wide", f"SimCLR h, {wide}"), ("pre3", "raw pixels")):
        tag = "pixels" if label == "raw pixels" else "pretrained"
        for row, what in (("logreg_{}_100pct", "L-BFGS all labels"),
                          ("logreg_{}_1pct", "L-BFGS 1% labels"),
                          ("knn10_{}", "kNN-10"), ("knn200_{}", "kNN-200")):
            lines.append(f"| probes | {label}: {what} | "
                         f"{_mean_spread(probe_value(pre, row.format(tag)))[0]} |")
    svm = results.get("svm_pixels")
    if svm:
        lines.append(f"| probes | raw pixels: RBF-kernel SVM (C={svm['settings']['C']}, "
                     f"gamma={svm['settings']['gamma']}), {svm['train_examples']} training "
                     f"images | {100 * svm['top1']:.1f} (one fit) |")
    return "\n".join(lines) + "\n"


# Rows of OUT/fashion_mnist.json (the results suite's shape): name, what,
# and how to read the value of one seed.
SUITE_ROWS = [
    ("finetune_1pct", "SimCLR fine-tuned on 1% labels from head layer 1", "ft1_pre3_l1", "top1"),
    ("finetune_10pct", "SimCLR fine-tuned on 10% labels from head layer 1", "ft10_pre3_l1", "top1"),
    ("scratch_1pct", "supervised from scratch, same 1% subset", "scratch1", "top1"),
    ("scratch_100pct", "supervised from scratch, 100% labels", "scratch100", "top1"),
    ("logreg_pretrained_100pct", "L-BFGS logistic regression, frozen SimCLR h, all labels",
     "pre3", "logreg_pretrained_100pct"),
    ("logreg_pretrained_1pct", "L-BFGS logistic regression, frozen SimCLR h, 1% labels",
     "pre3", "logreg_pretrained_1pct"),
    ("knn10_pretrained", "cosine kNN-10, frozen SimCLR h", "pre3", "knn10_pretrained"),
    ("knn200_pretrained", "cosine kNN-200, frozen SimCLR h", "pre3", "knn200_pretrained"),
    ("logreg_pixels_100pct", "L-BFGS logistic regression, raw pixels, all labels",
     "pre3", "logreg_pixels_100pct"),
    ("knn10_pixels", "cosine kNN-10, raw pixels", "pre3", "knn10_pixels"),
    ("knn200_pixels", "cosine kNN-200, raw pixels", "pre3", "knn200_pixels"),
]


def suite_rows(results, seeds=SEEDS, distill_settings=DEFAULT_DISTILL):
    """Rows for OUT/fashion_mnist.json: top1 is the mean over the seeds that
    have the value (per_seed lists them; None where a seed is missing)."""
    main = distill_settings[0]
    specs = SUITE_ROWS[:2] + [
        ("distill_1pct", f"1% teacher distilled on 60k unlabeled ({main}: "
         f"{DISTILL_SETTINGS[main]['what']})", f"distill1_{main}", "top1"),
        ("distill_10pct", f"10% teacher distilled on 60k unlabeled ({main})",
         f"distill10_{main}", "top1")] + SUITE_ROWS[2:]
    rows = []
    for name, what, run, metric in specs:
        per_seed = [_metric(results, run, metric, s) for s in seeds]
        found = [v for v in per_seed if v is not None]
        key = f"{run}_s" if metric == "top1" else f"probes_{run}_s"
        rows.append({"run": name, "what": what,
                     "top1": statistics.mean(found) if found else None,
                     "knn_top1": None, "seeds": list(seeds), "per_seed": per_seed,
                     "seconds": sum(results.get(f"{key}{s}", {}).get("seconds", 0)
                                    for s in seeds),
                     "command": [results.get(f"{key}{s}", {}).get("command")
                                 for s in seeds]})
    svm = results.get("svm_pixels")
    if svm:
        rows.append({"run": "svm_pixels", "what": "RBF-kernel SVM, raw pixels",
                     "top1": svm["top1"], "knn_top1": None, "seeds": [],
                     "per_seed": [], "seconds": svm["seconds"],
                     "command": svm["command"]})
    return rows
