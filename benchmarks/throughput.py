"""Throughput benchmark: the full SimCLR pretraining step against the bare encoder.

For each model configuration and variant (precision, fused or Keras batch
norm, with or without XLA) it times

* full: what run.py runs, `model.fit` on `pipeline.build_train_dataset` of an
  in-memory synthetic source (optionally JPEG bytes decoded in the
  pipeline): decode + two augmented views + ResNet + projection head +
  NT-Xent + linear head + LARS update;
* bare: the encoder's forward/backward + LARS on one fixed in-memory batch
  of the same shape ([2B, S, S, 3] views), the compute limit of the device;

and reports images/s (examples, each two views), ms/step, full/bare, the
row's peak RSS (each row runs in a fresh process) and the speed-up of the
full step over the first variant (by default today's float32 Keras-BN path)
within the same sweep. It also measures the peak memory of one large-batch
pretraining step with and without `micro_batch_size` (gradient caching).

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
import subprocess
import sys
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from simclr_tf2 import objectives  # noqa: E402
from simclr_tf2 import optim  # noqa: E402
from simclr_tf2.data import pipeline  # noqa: E402
from simclr_tf2.data.source import DatasetInfo  # noqa: E402
from simclr_tf2.data.source import Source  # noqa: E402
from simclr_tf2.models import batch_norm  # noqa: E402
from simclr_tf2.models import build  # noqa: E402

# name: (resnet_depth, width, cifar_stem, image_size, batch, quick batch,
#        color_jitter_strength, use_blur) as the original's CIFAR-10 and
#        ImageNet recipes.
CONFIGS = {
    "resnet18_cifar_32px": (18, 1.0, True, 32, 256, 64, 0.5, False),
    # benchmarks/fashion_mnist.py --budget=cpu pretraining (3-channel input).
    "fmnist_cpu_budget": (18, 0.125, True, 28, 512, 128, 0.5, False),
    "resnet50_224px": (50, 1.0, False, 224, 32, 4, 1.0, True),
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
DEFAULT_VARIANTS = "f32_unfused,f32_fused,bf16_fused,f32_fused_xla,bf16_fused_xla"
NUM_CLASSES = 10


class SyntheticSource(Source):
    """Random smooth uint8 images in memory, as raw arrays or JPEG bytes.

    Args:
      num_examples: images in the single split "train".
      side: image height and width.
      jpeg: store JPEG-encoded bytes and decode them in the pipeline.
      seed: numpy seed.
    """

    def __init__(self, num_examples, side, jpeg=False, seed=0):
        super().__init__(DatasetInfo(
            name="synthetic", num_classes=NUM_CLASSES,
            num_examples={"train": num_examples}, image_shape=(side, side, 3)))
        rng = np.random.default_rng(seed)
        # Low-resolution noise upsampled: JPEG sizes closer to photographs.
        coarse = rng.uniform(0, 255, (num_examples, 8, 8, 3)).astype(np.float32)
        images = tf.image.resize(coarse, [side, side], method="bicubic")
        self.images = tf.cast(tf.clip_by_value(images, 0, 255), tf.uint8).numpy()
        self.labels = rng.integers(0, NUM_CLASSES, num_examples)
        self.jpeg = None
        if jpeg:
            self.jpeg = np.array([tf.io.encode_jpeg(im, quality=90).numpy()
                                  for im in self.images], dtype=object)

    def _refs(self, part):
        # In memory: the references are the examples themselves.
        window = slice(part.start, part.stop)
        example = {"label": self.labels[window],
                   "id": np.arange(part.start, part.stop, dtype=np.int64)}
        if self.jpeg is None:
            example["image"] = self.images[window]
        else:
            example["jpeg"] = self.jpeg[window]
        return tf.data.Dataset.from_tensor_slices(example)

    def _load(self, refs, splits):
        if self.jpeg is None:
            return refs

        def decode(ex):
            ex = dict(ex)
            ex["image"] = tf.io.decode_jpeg(ex.pop("jpeg"), channels=3)
            return ex

        return refs.map(decode, num_parallel_calls=tf.data.AUTOTUNE)


def model_config(depth, width, cifar_stem):
    """A ModelConfig-like namespace with run.py's pretraining defaults."""
    return types.SimpleNamespace(
        resnet_depth=depth, width_multiplier=width, cifar_stem=cifar_stem,
        sk_ratio=0.0, se_ratio=0.0, batch_norm_decay=0.9, global_bn=True,
        proj_head_mode="nonlinear", proj_out_dim=128, num_proj_layers=3,
        ft_proj_selector=0, zero_init_logits_layer=False,
        fine_tune_after_block=-1, lineareval_while_pretraining=True)


