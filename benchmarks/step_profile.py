"""Where a pretraining step spends its time, per kind of op (TF profiler).

For one model configuration of `throughput.py` and one precision, runs the
pretraining step (`model.train_step` on one fixed batch of two augmented
views: ResNet + heads + NT-Xent + LARS, no input pipeline) under
`tf.profiler`, reads the trace (XPlane) and sums the time of every
TensorFlow op by kind:

  conv forward, conv input gradient, conv kernel gradient, matmul,
  batch norm forward / backward, element-wise (ReLU and its gradient, add,
  mul, casts, pads and slices), reductions, loss (softmax cross entropy),
  optimizer (the LARS update ops), other.

It prints a table (ms per step and share of the op time) and, with --out,
writes JSON. The input pipeline is measured apart by `pipeline_rate.py`.

Usage:

    python benchmarks/step_profile.py --config fmnist_cpu_budget --precision float32
    python benchmarks/step_profile.py --config fmnist_w4 --precision mixed_bfloat16 \
        --out profile.json
    python benchmarks/step_profile.py --config fmnist_w4 --alternate --steps 6

--alternate times the float32 and mixed_bfloat16 steps instead, alternating
in one process (no profiler).
"""

import argparse
import collections
import glob
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from synthetic_setup import NUM_CLASSES  # noqa: E402
from synthetic_setup import build_model  # noqa: E402
from synthetic_setup import model_config  # noqa: E402
from throughput import CONFIGS  # noqa: E402
from throughput import device_string  # noqa: E402

# Op type -> kind. Types not listed are "other".
KINDS = {
    "Conv2D": "conv forward",
    "_FusedConv2D": "conv forward",
    "FusedConv2D": "conv forward",
    "DepthwiseConv2dNative": "conv forward",
    "Conv2DBackpropInput": "conv input gradient",
    "Conv2DBackpropFilter": "conv kernel gradient",
    "MatMul": "matmul",
    "BatchMatMulV2": "matmul",
    "_FusedMatMul": "matmul",
    "FusedMatMul": "matmul",
    "FusedBatchNormV3": "batch norm forward",
    "FusedBatchNormGradV3": "batch norm backward",
    "_FusedBatchNormEx": "batch norm forward",
    "FusedBatchNormEx": "batch norm forward",
    "Relu": "element-wise", "ReluGrad": "element-wise",
    "AddV2": "element-wise", "AddN": "element-wise", "Add": "element-wise",
    "Mul": "element-wise", "Sub": "element-wise", "RealDiv": "element-wise",
    "Cast": "element-wise", "Pad": "element-wise", "Slice": "element-wise",
    "StridedSlice": "element-wise", "StridedSliceGrad": "element-wise",
    "Square": "element-wise", "Rsqrt": "element-wise", "Sqrt": "element-wise",
    "SquaredDifference": "element-wise", "Maximum": "element-wise",
    "Neg": "element-wise", "Select": "element-wise", "SelectV2": "element-wise",
    "BroadcastTo": "element-wise", "Tile": "element-wise",
    "ConcatV2": "element-wise", "Split": "element-wise", "Pack": "element-wise",
    "Transpose": "element-wise", "Reshape": "element-wise",
    "Mean": "reduction", "Sum": "reduction", "Max": "reduction",
    "SoftmaxCrossEntropyWithLogits": "loss",
    "SparseSoftmaxCrossEntropyWithLogits": "loss",
    "Softmax": "loss", "LogSoftmax": "loss",
    "ResourceApplyMomentum": "optimizer", "AssignVariableOp": "optimizer",
    "AssignSubVariableOp": "optimizer", "AssignAddVariableOp": "optimizer",
    "ReadVariableOp": "optimizer", "Norm": "optimizer",
}


def fixed_batch(batch, size):
    """One pretraining batch: ``image`` [B, S, S, 6] (two views), labels [B]."""
    rng = np.random.default_rng(0)
    return {"image": tf.constant(rng.uniform(size=(batch, size, size, 6)),
                                 tf.float32),
            "label": tf.constant(rng.integers(0, NUM_CLASSES, batch)),
            "id": tf.range(batch, dtype=tf.int64)}


def op_events(logdir):
    """(op name, op type, duration in ms) of every TF op in the trace."""
    path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"),
                            recursive=True))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    events = []
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, "")
                # Executor op events read "<op name>:<op type>"; oneDNN
                # kernels carry a _Mkl or _MklNative prefix on the type.
                if (":" not in name or " " in name or "::" in name
                        or name.startswith("tf_")):
                    continue
                op_name, op_type = name.rsplit(":", 1)
                for prefix in ("_MklNative", "_Mkl"):
                    if op_type.startswith(prefix):
                        op_type = op_type[len(prefix):]
                events.append((op_name, op_type, event.duration_ps / 1e9))
    return events


