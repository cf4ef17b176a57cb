"""The L-BFGS linear probe: fit time by BLAS threads, accuracy by C.

`python -m simclr_tf2.analysis probes` fits scikit-learn's
LogisticRegression (L-BFGS) on standardised rows with C=1 and one BLAS
thread. This script measures both choices on the Fashion-MNIST split:

  threads  wall seconds of the probe (`probes.logistic_regression_top1`,
           C=1: standardise, fit on all training rows, score the test
           rows) with 1, 2, ... BLAS threads, each a median of --repeats;
  C        the paper's transfer protocol (Appendix B.8): the same probe
           for every C of --cs, fit on the training rows minus a
           stratified held-out tenth and scored there; the C with the best
           held-out accuracy refit on all training rows and scored on the
           test split, beside C=1.

Rows are the raw pixels, or the frozen h of an export (--export, the
`saved_model/<step>` folder run.py writes). Prints a table, writes JSON:

    python benchmarks/linear_probe.py --out=probe_pixels.json
    python benchmarks/linear_probe.py --export=/runs/pre/saved_model/1404 \
        --out=probe_h.json
"""

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sklearn.model_selection import train_test_split  # noqa: E402

from simclr_tf2.analysis import features, probes  # noqa: E402
from simclr_tf2.data.registry import open_source  # noqa: E402

DEFAULT_CS = "0.001,0.01,0.1,1,10"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--export", default=None,
                        help="SavedModel export whose h to probe (default: raw pixels)")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--threads", default="1,2",
                        help="BLAS thread counts to time, comma-separated")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cs", default=DEFAULT_CS,
                        help="C values for held-out selection, comma-separated "
                             "('' skips the selection)")
    parser.add_argument("--held_out", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def load_rows(args):
    """(train_x [N, D], train_y [N], test_x [M, D], test_y [M])."""
    source = open_source(args.dataset, args.data_dir)
    if args.export:
        train_x, train_y = features.split_features(args.export, source, "train")
        test_x, test_y = features.split_features(args.export, source, "test")
        return train_x, train_y, test_x, test_y
    train_x, train_y, _ = features.split_pixels(source, "train")
    test_x, test_y, _ = features.split_pixels(source, "test")
    return train_x, train_y, test_x, test_y


def time_threads(rows, thread_counts, repeats):
    timings = []
    for threads in thread_counts:
        seconds = []
        for _ in range(repeats):
            start = time.time()
            probes.logistic_regression_top1(*rows, blas_threads=threads)
            seconds.append(time.time() - start)
        timings.append({"blas_threads": threads,
                        "seconds": round(statistics.median(seconds), 2)})
        print(f"C=1 probe on {len(rows[1])} rows, {threads} BLAS thread(s): "
              f"{timings[-1]['seconds']} s", flush=True)
    return timings


def select_c(rows, cs, held_out, seed):
    """Held-out accuracy per C, the chosen C's test accuracy and C=1's."""
    train_x, train_y, test_x, test_y = rows
    fit_x, val_x, fit_y, val_y = train_test_split(
        train_x, train_y, test_size=held_out, stratify=train_y, random_state=seed)
    held = []
    for c in cs:
        top1, seconds = probes.timed(probes.logistic_regression_top1,
                                     fit_x, fit_y, val_x, val_y, c=c)
        held.append({"c": c, "held_out_top1": top1, "seconds": seconds})
        print(f"C={c:g}: held-out top-1 {top1:.4f}", flush=True)
    best = max(held, key=lambda row: row["held_out_top1"])["c"]
    test = {}
    for c in sorted({best, 1.0}):
        test[str(c)] = probes.logistic_regression_top1(train_x, train_y, test_x, test_y, c=c)
        print(f"C={c:g} refit on all {len(train_y)} rows: test top-1 "
              f"{test[str(c)]:.4f}", flush=True)
    return {"held_out_fraction": held_out, "held_out": held, "chosen_c": best,
            "test_top1_by_c": test}


def main(argv=None):
    args = parse_args(argv)
    rows = load_rows(args)
    result = {"rows": args.export or "raw pixels", "dataset": args.dataset,
              "train_rows": int(len(rows[1])), "dims": int(rows[0].shape[1]),
              "cpu_count": os.cpu_count(),
              "threads": time_threads(rows, [int(t) for t in args.threads.split(",")],
                                      args.repeats)}
    if args.cs:
        result["c_selection"] = select_c(rows, [float(c) for c in args.cs.split(",")],
                                         args.held_out, args.seed)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
