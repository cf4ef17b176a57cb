"""SimCLRv2's claims on Fashion-MNIST at the cpu budget, three seeds per arm.

SimCLRv2 (Chen et al. 2020b) claims that (1) a 3-layer projection head,
fine-tuned from its first layer, beats a 2-layer head fine-tuned from h, most
at 1% labels; (2) a bigger encoder gains more at 1% labels than at 100%;
(3) distilling a fine-tuned teacher on unlabeled images gives a student that
beats it (same size) or beats the small network fine-tuned directly (smaller
student); (4) the MoCo-style memory adds about a point. Its headline is label
efficiency: 1% of the labels, fine-tuned from the head's first layer, against
supervised training on the same images and on all of them.

Every arm is a `python run.py` command on Fashion-MNIST (60k train / 10k
test). Pretraining is the time-to-accuracy recipe (benchmarks/
time_to_accuracy.py with --width=0.25 --epochs=18): ResNet-18 with the CIFAR
stem at 1/4 width, batch 512, LARS, learning rate 0.075 with square-root
scaling, temperature 0.5, 18 epochs with 2 of warmup, --precision=auto
(mixed bfloat16 on CPUs with bf16 instructions). The smaller encoder of
claim 2 is the 1/8 width. A seed fixes the pretraining, the 1% / 10% label
subsets and the fine-tuning, so the arms of one seed are paired.

Arms per seed S (model_dir OUT/<name>_sS):

  pre3        1/4 width, 3-layer head (the default)
  pre2        the same with a 2-layer head (--num_proj_layers=2)
  pre3_mem    pre3 with the memory: a buffer of 16 batches (8,192 at batch
              512, the paper's 64K at 4,096) and --memory_momentum=0.997,
              the paper's 0.999 (a time constant of 3.2 ImageNet epochs at
              its batch) rescaled to 2.8 epochs of this run's 117 steps
  pre3_small  1/8 width, 3-layer head
  ft{1,10}_{pre}_{h,l1}   fine-tuned on 1% / 10% of the labels from h
                          (--ft_proj_selector=0) or from the head's first
                          layer (--ft_proj_selector=1)
  scratch1, scratch100    supervised from random init (1/4 width) on the
                          600 ids of ft1_pre3_l1 and on all 60,000 labels
  distill{1,10}_<setting> student of pre3's size taught by ft{1,10}_pre3_l1
                          on the 60k images without their labels, with the
                          fine-tuning augmentation (crops and flips); one
                          row per distillation setting (DISTILL_SETTINGS,
                          --distill_settings picks them)
  distill1_small          1/8-width student started from pre3_small, taught
                          by the 1/4-width ft1_pre3_l1 (the first setting)
  probes_{pre}            L-BFGS logistic regression (all labels and the
                          seed's 1% subset) and cosine kNN-10 / kNN-200 on
                          frozen h, and on the raw pixels of the same split
  svm_pixels              once per OUT (no seed): an RBF-kernel SVM on the
                          raw pixels, C=10 (the Fashion-MNIST paper's best
                          SVC, 89.7%, Xiao et al. 2017, Table 3)

Usage:

    python benchmarks/simclr_v2_claims.py --out=/tmp/claims --plan   # commands + cost
    python benchmarks/simclr_v2_claims.py --out=/tmp/claims          # everything
    python benchmarks/simclr_v2_claims.py --out=/tmp/claims --seeds=0 \
        --distill_settings=long,short                                # a subset
    python benchmarks/simclr_v2_claims.py --out=/tmp/claims \
        --only=pre3_mem,ft1_pre3_mem_l1,probes_pre3_mem              # named arms
    python benchmarks/simclr_v2_claims.py --out=/tmp/claims --report_only
    python benchmarks/simclr_v2_claims.py --out=/tmp/cs --budget=smoke \
        --seeds=0 --svm_train_examples=2000                          # plumbing only

Cost: `--plan` prints every command in order and the work in pretraining-
epoch equivalents (one epoch of two augmented views of 60k images at 1/4
width; fine-tuning and distillation count their single views, distillation
adds a third of a view for the teacher's forward pass, the memory 1.3x)
plus 90 s per run.py step for start-up, evaluation and export. The default
suite (3 seeds, distillation settings long, short, long_t2, long_random) is
84 steps and 570 equivalents, 216 of them pretraining epochs and 264
distillation: about 26 hours on 2 shared cores at the 400 images/s a
1/4-width pretraining step ran there (median of a time-to-accuracy run's
progress lines), and 12 hours on 2 idle ones (931 images/s, the width
sweep), before the SVM (extrapolated from 2,000 and 4,000 images: over an
hour on one loaded core). --distill_settings=long alone is 414 equivalents
(about 19 hours shared). Seeds run interleaved claim by claim, so a partial
suite answers the first claims for every seed.

Writes OUT/claims.json (every run's command, wall time and result),
OUT/claims.md (verdicts, the distillation settings, every arm) and
OUT/fashion_mnist.json (the results suite's row shape, rows such as
finetune_1pct and distill_1pct with top1 = the mean over seeds). A rerun with
the same --out reuses runs whose result exists for the same command, and
run.py resumes an interrupted run from its checkpoint; a run reads only
earlier runs of its own seed, so seeds can also run as separate processes
(--seeds=0, --seeds=1, ... on the same --out; each writes the tables of its
own seeds, and --report_only then writes those of all). --report_only
summarises what exists without running anything.
"""

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fashion_mnist as suite  # noqa: E402

