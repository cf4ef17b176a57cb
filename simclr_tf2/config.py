"""The typed configuration of a run: frozen sections, flat and nested forms.

`RunConfig` is the one type the trainer, the evaluator, the exporter and the
`flags.json` reader share. Its sections say what they hold; every field is
named after the run.py flag that sets it, so the flat form
(`to_flat`/`from_flat`, `{flag_name: value}`) is `model_dir/flags.json` in
the original SimCLR code's format, and the original code's own flags.json
reads too (extra keys are ignored, missing ones take the defaults below).

No TensorFlow here: `python -m export` reads a model_dir before TF starts.
The field defaults are run.py's flag defaults (flags/definitions.py reads them).
"""

import dataclasses

from simclr_tf2 import rundir

# The automatic stem choice (--cifar_stem=auto): stride-1 3x3 stem without
# max-pool for images this small or smaller.
CIFAR_STEM_MAX_SIZE = 64


def cifar_stem_for(image_size):
    """Whether --cifar_stem=auto picks the CIFAR stem for this image side."""
    return image_size <= CIFAR_STEM_MAX_SIZE


def resolve_cifar_stem(choice, image_size):
    """The stem for a --cifar_stem value ("auto", "true", "false" or a bool)."""
    if isinstance(choice, bool):
        return choice
    if choice == "auto":
        return cifar_stem_for(image_size)
    return str(choice).lower() == "true"


class _Section:
    """to_dict / from_dict of a frozen section dataclass."""

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """A section from a dict; unknown keys are ignored, missing ones
        take the defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclasses.dataclass(frozen=True)
class DataConfig(_Section):
    """Which data, which splits, and the augmentation."""
    dataset: str = "digits"
    data_dir: str | None = None
    train_split: str = "train"
    eval_split: str = "validation"
    image_size: int = 224
    color_jitter_strength: float = 1.0
    use_blur: bool = True
    crop_min_area: float = 0.08
    random_flip: bool = True
    cache_dataset: bool = False
    label_fraction: float = 1.0
    label_subset_file: str | None = None


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Section):
    """The architecture: encoder, heads, what is fine-tuned."""
    # "resnet" or "keras_applications:NAME" (models/backbones.py).
    backbone: str = "resnet"
    resnet_depth: int = 50
    width_multiplier: float = 1.0
    cifar_stem: bool = False  # Resolved (see resolve_cifar_stem).
    sk_ratio: float = 0.0
    se_ratio: float = 0.0
    batch_norm_decay: float = 0.9
    global_bn: bool = True
    proj_head_mode: str = "nonlinear"
    proj_out_dim: int = 128
    num_proj_layers: int = 3
    ft_proj_selector: int = 0
    zero_init_logits_layer: bool = False
    fine_tune_after_block: int = -1
    lineareval_while_pretraining: bool = True


@dataclasses.dataclass(frozen=True)
class OptimConfig(_Section):
    """Optimizer, learning-rate schedule and weight decay."""
    optimizer: str = "lars"
    learning_rate: float = 0.3
    learning_rate_scaling: str = "linear"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-6
    warmup_epochs: float = 10.0


@dataclasses.dataclass(frozen=True)
class LossConfig(_Section):
    """The pretraining loss (see tasks.CONTRASTIVE_LOSSES)."""
    contrastive_loss: str = "nt_xent"
    temperature: float = 0.1
    hidden_norm: bool = True
    # SimCLRv2's memory (simclr_tf2/memory/): buffered keys, 0 = off.
    memory_size: int = 0
    memory_momentum: float = 0.999


@dataclasses.dataclass(frozen=True)
class DistillationConfig(_Section):
    """train_mode=distill: the teacher and the distillation loss."""
    teacher: str | None = None
    distill_temperature: float = 1.0
    distill_label_weight: float = 0.0
    distill_teacher_input: str = "student_view"


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Section):
    """What to run, how long, where to write, how often to checkpoint."""
    mode: str = "train"
    train_mode: str = "pretrain"
    train_batch_size: int = 512
    train_epochs: int = 100
    train_steps: int = 0
    checkpoint_epochs: int = 1
    checkpoint_steps: int = 0
    keep_checkpoint_max: int = 5
    model_dir: str | None = None
    checkpoint: str | None = None
    seed: int = 0
    micro_batch_size: int = 0
    log_every_steps: int = 10
    knn_eval_every_steps: int = 0


@dataclasses.dataclass(frozen=True)
class EvaluationConfig(_Section):
    """Evaluation: batches, the kNN monitor, --mode=eval polling."""
    eval_batch_size: int = 256
    eval_steps: int = 0
    eval_name: str | None = None
    eval_timeout_secs: int = 600
    knn_eval: bool = True
    knn_k: int = 200
    knn_temperature: float = 0.07
    knn_max_bank: int = 50_000


@dataclasses.dataclass(frozen=True)
class ExportConfig(_Section):
    """SavedModel exports under model_dir/saved_model/."""
    export_after_eval: bool = True
    keep_hub_module_max: int = 1


@dataclasses.dataclass(frozen=True)
class RuntimeConfig(_Section):
    """Where and how the computation runs: devices, precision, compilation."""
    precision: str = "float32"
    jit_compile: bool = False
    steps_per_execution: int = 1
    use_tpu: bool = False
    tpu_name: str | None = None
    tpu_zone: str | None = None
    gcp_project: str | None = None
    master: str | None = None
    num_logical_cpu_devices: int = 0


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig,
             "loss": LossConfig, "distillation": DistillationConfig,
             "train": TrainConfig, "evaluation": EvaluationConfig,
             "export": ExportConfig, "runtime": RuntimeConfig}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Every setting of one run, by section."""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()
    distillation: DistillationConfig = DistillationConfig()
    train: TrainConfig = TrainConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    export: ExportConfig = ExportConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    def to_flat(self):
        """Flat {flag_name: value}: the flags.json of the original code.

        cifar_stem is written as the flag spells it ("true"/"false").
        """
        flat = {}
        for name in _SECTIONS:
            flat.update(getattr(self, name).to_dict())
        flat["cifar_stem"] = "true" if self.model.cifar_stem else "false"
        return flat

    @classmethod
    def from_flat(cls, values):
        """A RunConfig from {flag_name: value}.

        Keys that are no field (absl's own flags in the original code's
        flags.json) are ignored; missing fields take the defaults; a
        --cifar_stem value ("auto", "true", "false") is resolved against
        image_size.
        """
        values = dict(values)
        image_size = values.get("image_size", DataConfig.image_size)
        values["cifar_stem"] = resolve_cifar_stem(
            values.get("cifar_stem", "auto"), image_size)
        return cls(**{name: section.from_dict(values)
                      for name, section in _SECTIONS.items()})


def field_names():
    """Every field name of every section (= the flat keys)."""
    return [f.name for section in _SECTIONS.values()
            for f in dataclasses.fields(section)]


def read_flags_json(model_dir):
    """The RunConfig recorded in `model_dir/flags.json`.

    Reads the flat format this project writes and the original SimCLR TF2
    code's flags.json (same flat format, extra absl keys).

    Args:
      model_dir: a run's model directory.

    Returns:
      (RunConfig, the decoded JSON dict).

    Raises:
      ConfigError: missing, unreadable or not a flat JSON object (e.g. the
        nested flags.json of simclr_tf2 before the flat format).
    """
    def to_config(raw):
        if any(isinstance(raw.get(name), dict) for name in _SECTIONS):
            raise ValueError("not a flat {flag_name: value} object")
        return RunConfig.from_flat(raw), raw

    return rundir.read_flags_json(model_dir, check=to_config)
