"""The run directory (model_dir): every file name in it, atomic writes, lookups.

Layout of a model_dir (CONTRACT.md section 3), all names defined here:

    checkpoint, ckpt-N.*          tf.train.CheckpointManager (checkpoints.py)
    flags.json                    effective flag values {flag_name: value}
    flags_origin.json             where each value came from
    result.json, result_N.json    evaluation results
    training.lock                 one training per model_dir (run_lock.py)
    training_done.json            {"final_step": N} of a finished training
    label_subset.txt              fine-tuning label subset (example ids)
    saved_model/<step>/           exports; assets.extra/simclr_export.json
    train/, eval/, eval_<name>/   TensorBoard summaries
    .worker_<i>/                  a non-chief worker's private copy
    .reading-*/                   hard links of a checkpoint being read while
                                  a trainer rotates them (checkpoint_pin.py)

The original SimCLR TF2 code uses the same names for flags.json and
saved_model/, so readers of its model_dirs use these constants too.

No TensorFlow at import: `python -m export` reads a model_dir before TF
starts; the lookups that need tf.io.gfile import it when called.
"""

import json
import os
import tempfile

FLAGS_JSON = "flags.json"
FLAGS_ORIGIN_JSON = "flags_origin.json"
RESULT_JSON = "result.json"
LOCK = "training.lock"
TRAINING_DONE = "training_done.json"
LABEL_SUBSET = "label_subset.txt"
SAVED_MODEL_DIR = "saved_model"
# Inside an export directory: what the export was made from.
EXPORT_INFO = os.path.join("assets.extra", "simclr_export.json")
# Prefix of a reader's private links to a checkpoint (checkpoint_pin.py).
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
    return f"ckpt-{int(step)}"


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


def latest_checkpoint(model_dir):
    """Prefix of the newest checkpoint listed in model_dir/checkpoint, or None."""
    import tensorflow as tf
    return tf.train.latest_checkpoint(model_dir)