if suite.ROOT not in sys.path:  # simclr_tf2 for the SVM row's pixels.
    sys.path.append(suite.ROOT)

SEEDS = (0, 1, 2)
TRAIN_EXAMPLES = 60000
PRETRAIN_EPOCHS = 18
MODEL = ["--resnet_depth=18", "--cifar_stem=true", "--precision=auto"]
# The bigger and the smaller encoder of claim 2; every other arm is the bigger.
WIDTHS = {"": 0.25, "_small": 0.125}
WIDTH_NAMES = {"": "1/4 width", "_small": "1/8 width"}
# The time-to-accuracy recipe (fashion_mnist recipe: LARS, crops >= 35% of
# the area, jitter 1.0, no blur; batch 512, 0.075 x sqrt(batch)).
PRETRAIN = suite.PRETRAIN_FLAGS + ["--temperature=0.5",
                                   f"--train_epochs={PRETRAIN_EPOCHS}",
                                   "--warmup_epochs=2"]
# The paper's memory: 64K keys at batch 4,096 (16 batches) and momentum
# 0.999 (time constant 1,000 steps = 3.2 epochs of 312 steps). Here: 16
# batches of 512, and about 3 epochs of 117 steps (1 / (1 - 0.997) = 333
# steps, 16% of the 2,110-step run).
MEMORY = ["--memory_size=8192", "--memory_momentum=0.997"]
SELECTOR = {"h": ["--ft_proj_selector=0"], "l1": ["--ft_proj_selector=1"]}
# Supervised from scratch: the results suite's flags (weight decay, milder crops).
SCRATCH = ["--train_mode=finetune"] + suite.SCRATCH_FLAGS
# The RBF-kernel SVM on raw pixels (scikit-learn SVC): C=10 as in Xiao et
# al. 2017's best SVC; gamma="scale" = 1 / (pixels x pixel variance).
SVM = {"C": 10.0, "gamma": "scale"}

# Per budget: lengths of each kind of run. "smoke" runs a few steps on a
# small split (plumbing only).
BUDGETS = {
    "cpu": {
        "split": [], "probe_split": [],
        "pretrain": [], "memory": [], "label_fraction_1": 0.01,
        "ft1": ["--train_epochs=100", "--train_batch_size=128"],
        "ft10": ["--train_epochs=30"],
        "scratch100": ["--train_epochs=15"],
        "distill": [],
    },
    "smoke": {
        "split": ["--train_split=train[:2048]", "--eval_split=test[:512]"],
        "probe_split": ["--train_split=train[:2048]", "--eval_split=test[:512]"],
        "pretrain": ["--train_steps=3", "--warmup_epochs=0"],
        "memory": ["--memory_size=1024"],  # Below the 2,048 images.
        "label_fraction_1": 0.05,  # 1% of 2,048 would be 2 images per class.
        "ft1": ["--train_steps=3", "--train_batch_size=32"],
        "ft10": ["--train_steps=3"],
        "scratch100": ["--train_steps=3"],
        "distill": ["--train_steps=3"],
    },
}


def _distill(epochs, *extra, checkpoint=True, labels=False):
    """labels: add the true-label loss, reading only the labels of the
    teacher's subset (its label_subset.txt)."""
    if labels:
        extra = extra + ("--distill_label_weight=1",)
    return {"flags": ["--train_mode=distill", f"--train_epochs={epochs}", *extra],
            "checkpoint": checkpoint, "labels": labels}


