"""The run directory (model_dir): every file name in it, atomic writes, lookups.

Layout of a model_dir, all names defined here:

    checkpoint, ckpt-N.*          tf.train.CheckpointManager (rundir.checkpoints)
    flags.json                    effective flag values {flag_name: value}
    flags_origin.json             where each value came from
    result.json, result_N.json    evaluation results
    training.lock                 one training per model_dir (rundir.run_lock)
    training_done.json            {"final_step": N} of a finished training
    label_subset.txt              fine-tuning label subset (example ids)
    saved_model/<step>/           exports; assets.extra/simclr_export.json
    train/, eval/, eval_<name>/   TensorBoard summaries
    .worker_<i>/                  a non-chief worker's private copy
    .reading-*/                   hard links of a checkpoint being read while
                                  a trainer rotates them (rundir.pinning)

The package's modules: this one (names, atomic JSON writes, the JSON
records flags.json and training_done.json, the newest checkpoint and
export), `checkpoints` (the run's checkpoint: its object layout, saving,
restoring), `pinning` (reading a checkpoint a trainer may delete),
`run_lock` (one training per model_dir), `same_run` (resuming only with
the recorded flags) and `object_graph` (reading a checkpoint's object
graph).

The original SimCLR TF2 code uses the same names for flags.json, ckpt-N and
saved_model/, so readers of its model_dirs use these constants too.

No TensorFlow at import: `python -m export` reads a model_dir before TF
starts; the lookups that need tf.io.gfile import it when called.
"""

import json
import os
import tempfile

from simclr_tf2.errors import ConfigError

# tf.train.CheckpointManager's checkpoint_name: checkpoints are ckpt-<step>.
CHECKPOINT_PREFIX = "ckpt"
FLAGS_JSON = "flags.json"
FLAGS_ORIGIN_JSON = "flags_origin.json"
RESULT_JSON = "result.json"
LOCK = "training.lock"
TRAINING_DONE = "training_done.json"
LABEL_SUBSET = "label_subset.txt"
SAVED_MODEL_DIR = "saved_model"
# Inside an export directory: what the export was made from.
EXPORT_INFO = os.path.join("assets.extra", "simclr_export.json")
# Prefix of a reader's private links to a checkpoint (pinning.py).
PIN_PREFIX = ".reading-"
TRAIN_SUMMARIES = "train"
EVAL_SUMMARIES = "eval"


def result_json(step):
    """File name of the evaluation result at `step`: result_<step>.json."""
    return f"result_{int(step)}.json"


def eval_summaries(eval_name=""):
    """Summary directory of an evaluation (--eval_name): eval or eval_<name>."""
    return f"{EVAL_SUMMARIES}_{eval_name}" if eval_name else EVAL_SUMMARIES


def checkpoint_name(step):
    """Prefix of the checkpoint of `step` in a model_dir: ckpt-<step>."""
    return f"{CHECKPOINT_PREFIX}-{int(step)}"


def checkpoint_step(path):
    """The step number N of a 'ckpt-N' prefix (or -1)."""
    name = os.path.basename(path)
    try:
        return int(name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def worker_dir(model_dir, task_id):
    """Private directory of non-chief worker `task_id` in a multi-worker run."""
    return os.path.join(model_dir, f".worker_{task_id}")


def export_root(model_dir):
    """model_dir/saved_model: the parent of the per-step exports."""
    return os.path.join(model_dir, SAVED_MODEL_DIR)


def export_dir(model_dir, step):
    """model_dir/saved_model/<step>."""
    return os.path.join(export_root(model_dir), str(int(step)))


def atomic_write_json(path, payload):
    """Writes JSON to `path` via a temporary file and rename (all or nothing)."""
    directory = os.path.dirname(path) or "."
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=".tmp_",
                                    suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
        os.chmod(tmp_path, 0o644)  # mkstemp creates 0600; results are for all.
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def write_flags_json(model_dir, flat, origin):
    """Writes the effective configuration of a run into `model_dir`.

    flags.json is flat, as the original code writes it: {flag_name:
    effective value}; flags_origin.json says where each value came from
    ("flag", "recipe:<name>" or "default").

    Args:
      model_dir: the run's model directory.
      flat: {flag_name: value} (`RunConfig.to_flat()`).
      origin: {flag_name: origin}; names missing from it are "default".
    """
    atomic_write_json(os.path.join(model_dir, FLAGS_JSON), flat)
    atomic_write_json(
        os.path.join(model_dir, FLAGS_ORIGIN_JSON),
        {name: origin.get(name, "default") for name in sorted(flat)})


def has_flags_json(model_dir):
    """Whether `model_dir` holds a flags.json."""
    return os.path.isfile(os.path.join(model_dir, FLAGS_JSON))


def read_flags_json(model_dir, check=None):
    """The decoded flags.json of `model_dir` (ours or the original code's).

    Args:
      model_dir: a run's model directory.
      check: optional function(dict) raising ValueError or TypeError when
        the object is not what the caller reads (`config.read_flags_json`
        turns it into a `RunConfig`); its result is returned.

    Returns:
      `check(raw)` (or the dict itself without `check`).

    Raises:
      ConfigError: missing, unreadable, not a flat JSON object, or refused
        by `check`.
    """
    path = os.path.join(model_dir, FLAGS_JSON)
    if not os.path.isfile(path):
        raise ConfigError(
            f"no {FLAGS_JSON} in {model_dir}; pass the --model_dir of a run.py "
            "run (it records the architecture there).")
    try:
        with open(path) as f:
            raw = json.load(f)
        if not isinstance(raw, dict):
            raise ValueError("not a flat {flag_name: value} object")
        return check(raw) if check is not None else raw
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError(
            f"cannot read {path} ({type(err).__name__}: {err}); it must be "
            "the flat JSON object {flag_name: value} that run.py writes "
            "(model_dirs written before the flat format need a new run).") from err


def record_final_step(model_dir, step):
    """Notes in model_dir/training_done.json that training finished at `step`."""
    atomic_write_json(os.path.join(model_dir, TRAINING_DONE),
                      {"final_step": int(step)})


def clear_final_step(model_dir):
    """Removes model_dir/training_done.json (a run that trains further)."""
    import tensorflow as tf
    path = os.path.join(model_dir, TRAINING_DONE)
    if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def recorded_final_step(model_dir):
    """The final step a finished training run recorded, or None."""
    import tensorflow as tf
    path = os.path.join(model_dir, TRAINING_DONE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return int(json.load(f)["final_step"])


def export_steps(root):
    """The steps of the numbered exports under `root` (saved_model/), sorted."""
    import tensorflow as tf
    if not tf.io.gfile.isdir(root):
        return []
    return sorted(int(d.strip("/")) for d in tf.io.gfile.listdir(root)
                  if d.strip("/").isdigit())


def latest_export(model_dir):
    """Newest model_dir/saved_model/<step>/ directory, or None."""
    steps = export_steps(export_root(model_dir))
    return export_dir(model_dir, steps[-1]) if steps else None


def is_export(path):
    """Whether `path` is a SavedModel directory (holds saved_model.pb)."""
    import tensorflow as tf
    return tf.io.gfile.exists(os.path.join(path, "saved_model.pb"))


def resolve_export(path):
    """`path` if it is an export, else the newest export of model_dir `path`, or None."""
    return path if is_export(path) else latest_export(path)


def latest_checkpoint(model_dir):
    """Prefix of the newest checkpoint listed in model_dir/checkpoint, or None."""
    import tensorflow as tf
    return tf.train.latest_checkpoint(model_dir)
