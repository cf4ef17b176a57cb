"""Pretraining speed of run.py against the original SimCLR TF2 code, same work, one sitting.

The work is that of the original README's CIFAR-10 command cut short:
ResNet-18 with the CIFAR stem, 32 px, batch 256, colour jitter 0.5, no blur,
LARS, NT-Xent with the online linear head. Each program runs twice, for
`--short` and `--long` training steps. Seconds per step = (wall time of the
long run - wall time of the short run) / (long - short), so start-up,
tracing and the final checkpoint cancel out and both programs are timed in
the same way. Both get --checkpoint_steps equal to --train_steps: the
original runs checkpoint_steps steps inside one tf.function call.

The original runs through a `mockrun.py` wrapper (not part of this
repository) that feeds it TFDS mock data (random 32 px images, its own
pipeline and model untouched); ours
runs on the digits upsampled to 32 px (decoding is negligible for both; the
augmentation and the network are the same size).

    python benchmarks/vs_original.py --original_git=/path/simclr.git \\
        --mockrun=/path/to/mockrun.py --out=vs_original.json
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = ["--train_batch_size=256", "--image_size=32", "--resnet_depth=18",
        "--use_blur=False", "--color_jitter_strength=0.5", "--learning_rate=1.0",
        "--temperature=0.5", "--weight_decay=1e-4"]


def timed(command, cwd, env, log_path):
    """Runs command; returns wall seconds. Exits with a one-line error if it fails."""
    start = time.time()
    with open(log_path, "w") as log:
        code = subprocess.call(command, cwd=cwd, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    if code != 0:
        sys.exit(f"error: {' '.join(command[:3])} ... failed (exit {code}); see {log_path}")
    return time.time() - start


def original_runner(args, workdir):
    """(command maker, cwd, env) for the original code, unpacked from its git dir."""
    source = os.path.join(workdir, "original")
    os.makedirs(source)
    archive = subprocess.run(["git", "--git-dir", args.original_git, "archive", "HEAD", "tf2"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "x", "-C", source], input=archive, check=True)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1",
               ORIGINAL_TF2=os.path.join(source, "tf2"), MOCK_N="2048")

    def command(steps, model_dir):
        return [sys.executable, os.path.abspath(args.mockrun), "--mode=train",
                "--train_mode=pretrain", "--dataset=cifar10", "--use_tpu=False",
                f"--train_steps={steps}", f"--checkpoint_steps={steps}",
                f"--model_dir={model_dir}"] + WORK
    return command, source, env


def ours_runner(precision):
    def command(steps, model_dir):
        return [sys.executable, "run.py", "--mode=train", "--dataset=digits",
                "--width_multiplier=1", "--cifar_stem=true", "--num_proj_layers=3",
                "--proj_out_dim=128", "--knn_eval_every_steps=0",
                "--learning_rate_scaling=linear", "--warmup_epochs=0",
                f"--precision={precision}",
                f"--train_steps={steps}", f"--checkpoint_steps={steps}",
                f"--model_dir={model_dir}"] + WORK
    return command, ROOT, dict(os.environ)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--original_git", required=True,
                        help="bare git dir of google-research/simclr")
    parser.add_argument("--mockrun", required=True,
                        help="a wrapper that runs the original's run.py on TFDS mock data")
    parser.add_argument("--short", type=int, default=2)
    parser.add_argument("--long", type=int, default=8)
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--out", default="vs_original.json")
    args = parser.parse_args()
    if args.long <= args.short:
        sys.exit("error: --long must be larger than --short.")
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        programs = [("original", original_runner(args, workdir))]
        programs += [(f"simclr_tf2 {p}", ours_runner(p)) for p in args.precisions.split(",")]
        for name, (command, cwd, env) in programs:
            seconds = {}
            for steps in (args.short, args.long):
                tag = f"{name.replace(' ', '_')}_{steps}"
                seconds[steps] = timed(command(steps, os.path.join(workdir, tag)), cwd, env,
                                       os.path.join(workdir, tag + ".log"))
            per_step = (seconds[args.long] - seconds[args.short]) / (args.long - args.short)
            rows.append({"program": name, "seconds_per_step": round(per_step, 3),
                         "images_per_s": round(256 / per_step, 1),
                         "wall_seconds": {str(k): round(v, 1) for k, v in seconds.items()}})
            print(f"{name}: {per_step:.2f} s/step, {256 / per_step:.1f} images/s", flush=True)
    base = rows[0]["seconds_per_step"]
    for row in rows:
        row["speedup_vs_original"] = round(base / row["seconds_per_step"], 2)
    result = {"work": WORK, "short": args.short, "long": args.long, "rows": rows,
              "hardware": {"processor": platform.processor(), "cpu_count": os.cpu_count()}}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print("| program | s/step | images/s | vs original |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['program']} | {row['seconds_per_step']} | {row['images_per_s']} | "
              f"{row['speedup_vs_original']}x |")


if __name__ == "__main__":
    main()
