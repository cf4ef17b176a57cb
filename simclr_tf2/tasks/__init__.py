"""One task per training mode, and the registry keyed by --train_mode.

A new mode is one module with a `base.Task` subclass plus one line in
`TASKS`. `get` is the one place a train_mode string is looked up.
"""

from simclr_tf2.errors import ConfigError
from simclr_tf2.tasks.base import LOGITS
from simclr_tf2.tasks.base import Task
from simclr_tf2.tasks.base import Z
from simclr_tf2.tasks.distill import DistillTask
from simclr_tf2.tasks.finetune import FinetuneTask
from simclr_tf2.tasks.pretrain import CONTRASTIVE_LOSSES
from simclr_tf2.tasks.pretrain import PretrainTask

TASKS = {"pretrain": PretrainTask, "finetune": FinetuneTask,
         "distill": DistillTask}
TRAIN_MODES = tuple(TASKS)


def get(train_mode):
    """The Task class of a train mode name (a Task class or object passes
    through unchanged).

    Raises:
      ConfigError: an unknown name.
    """
    if not isinstance(train_mode, str):
        return train_mode
    if train_mode not in TASKS:
        raise ConfigError(f"train_mode must be one of {', '.join(TASKS)}, "
                          f"got {train_mode!r}.")
    return TASKS[train_mode]


def from_config(config, teacher=None):
    """The task object of a `config.RunConfig` (teacher: for distill)."""
    return get(config.train.train_mode).from_config(config, teacher)


__all__ = ["CONTRASTIVE_LOSSES", "DistillTask", "FinetuneTask", "LOGITS",
           "PretrainTask", "TASKS", "TRAIN_MODES", "Task",
           "Z", "from_config", "get"]