# Distillation settings: each one a row at 1% and 10% labels. The first
# selected one also teaches the 1/8-width student (claim 3b) and is the
# results-suite row distill_1pct.
DISTILL_SETTINGS = {
    "long": dict(_distill(PRETRAIN_EPOCHS), what=(
        f"{PRETRAIN_EPOCHS} epochs (as long as pretraining), temperature 1, "
        "student from its pretraining checkpoint")),
    "short": dict(_distill(3), what="3 epochs, temperature 1, from the checkpoint"),
    "long_t2": dict(_distill(PRETRAIN_EPOCHS, "--distill_temperature=2"),
                    what=f"{PRETRAIN_EPOCHS} epochs, temperature 2, from the checkpoint"),
    "long_random": dict(_distill(PRETRAIN_EPOCHS, checkpoint=False), what=(
        f"{PRETRAIN_EPOCHS} epochs, temperature 1, student from random init")),
    "long_flips": dict(_distill(PRETRAIN_EPOCHS, "--crop_min_area=1.0"), what=(
        f"{PRETRAIN_EPOCHS} epochs, temperature 1, from the checkpoint, "
        "flips only (no crops)")),
    "long_labels": dict(_distill(PRETRAIN_EPOCHS, labels=True), what=(
        f"{PRETRAIN_EPOCHS} epochs, plus the true-label loss (weight 1) on the "
        "teacher's labelled subset only")),
}
DEFAULT_DISTILL = ("long", "short", "long_t2", "long_random")


def pretrain_arms():
    """{pretraining name: its flags without the width}."""
    return {"pre3": PRETRAIN, "pre2": PRETRAIN + ["--num_proj_layers=2"],
            "pre3_mem": PRETRAIN + MEMORY, "pre3_small": PRETRAIN}


def _width(pre):
    return [f"--width_multiplier={WIDTHS['_small' if pre.endswith('_small') else '']}"]


PROBE = "probe"  # A run_list entry (name, PROBE): probe that pretraining's h.


def run_list(out, seed, budget="cpu", distill_settings=DEFAULT_DISTILL):
    """This seed's steps in claim order: [(name, run.py flags or PROBE)].

    Every --checkpoint, --teacher and --label_subset_file names an earlier
    run of the same seed.
    """
    def d(name):
        return os.path.join(out, f"{name}_s{seed}")
    b = BUDGETS[budget]
    pre = pretrain_arms()
    finetune_flags = {1: [f"--label_fraction={b['label_fraction_1']}"] + b["ft1"],
                      10: ["--label_fraction=0.1"] + b["ft10"]}
    runs = []

    def pretrain(name):
        memory = b["memory"] if name.endswith("_mem") else []
        runs.append((f"{name}_s{seed}", _width(name) + pre[name] + b["pretrain"] + memory))

    def finetune(fraction, name, layer):
        runs.append((f"ft{fraction}_{name}_{layer}_s{seed}",
                     _width(name) + ["--train_mode=finetune", f"--checkpoint={d(name)}"]
                     + SELECTOR[layer] + finetune_flags[fraction]))

    def distill(fraction, setting, student="pre3"):
        spec = DISTILL_SETTINGS[setting]
        tag = setting if student == "pre3" else "small"
        start = [f"--checkpoint={d(student)}"] if spec["checkpoint"] else []
        teacher = d(f"ft{fraction}_pre3_l1")
        # The teacher's labels only: the others stay hidden (-1).
        labels = ([f"--label_subset_file={os.path.join(teacher, 'label_subset.txt')}"]
                  if spec["labels"] else [])
        runs.append((f"distill{fraction}_{tag}_s{seed}",
                     _width(student) + spec["flags"] + SELECTOR["l1"]
                     + [f"--teacher={teacher}"] + start + labels + b["distill"]))

    def probes(name):  # After ft1_pre3_l1, whose label subset the probe reads.
        runs.append((f"probes_{name}_s{seed}", PROBE))

    subset_1pct = f"--label_subset_file={os.path.join(d('ft1_pre3_l1'), 'label_subset.txt')}"
    # Claim 1 and the headline: head depth, the layer fine-tuning starts
    # from, and 1% labels against supervised training.
    pretrain("pre3")
    finetune(1, "pre3", "l1")
    probes("pre3")
    runs.append((f"scratch1_s{seed}", _width("pre3") + SCRATCH + [subset_1pct] + b["ft1"]))
    pretrain("pre2")
    finetune(1, "pre3", "h")
    finetune(1, "pre2", "h")
    finetune(10, "pre3", "l1")
    finetune(10, "pre2", "h")
    # Claim 3a: self-distillation, one row per setting.
    for setting in distill_settings:
        for fraction in (1, 10):
            distill(fraction, setting)
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
    distill(1, distill_settings[0], student="pre3_small")
    finetune(10, "pre3", "h")
    probes("pre2")
    runs.append((f"scratch100_s{seed}", _width("pre3") + SCRATCH + b["scratch100"]))
    return runs


