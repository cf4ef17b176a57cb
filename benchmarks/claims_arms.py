"""The arms of the SimCLRv2 claims suite: every run's name and run.py flags.

benchmarks/simclr_v2_claims.py runs them and benchmarks/claims_report.py
reads their results; the arms and their order are described there.
"""

import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fashion_mnist as suite  # noqa: E402

SEEDS = (0, 1, 2)
TRAIN_EXAMPLES = 60000
PRETRAIN_EPOCHS = 18
MODEL = ["--resnet_depth=18", "--cifar_stem=true", "--precision=auto"]
# The encoders of claim 2 by pretraining-name suffix: every other arm is
# the 1/4 width; the 1/8 width is the smaller encoder, the 1/2 width the wider.
WIDTHS = {"": 0.25, "_small": 0.125, "_wide": 0.5}
WIDTH_NAMES = {"": "1/4 width", "_small": "1/8 width", "_wide": "1/2 width"}
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
# Fine-tuning and distillation see whole images, flipped at random: on seed
# 0's 1% subset, fine-tuning with crops of 35-100% of the area (the
# pretraining recipe's) gave 82.3%, 8-100% 82.0%, whole images 83.7%.
WHOLE_IMAGES = ["--crop_min_area=1.0"]
RECIPE_CROPS = ["--crop_min_area=0.35"]
SMALL_CROPS = ["--crop_min_area=0.2"]
# Supervised from scratch: the results suite's flags (weight decay, milder crops).
SCRATCH = ["--train_mode=finetune"] + suite.SCRATCH_FLAGS
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


def _distill(epochs, *extra, checkpoint=True, labels=False, augmentation=None,
             taught_by=None):
    """labels: add the true-label loss, reading only the labels of the
    teacher's subset (its label_subset.txt). augmentation: crop flags
    (default whole images, as the teacher was fine-tuned). taught_by: the
    setting whose student teaches (default: the fine-tuned model)."""
    if labels:
        extra = extra + ("--distill_label_weight=1",)
    return {"flags": ["--train_mode=distill", f"--train_epochs={epochs}", *extra,
                      *(WHOLE_IMAGES if augmentation is None else augmentation)],
            "checkpoint": checkpoint, "labels": labels, "taught_by": taught_by}


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
    "long_crops": dict(_distill(PRETRAIN_EPOCHS, augmentation=RECIPE_CROPS), what=(
        f"{PRETRAIN_EPOCHS} epochs, temperature 1, from the checkpoint, "
        "crops of 35-100% of the area")),
    "long_noisy": dict(_distill(PRETRAIN_EPOCHS, "--distill_teacher_input=whole_image",
                                augmentation=RECIPE_CROPS), all_seeds=True, what=(
        f"{PRETRAIN_EPOCHS} epochs, temperature 1, from the checkpoint; the teacher "
        "labels whole images, the student learns them from crops of 35-100%")),
    "long_noisier": dict(_distill(PRETRAIN_EPOCHS, "--distill_teacher_input=whole_image",
                                  augmentation=SMALL_CROPS), what=(
        f"{PRETRAIN_EPOCHS} epochs, temperature 1, from the checkpoint; the teacher "
        "labels whole images, the student learns them from crops of 20-100%")),
    "noisy_round2": dict(_distill(PRETRAIN_EPOCHS, "--distill_teacher_input=whole_image",
                                  augmentation=RECIPE_CROPS,
                                  taught_by="long_noisy"), what=(
        "long_noisy again, taught by the long_noisy student instead of the "
        "fine-tuned model (a second round; compared with the fine-tuned teacher)")),
    "longer_noisy": dict(_distill(2 * PRETRAIN_EPOCHS, "--distill_teacher_input=whole_image",
                                  augmentation=RECIPE_CROPS), what=(
        f"long_noisy for {2 * PRETRAIN_EPOCHS} epochs (twice as long as pretraining)")),
    "long_labels": dict(_distill(PRETRAIN_EPOCHS, labels=True), what=(
        f"{PRETRAIN_EPOCHS} epochs, plus the true-label loss (weight 1) on the "
        "teacher's labelled subset only")),
}
DEFAULT_DISTILL = ("long", "long_crops", "long_noisy", "long_noisier", "noisy_round2",
                   "longer_noisy", "long_labels", "long_t2", "long_random", "short")


