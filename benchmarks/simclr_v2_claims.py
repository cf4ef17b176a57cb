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
(mixed bfloat16 on CPUs with bf16 instructions). Claim 2 compares it with
the 1/8 width (smaller) and the 1/2 width (wider). A seed fixes the pretraining, the 1% / 10% label
subsets and the fine-tuning, so the arms of one seed are paired.

Arms per seed S (model_dir OUT/<name>_sS):

  pre3        1/4 width, 3-layer head (the default)
  pre2        the same with a 2-layer head (--num_proj_layers=2)
  pre3_mem    pre3 with the memory: a buffer of 16 batches (8,192 at batch
              512, the paper's 64K at 4,096) and --memory_momentum=0.997,
              the paper's 0.999 (a time constant of 3.2 ImageNet epochs at
              its batch) rescaled to 2.8 epochs of this run's 117 steps
  pre3_small  1/8 width, 3-layer head
  pre3_wide   1/2 width, 3-layer head
  ft{1,10}_{pre}_{h,l1}   fine-tuned on 1% / 10% of the labels from h
                          (--ft_proj_selector=0) or from the head's first
                          layer (--ft_proj_selector=1), on whole images
                          with random flips (--crop_min_area=1.0)
  scratch1, scratch100    supervised from random init (1/4 width) on the
                          600 ids of ft1_pre3_l1 and on all 60,000 labels
  distill{1,10}_<setting> student of pre3's size taught by ft{1,10}_pre3_l1
                          on the 60k images without their labels, with the
                          fine-tuning augmentation (whole images, random
                          flips); one row per distillation setting
                          (DISTILL_SETTINGS, --distill_settings picks them)
  ft{1,10}_pre3_mem_l1    pre3_mem fine-tuned on 1% / 10% of the labels
                          from layer 1: SimCLRv2's whole recipe as teachers
  distill{1,10}_mem_<setting>  their students, started from pre3_mem (the
                          first setting and those run on every seed)
  distill1_small          1/8-width student started from pre3_small, taught
                          by the 1/4-width ft1_pre3_l1 (the first setting)
  distill1_from_wide_long_noisy  1/4-width noised student started from
                          pre3_mem, taught by ft1_pre3_wide_l1 (1/2 width)
  distill1_wide_long_noisy  1/2-width noised student started from
                          pre3_wide, taught by ft1_pre3_wide_l1
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
    python benchmarks/simclr_v2_claims.py --out=/work/runs/claims \
        --resume_from=docs/results/simclr_v2_claims/cpu_budget/claims.json
                                  # the recorded results, on a new machine
    python benchmarks/simclr_v2_claims.py --out=/tmp/cs --budget=smoke \
        --seeds=0 --svm_train_examples=2000                          # plumbing only

