"""Resuming a model_dir only with the flags it was trained with.

Training resumes from a model_dir's newest checkpoint automatically. When
the new command changes what is trained (architecture, data, augmentation,
objective, optimiser, label subset, teacher, initial checkpoint), resuming
would silently continue the other run's weights under the new flags, and
flags.json would then describe a model that was never trained that way.
`check_resumable` refuses that with one line naming every changed flag.

Flags that only say how long to train, how often to checkpoint, log,
evaluate or export, or where and on what hardware to run may change on
resume (`MAY_CHANGE_ON_RESUME`); so may flags missing from either record
(a model_dir written by the original code or by an older version).
"""

import json
import os

from simclr_tf2 import rundir
from simclr_tf2.errors import ConfigError

MAY_CHANGE_ON_RESUME = frozenset({
    # What to do now and how long to train.
    "mode", "train_epochs", "train_steps",
    # Where things are: the same run may be reached by another path.
    "model_dir", "data_dir",
    # Cadence of checkpoints, logs and exports.
    "checkpoint_epochs", "checkpoint_steps", "keep_checkpoint_max",
    "keep_hub_module_max", "log_every_steps", "export_after_eval",
    # Evaluation.
    "eval_batch_size", "eval_name", "eval_split", "eval_steps",
    "eval_timeout_secs", "knn_eval", "knn_eval_every_steps", "knn_k",
    "knn_max_bank", "knn_temperature",
    # Hardware and execution (the same arithmetic on other devices).
    "use_tpu", "tpu_name", "tpu_zone", "gcp_project", "master",
    "num_logical_cpu_devices", "cache_dataset", "precision",
    "micro_batch_size", "steps_per_execution", "jit_compile",
})


def changed_flags(recorded, flat):
    """Flags whose new value differs from the recorded one.

    Args:
      recorded: {flag_name: value} read from a model_dir's flags.json.
      flat: {flag_name: value} of the new run (`RunConfig.to_flat()`).

    Returns:
      [(name, recorded value, new value)] sorted by name, over the names in
      both that are not in MAY_CHANGE_ON_RESUME.
    """
    # Compare as flags.json stores them (tuples become lists, and so on).
    new = json.loads(json.dumps(flat))
    return [(name, recorded[name], new[name])
            for name in sorted(set(recorded) & set(new) - MAY_CHANGE_ON_RESUME)
            if recorded[name] != new[name]]


def check_resumable(model_dir, flat):
    """Raises ConfigError when training would resume `model_dir` with other flags.

    Nothing to check when model_dir has no checkpoint (training starts
    afresh and rewrites flags.json) or no flags.json.

    Args:
      model_dir: the run's model directory.
      flat: {flag_name: value} of the new run.
    """
    if not rundir.has_flags_json(model_dir) or rundir.latest_checkpoint(model_dir) is None:
        return
    changes = changed_flags(rundir.read_flags_json(model_dir), flat)
    if not changes:
        return
    listed = "; ".join(f"--{name}={_spell(old)} (now {_spell(new)})"
                       for name, old, new in changes)
    raise ConfigError(
        f"--model_dir={model_dir} holds a checkpoint trained with other flags: "
        f"{listed}. Pass the same flags to resume it, a new --model_dir to start "
        f"another run, or delete {os.path.join(model_dir, rundir.FLAGS_JSON)} "
        "to continue its weights under the new flags.")


def _spell(value):
    """A flag value as it is typed on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "''"
    return str(value)
