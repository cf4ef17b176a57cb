"""SimCLR optimizers and schedules: LARS, warmup + cosine decay, lr scaling, gradient caching (`gradcache`)."""

from simclr_tf2.optim.factory import EXCLUDE_FROM_WEIGHT_DECAY
from simclr_tf2.optim.factory import WeightDecay
from simclr_tf2.optim.factory import build_optimizer
from simclr_tf2.optim.factory import weight_decay_loss
from simclr_tf2.optim.factory import weight_decay_policy
from simclr_tf2.optim.gradients import apply_gradients
from simclr_tf2.optim.gradients import scale_for_replicas
from simclr_tf2.optim.lars import LARS
from simclr_tf2.optim.lars import variable_path
from simclr_tf2.optim.schedule import WarmupCosineDecay
from simclr_tf2.optim.schedule import build_learning_rate_schedule
from simclr_tf2.optim.schedule import scale_learning_rate
from simclr_tf2.optim.schedule import scaling_batch_size
from simclr_tf2.optim.schedule import warmup_and_total_steps

__all__ = [
    "EXCLUDE_FROM_WEIGHT_DECAY",
    "LARS",
    "WarmupCosineDecay",
    "WeightDecay",
    "apply_gradients",
    "build_learning_rate_schedule",
    "build_optimizer",
    "scale_for_replicas",
    "scale_learning_rate",
    "scaling_batch_size",
    "variable_path",
    "warmup_and_total_steps",
    "weight_decay_loss",
    "weight_decay_policy",
]