def all_runs(out, seeds, budget="cpu", distill_settings=DEFAULT_DISTILL):
    """Every seed's runs, interleaved step by step (claim order for all seeds)."""
    lists = [run_list(out, s, budget, distill_settings) for s in seeds]
    return [run for block in zip(*lists) for run in block]


def command_for(name, flags, out, data_dir, budget="cpu"):
    common = ["--mode=train_then_eval", "--dataset=fashion_mnist",
              f"--seed={name.rsplit('_s', 1)[1]}", "--export_after_eval=true",
              "--log_every_steps=100", f"--model_dir={os.path.join(out, name)}"]
    if data_dir:
        common.append(f"--data_dir={data_dir}")
    return [suite.PYTHON, "run.py"] + common + MODEL + BUDGETS[budget]["split"] + flags


def probe_args(name, out, data_dir, budget="cpu"):
    """`python -m simclr_tf2.analysis probes` arguments of probes_<pre>_s<seed>."""
    pre, seed = name[len("probes_"):].rsplit("_s", 1)
    model_dir = os.path.join(out, f"{pre}_s{seed}")
    root = os.path.join(model_dir, "saved_model")
    export = (suite.latest_export(model_dir) if os.path.isdir(root)
              else os.path.join(root, "<last step>"))
    args = ["-m", "simclr_tf2.analysis", "probes", "--dataset=fashion_mnist",
            f"--pretrained={export}",
            f"--label_subset_file={os.path.join(out, f'ft1_pre3_l1_s{seed}', 'label_subset.txt')}",
            f"--out={os.path.join(out, name + '.json')}"] + BUDGETS[budget]["probe_split"]
    if data_dir:
        args.append(f"--data_dir={data_dir}")
    return args


def probe(name, out, data_dir, budget="cpu"):
    """Frozen-feature probes of one pretraining (name probes_<pre>_s<seed>);
    returns its result with {row name: accuracy} under "values"."""
    done_file = os.path.join(out, name + ".done.json")
    args = probe_args(name, out, data_dir, budget)
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


# ---- The RBF-kernel SVM on raw pixels: one cached row per OUT. ----

def svm_top1(train_x, train_y, test_x, test_y, c=SVM["C"], gamma=SVM["gamma"]):
    """Test top-1 of scikit-learn's SVC (RBF kernel) on rows of pixels."""
    import numpy as np
    from sklearn.svm import SVC
    classifier = SVC(C=c, kernel="rbf", gamma=gamma).fit(train_x, train_y)
    return float(np.mean(classifier.predict(test_x) == test_y))


def svm_settings(train_examples, budget="cpu"):
    """What the cached row depends on (a rerun with other settings recomputes)."""
    split = dict(flag[2:].split("=", 1) for flag in BUDGETS[budget]["probe_split"])
    return {"train_split": split.get("train_split", "train"),
            "eval_split": split.get("eval_split", "test"),
            "train_examples": train_examples, "seed": 0, **SVM}


def load_pixels(settings, data_dir=None):
    """(train_x, train_y, test_x, test_y) of raw pixels in [0, 1], one channel
    when an image's channels are copies; train rows subsampled (seed 0,
    without replacement) to settings["train_examples"] when smaller."""
    import numpy as np
    from simclr_tf2.analysis import features
    from simclr_tf2.data.registry import open_source
    source = open_source("fashion_mnist", data_dir)
    train_x, train_y, _ = features.split_pixels(source, settings["train_split"])
    test_x, test_y, _ = features.split_pixels(source, settings["eval_split"])
    if train_x.shape[1] % 3 == 0 and np.array_equal(train_x[:, 0::3], train_x[:, 1::3]):
        train_x, test_x = train_x[:, 0::3], test_x[:, 0::3]
    n = settings["train_examples"]
    if n and n < len(train_x):
        keep = np.sort(np.random.default_rng(settings["seed"]).choice(
            len(train_x), n, replace=False))
        train_x, train_y = train_x[keep], train_y[keep]
    return train_x, train_y, test_x, test_y


