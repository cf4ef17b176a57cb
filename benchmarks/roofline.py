"""How fast can one pretraining step be on this machine? Step FLOPs against measured peak.

For a model configuration of `throughput.py` it

1. counts the floating-point work of the bare encoder step (forward,
   backward and LARS on `[2B, S, S, 3]` views) from the traced graph: every
   convolution, convolution gradient and matrix product that the step uses
   (2 FLOPs per multiply-add; element-wise ops are not counted, so the floor
   below is optimistic);
2. measures this machine's peak in float32 and bfloat16: the faster of a
   large square matrix product and a 3x3 convolution of the first block
   group's shape ([2B, S, S, 64 x width]), both through TensorFlow (oneDNN
   on CPU);
3. times the bare step in both precisions;

and prints the floor (FLOPs / peak), each step's share of the peak and,
given the original SimCLR code's seconds per step in the same work
(`--original_s_per_step`, from `vs_original.py`), the largest speed-up over
it that any implementation using these kernels could reach. JSON with
`--out`.

    python benchmarks/roofline.py --config resnet18_cifar_32px \\
        --original_s_per_step 4.62 --out roofline.json
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from synthetic_setup import build_model  # noqa: E402
from synthetic_setup import model_config  # noqa: E402
from throughput import CONFIGS  # noqa: E402
from throughput import bare_step_times  # noqa: E402
from throughput import device_string  # noqa: E402
from throughput import make_bare_step  # noqa: E402

CONV_OPS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter")


def op_flops(op):
    """FLOPs of one graph op (2 per multiply-add); 0 for uncounted op types.

    A convolution and both of its gradients do the same multiply-adds:
    every output position of the forward conv times kh * kw * C_in.
    """
    if op.type in CONV_OPS:
        forward_out = op.outputs[0] if op.type == "Conv2D" else op.inputs[2]
        if op.type == "Conv2DBackpropFilter":
            kernel = op.outputs[0].shape
        else:
            kernel = op.inputs[1].shape
        kh, kw, c_in = kernel[0], kernel[1], kernel[2]
        return 2 * int(np.prod(forward_out.shape)) * kh * kw * c_in
    if op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a, out = op.inputs[0].shape, op.outputs[0].shape
        transpose_a = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
        inner = a[-2] if transpose_a else a[-1]
        return 2 * int(np.prod(out)) * inner
    return 0


def step_flops(step):
    """(total FLOPs, FLOPs by op type) of the ops a traced step actually uses.

    Gradient ops whose results nothing consumes (the input gradient of the
    first convolution) are pruned at run time and not counted.
    """
    graph = step.get_concrete_function().graph
    by_type = {}
    for op in graph.get_operations():
        if not any(out.consumers() for out in op.outputs):
            continue
        flops = op_flops(op)
        if flops:
            by_type[op.type] = by_type.get(op.type, 0) + flops
    return sum(by_type.values()), by_type


def timed_rate(fn, flops, repeats):
    """FLOP/s of the fastest of `repeats` synchronised calls of `fn` (after one warm-up)."""
    bare_step_times(fn, 1)
    return flops / min(wall for wall, _ in bare_step_times(fn, repeats))


def matmul_peak(dtype, side, repeats):
    """FLOP/s of a [side, side] x [side, side] product in `dtype`."""
    a = tf.cast(tf.random.normal([side, side]), dtype)
    b = tf.cast(tf.random.normal([side, side]), dtype)
    product = tf.function(lambda: tf.reduce_sum(tf.cast(
        tf.linalg.matmul(a, b)[:1, :1], tf.float32)))
    return timed_rate(product, 2 * side ** 3, repeats)


def conv_rate(dtype, batch, side, channels, repeats):
    """FLOP/s of a 3x3 stride-1 convolution forward [batch, side, side, channels]."""
    x = tf.cast(tf.random.uniform([batch, side, side, channels]), dtype)
    k = tf.cast(tf.random.normal([3, 3, channels, channels]), dtype)
    conv = tf.function(lambda: tf.reduce_sum(tf.cast(
        tf.nn.conv2d(x, k, 1, "SAME")[:1, :1, :1, :1], tf.float32)))
    return timed_rate(conv, 2 * batch * side * side * 9 * channels ** 2, repeats)


def bare_seconds(step, repeats):
    """Median wall seconds of `repeats` synchronised bare steps (after 2 warm-ups)."""
    bare_step_times(step, 2)
    return float(np.median([wall for wall, _ in bare_step_times(step, repeats)]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="resnet18_cifar_32px", choices=sorted(CONFIGS))
    parser.add_argument("--batch", type=int, default=0,
                        help="examples per step (default: the config's)")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--matmul_side", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--original_s_per_step", type=float, default=0.0,
                        help="the original code's s/step in the same work "
                             "(vs_original.py); 0 skips the comparison")
    parser.add_argument("--out", default="", help="write the results as JSON here")
    args = parser.parse_args()

    depth, width, stem, size, batch, _, _, _ = CONFIGS[args.config]
    if args.original_s_per_step and args.batch not in (0, batch):
        parser.error(f"--original_s_per_step is for the work of batch {batch} "
                     f"(vs_original.py); drop --batch={args.batch} to compare")
    batch = args.batch or batch
    rows = []
    for precision in args.precisions.split(","):
        dtype = tf.bfloat16 if "bfloat16" in precision else tf.float32
        model = build_model(model_config(depth, width, stem), size, precision)
        step = make_bare_step(model.encoder, batch, size, jit_compile=False)
        flops, by_type = step_flops(step)
        matmul = matmul_peak(dtype, args.matmul_side, args.repeats)
        widest = conv_rate(dtype, 2 * batch, size, _widest_full_res(width), args.repeats)
        seconds = bare_seconds(step, args.repeats)
        peak = max(matmul, widest)  # the best rate measured is the ceiling
        row = {"precision": precision, "step_gflop": flops / 1e9,
               "gflop_by_op": {k: v / 1e9 for k, v in sorted(by_type.items())},
               "peak_gflops": peak / 1e9, "matmul_gflops": matmul / 1e9,
               "conv3x3_gflops": widest / 1e9,
               "floor_s_per_step": flops / peak, "bare_s_per_step": seconds,
               "bare_gflops": flops / seconds / 1e9,
               "bare_share_of_peak": flops / seconds / peak}
        if args.original_s_per_step:
            row["max_speedup_vs_original"] = args.original_s_per_step / row["floor_s_per_step"]
            row["bare_speedup_vs_original"] = args.original_s_per_step / seconds
        rows.append(row)
        keras.backend.clear_session()

    print(f"{args.config}, batch {batch} ({2 * batch} views of {size} px), "
          f"{device_string()}, TF {tf.__version__}")
    print("| precision | GFLOP/step | peak GFLOP/s | 3x3 conv GFLOP/s | floor s/step "
          "| bare s/step | bare GFLOP/s | share of peak | max vs original | bare vs original |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        vs = (f"{r['max_speedup_vs_original']:.2f}x | {r['bare_speedup_vs_original']:.2f}x"
              if args.original_s_per_step else "- | -")
        print(f"| {r['precision']} | {r['step_gflop']:.0f} | {r['peak_gflops']:.0f} "
              f"| {r['conv3x3_gflops']:.0f} | {r['floor_s_per_step']:.2f} "
              f"| {r['bare_s_per_step']:.2f} | {r['bare_gflops']:.0f} "
              f"| {100 * r['bare_share_of_peak']:.0f}% | {vs} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"config": args.config, "batch": batch, "device": device_string(),
                       "tensorflow": tf.__version__, "args": vars(args), "rows": rows},
                      f, indent=2)
        print(f"wrote {args.out}")


def _widest_full_res(width):
    """Channels of the first block group (its convs run at full resolution)."""
    return max(1, int(round(64 * width)))


if __name__ == "__main__":
    main()
