"""Throughput benchmark: the full SimCLR pretraining step against the bare encoder.

For each model configuration and variant (precision, fused or Keras batch
norm, with or without XLA) it times

* full: what run.py runs, `model.fit` on `pipeline.build_train_dataset` of an
  in-memory synthetic source (optionally JPEG bytes decoded in the
  pipeline): decode + two augmented views + ResNet + projection head +
  NT-Xent + linear head + LARS update;
* bare: the encoder's forward/backward + LARS on one fixed in-memory batch
  of the same shape ([2B, S, S, 3] views), the compute limit of the device;

* memory (rows of a `<config>+memory<M>` name, SimCLRv2's memory with M
  buffered keys on in the full step): the memory network's own work per
  step on a fixed batch (keys of both views, EMA update, enqueue), as a
  share of the full step;

and reports images/s (examples, each two views), ms/step, full/bare, the
row's peak RSS (each row runs in a fresh process) and the speed-up of the
full step over the first variant (by default today's float32 Keras-BN path)
within the same sweep. It also measures the peak memory of one large-batch
pretraining step with and without `micro_batch_size` (gradient caching;
benchmarks/peak_memory.py).

Usage (from a fresh clone, no install needed):

    python benchmarks/throughput.py --quick --out results.json
    python benchmarks/throughput.py --configs resnet18_cifar_32px,fmnist_cpu_budget \
        --memory_batch -1 --repeats 2 --out cpu.json
    python benchmarks/throughput.py --configs resnet50_224px --batch 256 --jpeg \
        --variants bf16_fused,bf16_fused_xla --memory_batch -1 --out gpu.json
"""

import argparse
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from simclr_tf2 import optim  # noqa: E402
from simclr_tf2.data import pipeline  # noqa: E402
from simclr_tf2.models import batch_norm  # noqa: E402
from peak_memory import RESULT_PREFIX, proc_status_mb, run_child, run_memory  # noqa: E402
from throughput_report import print_tables  # noqa: E402
from throughput_report import summarize  # noqa: E402
from synthetic_setup import SyntheticSource  # noqa: E402
from synthetic_setup import build_model  # noqa: E402
from synthetic_setup import model_config  # noqa: E402

# name: (resnet_depth, width, cifar_stem, image_size, batch, quick batch,
#        color_jitter_strength, use_blur) as the original's CIFAR-10 and
#        ImageNet recipes.
CONFIGS = {
    "resnet18_cifar_32px": (18, 1.0, True, 32, 256, 64, 0.5, False),
    # The earlier benchmarks/fashion_mnist.py --budget=cpu pretraining (width
    # 1/8, float32; the budget is now width 1/4 in bf16), 3-channel input.
    "fmnist_cpu_budget": (18, 0.125, True, 28, 512, 128, 0.5, False),
    # The Fashion-MNIST time-to-accuracy recipe: width 1/4, 1-channel
    # images seen as 3 channels, jitter 1.0.
    "fmnist_w4": (18, 0.25, True, 28, 512, 128, 1.0, False),
    "resnet50_224px": (50, 1.0, False, 224, 32, 4, 1.0, True),
    # The main job's model: width 1/4, CIFAR stem, 8 px digits, batch 128.
    "digits_8px": (18, 0.25, True, 8, 128, 64, 0.5, False),
}
# name: (precision, fused batch norm, XLA). f32_unfused is the Keras 3
# BatchNormalization path every step took before the fused layer.
VARIANTS = {
    "f32_unfused": ("float32", False, False),
    "bf16_unfused": ("mixed_bfloat16", False, False),
    "f32_fused": ("float32", True, False),
    "bf16_fused": ("mixed_bfloat16", True, False),
    "f32_fused_xla": ("float32", True, True),
    "bf16_fused_xla": ("mixed_bfloat16", True, True),
}
# Rows with SimCLRv2's memory on: name -> (config, memory_size). A small
# batch with a buffer 16x its keys, where the memory's extra negatives count.
MEMORY_CONFIGS = {"fmnist_cpu_budget+memory8192": ("fmnist_cpu_budget", 8192),
                  "fmnist_w4+memory8192": ("fmnist_w4", 8192)}
DEFAULT_VARIANTS = "f32_unfused,f32_fused,bf16_fused,f32_fused_xla,bf16_fused_xla"


def clocks():
    """(wall seconds, CPU seconds of every thread of this process)."""
    return np.array([time.perf_counter(), time.process_time()])


