"""Assembling a SimCLRModel from a model configuration."""

import keras
import tensorflow as tf

from simclr_tf2 import tasks
from simclr_tf2.errors import ConfigError
from simclr_tf2.models import backbones
from simclr_tf2.models import heads
from simclr_tf2.models import resnet
from simclr_tf2.models.simclr_model import SimCLRModel


def build_encoder(model_cfg):
    """The encoder of a ModelConfig-like object (attribute access).

    The original's ResNet for backbone "resnet"; otherwise a Keras
    Applications CNN wrapped by `backbones.BackboneEncoder`.
    """
    if getattr(model_cfg, "backbone", backbones.RESNET) != backbones.RESNET:
        return backbones.from_model_config(model_cfg)
    return resnet.ResNet(
        depth=model_cfg.resnet_depth,
        width_multiplier=model_cfg.width_multiplier,
        cifar_stem=model_cfg.cifar_stem,
        sk_ratio=model_cfg.sk_ratio,
        se_ratio=model_cfg.se_ratio,
        batch_norm_decay=model_cfg.batch_norm_decay,
        global_bn=model_cfg.global_bn,
        name="resnet")


def build_model(model_cfg, *, num_classes, task, image_size):
    """Builds (and creates the variables of) a SimCLRModel.

    Args:
      model_cfg: a `config.ModelConfig` (or an object with its fields).
      num_classes: classifier width; 0 = no supervised head.
      task: the training mode's `tasks.Task` (class or object) or its
        registry name; it decides the head wiring and what is frozen.
      image_size: input side, used to create the variables.

    Returns:
      A built, uncompiled SimCLRModel whose encoder is frozen up to
      `fine_tune_after_block` when the task asks for it. Training settings
      (the task object, the optimizer) come with `compile`.

    Raises:
      ConfigError: a task that needs classes without them.
    """
    task = tasks.get(task)
    if task.requires_classes and num_classes <= 0:
        raise ConfigError(f"train_mode={task.name} needs a supervised head "
                          "(a dataset with labels / num_classes > 0).")
    encoder = build_encoder(model_cfg)
    projection_head = heads.ProjectionHead(
        mode=model_cfg.proj_head_mode,
        num_layers=model_cfg.num_proj_layers,
        out_dim=model_cfg.proj_out_dim,
        batch_norm_decay=model_cfg.batch_norm_decay,
        global_bn=model_cfg.global_bn,
        name="projection_head")
    supervised = None
    if num_classes > 0 and task.wants_supervised_head(model_cfg):
        supervised = heads.supervised_head(
            num_classes, zero_init=model_cfg.zero_init_logits_layer,
            normalize_input=task.standardises_features(model_cfg),
            batch_norm_decay=model_cfg.batch_norm_decay,
            global_bn=model_cfg.global_bn)
    model = SimCLRModel(
        encoder, projection_head, supervised,
        stop_gradient_to_head=task.stop_gradient_to_head,
        ft_proj_selector=model_cfg.ft_proj_selector, name="simclr")
    model(tf.zeros([1, image_size, image_size, 3]), training=False)
    frozen_after = task.frozen_after_block(model_cfg)
    if frozen_after is not None:
        freeze = (resnet.set_fine_tune_after_block
                  if isinstance(encoder, resnet.ResNet)
                  else backbones.set_fine_tune_after_block)
        freeze(encoder, frozen_after)
    return model


def pretraining_model(encoder: keras.layers.Layer, *, proj_out_dim: int = 128,
                      num_proj_layers: int = 2, proj_head_mode: str = "nonlinear",
                      batch_norm_decay: float = 0.9, global_bn: bool = False,
                      image_size: int | None = None) -> SimCLRModel:
    """A SimCLRModel for pretraining around any encoder (library use).

    Args:
      encoder: a layer mapping float [B, H, W, 3] in [0, 1] to a dict with
        "final_avg_pool" [B, D]: a `backbones.BackboneEncoder` around any
        `keras.Model` (`backbones.keras_application(NAME)` for a Keras
        Applications CNN), or the built-in `resnet.ResNet`.
      proj_out_dim: width P of z.
      num_proj_layers: layers of the projection head g (2: SimCLR v1, 3: v2).
      proj_head_mode: "nonlinear", "linear" or "none".
      batch_norm_decay: momentum of the projection head's batch norm.
      global_bn: synchronise the projection head's BN across replicas.
      image_size: if given, the variables are created on a [1, S, S, 3]
        input now (needed before `strategy.scope()` ends, and for `summary`).

    Returns:
      An uncompiled SimCLRModel with no supervised head; compile it with
      `tasks.PretrainTask(...)` and a `optim` optimizer, then `fit` it on
      `data.pipeline.contrastive_batches(...)`.
    """
    projection_head = heads.ProjectionHead(
        mode=proj_head_mode, num_layers=num_proj_layers, out_dim=proj_out_dim,
        batch_norm_decay=batch_norm_decay, global_bn=global_bn,
        name="projection_head")
    model = SimCLRModel(encoder, projection_head,
                        stop_gradient_to_head=True, name="simclr")
    if image_size is not None:
        model(tf.zeros([1, image_size, image_size, 3]), training=False)
    return model
