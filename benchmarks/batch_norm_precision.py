"""Fused batch norm forward + backward in float32 and bfloat16, per channel count.

Times `FusedBatchNormV3` (training mode) + ReLU and their gradient on
[B, S, S, C] activations three ways: float32; bfloat16; and bfloat16 cast to
float32 around the kernel (what `models/batch_norm.py` does for channel
counts oneDNN's bfloat16 kernel cannot block). Run with ONEDNN_VERBOSE=1 to
see which oneDNN implementation each shape gets (`bnorm_tbb_jit:...` or the
generic `nspc_bnorm:any`).

Usage:

    python benchmarks/batch_norm_precision.py --out bn.json
    python benchmarks/batch_norm_precision.py --shapes 14x8,14x16 --batch 256
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import tensorflow as tf  # noqa: E402

from throughput import device_string  # noqa: E402

# side x channels: ResNet-18 (CIFAR stem, 28 px) activations at widths 1/8 to 1.
DEFAULT_SHAPES = ("28x4,28x8,28x12,28x16,14x16,14x24,14x32,14x48,7x32,7x64,"
                  "28x32,14x64,7x128,4x128,4x256,4x512")


def step_ms(shape, dtype, cast_to_float32, repeats):
    """Median milliseconds of BN + ReLU forward and backward on `shape`."""
    x = tf.cast(tf.random.normal(shape), dtype)
    channels = shape[-1]
    scale, offset, empty = tf.ones([channels]), tf.zeros([channels]), tf.zeros([0])

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            inner = tf.cast(x, tf.float32) if cast_to_float32 else x
            y = tf.raw_ops.FusedBatchNormV3(
                x=inner, scale=scale, offset=offset, mean=empty, variance=empty,
                epsilon=1e-5, exponential_avg_factor=1.0, data_format="NHWC",
                is_training=True)[0]
            y = tf.cast(tf.nn.relu(y), dtype)
            loss = tf.reduce_sum(tf.cast(y, tf.float32))
        return tape.gradient(loss, x)

    step(x).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(x).numpy()
        times.append(time.perf_counter() - start)
    return 1e3 * sorted(times)[repeats // 2]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default=DEFAULT_SHAPES,
                        help="comma-separated SIDExCHANNELS")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    rows = []
    print(f"{device_string()}, batch {args.batch}")
    print("| side x channels | float32 ms | bfloat16 ms | bf16 cast to f32 ms "
          "| bf16 / f32 | cast / f32 |\n|---|---|---|---|---|---|")
    for spec in args.shapes.split(","):
        side, channels = (int(v) for v in spec.split("x"))
        shape = [args.batch, side, side, channels]
        f32, bf16, cast = (step_ms(shape, dtype, cast, args.repeats)
                           for dtype, cast in ((tf.float32, False),
                                               (tf.bfloat16, False),
                                               (tf.bfloat16, True)))
        rows.append({"side": side, "channels": channels, "float32_ms": f32,
                     "bfloat16_ms": bf16, "bfloat16_cast_ms": cast})
        print(f"| {side}x{side}x{channels} | {f32:.1f} | {bf16:.1f} | {cast:.1f} "
              f"| {bf16 / f32:.2f} | {cast / f32:.2f} |", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": device_string(), "batch": args.batch,
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