def svm_row(out, settings, load=load_pixels, data_dir=None):
    """The svm_pixels result: reused from OUT/svm_pixels.done.json when its
    settings match, else computed (load(settings, data_dir) gives the arrays)."""
    done_file = os.path.join(out, "svm_pixels.done.json")
    if os.path.exists(done_file):
        done = json.load(open(done_file))
        if done["settings"] == settings:
            print(f"[svm_pixels] reused ({done['seconds']} s)", flush=True)
            return done
    print(f"[svm_pixels] SVC {settings}", flush=True)
    start = time.time()
    train_x, train_y, test_x, test_y = load(settings, data_dir)
    top1 = svm_top1(train_x, train_y, test_x, test_y, settings["C"], settings["gamma"])
    row = {"run": "svm_pixels", "settings": settings, "top1": top1,
           "train_examples": int(len(train_x)), "test_examples": int(len(test_x)),
           "seconds": round(time.time() - start),
           "command": f"SVC(C={settings['C']}, kernel='rbf', gamma={settings['gamma']!r}) "
                      f"on {len(train_x)} x {train_x.shape[1]} pixels"}
    tmp = done_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(row, f, indent=2)
    os.replace(tmp, done_file)
    print(f"[svm_pixels] {row['seconds']} s | top-1 {top1:.4f}", flush=True)
    return row


# ---- Cost estimate (--plan). ----

# Work of one run in pretraining-epoch equivalents: image-views through a
# forward and backward pass, over the 120,000 of one pretraining epoch at
# 1/4 width. 1/8 width counts as 1/4: in mixed bfloat16 the sweep measured
# it slower (501 against 931 images/s, docs/performance.md), before batch
# norm moved to float32 at narrow channels; not measured since. Assumed
# factors: the memory's momentum encoder 1.3x, a teacher's forward pass a
# third of a training view, a probe (feature extraction, L-BFGS, kNN) 2.
WIDTH_COST = {0.25: 1.0, 0.125: 1.0}
MEMORY_COST = 1.3
TEACHER_COST = 1 / 3
PROBE_COST = 2.0
# Per run.py step: TensorFlow start-up, the evaluation (run.py's kNN over
# the 60k training images) and the export; assumed, not measured.
STEP_OVERHEAD_S = 90
# images/s of a 1/4-width pretraining step at batch 512 (2 views per image),
# mixed bfloat16, 2 shared cores: the median progress line of a
# time-to-accuracy run (--width=0.25 --epochs=18), the first left out.
MEASURED_IMAGES_PER_S = 400


def _flag(flags, name, default=None):
    for flag in flags:
        if flag.startswith(f"--{name}="):
            return flag.split("=", 1)[1]
    return default


def cost(name, flags):
    """(pretraining-epoch equivalents, of which pretraining epochs) of one step."""
    if flags == PROBE:
        return PROBE_COST, 0.0
    width = WIDTH_COST.get(float(_flag(flags, "width_multiplier", 0.25)), 1.0)
    epochs = float(_flag(flags, "train_epochs", 0))
    mode = _flag(flags, "train_mode", "pretrain")
    if mode == "pretrain":
        factor = MEMORY_COST if _flag(flags, "memory_size", "0") != "0" else 1.0
        return epochs * width * factor, epochs
    fraction = float(_flag(flags, "label_fraction", 1.0))
    examples = TRAIN_EXAMPLES * (1.0 if mode == "distill" else fraction)
    if _flag(flags, "label_subset_file"):
        examples = TRAIN_EXAMPLES * 0.01
    views = 1 + (TEACHER_COST if mode == "distill" else 0)
    return epochs * examples * views * width / (2 * TRAIN_EXAMPLES), 0.0


