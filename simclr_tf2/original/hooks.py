"""Where the rest of the project meets original models: flags, --checkpoint, --teacher.

Each function is called from one marked call site ("[original]") in
flags/config.py, simclr_tf2/training/trainer.py and simclr_tf2/training/teacher.py.
"""

import tensorflow as tf

from simclr_tf2 import rundir
from simclr_tf2.errors import OriginalCheckpointError
from simclr_tf2.original import convert, loader

is_original = loader.is_original

# Our flag -> how to read it from an inferred architecture.
ARCHITECTURE_READERS = {
    "resnet_depth": lambda a: a["resnet_depth"],
    "width_multiplier": lambda a: a["width_multiplier"],
    "sk_ratio": lambda a: a["sk_ratio"],
    "se_ratio": lambda a: a["se_ratio"],
    "cifar_stem": lambda a: "true" if a["cifar_stem"] else "false",
    "proj_head_mode": lambda a: a["proj_head_mode"],
    "num_proj_layers": lambda a: a["num_proj_layers"],
    "proj_out_dim": lambda a: a["proj_out_dim"],
}


def fill_architecture_flags(values, origin):
    """Architecture flags the user did not set come from an original --checkpoint.

    Args:
      values: flag name -> effective value (updated in place).
      origin: flag name -> "flag" / "recipe:..." / "default" (updated in place;
        filled values get "checkpoint:<path>").

    Returns:
      The names filled in ([] when --checkpoint is unset or not original).
    """
    path = values.get("checkpoint")
    if not path or not loader.is_original(path):
        return []
    arch = loader.open_original(path).arch
    filled = []
    for name, read in ARCHITECTURE_READERS.items():
        if name in values and origin.get(name) != "flag":
            values[name], origin[name] = read(arch), f"checkpoint:{path}"
            filled.append(name)
    return filled


def init_from_original(model, path, load_supervised_head=True):
    """--checkpoint=ORIGINAL: loads encoder, projection head and, if it fits, the classifier.

    Args:
      model: a built SimCLRModel (attributes encoder, projection_head,
        supervised_head).
      path: original model_dir, ckpt-N prefix or SavedModel.
      load_supervised_head: take the original's classifier when it has one of
        the model's width (False with --zero_init_logits_layer, which the
        original applies after restoring).

    Returns:
      (checkpoint prefix read, whether the classifier was loaded).

    Raises:
      OriginalCheckpointError: the encoder or projection head differs.
    """
    original = loader.open_original(path)
    head = model.supervised_head
    fits = (load_supervised_head and head is not None and original.arch["num_classes"]
            and getattr(head, "units", None) == original.arch["num_classes"]
            and getattr(head, "input_norm", None) is None)
    loader.load_into(original, model.encoder, model.projection_head, head if fits else None)
    return original.prefix, bool(fits)


class OriginalTeacher:
    """--teacher=ORIGINAL_MODEL_DIR (or ckpt-N prefix): the original's checkpoint as teacher.

    Same interface as `simclr_tf2.teacher.Teacher`: images [B, S, S, 3] in
    [0, 1] -> logits [B, C], inference-mode BN, no gradient. A plain object
    (not a Keras layer), so the student does not track its weights.
    """

    def __init__(self, path, image_size):
        self.model, original, _, _ = convert.model_from_original(path, image_size)
        if not original.arch["num_classes"]:
            raise OriginalCheckpointError(
                f"teacher {path} has no supervised head; pass a fine-tuned original "
                "model_dir (or one pretrained with lineareval_while_pretraining).")
        self.model.trainable = False
        self.path = original.prefix
        self.num_classes = int(original.arch["num_classes"])

    def __call__(self, images):
        logits = self.model(images, training=False)["logits_sup"]
        return tf.stop_gradient(tf.cast(logits, tf.float32))


def teacher_from_original(path, image_size):
    """An OriginalTeacher for an original checkpoint, or None (a SavedModel or ours)."""
    if rundir.is_export(path) or not loader.is_original(path):
        return None
    return OriginalTeacher(path, image_size)