Cost: `--plan` prints every command in order and the work in pretraining-
epoch equivalents (one epoch of two augmented views of 60k images at 1/4
width; fine-tuning and distillation count their single views, distillation
adds a third of a view at the teacher's width for its forward pass, the
memory 1.3x, the 1/8 width half, the 1/2 width 3.3x) plus 90 s per run.py step for start-up,
evaluation and export. The default suite (3 seeds; distillation settings long, long_crops, long_noisy, long_noisier,
noisy_round2, longer_noisy, long_labels, long_t2, long_random, short: long
and long_noisy on seeds 0-2, the others on seeds 0 and 1) is 137 steps and
1,362 equivalents, 270 of them pretraining epochs and 878 distillation: about
60 hours on 2 shared cores at the 400 images/s a 1/4-width pretraining
step ran there (median of a time-to-accuracy run's progress lines), and 38
hours at 650 images/s (2 idle cores of an AMD EPYC), before
the SVM (extrapolated from 2,000 and 4,000 images: over an hour on one
loaded core). --distill_settings=long alone is 826 equivalents (about 36
hours shared). Seeds run interleaved claim by claim, so a partial suite
answers the first claims for every seed.

Writes OUT/claims.json (every run's command, wall time and result),
OUT/claims.md (verdicts, the distillation settings, every arm) and
OUT/fashion_mnist.json (the results suite's row shape, rows such as
finetune_1pct and distill_1pct with top1 = the mean over seeds). A rerun with
the same --out reuses runs whose result exists for the same command, and
run.py resumes an interrupted run from its checkpoint (its OUT/<run>.log
keeps every call's output; the result's "seconds" counts every call,
"last_call_seconds" the last one, which began at "resumed_at_step"); a run reads only
earlier runs of its own seed, so seeds can also run as separate processes
(--seeds=0, --seeds=1, ... on the same --out; each writes the tables of its
own seeds, and --report_only then writes those of all). --report_only
summarises what exists without running anything.
"""

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fashion_mnist as suite  # noqa: E402
from claims_arms import (BUDGETS, DEFAULT_DISTILL, DISTILL_SETTINGS, MODEL,  # noqa: E402
                         PRETRAIN_EPOCHS, PROBE, SEEDS, TRAIN_EXAMPLES, all_runs,
                         teaching_setting)
from claims_report import (claims_table, distill_verdicts, run_images_per_s,  # noqa: E402
                           suite_rows, verdict_rows, verdicts)
from claims_cost import (MEASURED_IMAGES_PER_S, STEP_OVERHEAD_S, cost,  # noqa: E402
                         flag_value)
from claims_restore import RestoreError, restore  # noqa: E402
from claims_svm import SVM, svm_row, svm_settings  # noqa: E402


def command_for(name, flags, out, data_dir, budget="cpu"):
    common = ["--mode=train_then_eval", "--dataset=fashion_mnist",
              f"--seed={name.rsplit('_s', 1)[1]}", "--export_after_eval=true",
              "--log_every_steps=100", f"--model_dir={os.path.join(out, name)}"]
    if data_dir:
        common.append(f"--data_dir={data_dir}")
    return [suite.PYTHON, "run.py"] + common + MODEL + BUDGETS[budget]["split"] + flags


def missing_input(flags):
    """The first input of a step that is not on this machine, said as
    "--flag=path (what is missing)": a --checkpoint / --teacher model_dir
    with neither a checkpoint nor an export, or a --label_subset_file that
    does not exist; else None. A result restored by --resume_from brings
    no model folder with it."""
    for flag in ("checkpoint", "teacher"):
        path = flag_value(flags, flag)
        if path and not (suite.latest_checkpoint_step(path)
                         or os.path.isdir(suite.rundir.export_root(path))):
            return f"--{flag}={path} (no checkpoint or export there)"
    path = flag_value(flags, "label_subset_file")
    if path and not os.path.exists(path):
        return f"--label_subset_file={path} (no such file)"
    return None


def probe_args(name, out, data_dir, budget="cpu"):
    """`python -m simclr_tf2.analysis probes` arguments of probes_<pre>_s<seed>."""
    pre, seed = name[len("probes_"):].rsplit("_s", 1)
    model_dir = os.path.join(out, f"{pre}_s{seed}")
    root = suite.rundir.export_root(model_dir)
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


def plan(runs, out, data_dir, budget, images_per_s, svm_examples):
    """Lines: every command in order, then the estimated cost."""
    lines, total, pretraining, kinds = [], 0.0, 0.0, {}
    for index, (name, flags) in enumerate(runs, 1):
        work, epochs = cost(name, flags)
        total += work
        pretraining += epochs
        kind = ("probes" if flags == PROBE else
                {"pretrain": "pretraining", "finetune": "fine-tuning and from scratch",
                 "distill": "distillation"}[flag_value(flags, "train_mode", "pretrain")])
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
    for index, name in enumerate(names):
        teacher = teaching_setting(name)
        if teacher is not None and teacher not in names[:index]:
            raise argparse.ArgumentTypeError(
                f"distillation setting {name!r} is taught by the {teacher!r} student; "
                f"list {teacher} before {name} in --distill_settings")
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
                                         DISTILL_SETTINGS.items()).replace("%", "%%"))
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
    parser.add_argument("--resume_from", default=None,
                        help="claims.json of an earlier suite with the same --out (e.g. "
                             "the one under docs/results): its results are reused "
                             "where --out has none, so a machine without those runs' "
                             "folders runs only the missing ones")
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
    if args.resume_from:
        try:
            restored = restore(args.resume_from, out)
        except RestoreError as error:
            sys.exit(f"error: {error}")
        print(f"restored {len(restored)} results from {args.resume_from}", flush=True)
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
                    missing = missing_input(flags)
                    # A reused result needs no inputs (run_one reads it again).
                    if missing and suite._read_json(done_file).get("command") != \
                            suite._display(command):
                        raise SystemExit(
                            f"{missing}: the step that writes it failed, or its result "
                            "was restored by --resume_from without its folder; run that "
                            "step first (a restored one after deleting its "
                            "OUT/<run>.done.json)")
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
               "images_per_s": {f"{pre}_s{s}": run_images_per_s(results, out, f"{pre}_s{s}")
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
