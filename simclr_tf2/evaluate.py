"""Evaluation: top-1/top-5 of the supervised head, written as result JSON."""

import json
import os
import tempfile

import tensorflow as tf


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


def evaluate_model(model, eval_dataset, global_step):
    """Runs one pass over `eval_dataset`.

    Args:
      model: a compiled SimCLRModel.
      eval_dataset: batches {"image": [b, S, S, 3], "label": [b]}.
      global_step: the step of the weights, recorded in the result.

    Returns:
      Dict with the original SimCLR keys: "eval/label_top_1_accuracy",
      "eval/label_top_5_accuracy", "eval/regularization_loss" and
      "global_step", all floats.
    """
    metrics = model.evaluate(eval_dataset, verbose=0, return_dict=True)
    result = {f"eval/{name}": float(value) for name, value in metrics.items()}
    result["global_step"] = float(global_step)
    return result


def write_result(model_dir, result, summary_writer=None):
    """Writes result.json and result_<step>.json (and eval summaries)."""
    step = int(result["global_step"])
    atomic_write_json(os.path.join(model_dir, f"result_{step}.json"), result)
    atomic_write_json(os.path.join(model_dir, "result.json"), result)
    if summary_writer is not None:
        with summary_writer.as_default(step=step):
            for name, value in result.items():
                if name != "global_step":
                    tf.summary.scalar(name, value)
        summary_writer.flush()


def format_result(result):
    """One human-readable line of an evaluation result."""
    shown = ", ".join(f"{k.replace('eval/', '')}={v:.4f}"
                      for k, v in sorted(result.items()) if k != "global_step")
    return f"eval at step {int(result['global_step'])}: {shown}"