# Run-name infix of a distillation family, by the teacher's pretraining:
# students of pre3's teachers (distill{1,10}_<setting>), of pre3_mem's
# (distill{1,10}_mem_<setting>), of pre3_wide's (distill1_wide_<setting>);
# "from_" before it when the student starts from another pretraining
# (distill1_from_wide_<setting>).
FAMILIES = {"pre3": "", "pre3_mem": "mem_", "pre3_wide": "wide_"}
# The recipe of the wider teacher's students (distill1_from_wide_<setting> at
# the 1/4 width, distill1_wide_<setting> at its own 1/2 width).
WIDE_TEACHER_SETTING = "long_noisy"


def every_seed_settings(distill_settings):
    """The first setting and those marked all_seeds: every seed runs them,
    and the memory's teachers are distilled with them."""
    return distill_settings[:1] + tuple(
        name for name in distill_settings[1:] if DISTILL_SETTINGS[name].get("all_seeds"))


def teaching_setting(name):
    """The distillation setting whose student teaches setting `name`, or
    None when a fine-tuned model teaches it."""
    return DISTILL_SETTINGS[name]["taught_by"]


def pretrain_arms():
    """{pretraining name: its flags without the width}."""
    return {"pre3": PRETRAIN, "pre2": PRETRAIN + ["--num_proj_layers=2"],
            "pre3_mem": PRETRAIN + MEMORY, "pre3_small": PRETRAIN, "pre3_wide": PRETRAIN}


def _width(pre):
    suffix = next((s for s in WIDTHS if s and pre.endswith(s)), "")
    return [f"--width_multiplier={WIDTHS[suffix]}"]


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
                     + SELECTOR[layer] + WHOLE_IMAGES + finetune_flags[fraction]))

    def distill(fraction, setting, student="pre3", teacher_pre=None):
        spec = DISTILL_SETTINGS[setting]
        # The smaller student learns from the bigger encoder's teacher; the
        # memory's student from the model fine-tuned from the memory's
        # pretraining; teacher_pre names another teacher's pretraining.
        base = teacher_pre or ("pre3_mem" if student == "pre3_mem" else "pre3")
        family = FAMILIES[base] if base == student else "from_" + FAMILIES[base]
        tag = "small" if student == "pre3_small" else family + setting
        start = [f"--checkpoint={d(student)}"] if spec["checkpoint"] else []
        teacher = d(f"distill{fraction}_{family}{spec['taught_by']}" if spec["taught_by"]
                    else f"ft{fraction}_{base}_l1")
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
    # Claims 3a and 4 on SimCLRv2's whole recipe (pretraining with the
    # memory): its 10% fine-tune, and the 1% and 10% teachers' students.
    finetune(10, "pre3_mem", "l1")
    for setting in every_seed_settings(distill_settings):
        for fraction in (10, 1):
            distill(fraction, setting, student="pre3_mem")
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
    # Claim 2 one width up: the 1/2 width, fine-tuned and probed.
    pretrain("pre3_wide")
    finetune(1, "pre3_wide", "l1")
    finetune(10, "pre3_wide", "l1")
    probes("pre3_wide")
    # SimCLRv2's bigger teacher: the 1/2-width 1% model teaches a 1/4-width
    # noised student started from the memory's pretraining.
    distill(1, WIDE_TEACHER_SETTING, student="pre3_mem", teacher_pre="pre3_wide")
    # Its 1/2-width noised student (distill1_wide_<setting>): the same recipe,
    # student and teacher at the 1/2 width.
    distill(1, WIDE_TEACHER_SETTING, student="pre3_wide", teacher_pre="pre3_wide")
    return runs


# The first distillation setting runs for every seed (claim 3's verdict and
# the results row), and so does a setting marked all_seeds; each other
# setting is a comparison row, run for the first COMPARISON_SEEDS seeds only
# (12 pretraining-epoch equivalents a run).
COMPARISON_SEEDS = 2


def _settings_of_seed(index, distill_settings):
    """The distillation settings the index-th seed runs."""
    return distill_settings if index < COMPARISON_SEEDS else every_seed_settings(distill_settings)


def all_runs(out, seeds, budget="cpu", distill_settings=DEFAULT_DISTILL):
    """Every seed's runs, interleaved step by step (claim order for all seeds);
    seeds after the first COMPARISON_SEEDS distil with the first setting and
    the all_seeds ones only."""
    lists = [run_list(out, s, budget, _settings_of_seed(i, distill_settings))
             for i, s in enumerate(seeds)]
    blocks = itertools.zip_longest(*lists)
    return [run for block in blocks for run in block if run is not None]
