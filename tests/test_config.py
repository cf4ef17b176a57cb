"""Tests of simclr_tf2/config.py: sections, round trips, flags.json formats."""

import dataclasses
import json

import pytest
from absl import flags as absl_flags

import flags as simclr_flags
from simclr_tf2 import config as config_lib
from simclr_tf2 import errors
from simclr_tf2.config import RunConfig

# A flags.json as the original SimCLR TF2 run.py writes it (abridged): flat,
# with absl's own flags, without the flags this project added.
ORIGINAL_FLAGS_JSON = {
    "learning_rate": 1.0, "learning_rate_scaling": "linear",
    "warmup_epochs": 10.0, "weight_decay": 1e-4, "batch_norm_decay": 0.9,
    "train_batch_size": 512, "train_split": "train", "train_epochs": 1000,
    "train_steps": 0, "eval_steps": 0, "eval_batch_size": 256,
    "dataset": "cifar10", "mode": "train_then_eval", "train_mode": "pretrain",
    "model_dir": "/tmp/simclr_test", "use_tpu": False, "optimizer": "lars",
    "temperature": 0.5, "hidden_norm": True, "proj_head_mode": "nonlinear",
    "proj_out_dim": 128, "num_proj_layers": 3, "ft_proj_selector": 0,
    "global_bn": True, "width_multiplier": 1, "resnet_depth": 18,
    "sk_ratio": 0.0, "se_ratio": 0.0, "image_size": 32,
    "color_jitter_strength": 0.5, "use_blur": False,
    "logtostderr": False, "alsologtostderr": False, "v": 0,
    "verbosity": 0, "stderrthreshold": "fatal", "?": False, "helpfull": False,
}


def _run_flags():
    return {f.name: f for f in absl_flags.FLAGS.get_flags_for_module(
        simclr_flags.definitions)}


def test_every_flag_is_a_field_and_defaults_agree():
    fields = set(config_lib.field_names())
    flags = _run_flags()
    assert set(flags) <= fields
    defaults = RunConfig().to_flat()
    for name, flag in flags.items():
        if name in ("cifar_stem", "precision"):
            # Resolved by the flag layer (image_size; the CPU and devices).
            assert flag.default == "auto"
            continue
        assert defaults[name] == flag.default, name


def test_field_names_are_unique_across_sections():
    names = config_lib.field_names()
    assert len(names) == len(set(names))


def test_nested_and_flat_round_trips():
    config = RunConfig.from_flat({"image_size": 32, "temperature": 0.2,
                                  "eval_name": "x", "precision": "mixed_bfloat16"})
    assert config.model.cifar_stem is True
    assert config.loss.temperature == 0.2
    assert config.evaluation.eval_name == "x"
    assert config.runtime.precision == "mixed_bfloat16"
    assert RunConfig.from_flat(config.to_flat()) == config
    assert RunConfig.from_flat(json.loads(json.dumps(config.to_flat()))) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.loss.temperature = 1.0


@pytest.mark.parametrize("choice,size,expected", [
    ("auto", 32, True), ("auto", 64, True), ("auto", 96, False),
    ("true", 224, True), ("false", 16, False), (True, 224, True)])
def test_cifar_stem_rule(choice, size, expected):
    assert config_lib.resolve_cifar_stem(choice, size) is expected


def test_reads_the_original_codes_flags_json(tmp_path):
    (tmp_path / "flags.json").write_text(json.dumps(ORIGINAL_FLAGS_JSON))
    config, raw = config_lib.read_flags_json(str(tmp_path))
    assert raw == ORIGINAL_FLAGS_JSON
    assert config.data.dataset == "cifar10" and config.data.image_size == 32
    assert config.model.resnet_depth == 18 and config.model.cifar_stem is True
    assert config.loss.temperature == 0.5
    assert config.train.train_batch_size == 512
    # Flags the original lacks take our defaults.
    assert config.train.seed == 0 and config.runtime.precision == "float32"
    assert config.loss.contrastive_loss == "nt_xent"


def test_reads_its_own_flags_json(tmp_path):
    config = RunConfig.from_flat({"dataset": "fashion_mnist", "image_size": 28,
                                  "model_dir": str(tmp_path)})
    (tmp_path / "flags.json").write_text(json.dumps(config.to_flat()))
    assert config_lib.read_flags_json(str(tmp_path))[0] == config


@pytest.mark.parametrize("content,fragment", [
    (None, "no flags.json"),
    ("{not json", "JSONDecodeError"),
    (json.dumps({"data": {"image_size": 32}, "model": {}}), "flat"),
])
def test_unreadable_flags_json_is_one_clear_error(tmp_path, content, fragment):
    if content is not None:
        (tmp_path / "flags.json").write_text(content)
    with pytest.raises(errors.ConfigError, match=fragment) as err:
        config_lib.read_flags_json(str(tmp_path))
    assert "\n" not in str(err.value)