def plan(runs, out, data_dir, budget, images_per_s, svm_examples):
    """Lines: every command in order, then the estimated cost."""
    lines, total, pretraining, kinds = [], 0.0, 0.0, {}
    for index, (name, flags) in enumerate(runs, 1):
        work, epochs = cost(name, flags)
        total += work
        pretraining += epochs
        kind = ("probes" if flags == PROBE else
                {"pretrain": "pretraining", "finetune": "fine-tuning and from scratch",
                 "distill": "distillation"}[_flag(flags, "train_mode", "pretrain")])
        kinds[kind] = kinds.get(kind, 0.0) + work
        command = (suite._display([suite.PYTHON] + probe_args(name, out, data_dir, budget))
                   if flags == PROBE else
                   suite._display(command_for(name, flags, out, data_dir, budget)))
        lines.append(f"{index:3d} {name} [{work:.1f} eq]: {command}")
    if svm_examples:
        lines.append(f"{len(runs) + 1:3d} svm_pixels: SVC(C={SVM['C']}, kernel='rbf', "
                     f"gamma={SVM['gamma']!r}) on {svm_examples} training images' pixels")
    seconds_per_eq = TRAIN_EXAMPLES / images_per_s
    lines.append("by kind: " + ", ".join(f"{kind} {work:.0f}" for kind, work in kinds.items()))
    steps = sum(flags != PROBE for _, flags in runs)
    hours = (total * seconds_per_eq + steps * STEP_OVERHEAD_S) / 3600
    lines.append(f"estimate: {total:.0f} pretraining-epoch equivalents ({pretraining:.0f} "
                 f"of them pretraining epochs, {len(runs)} steps); at {images_per_s:.0f} "
                 f"images/s of pretraining and {STEP_OVERHEAD_S} s per run.py step: "
                 f"{hours:.1f} h" + (", plus the SVM" if svm_examples else ""))
    return lines


# ---- Reading results. ----

def images_per_s(log_path):
    """Median images/s of a run.py log's progress lines (the first, which
    includes tracing, left out when there are others), or None."""
    if not os.path.exists(log_path):
        return None
    rates = [float(m.group(1)) for m in re.finditer(
        r"^step \d+/\d+ \| ([\d.]+) images/s", open(log_path).read(), re.M)]
    return statistics.median(rates[1:] or rates) if rates else None


def _mean_spread(values, scale=100, digits=1, unit=""):
    """'mean ± half-range' over seeds, or '' if none."""
    values = [v for v in values if v is not None]
    if not values:
        return "", None
    mean = statistics.mean(values)
    half = (max(values) - min(values)) / 2
    return (f"{scale * mean:.{digits}f}{unit} ± {scale * half:.{digits}f}{unit} "
            f"(n={len(values)})"), mean


def verdicts(distill_settings=DEFAULT_DISTILL):
    """(claim, the arm the paper expects higher, the other arm, metric): the
    verdict rows. A metric "top1" reads run.py's result of that run name;
    "probe:<row>" reads probes_<pre>_s<seed>'s row for pretraining <pre>;
    "probe:<row>|<other row>" compares two rows of the same probe; the arm
    "svm_pixels" is the seedless SVM row."""
    big, small = WIDTH_NAMES[""], WIDTH_NAMES["_small"]
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
        (f"2: {big} > {small}, 1% labels (fine-tuned)",
         "ft1_pre3_l1", "ft1_pre3_small_l1", "top1"),
        (f"2: {big} > {small}, 10% labels (fine-tuned)",
         "ft10_pre3_l1", "ft10_pre3_small_l1", "top1"),
        (f"2: {big} > {small}, 100% labels (L-BFGS on h)",
         "pre3", "pre3_small", "probe:logreg_pretrained_100pct"),
        (f"3: self-distilled student ({main}) > its teacher, 1% labels",
         f"distill1_{main}", "ft1_pre3_l1", "top1"),
        (f"3: self-distilled student ({main}) > its teacher, 10% labels",
         f"distill10_{main}", "ft10_pre3_l1", "top1"),
        (f"3: {small} student of the {big} teacher > {small} fine-tuned, 1%",
         "distill1_small", "ft1_pre3_small_l1", "top1"),
        ("4: memory > no memory, L-BFGS all labels",
         "pre3_mem", "pre3", "probe:logreg_pretrained_100pct"),
        ("4: memory > no memory, 1% labels (fine-tuned)",
         "ft1_pre3_mem_l1", "ft1_pre3_l1", "top1"),
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
            for setting in distill_settings for fraction in (1, 10)]


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


def verdict_rows(results, seeds=SEEDS, rows=None):
    """Markdown rows: claim, expected-higher arm, other arm, paired difference,
    verdict ("holds" when every seed's difference has the paper's sign and
    their mean exceeds the larger half-range of the two arms)."""
    lines = ["| claim (the paper's direction) | higher arm | other arm | "
             "paired difference (per seed) | holds? |", "|---|---|---|---|---|"]
    for claim, high, low, metric in (verdicts() if rows is None else rows):
        # "probe:ROW" or "probe:HIGH_ROW|LOW_ROW" (the same run, two rows).
        high_row, _, low_row = metric.removeprefix("probe:").partition("|")
        a = [_metric(results, high, high_row, s) for s in seeds]
        b = [_metric(results, low, low_row or high_row, s) for s in seeds]
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


