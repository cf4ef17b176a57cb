"""SimCLRv2's memory: an EMA network whose keys are buffered as extra negatives.

- `loss`: the contrastive losses against memory keys and the buffer.
- `buffer`: `KeyBuffer`, the FIFO of past keys (and labels).
- `ema`: `MemoryNetwork` and `ema_update`, the moving-average copy.
- `state`: `memory_trackable`, what a checkpoint holds of both.
- `training`: `TrainingMemory`, both of them in a pretraining run.

See docs/memory.md for the formulation and how a training step uses them.
"""

from simclr_tf2.memory.buffer import KeyBuffer
from simclr_tf2.memory.ema import MemoryNetwork, clone_layer, ema_update
from simclr_tf2.memory.loss import (memory_contrastive_loss,
                                    memory_supervised_contrastive_loss,
                                    memory_supervised_targets)
from simclr_tf2.memory.state import memory_trackable
from simclr_tf2.memory.training import TrainingMemory

__all__ = ["KeyBuffer", "MemoryNetwork", "clone_layer", "ema_update",
           "memory_contrastive_loss", "memory_supervised_contrastive_loss",
           "memory_supervised_targets", "memory_trackable", "TrainingMemory"]
