"""The claims suite's cost model: the work of one step in pretraining-epoch
equivalents, which `simclr_v2_claims.py --plan` turns into hours."""

import os

from claims_arms import PROBE, TRAIN_EXAMPLES, WIDTHS

# Work of one run in pretraining-epoch equivalents: image-views through a
# forward and backward pass, over the 120,000 of one pretraining epoch at
# 1/4 width. 1/8 width counts half: the suite's 1/8-width pretraining took
# 901-933 s a seed against about 1,880 s at 1/4 width (AMD EPYC, mixed
# bfloat16). 1/2 width counts 3.3x: 4.5 against 1.37 CPU s a bf16 step at
# batch 512 on the same CPU (docs/performance.md). Assumed
# factors: the memory's momentum encoder 1.3x, a teacher's forward pass a
# third of a training view at the teacher's width, a probe (feature
# extraction, L-BFGS, kNN) 2.
WIDTH_COST = {0.25: 1.0, 0.125: 0.5, 0.5: 3.3}
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


def flag_value(flags, name, default=None):
    """The value of --name=... in a list of run.py flags, else default."""
    for flag in flags:
        if flag.startswith(f"--{name}="):
            return flag.split("=", 1)[1]
    return default


def cost(name, flags):
    """(pretraining-epoch equivalents, of which pretraining epochs) of one step."""
    if flags == PROBE:
        return PROBE_COST, 0.0
    width = WIDTH_COST.get(float(flag_value(flags, "width_multiplier", 0.25)), 1.0)
    epochs = float(flag_value(flags, "train_epochs", 0))
    mode = flag_value(flags, "train_mode", "pretrain")
    if mode == "pretrain":
        factor = MEMORY_COST if flag_value(flags, "memory_size", "0") != "0" else 1.0
        return epochs * width * factor, epochs
    fraction = float(flag_value(flags, "label_fraction", 1.0))
    examples = TRAIN_EXAMPLES * (1.0 if mode == "distill" else fraction)
    if mode == "finetune" and flag_value(flags, "label_subset_file"):
        examples = TRAIN_EXAMPLES * 0.01  # A distillation reads every image.
    views = width + (TEACHER_COST * teacher_width(flags) if mode == "distill" else 0)
    return epochs * examples * views / (2 * TRAIN_EXAMPLES), 0.0


def teacher_width(flags):
    """WIDTH_COST of a distillation's teacher, read from the width suffix of
    the pretraining in its run name (ft1_pre3_wide_l1_s0: the 1/2 width)."""
    teacher = os.path.basename(flag_value(flags, "teacher", "").rstrip("/"))
    suffix = next((s for s in WIDTHS if s and f"pre3{s}_" in teacher), "")
    return WIDTH_COST[WIDTHS[suffix]]
