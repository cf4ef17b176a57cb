"""Our SimCLRModel holding an original model's weights (for export, teachers, parity)."""

import os

from simclr_tf2 import rundir
from simclr_tf2 import tasks
from simclr_tf2.config import DataConfig, ModelConfig, OptimConfig, RunConfig
from simclr_tf2.models import build
from simclr_tf2.models import heads
from simclr_tf2.models.resnet import ResNet
from simclr_tf2.original import loader


def build_parts(arch, batch_norm_decay=0.9, num_classes=None):
    """Unbuilt (encoder, projection head, supervised head or None) for an architecture dict.

    Args:
      arch: keys as `architecture.infer_from_variables` returns.
      batch_norm_decay: BN momentum for further training.
      num_classes: classifier width; None takes arch["num_classes"] (0: none).
    """
    encoder = ResNet(depth=arch["resnet_depth"], width_multiplier=arch["width_multiplier"],
                     cifar_stem=arch["cifar_stem"], sk_ratio=arch["sk_ratio"],
                     se_ratio=arch["se_ratio"], batch_norm_decay=batch_norm_decay,
                     name="resnet")
    projection_head = heads.ProjectionHead(
        mode=arch["proj_head_mode"], num_layers=arch["num_proj_layers"],
        out_dim=arch["proj_out_dim"], batch_norm_decay=batch_norm_decay,
        name="projection_head")
    classes = arch["num_classes"] if num_classes is None else num_classes
    supervised = heads.supervised_head(
        classes, batch_norm_decay=batch_norm_decay) if classes else None
    return encoder, projection_head, supervised


def model_config(arch, flags=None):
    """The `config.ModelConfig` (build.build_model) of an original architecture."""
    flags = flags or {}
    return ModelConfig(
        resnet_depth=arch["resnet_depth"], width_multiplier=arch["width_multiplier"],
        cifar_stem=arch["cifar_stem"], sk_ratio=arch["sk_ratio"], se_ratio=arch["se_ratio"],
        batch_norm_decay=float(flags.get("batch_norm_decay", 0.9)), global_bn=False,
        proj_head_mode=arch["proj_head_mode"], proj_out_dim=arch["proj_out_dim"],
        num_proj_layers=arch["num_proj_layers"], ft_proj_selector=arch["ft_proj_selector"],
        zero_init_logits_layer=False, fine_tune_after_block=-1,
        lineareval_while_pretraining=bool(arch["num_classes"]))


def model_from_original(path, image_size=None):
    """A built SimCLRModel with every weight of the original model at `path`.

    Built by `build.build_model` like any run's model; with a supervised head
    it is built for fine-tuning (`tasks.FinetuneTask`), whose classifier is a plain linear layer like
    the original's (pretraining mode would add an input normalisation).

    Args:
      path: original model_dir, ckpt-N prefix or SavedModel directory.
      image_size: side used to create the variables (default: the original's
        flags.json image_size, else 224 / 32 by stem).

    Returns:
      (SimCLRModel, OriginalModel, ModelConfig, image size).
    """
    original = loader.open_original(path)
    arch = original.arch
    size = image_size or arch.get("image_size") or (32 if arch["cifar_stem"] else 224)
    cfg = model_config(arch, original.flags)
    classes = arch["num_classes"]
    task = tasks.FinetuneTask if classes else tasks.PretrainTask
    model = build.build_model(cfg, num_classes=classes, task=task,
                              image_size=size)
    loader.load_into(original, model.encoder, model.projection_head, model.supervised_head)
    return model, original, cfg, size


def _global_step(original):
    """The original checkpoint's global step (else from its ckpt-N / <step>/ name)."""
    step = original.graph.global_step()
    if step is not None:
        return step
    step = rundir.checkpoint_step(original.prefix)
    if step >= 0:
        return step
    parent = os.path.basename(os.path.dirname(original.prefix.rstrip("/")))
    return int(parent) if parent.isdigit() else 0


def model_for_export(source):
    """What `python -m export` needs to export an original model.

    Args:
      source: original model_dir, ckpt-N prefix or SavedModel directory.

    Returns:
      (SimCLRModel, RunConfig of its image size / architecture / weight
      decay, global step, info dict for the export's simclr_export.json).
    """
    model, original, cfg, size = model_from_original(source)
    config = RunConfig(
        data=DataConfig(image_size=size), model=cfg,
        optim=OptimConfig(weight_decay=float(original.flags.get("weight_decay", 0.0))))
    step = _global_step(original)
    info = {"global_step": step, "checkpoint": original.prefix,
            "original_simclr": True, "architecture": original.arch}
    return model, config, step, info