class StepTimer(keras.callbacks.Callback):
    """Records the clocks at which each (synchronised) execution ended."""

    def __init__(self):
        super().__init__()
        self.marks = []

    def on_train_batch_end(self, batch, logs=None):
        float(logs["loss"])  # Wait for the step to finish.
        self.marks.append(clocks())


def fit_step_times(model, dataset, steps, steps_per_execution=1):
    """(wall, CPU) seconds of each step of `model.fit` but the first.

    The first execution of a fit call waits for a fresh input iterator, so
    it is run but not counted.
    """
    timer = StepTimer()
    model.fit(dataset, epochs=1, verbose=0, callbacks=[timer],
              steps_per_epoch=steps_per_execution + steps)
    return list(np.diff(timer.marks, axis=0) / steps_per_execution)


def make_bare_step(encoder, batch, image_size, jit_compile):
    """Encoder forward/backward + LARS on a fixed [2B, S, S, 3] batch."""
    views = tf.random.uniform([2 * batch, image_size, image_size, 3])
    optimizer = optim.build_optimizer("lars", 0.3, weight_decay=1e-6)
    variables = encoder.trainable_variables
    optimizer.build(variables)

    @tf.function(jit_compile=jit_compile)
    def step():
        with tf.GradientTape() as tape:
            h = encoder(views, training=True)["final_avg_pool"]
            loss = tf.reduce_mean(tf.square(tf.cast(h, tf.float32)))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables),
                                      variables))
        return loss

    return step


def make_memory_step(model, batch, image_size):
    """The memory network's part of a step on a fixed batch: keys of both
    views [2B, S, S, 3], one EMA update, one enqueue."""
    views = tf.random.uniform([2 * batch, image_size, image_size, 3])
    memory = model.task.memory

    @tf.function
    def step():
        keys = memory.network(views)
        memory.network.update(model.encoder, model.projection_head)
        memory.buffer.enqueue_batch(keys)
        return tf.reduce_sum(keys)

    return step


def bare_step_times(step, steps):
    """(wall, CPU) seconds of each of `steps` synchronised calls of `step`."""
    times = []
    for _ in range(steps):
        start = clocks()
        float(step())
        times.append(clocks() - start)
    return times