def build_model(cfg, image_size, precision, micro_batch_size=0,
                jit_compile=False, steps_per_execution=1):
    """A compiled pretraining SimCLRModel with LARS, as experiment.Experiment builds it."""
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    model = build.build_model(
        cfg, num_classes=NUM_CLASSES, train_mode="pretrain",
        image_size=image_size)
    objective = objectives.Objective(
        "pretrain", temperature=0.1,
        weight_decay=optim.weight_decay_policy("lars", 1e-6))
    model.compile(optimizer=optim.build_optimizer(
        "lars", 0.3, momentum=0.9, weight_decay=1e-6), objective=objective,
        micro_batch_size=micro_batch_size,
        jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    model.optimizer.build(model.trainable_variables)
    return model


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
    depth, width, stem, size, batch, quick_batch, jitter, blur = CONFIGS[name]
    precision, fused, jit = VARIANTS[variant]
    batch = args.batch or (quick_batch if args.quick else batch)
    spe = args.steps_per_execution
    source = SyntheticSource(max(4 * batch, 256), size, jpeg=args.jpeg)
    dataset = pipeline.build_train_dataset(
        source, "train", batch, "pretrain", size, color_jitter_strength=jitter,
        use_blur=blur, seed=0)
    model = build_model(model_config(depth, width, stem), size, precision,
                        jit_compile=jit, steps_per_execution=spe)
    bare_step = make_bare_step(model.encoder, batch, size, jit)
    fit_step_times(model, dataset, spe * args.warmup, spe)  # Trace, warm up.
    bare_step_times(bare_step, args.warmup + 1)
    full, bare = [], []
    per_round = spe * max(1, args.steps // args.rounds // spe)
    for _ in range(args.rounds):
        full += fit_step_times(model, dataset, per_round, spe)
        bare += bare_step_times(bare_step, per_round)
    timed = per_round * args.rounds
    (full, full_cpu), (bare, bare_cpu) = [
        [float(x) for x in np.median(times, axis=0)] for times in (full, bare)]
    keras.backend.clear_session()
    return {"config": name, "variant": variant, "precision": precision,
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
    print("ROW_RESULT " + json.dumps(result), flush=True)


def run_row(config, variant, argv, timeout):
    """Runs `row_child` in a subprocess (its own peak memory); a dict."""
    spec = {"config": config, "variant": variant}
    try:
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), *argv, "--row_child",
             json.dumps(spec)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(spec, error=f"timed out after {timeout} s")
    for line in proc.stdout.splitlines():
        if line.startswith("ROW_RESULT "):
            return json.loads(line[len("ROW_RESULT "):])
    return dict(spec, error=f"exit code {proc.returncode}: "
                f"{proc.stderr.strip().splitlines()[-1:]}")


def summarize(rows):
    """Median over repeats per (config, variant); speed-ups against the
    first variant of the same config, taken within each repeat."""
    groups = {}
    for row in rows:
        if "error" not in row:
            groups.setdefault((row["config"], row["variant"]), []).append(row)
    summary = []
    for (config, variant), group in groups.items():
        base = {r["repeat"]: r for r in groups.get(
            (config, group[0]["baseline"]), [])}
        paired = [(r, base[r["repeat"]]) for r in group if r["repeat"] in base]
        speedups = [r["full_images_per_s"] / b["full_images_per_s"]
                    for r, b in paired]
        # CPU seconds per step: what a loaded machine stretches least.
        cpu_speedups = [b["full_cpu_s_per_step"] / r["full_cpu_s_per_step"]
                        for r, b in paired]
        median = {k: float(np.median([r[k] for r in group])) for k in (
            "full_images_per_s", "full_ms_per_step", "bare_images_per_s",
            "bare_ms_per_step", "full_over_bare", "full_over_bare_cpu",
            "full_cpu_s_per_step", "peak_rss_mb")}
        summary.append(dict(group[0], **median, repeats=len(group),
                            speedup=float(np.median(speedups)) if speedups else None,
                            speedup_cpu=(float(np.median(cpu_speedups))
                                         if cpu_speedups else None)))
    return summary


def proc_status_mb(field):
    """A memory field of /proc/self/status ("VmRSS", "VmHWM") in MB, or None."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def memory_child(spec):
    """In a fresh process: peak memory of a pretraining step (`spec` dict).

    Reports the resident memory once the model and batch exist, and the
    process's high-water mark (VmHWM) after two steps; their difference is
    what the step needs. `ru_maxrss` would not do: Linux keeps it across
    exec, so a child would inherit its parent's peak.
    """
    try:  # If memory runs out, let the kernel kill this process first.
        with open("/proc/self/oom_score_adj", "w") as oom:
            oom.write("1000")
    except OSError:
        pass
    model = build_model(model_config(18, spec["width"], True), 32, "float32",
                        micro_batch_size=spec["micro_batch_size"])
    rng = np.random.default_rng(0)
    data = {"image": tf.constant(rng.uniform(
                size=(spec["batch"], 32, 32, 6)), tf.float32),
            "label": tf.constant(rng.integers(0, NUM_CLASSES, spec["batch"]))}
    step = tf.function(model.train_step)
    result = dict(spec, rss_before_step_mb=proc_status_mb("VmRSS"))
    gpu = bool(tf.config.list_logical_devices("GPU"))
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    for _ in range(2):  # The first step traces; time the second.
        start = time.perf_counter()
        result["loss"] = float(step(data)["loss"])
        result["step_s"] = time.perf_counter() - start
    result["peak_rss_mb"] = proc_status_mb("VmHWM")
    if gpu:
        info = tf.config.experimental.get_memory_info("GPU:0")
        result["gpu_peak_mb"] = info["peak"] / 2**20
    print("MEMORY_RESULT " + json.dumps(result), flush=True)


def run_memory(batch, width, micro_batch_size, timeout):
    """Runs `memory_child` in a subprocess; returns its result dict."""
    spec = {"batch": batch, "width": width, "micro_batch_size": micro_batch_size}
    try:
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--memory_child",
             json.dumps(spec)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(spec, error=f"timed out after {timeout} s")
    for line in proc.stdout.splitlines():
        if line.startswith("MEMORY_RESULT "):
            return json.loads(line[len("MEMORY_RESULT "):])
    return dict(spec, error=f"exit code {proc.returncode}: "
                f"{proc.stderr.strip().splitlines()[-1:]}")


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


def print_tables(throughput, memory):
    """Prints the throughput table (medians) and the memory table."""
    header = (f"{'config':<21}{'variant':<16}{'batch':>6}{'full img/s':>11}"
              f"{'full ms':>9}{'bare img/s':>11}{'full/bare':>10}"
              f"{'CPU f/b':>8}{'peak MB':>9}{'speed-up':>9}{'CPU s':>7}"
              f"{'CPU speed-up':>13}")
    if throughput:
        print(header)
        print("-" * len(header))
    for r in throughput:
        speedup, cpu_speedup = ("-" if x is None else f"{x:.2f}x"
                                for x in (r["speedup"], r["speedup_cpu"]))
        print(f"{r['config']:<21}{r['variant']:<16}{r['batch']:>6}"
              f"{r['full_images_per_s']:>11.1f}{r['full_ms_per_step']:>9.0f}"
              f"{r['bare_images_per_s']:>11.1f}{r['full_over_bare']:>10.2f}"
              f"{r['full_over_bare_cpu']:>8.2f}{r['peak_rss_mb']:>9.0f}"
              f"{speedup:>9}{r['full_cpu_s_per_step']:>7.2f}{cpu_speedup:>13}")
    if memory:
        print(f"\n{'memory (ResNet-18 32px)':<26}{'batch':>6}{'width':>7}"
              f"{'micro':>7}{'RSS before MB':>15}{'peak RSS MB':>13}"
              f"{'GPU peak MB':>13}{'step s':>8}")
        for m in memory:
            if "error" in m:
                print(f"{'':<26}{m['batch']:>6}{m['width']:>7}"
                      f"{m['micro_batch_size']:>7}  error: {m['error']}")
                continue
            gpu = f"{m['gpu_peak_mb']:.0f}" if "gpu_peak_mb" in m else "-"
            print(f"{'':<26}{m['batch']:>6}{m['width']:>7}"
                  f"{m['micro_batch_size']:>7}{m['rss_before_step_mb']:>15.0f}"
                  f"{m['peak_rss_mb']:>13.0f}{gpu:>13}{m['step_s']:>8.1f}")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small batches and few steps (minutes on 2 cores)")
    parser.add_argument("--out", default="", help="write the results as JSON")
    parser.add_argument("--configs", default=",".join(CONFIGS))
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
    parser.add_argument("--memory_child", default="", help=argparse.SUPPRESS)
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
    if args.memory_child:
        return memory_child(json.loads(args.memory_child))
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
