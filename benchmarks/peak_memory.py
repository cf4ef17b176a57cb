"""Peak memory of one pretraining step, each measurement in a fresh process.

A process's high-water mark (VmHWM) only grows, so every measurement runs
in a child process of its own and reports back on one line starting with
RESULT_PREFIX. `run_memory` measures one large-batch ResNet-18 step at
32 px (batch B, width W, `micro_batch_size` M or 0 for the plain tape);
benchmarks/throughput.py runs it with and without gradient caching, and so
does this script:

    python benchmarks/peak_memory.py --batch 4096 --width 0.25 --out memory.json
"""

import argparse
import json
import os
import subprocess
import sys
import time

# A child process prints its result dict on a line starting with this.
RESULT_PREFIX = "CHILD_RESULT "


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


def run_child(script, argv, spec, timeout):
    """Runs `script` with `argv` (a --*child flag last, given `spec` as JSON)
    in a subprocess, so that the measurement has its own peak memory.

    Returns:
      The dict the child printed after RESULT_PREFIX, or `spec` with "error".
    """
    try:
        proc = subprocess.run(
            [sys.executable, os.path.abspath(script), *argv, json.dumps(spec)],
            capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(spec, error=f"timed out after {timeout} s")
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    return dict(spec, error=f"exit code {proc.returncode}: "
                f"{proc.stderr.strip().splitlines()[-1:]}")


def memory_child(spec):
    """In a fresh process: peak memory of a pretraining step (`spec` dict:
    batch, width, micro_batch_size).

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
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    from synthetic_setup import NUM_CLASSES, build_model, model_config

    model = build_model(model_config(18, spec["width"], True), 32, "float32",
                        micro_batch_size=spec["micro_batch_size"])
    rng = np.random.default_rng(0)
    data = {"image": tf.constant(rng.uniform(  # Two views: [B, 32, 32, 6].
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
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_memory(batch, width, micro_batch_size, timeout):
    """Runs `memory_child` in a subprocess; returns its result dict."""
    spec = {"batch": batch, "width": width, "micro_batch_size": micro_batch_size}
    return run_child(__file__, ["--child"], spec, timeout)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4096, help="examples per step")
    parser.add_argument("--width", type=float, default=0.25, help="ResNet-18 width")
    parser.add_argument("--micro_batch_size", type=int, default=0,
                        help="the gradient-caching chunk measured beside the "
                        "plain step (default batch / 16)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per child")
    parser.add_argument("--out", default="", help="write the results as JSON")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return memory_child(json.loads(args.child))
    micro = args.micro_batch_size or max(1, args.batch // 16)
    rows = [run_memory(args.batch, args.width, m, args.timeout) for m in (0, micro)]
    for row in rows:
        print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as out:
            json.dump({"args": vars(args), "memory": rows}, out, indent=2)
    return rows


if __name__ == "__main__":
    main()
