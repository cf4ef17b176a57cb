"""Carries the claims suite's recorded results to a machine without its runs.

The suite reuses a run when OUT/<run>.done.json holds the same command. A
claims.json written by an earlier suite (the one under docs/results, say)
holds every finished run's command and result; `restore` writes them back
as done records, so a rerun on a new machine skips them and runs only what
is missing. The label subset of a restored fine-tuning run
(model_dir/label_subset.txt), which later runs and probes read, is chosen
again exactly as run.py chose it: class-balanced from the run's --seed and
--label_fraction.
"""

import json
import os
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from simclr_tf2 import config, rundir  # noqa: E402  (no TensorFlow at import)


class RestoreError(ValueError):
    """A claims.json that cannot be restored into the given --out."""


def _flags(command):
    """{flag name: value} of a displayed command's --name=value arguments."""
    flags = {}
    for part in shlex.split(command):
        if part.startswith("--") and "=" in part:
            name, value = part[2:].split("=", 1)
            flags[name] = value
    return flags


def _written_to(command):
    """The file or folder a recorded command wrote its result to, or None."""
    flags = _flags(command)
    return flags.get("model_dir") or flags.get("out")


def _needs_label_subset(flags):
    fraction = float(flags.get("label_fraction", 1.0))
    return (flags.get("train_mode") == "finetune" and fraction < 1.0
            and not flags.get("label_subset_file"))


def write_label_subset(model_dir, flags):
    """Writes model_dir/label_subset.txt as run.py chose it for these flags
    (dataset, data_dir, train_split, label_fraction, seed); returns its ids."""
    from simclr_tf2.data import registry, subsets  # TensorFlow: only when needed.
    data, train = config.DataConfig(), config.TrainConfig()  # run.py's defaults.
    source = registry.open_source(flags.get("dataset", data.dataset),
                                  flags.get("data_dir", data.data_dir))
    labels, ids = subsets.labels_and_ids(source, flags.get("train_split", data.train_split))
    chosen = subsets.balanced_subset(labels, ids, float(flags["label_fraction"]),
                                     int(flags.get("seed", train.seed)))
    os.makedirs(model_dir, exist_ok=True)
    subsets.write_subset_file(os.path.join(model_dir, rundir.LABEL_SUBSET), chosen)
    return chosen


def restore(claims_path, out, write_subset=write_label_subset):
    """Writes OUT/<run>.done.json for every run of claims_path that OUT has
    no result of; returns the restored run names.

    A pretraining run's row also keeps its recorded images/s (its log stays
    behind on the old machine). Raises RestoreError when the file is not a
    claims.json or its runs were written under another --out (their
    commands would not match this suite's, so nothing could be reused).
    """
    try:
        summary = json.load(open(claims_path))
        runs, rates = summary["runs"], summary.get("images_per_s", {})
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RestoreError(f"--resume_from={claims_path}: not a claims.json written by "
                           f"this suite ({error}); pass OUT/claims.json of an earlier run")
    out = os.path.abspath(out)
    places = {os.path.dirname(path) for path in
              (_written_to(row.get("command", "")) for row in runs.values()) if path}
    if places and out not in places:
        raise RestoreError(f"--resume_from={claims_path}: its runs were written under "
                           f"--out={sorted(places)[0]}, not {out}; pass that --out to reuse them")
    restored = []
    for name, row in runs.items():
        done_file = os.path.join(out, name + ".done.json")
        if os.path.exists(done_file):
            continue
        row = dict(row)
        if rates.get(name) is not None:
            row.setdefault("images_per_s", rates[name])
        flags = _flags(row.get("command", ""))
        model_dir = flags.get("model_dir")
        if model_dir and _needs_label_subset(flags) and not os.path.exists(
                os.path.join(model_dir, rundir.LABEL_SUBSET)):
            write_subset(model_dir, flags)
        with open(done_file + ".tmp", "w") as f:
            json.dump(row, f, indent=2)
        os.replace(done_file + ".tmp", done_file)
        restored.append(name)
    return restored
