"""Time from a SIGTERM / SIGINT to the exit of a training run.py.

    python benchmarks/preemption_latency.py --rounds 3 --after_step 3 \
        --out latency.json -- --mode=train --model_dir=/tmp/p_main

Starts `python run.py <args after -->` with a fresh model_dir per round
(the given --model_dir plus _<round>), waits for its progress line of step
`--after_step` (use --log_every_steps=1 in the run's flags to see every
step), sends the signal (at once, or with --mid_step half a step later) and measures the wall time until the process has
exited. Also records the exit status, the step named in the stop line, the
last logged step and the median wall time between progress lines (one
step, or one logging period). Prints one JSON object per round and writes
all of them with the machine's CPU model to --out.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP_LINE = re.compile(r"^step (\d+)/")
SAVED_LINE = re.compile(r"\(step (\d+)\) saved")


def cpu_model():
    """The `lscpu` model name, or 'unknown'."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    for line in text.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def one_round(run_args, after_step, signum, mid_step=False):
    """Runs, signals after `after_step` and times the exit; returns a dict.

    With `mid_step`, the signal is sent half a step (the median time between
    progress lines so far) after the line, so that it lands inside a step.
    """
    proc = subprocess.Popen(
        [sys.executable, "-u", os.path.join(ROOT, "run.py"), *run_args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=ROOT))
    times, steps, sent = [], [], None
    for line in proc.stdout:
        found = STEP_LINE.match(line)
        if not found:
            continue
        times.append(time.monotonic())
        steps.append(int(found.group(1)))
        if steps[-1] >= after_step:
            gaps = [b - a for a, b in zip(times, times[1:])]
            if mid_step and gaps:
                time.sleep(statistics.median(gaps) / 2)
            sent = time.monotonic()
            proc.send_signal(signum)
            break
    for line in proc.stdout:  # lines logged between the signal and the stop
        found = STEP_LINE.match(line)
        if found:
            steps.append(int(found.group(1)))
    _, err = proc.communicate()
    exited = time.monotonic()
    saved = SAVED_LINE.search(err)
    gaps = [b - a for a, b in zip(times, times[1:])]
    return {
        "signal": signal.Signals(signum).name,
        "sent_after_step_line_s": round(sent - times[-1], 2) if sent else None,
        "signal_to_exit_s": round(exited - sent, 2) if sent else None,
        "exit_status": proc.returncode,
        "saved_step": int(saved.group(1)) if saved else None,
        "last_logged_step": max(steps, default=None),
        "median_s_between_progress_lines": (
            round(statistics.median(gaps), 2) if gaps else None),
        "stop_line": err.strip().splitlines()[-1] if err.strip() else "",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--after_step", type=int, default=3)
    parser.add_argument("--signal", default="SIGTERM", choices=["SIGTERM", "SIGINT"])
    parser.add_argument("--mid_step", action="store_true",
                        help="signal half a step after the progress line")
    parser.add_argument("--out", default=None)
    parser.add_argument("run_args", nargs="+", help="run.py flags (after --)")
    args = parser.parse_args()
    model_dir = next((a.split("=", 1)[1] for a in args.run_args
                      if a.startswith("--model_dir=")), "/tmp/preemption_latency")
    rows = []
    for index in range(args.rounds):
        directory = f"{model_dir}_{index}"
        shutil.rmtree(directory, ignore_errors=True)
        run_args = [a for a in args.run_args if not a.startswith("--model_dir=")]
        row = one_round(run_args + [f"--model_dir={directory}"],
                        args.after_step, getattr(signal, args.signal),
                        args.mid_step)
        print(json.dumps(row), flush=True)
        rows.append(row)
    report = {"cpu": cpu_model(), "command": ["python", "run.py", *args.run_args],
              "rounds": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
