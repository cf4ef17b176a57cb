"""Losses of SimCLR: NT-Xent and SupCon with cross-replica negatives, supervised, distillation.

    from simclr_tf2 import losses
    loss, logits_con, labels_con = losses.add_contrastive_loss(hidden)

Modules: `contrastive` (NT-Xent and what the contrastive losses share),
`supcon` (SupCon), `supervised` (the heads' cross entropy over labelled
examples), `distillation` (SimCLRv2's distillation). The memory's losses
(SimCLRv2's buffered negatives) live with the memory, in `memory.loss`.
"""

from simclr_tf2.losses.contrastive import LARGE_NUM
from simclr_tf2.losses.contrastive import add_contrastive_loss
from simclr_tf2.losses.contrastive import contrastive_metrics
from simclr_tf2.losses.contrastive import cross_replica_concat
from simclr_tf2.losses.distillation import distillation_loss
from simclr_tf2.losses.supcon import add_supervised_contrastive_loss
from simclr_tf2.losses.supcon import supervised_contrastive_targets
from simclr_tf2.losses.supervised import labelled_cross_entropy_per_image
from simclr_tf2.losses.supervised import masked_cross_entropy

__all__ = ["LARGE_NUM", "add_contrastive_loss", "add_supervised_contrastive_loss",
           "contrastive_metrics", "cross_replica_concat", "distillation_loss",
           "labelled_cross_entropy_per_image", "masked_cross_entropy",
           "supervised_contrastive_targets"]
