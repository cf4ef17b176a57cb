"""How many host cores the pretraining input pipeline needs for a target speed.

Runs only `pipeline.build_train_dataset` (JPEG decode, random crop, flip,
colour distortion, blur, two views per image, batching) of a `throughput.py`
configuration on synthetic JPEGs, and prints examples per second of wall
time and per CPU-second (all threads of the process). The second figure
divided into a target rate gives the cores the pipeline needs: e.g. the
issue's 1,500 images/s on one H100 for ResNet-50 at 224 px.

    python benchmarks/pipeline_rate.py --config resnet50_224px --source_side 384 \\
        --target 1500 --out pipeline.json
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from simclr_tf2.data import pipeline  # noqa: E402
from synthetic_setup import SyntheticSource  # noqa: E402
from throughput import CONFIGS  # noqa: E402
from throughput import clocks  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="resnet50_224px", choices=sorted(CONFIGS))
    parser.add_argument("--source_side", type=int, default=0,
                        help="side of the stored JPEGs (default: the model's "
                             "input side; ImageNet photos average ~400 px)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=10, help="timed batches")
    parser.add_argument("--target", type=float, default=1500.0,
                        help="examples/s the pipeline must feed")
    parser.add_argument("--grey", action="store_true",
                        help="one-channel images (as Fashion-MNIST)")
    parser.add_argument("--raw", action="store_true",
                        help="images held decoded in memory (no JPEG decode)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()

    _, _, _, size, _, _, jitter, blur = CONFIGS[args.config]
    side = args.source_side or size
    source = SyntheticSource(max(4 * args.batch, 256), side, jpeg=not args.raw,
                             channels=1 if args.grey else 3)
    dataset = pipeline.build_train_dataset(
        source, "train", args.batch,
        pipeline.two_view_transform(size, jitter, blur), seed=0)
    batches = iter(dataset)
    for _ in range(3):  # start the threads, fill the prefetch buffer
        next(batches)
    start = clocks()
    for _ in range(args.batches):
        next(batches)
    wall, cpu = [b - a for a, b in zip(start, clocks())]
    examples = args.batch * args.batches
    result = {"config": args.config, "source_side": side, "image_size": size,
              "channels": 1 if args.grey else 3, "jpeg": not args.raw,
              "color_jitter_strength": jitter, "blur": blur,
              "usable_cores": len(os.sched_getaffinity(0)),
              "examples_per_s": examples / wall,
              "examples_per_cpu_s": examples / cpu,
              "cores_for_target": args.target * cpu / examples,
              "target_examples_per_s": args.target}
    stored = f"{side} px {'grey' if args.grey else 'colour'} " + (
        "arrays" if args.raw else "JPEGs")
    print(f"{args.config}: {stored} -> two {size} px views, jitter {jitter}, "
          f"blur {blur}, {result['usable_cores']} cores")
    print(f"{result['examples_per_s']:.0f} examples/s wall, "
          f"{result['examples_per_cpu_s']:.0f} per CPU-second: "
          f"{result['cores_for_target']:.1f} such cores feed {args.target:.0f} examples/s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
