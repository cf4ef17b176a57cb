"""FLAGS -> RunConfig: recipes fill unset flags, then validation.

This is the only place where flag values become configuration; the config
types themselves (and the one rule resolving --cifar_stem=auto) live in
simclr_tf2/config.py, which never reads FLAGS.
"""

import os

from flags import recipes
from simclr_tf2 import config as config_lib
from simclr_tf2 import rundir
from simclr_tf2.errors import ConfigError
from simclr_tf2.config import RunConfig

# Flags that fix the shape of the encoder and projection head: when
# --checkpoint names a model_dir of ours, those the user did not set are
# taken from its flags.json, so the checkpoint fits the model built here.
ARCHITECTURE_FLAGS = ("backbone", "resnet_depth", "width_multiplier", "cifar_stem",
                      "sk_ratio", "se_ratio", "proj_head_mode",
                      "num_proj_layers", "proj_out_dim")


def effective_values(flag_values):
    """Flag values after recipes, with where each came from.

    Args:
      flag_values: parsed absl FlagValues.

    Returns:
      (values, origin): flag name -> effective value, and flag name ->
      "flag" (set on the command line), "recipe:<name>", "default",
      "checkpoint:<dir>" or, for --precision=auto, "auto: <reason>".
    """
    recipe, recipe_origin = recipes.recipe_for(flag_values.dataset,
                                               flag_values.train_mode)
    values, origin = {}, {}
    for name in flag_values:
        flag = flag_values[name]
        if flag_values[name].present:
            values[name], origin[name] = flag.value, "flag"
        elif name in recipe:
            values[name], origin[name] = recipe[name], recipe_origin[name]
        else:
            values[name], origin[name] = flag.value, "default"
    if values.get("checkpoint"):
        if not _fill_from_own_model_dir(values, origin):
            # [original] an original SimCLR --checkpoint sets the architecture flags not given.
            from simclr_tf2.original import hooks as original_hooks
            original_hooks.fill_architecture_flags(values, origin)
    _check_backbone(values, origin, flag_values)
    _resolve_auto_precision(values, origin)
    return values, origin


def _resolve_auto_precision(values, origin):
    """--precision=auto becomes the policy that runs fastest here; the
    origin names the reason (e.g. "auto: avx512_bf16")."""
    if values.get("precision") != "auto":
        return
    import tensorflow as tf  # Only needed to count the GPUs.

    from simclr_tf2.models import precision
    values["precision"], reason = precision.choose_precision(
        use_tpu=values.get("use_tpu", False),
        num_gpus=len(tf.config.list_physical_devices("GPU")))
    origin["precision"] = f"auto: {reason}"


# Flags that shape only the built-in ResNet.
RESNET_FLAGS = ("resnet_depth", "width_multiplier", "sk_ratio", "se_ratio",
                "cifar_stem")


def _check_backbone(values, origin, flag_values):
    """One line for ResNet flags given with another --backbone.

    A dataset recipe's ResNet shape is ignored there; a value set on the
    command line (other than the flag's default) would be silently unused.
    """
    backbone = values.get("backbone", "resnet")
    if backbone == "resnet":
        return
    # TensorFlow loads only for non-default backbones.
    from simclr_tf2.models import backbones
    backbones.check_image_size(backbone, values["image_size"])
    for name in RESNET_FLAGS:
        if (origin.get(name) == "flag"
                and values[name] != flag_values[name].default):
            raise ConfigError(
                f"--{name} shapes the built-in ResNet and has no effect with "
                f"--backbone={backbone}; drop --{name}.")
    backbones.check_fine_tune_after_block(values["fine_tune_after_block"])


def _fill_from_own_model_dir(values, origin):
    """Architecture flags not given come from --checkpoint's own flags.json.

    Applies when --checkpoint is a model_dir written by this project (it has
    flags_origin.json) or a ckpt-N prefix inside one.

    Returns:
      True when --checkpoint is one of our model_dirs (filled or not).
    """
    path = values["checkpoint"]
    model_dir = path if os.path.isdir(path) else os.path.dirname(path)
    if not os.path.isfile(os.path.join(model_dir, rundir.FLAGS_ORIGIN_JSON)):
        return False
    _, recorded = config_lib.read_flags_json(model_dir)
    for name in ARCHITECTURE_FLAGS:
        if name in recorded and name in values and origin.get(name) != "flag":
            values[name] = recorded[name]
            origin[name] = f"checkpoint:{model_dir}"
    return True


def _validate(values):
    checks = [
        (values["train_batch_size"] > 0, "--train_batch_size must be positive."),
        (values["eval_batch_size"] > 0, "--eval_batch_size must be positive."),
        (values["image_size"] >= 8, "--image_size must be at least 8."),
        (values["width_multiplier"] > 0, "--width_multiplier must be positive."),
        (values["temperature"] > 0, "--temperature must be positive."),
        (0.0 < values["crop_min_area"] <= 1.0,
         "--crop_min_area must be in (0, 1] (a fraction of the image area)."),
        (values["learning_rate"] >= 0, "--learning_rate must be non-negative."),
        (values["warmup_epochs"] >= 0, "--warmup_epochs must be non-negative."),
        (values["train_epochs"] > 0 or values["train_steps"] > 0,
         "set --train_epochs or --train_steps to a positive value."),
        (-1 <= values["fine_tune_after_block"] <= 4,
         "--fine_tune_after_block must be in -1..4."),
        (0.0 < values["label_fraction"] <= 1.0,
         "--label_fraction must be in (0, 1]."),
        (values["knn_k"] >= 1, "--knn_k must be >= 1."),
        (values["knn_eval_every_steps"] >= 0, "--knn_eval_every_steps must be >= 0."),
        (values["knn_max_bank"] >= 0, "--knn_max_bank must be >= 0 (0: the whole train split)."),
        (values["micro_batch_size"] >= 0,
         "--micro_batch_size must be >= 0 (0 disables gradient caching)."),
        (values["steps_per_execution"] >= 1,
         "--steps_per_execution must be >= 1."),
        # Per train mode (simclr_tf2.tasks, which needs TensorFlow, is not
        # imported here: flags are checked before TF starts).
        (values["train_mode"] != "distill" or values["teacher"],
         "--train_mode=distill needs --teacher=SAVED_MODEL_OR_MODEL_DIR."),
        (values["train_mode"] != "pretrain" or values["fine_tune_after_block"] == -1,
         "--fine_tune_after_block only applies to --train_mode=finetune."),
        (values["train_mode"] == "pretrain"
         or values["contrastive_loss"] == "nt_xent",
         "--contrastive_loss=supcon only applies to --train_mode=pretrain; "
         "drop it for finetune/distill."),
        # SimCLRv2's memory (docs/memory.md).
        (values["memory_size"] >= 0,
         "--memory_size must be >= 0 (0 turns the memory off; the paper "
         "uses 65536)."),
        (0.0 <= values["memory_momentum"] < 1.0,
         "--memory_momentum must be in [0, 1) (the paper uses 0.999)."),
        (values["train_mode"] == "pretrain" or values["memory_size"] == 0,
         "--memory_size only applies to --train_mode=pretrain; drop it (or "
         "set 0) for finetune/distill."),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def config_from_values(values, model_dir):
    """Builds a RunConfig from effective flag values.

    Args:
      values: flag name -> value (see `effective_values`).
      model_dir: the resolved model directory.

    Returns:
      A frozen RunConfig.

    Raises:
      ConfigError: for an invalid combination of values.
    """
    _validate(values)
    return RunConfig.from_flat(dict(values, model_dir=model_dir))
