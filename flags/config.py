"""Frozen configuration dataclasses, built from absl FLAGS plus recipes.

This is the only place where FLAGS become configuration; the library gets
these dataclasses (or plain arguments) and never reads FLAGS.
"""

import dataclasses
import json

from flags import recipes
from simclr_tf2.errors import ConfigError  # noqa: F401  (re-exported)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dataset: str
    data_dir: str | None
    train_split: str
    eval_split: str
    image_size: int
    color_jitter_strength: float
    use_blur: bool
    cache_dataset: bool
    label_fraction: float
    label_subset_file: str | None


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    resnet_depth: int
    width_multiplier: float
    cifar_stem: bool
    sk_ratio: float
    se_ratio: float
    batch_norm_decay: float
    global_bn: bool
    proj_head_mode: str
    proj_out_dim: int
    num_proj_layers: int
    ft_proj_selector: int
    zero_init_logits_layer: bool
    fine_tune_after_block: int
    lineareval_while_pretraining: bool


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    optimizer: str
    learning_rate: float
    learning_rate_scaling: str
    momentum: float
    nesterov: bool
    weight_decay: float
    warmup_epochs: float


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    mode: str
    train_mode: str
    train_batch_size: int
    train_epochs: int
    train_steps: int
    eval_batch_size: int
    eval_steps: int
    checkpoint_epochs: int
    checkpoint_steps: int
    keep_checkpoint_max: int
    keep_hub_module_max: int
    model_dir: str
    checkpoint: str | None
    eval_name: str | None
    temperature: float
    hidden_norm: bool
    seed: int
    precision: str
    jit_compile: bool
    steps_per_execution: int
    log_every_steps: int
    eval_timeout_secs: int
    teacher: str | None
    distill_temperature: float
    distill_label_weight: float
    export_after_eval: bool
    micro_batch_size: int
    knn_eval: bool
    knn_k: int
    knn_temperature: float
    knn_eval_every_steps: int
    knn_max_bank: int


@dataclasses.dataclass(frozen=True)
class DistributeConfig:
    use_tpu: bool
    tpu_name: str | None
    tpu_zone: str | None
    gcp_project: str | None
    master: str | None
    num_logical_cpu_devices: int


@dataclasses.dataclass(frozen=True)
class RunConfig:
    data: DataConfig
    model: ModelConfig
    optim: OptimConfig
    train: TrainConfig
    distribute: DistributeConfig

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig,
             "train": TrainConfig, "distribute": DistributeConfig}

def effective_values(flag_values):
    """Flag values after recipes, with where each came from.

    Args:
      flag_values: parsed absl FlagValues.

    Returns:
      (values, origin): flag name -> effective value, and flag name ->
      "flag" (set on the command line), "recipe:<name>" or "default".
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
        # [original] an original SimCLR --checkpoint sets the architecture flags not given.
        from simclr_tf2.original import hooks as original_hooks
        original_hooks.fill_architecture_flags(values, origin)
    return values, origin


def _resolve_cifar_stem(values):
    choice = values["cifar_stem"]
    if choice == "auto":
        return values["image_size"] <= 64
    return choice == "true"


def _validate(values):
    checks = [
        (values["train_batch_size"] > 0, "--train_batch_size must be positive."),
        (values["eval_batch_size"] > 0, "--eval_batch_size must be positive."),
        (values["image_size"] >= 8, "--image_size must be at least 8."),
        (values["width_multiplier"] > 0, "--width_multiplier must be positive."),
        (values["temperature"] > 0, "--temperature must be positive."),
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
        (values["train_mode"] != "distill" or values["teacher"],
         "--train_mode=distill needs --teacher=SAVED_MODEL_OR_MODEL_DIR."),
        (values["train_mode"] != "pretrain" or values["fine_tune_after_block"] == -1,
         "--fine_tune_after_block only applies to --train_mode=finetune."),
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
    resolved = dict(values, model_dir=model_dir,
                    cifar_stem=_resolve_cifar_stem(values))
    sections = {}
    for section, cls in _SECTIONS.items():
        names = [f.name for f in dataclasses.fields(cls)]
        sections[section] = cls(**{n: resolved[n] for n in names})
    return RunConfig(**sections)
