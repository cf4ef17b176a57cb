"""Our SimCLRModel holding an original model's weights (for export, teachers, parity)."""

import tensorflow as tf

from simclr_tf2.models import heads
from simclr_tf2.models.resnet import ResNet
from simclr_tf2.models.simclr_model import SimCLRModel
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


def model_from_original(path, image_size=None):
    """A built SimCLRModel with every weight of the original model at `path`.

    Args:
      path: original model_dir, ckpt-N prefix or SavedModel directory.
      image_size: side used to create the variables (default: the original's
        flags.json image_size, else 224 / 32 by stem).

    Returns:
      (SimCLRModel, OriginalModel). The model's supervised head (if the
      checkpoint has one) reads projection-head layer `ft_proj_selector`.
    """
    original = loader.open_original(path)
    arch = original.arch
    size = image_size or arch.get("image_size") or (32 if arch["cifar_stem"] else 224)
    decay = float(original.flags.get("batch_norm_decay", 0.9))
    encoder, projection_head, supervised = build_parts(arch, decay)
    model = SimCLRModel(encoder, projection_head, supervised,
                        train_mode="finetune" if supervised is not None else "pretrain",
                        ft_proj_selector=arch["ft_proj_selector"], name="simclr")
    model(tf.zeros([1, size, size, 3]), training=False)
    loader.load_into(original, encoder, projection_head, supervised)
    return model, original