def profile(config, precision, steps, warmup):
    """Per-kind milliseconds per step and the step's wall time."""
    depth, width, stem, size, batch, _, _, _ = CONFIGS[config]
    model = build_model(model_config(depth, width, stem), size, precision)
    step = tf.function(model.train_step)
    data = fixed_batch(batch, size)
    for _ in range(warmup):
        float(step(data)["loss"])
    start = time.perf_counter()
    for _ in range(steps):
        float(step(data)["loss"])
    wall = (time.perf_counter() - start) / steps
    logdir = tempfile.mkdtemp(prefix="step_profile_")
    tf.profiler.experimental.start(logdir)
    for _ in range(steps):
        float(step(data)["loss"])
    tf.profiler.experimental.stop()
    by_kind = collections.Counter()
    by_type = collections.Counter()
    for _, op_type, ms in op_events(logdir):
        by_kind[KINDS.get(op_type, "other")] += ms / steps
        by_type[op_type] += ms / steps
    return {"config": config, "precision": precision, "batch": batch,
            "step_ms": 1e3 * wall, "images_per_s": batch / wall,
            "ms_by_kind": dict(by_kind.most_common()),
            "ms_by_op_type": dict(by_type.most_common(25)),
            "device": device_string()}


def alternate(config, steps, warmup):
    """float32 and mixed_bfloat16 steps of `config`, alternating in one process.

    Both models are built side by side and their steps interleaved, so a
    background load slows both alike. Returns {precision: (images/s, CPU
    seconds per step)}, medians over `steps`.
    """
    depth, width, stem, size, batch, _, _, _ = CONFIGS[config]
    data = fixed_batch(batch, size)
    steps_by_precision = {}
    for precision in ("float32", "mixed_bfloat16"):
        model = build_model(model_config(depth, width, stem), size, precision)
        steps_by_precision[precision] = tf.function(model.train_step)
        for _ in range(warmup):
            float(steps_by_precision[precision](data)["loss"])
    times = {precision: [] for precision in steps_by_precision}
    for _ in range(steps):
        for precision, step in steps_by_precision.items():
            wall, cpu = time.perf_counter(), time.process_time()
            float(step(data)["loss"])
            times[precision].append((time.perf_counter() - wall,
                                     time.process_time() - cpu))
    result = {}
    for precision, pairs in times.items():
        wall, cpu = np.median(np.array(pairs), axis=0)
        result[precision] = (batch / wall, cpu)
    return result


def print_profile(result):
    total = sum(result["ms_by_kind"].values())
    print(f"{result['config']} {result['precision']} batch {result['batch']}: "
          f"{result['step_ms']:.0f} ms/step, {result['images_per_s']:.0f} "
          f"images/s ({result['device']})")
    print("| kind | ms/step (op time) | share |\n|---|---|---|")
    for kind, ms in result["ms_by_kind"].items():
        print(f"| {kind} | {ms:.1f} | {ms / total:.0%} |")
    print("top op types:", ", ".join(
        f"{t} {ms:.0f}" for t, ms in list(result["ms_by_op_type"].items())[:12]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="fmnist_cpu_budget",
                        help=",".join(CONFIGS))
    parser.add_argument("--precision", default="float32",
                        choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--alternate", action="store_true",
                        help="no profile: time float32 and mixed_bfloat16 steps "
                             "alternating in one process")
    parser.add_argument("--onednn_kernel_gradient", action="store_true",
                        help="every convolution's kernel gradient by oneDNN "
                             "(Conv2DBackpropFilter): no matrix-product kernel "
                             "gradient for small bf16 outputs (simclr_tf2/models/conv.py)")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    if args.onednn_kernel_gradient:
        from simclr_tf2.models import conv
        conv.SMALL_OUTPUT_PIXELS = 0  # No output is this small: oneDNN everywhere.
    if args.alternate:
        rates = alternate(args.config, args.steps, args.warmup)
        for precision, (images_per_s, cpu) in rates.items():
            print(f"{args.config} {precision}: {images_per_s:.0f} images/s, "
                  f"{cpu:.2f} CPU s/step ({device_string()})")
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"config": args.config, "rates": rates,
                           "device": device_string()}, f, indent=1)
        return
    result = profile(args.config, args.precision, args.steps, args.warmup)
    print_profile(result)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