def run_throughput(name, variant, args):
    """One row of the table: full and bare step of one config and variant.

    Full and bare steps alternate in rounds, so that both see the same
    background load of a shared machine; medians are reported, and CPU
    seconds per step next to wall seconds (load stretches wall time, not
    CPU time).
    """
    config, memory_size = MEMORY_CONFIGS.get(name, (name, 0))
    depth, width, stem, size, batch, quick_batch, jitter, blur = CONFIGS[config]
    precision, fused, jit = VARIANTS[variant]
    batch = args.batch or (quick_batch if args.quick else batch)
    spe = args.steps_per_execution
    source = SyntheticSource(max(4 * batch, 256), size, jpeg=args.jpeg)
    dataset = pipeline.build_train_dataset(
        source, "train", batch, pipeline.two_view_transform(size, jitter, blur),
        seed=0)
    model = build_model(model_config(depth, width, stem), size, precision,
                        jit_compile=jit, steps_per_execution=spe,
                        memory_size=memory_size)
    bare_step = make_bare_step(model.encoder, batch, size, jit)
    memory_step = (make_memory_step(model, batch, size) if memory_size
                   else None)
    fit_step_times(model, dataset, spe * args.warmup, spe)  # Trace, warm up.
    bare_step_times(bare_step, args.warmup + 1)
    full, bare, mem = [], [], []
    if memory_step:
        bare_step_times(memory_step, args.warmup + 1)
    per_round = spe * max(1, args.steps // args.rounds // spe)
    for _ in range(args.rounds):
        full += fit_step_times(model, dataset, per_round, spe)
        bare += bare_step_times(bare_step, per_round)
        if memory_step:
            mem += bare_step_times(memory_step, per_round)
    timed = per_round * args.rounds
    (full, full_cpu), (bare, bare_cpu) = [
        [float(x) for x in np.median(times, axis=0)] for times in (full, bare)]
    memory = {}
    if memory_step:
        mem_wall, mem_cpu = [float(x) for x in np.median(mem, axis=0)]
        memory = {"memory_ms_per_step": 1e3 * mem_wall,
                  "memory_share": mem_wall / full,
                  "memory_share_cpu": mem_cpu / full_cpu}
    keras.backend.clear_session()
    return {**memory, "memory_size": memory_size, "config": name, "variant": variant, "precision": precision,
            "fused_bn": fused, "jit_compile": jit, "batch": batch,
            "input": "jpeg" if args.jpeg else "raw", "timed_steps": timed,
            "full_images_per_s": batch / full, "full_ms_per_step": 1e3 * full,
            "bare_images_per_s": batch / bare, "bare_ms_per_step": 1e3 * bare,
            "full_over_bare": bare / full,
            "full_cpu_s_per_step": full_cpu, "bare_cpu_s_per_step": bare_cpu,
            "full_over_bare_cpu": bare_cpu / full_cpu}


def row_child(spec, args):
    """In a fresh process: one row, with the process's peak RSS."""
    # The BN path is chosen when the steps trace: hold it for the whole row.
    with batch_norm.fused_by_default(VARIANTS[spec["variant"]][1]):
        result = run_throughput(spec["config"], spec["variant"], args)
    result["peak_rss_mb"] = proc_status_mb("VmHWM")
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_row(config, variant, argv, timeout):
    """Runs `row_child` in a subprocess; a dict."""
    return run_child(__file__, [*argv, "--row_child"],
                     {"config": config, "variant": variant}, timeout)


def device_string():
    """The accelerator's name, else the CPU model and the usable core count."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"{len(gpus)}x {details.get('device_name', 'GPU')}"
    model = platform.processor() or "CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {len(os.sched_getaffinity(0))} cores"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small batches and few steps (minutes on 2 cores)")
    parser.add_argument("--out", default="", help="write the results as JSON")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="comma-separated " + ",".join(
                            [*CONFIGS, *MEMORY_CONFIGS]))
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help="comma-separated " + ",".join(VARIANTS) + "; "
                        "speed-ups are against the first")
    parser.add_argument("--repeats", type=int, default=1,
                        help="sweeps over every row (each row a fresh process)")
    parser.add_argument("--batch", type=int, default=0,
                        help="override every config's batch size")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed steps first (tracing, pipeline fill)")
    parser.add_argument("--steps", type=int, default=0,
                        help="timed steps of each kind (default 4 quick, 12)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternations of full and bare timing")
    parser.add_argument("--jpeg", action="store_true",
                        help="feed JPEG bytes and decode them in the pipeline")
    parser.add_argument("--steps_per_execution", type=int, default=1)
    parser.add_argument("--memory_batch", type=int, default=0,
                        help="memory test batch (default 1024 quick, 4096 full;"
                        " -1 skips it)")
    parser.add_argument("--memory_width", type=float, default=0.25)
    parser.add_argument("--micro_batch_size", type=int, default=0,
                        help="chunk of the memory test (default batch / 16)")
    parser.add_argument("--device_note", default="",
                        help="free text stored with the results")
    parser.add_argument("--row_child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.variants.split(",")) - set(VARIANTS) - {""}
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    args.steps = args.steps or (4 if args.quick else 12)
    args.memory_batch = args.memory_batch or (1024 if args.quick else 4096)
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.row_child:
        return row_child(json.loads(args.row_child), args)
    variants = [v for v in args.variants.split(",") if v]
    rows = []
    for repeat in range(args.repeats):  # Every row once per sweep.
        for name in filter(None, args.configs.split(",")):
            for variant in variants:
                row = run_row(name, variant, argv, 3600)
                rows.append(dict(row, repeat=repeat, baseline=variants[0]))
                print(json.dumps(rows[-1]), flush=True)
    throughput = summarize(rows)
    memory = []
    if args.memory_batch > 0:
        micro = args.micro_batch_size or max(1, args.memory_batch // 16)
        memory = [run_memory(args.memory_batch, args.memory_width, m, 3600)
                  for m in (0, micro)]
    print(f"device: {device_string()}" + (
        f" ({args.device_note})" if args.device_note else ""))
    print_tables(throughput, memory)
    if args.out:
        with open(args.out, "w") as out:
            json.dump({"device": device_string(),
                       "device_note": args.device_note,
                       "tensorflow": tf.__version__, "keras": keras.__version__,
                       "args": vars(args), "throughput": throughput,
                       "rows": rows, "memory": memory}, out, indent=2)


if __name__ == "__main__":
    main()