def claims_table(results, seeds=SEEDS, distill_settings=DEFAULT_DISTILL, out=None):
    """Markdown rows: claim, arm, mean ± half-range over seeds."""
    big, small = WIDTH_NAMES[""], WIDTH_NAMES["_small"]

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
        ("2 bigger encoder", f"{small}, 1% labels (ft from layer 1)", top1("ft1_pre3_small_l1")),
        ("2 bigger encoder", f"{big}, 1% labels (ft from layer 1)", top1("ft1_pre3_l1")),
        ("2 bigger encoder", f"{small}, 10% labels", top1("ft10_pre3_small_l1")),
        ("2 bigger encoder", f"{big}, 10% labels", top1("ft10_pre3_l1")),
        ("2 bigger encoder", f"{small}, 100% labels (L-BFGS on h)",
         probe_value("pre3_small", "logreg_pretrained_100pct")),
        ("2 bigger encoder", f"{big}, 100% labels (L-BFGS on h)",
         probe_value("pre3", "logreg_pretrained_100pct")),
        ("3 distillation", f"teacher: {big} fine-tuned on 1%", top1("ft1_pre3_l1")),
        ("3 distillation", f"teacher: {big} fine-tuned on 10%", top1("ft10_pre3_l1")),
    ]
    for setting in distill_settings:
        for fraction in (1, 10):
            arms.append(("3 distillation", f"self-distilled student, {fraction}%, {setting}: "
                         f"{DISTILL_SETTINGS[setting]['what']}",
                         top1(f"distill{fraction}_{setting}")))
    arms += [
        ("3 distillation", f"{small} fine-tuned on 1% directly", top1("ft1_pre3_small_l1")),
        ("3 distillation", f"{small} student of the {big} 1% teacher ({distill_settings[0]})",
         top1("distill1_small")),
        ("4 memory", "no memory: 1% labels (ft from layer 1)", top1("ft1_pre3_l1")),
        ("4 memory", "memory: 1% labels (ft from layer 1)", top1("ft1_pre3_mem_l1")),
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
            rates = [images_per_s(os.path.join(out, f"{pre}_s{s}.log")) for s in seeds]
            text = _mean_spread(rates, scale=1, digits=0)[0]
            lines.append(f"| 4 memory | {label}: pretraining images/s (median of the "
                         f"log's progress lines) | {text} |")
    for pre, label in (("pre3", f"SimCLR h, {big}"), ("pre2", "SimCLR h, 2-layer head"),
                       ("pre3_mem", "SimCLR h, memory"), ("pre3_small", f"SimCLR h, {small}"),
                       ("pre3", "raw pixels")):
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


def _seeds(text):
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds={text!r}: comma-separated integers")
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed")
    return seeds


def _settings(text):
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    for name in names:
        if name not in DISTILL_SETTINGS:
            raise argparse.ArgumentTypeError(
                f"unknown distillation setting {name!r}; known: {', '.join(DISTILL_SETTINGS)}")
    if not names:
        raise argparse.ArgumentTypeError("--distill_settings needs at least one setting")
    return names


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/simclr_v2_claims")
    parser.add_argument("--data_dir", default=None,
                        help="Folder with the four Fashion-MNIST IDX files; default: "
                             "/usr/share/datasets/fashion-mnist (Debian package).")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu",
                        help="cpu: the claims; smoke: a few steps per run on 2,048 "
                             "images (plumbing only).")
    parser.add_argument("--seeds", type=_seeds, default=SEEDS,
                        help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--distill_settings", type=_settings, default=DEFAULT_DISTILL,
                        help="comma-separated distillation settings; the first also "
                             "teaches the smaller student. Known: "
                             + ", ".join(f"{k} ({v['what']})" for k, v in
                                         DISTILL_SETTINGS.items()))
    parser.add_argument("--svm_train_examples", type=int, default=TRAIN_EXAMPLES,
                        help="training images of the RBF-SVM row (a seed-0 subsample "
                             "when below the split's size; 0: no SVM row)")
    parser.add_argument("--only", type=lambda text: tuple(
                            s.strip() for s in text.split(",") if s.strip()), default=(),
                        help="comma-separated run names without the seed suffix (e.g. "
                             "pre3_mem,ft1_pre3_mem_l1, or svm_pixels): run only those; "
                             "the others are reported from their results in --out")
    parser.add_argument("--plan", action="store_true",
                        help="Print every command in order and the estimated cost; "
                             "run nothing.")
    parser.add_argument("--images_per_s", type=float, default=MEASURED_IMAGES_PER_S,
                        help="pretraining images/s that --plan converts work into hours")
    parser.add_argument("--report_only", action="store_true",
                        help="Only summarise the runs already in --out.")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = os.path.abspath(args.out)
    runs = all_runs(out, args.seeds, args.budget, args.distill_settings)
    known = {name.rsplit("_s", 1)[0] for name, _ in runs} | {"svm_pixels"}
    unknown = sorted(set(args.only) - known)
    if unknown:
        sys.exit(f"error: --only names no run: {', '.join(unknown)} "
                 f"(known: {', '.join(sorted(known))})")
    if args.only and args.plan:
        runs = [run for run in runs if run[0].rsplit("_s", 1)[0] in args.only]
    if args.plan:
        print("\n".join(plan(runs, out, args.data_dir, args.budget, args.images_per_s,
                             args.svm_train_examples
                             if not args.only or "svm_pixels" in args.only else 0)))
        return
    os.makedirs(out, exist_ok=True)
    start = time.time()
    results, failed = {}, []
    # --report_only leaves commands.txt as the runs wrote it.
    commands_path = (os.devnull if args.report_only
                     else os.path.join(out, "commands.txt"))
    svm_done = os.path.join(out, "svm_pixels.done.json")
    with open(commands_path, "w") as commands:
        for name, flags in runs:
            done_file = os.path.join(out, name + ".done.json")
            if args.report_only or (args.only and name.rsplit("_s", 1)[0] not in args.only):
                if os.path.exists(done_file):
                    results[name] = json.load(open(done_file))
                    commands.write(f"{name}: {results[name]['command']}\n")
                continue
            try:
                if flags == PROBE:
                    results[name] = probe(name, out, args.data_dir, args.budget)
                    commands.write(f"{name}: {results[name]['command']}\n")
                else:
                    command = command_for(name, flags, out, args.data_dir, args.budget)
                    commands.write(f"{name}: {suite._display(command)}\n")
                    results[name] = suite.run_one(name, command, out)
            except (SystemExit, OSError) as failure:  # Later arms still run.
                print(f"[{name}] failed: {failure}", flush=True)
                failed.append(name)
            commands.flush()
        if args.report_only or (args.only and "svm_pixels" not in args.only):
            if os.path.exists(svm_done):
                results["svm_pixels"] = json.load(open(svm_done))
        elif args.svm_train_examples:
            results["svm_pixels"] = svm_row(
                out, svm_settings(args.svm_train_examples, args.budget),
                data_dir=args.data_dir)
            commands.write(f"svm_pixels: {results['svm_pixels']['command']}\n")
    summary = {"hardware": {"machine": platform.machine(),
                            "processor": platform.processor(),
                            "cpu_count": os.cpu_count(),
                            "python": platform.python_version()},
               "budget": args.budget, "seeds": list(args.seeds),
               "pretrain_epochs": PRETRAIN_EPOCHS,
               "distill_settings": {s: DISTILL_SETTINGS[s]["what"]
                                    for s in args.distill_settings},
               "images_per_s": {f"{pre}_s{s}": images_per_s(os.path.join(out, f"{pre}_s{s}.log"))
                                for pre in ("pre3", "pre3_mem") for s in args.seeds},
               "total_seconds": round(time.time() - start), "runs": results}
    with open(os.path.join(out, "claims.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(out, "fashion_mnist.json"), "w") as f:
        json.dump({"budget": f"simclr_v2_claims ({args.budget})",
                   "hardware": summary["hardware"],
                   "rows": suite_rows(results, args.seeds, args.distill_settings)},
                  f, indent=2)
    table = (verdict_rows(results, args.seeds, verdicts(args.distill_settings))
             + "\nDistillation settings (student against its teacher, paired by seed):\n\n"
             + verdict_rows(results, args.seeds, distill_verdicts(args.distill_settings))
             + "\n" + claims_table(results, args.seeds, args.distill_settings, out))
    with open(os.path.join(out, "claims.md"), "w") as f:
        f.write(table)
    print(table)
    if failed:
        sys.exit(f"error: {len(failed)} steps failed ({', '.join(failed)}); "
                 f"see their logs in {out}, then rerun the same command to resume.")


if __name__ == "__main__":
    main()
