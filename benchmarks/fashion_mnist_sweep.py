"""Short Fashion-MNIST pretraining sweep that picks the cpu budget's settings.

Each variant is the cpu budget's SimCLR pretraining command of
benchmarks/fashion_mnist.py at reduced length (--train_epochs=N), with a few
flags changed. A variant is scored by run.py's own end-of-training
evaluation: kNN-200 top-1 and the online linear head's top-1 on the 10k test
images. Results go to OUT/sweep.json and OUT/sweep.md, one row per variant
(also the ones that lost); a rerun with the same --out reuses finished
variants whose command is unchanged, so the sweep resumes and grows.

    python benchmarks/fashion_mnist_sweep.py --out=/tmp/sweep --epochs=5 \\
        --variant=base: --variant=crop0.2:--crop_min_area=0.2
"""

import argparse
import json
import os
import time

import fashion_mnist as suite


def parse_variant(text):
    """'name:--flag=v,--flag2=w' -> (name, [flags])."""
    name, _, flags = text.partition(":")
    if not name:
        raise SystemExit(f"error: --variant={text!r} needs a name: NAME:--flag=value,...")
    return name, [f for f in flags.split(",") if f]


def images_per_second(log_path):
    """The last 'N images/s' figure of a run.py log, or None."""
    rate = None
    for line in open(log_path):
        if "images/s" in line:
            rate = float(line.split("images/s")[0].split("|")[-1])
    return rate


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME:--flag=value,... (repeatable); later flags win.")
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    sweep_path = os.path.join(out, "sweep.json")
    rows = json.load(open(sweep_path))["rows"] if os.path.exists(sweep_path) else []
    by_name = {row["run"]: row for row in rows}
    settings = suite.BUDGETS["cpu"]
    for name, flags in map(parse_variant, args.variant):
        pretrain = (suite.PRETRAIN_FLAGS + settings["pretrain"]
                    + [f"--train_epochs={args.epochs}", "--knn_eval_every_steps=0",
                       "--export_after_eval=false"] + flags)
        command = suite.command_for(name, pretrain, "cpu", out, args.data_dir)
        # command_for puts --export_after_eval=true first; the later value wins.
        row = suite.run_one(name, command, out)
        row.update(flags=" ".join(flags), epochs=args.epochs,
                   images_per_s=images_per_second(os.path.join(out, name + ".log")))
        by_name[name] = row
    rows = list(by_name.values())
    with open(sweep_path, "w") as f:
        json.dump({"rows": rows, "updated": time.strftime("%Y-%m-%d %H:%M")}, f, indent=2)
    lines = ["| variant | changed flags | epochs | kNN-200 | online head | images/s | wall s |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['run']} | {row['flags'] or '(cpu budget as before)'} | "
                     f"{row['epochs']} | {100 * row['knn_top1']:.1f}% | "
                     f"{100 * row['top1']:.1f}% | {row['images_per_s']} | {row['seconds']} |")
    with open(os.path.join(out, "sweep.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
