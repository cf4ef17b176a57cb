"""Flags: the original SimCLR TF2 flag set, recipes and their precedence."""


import pytest
from absl import flags as absl_flags

import flags as simclr_flags
from flags import recipes
from simclr_tf2 import errors
from tests.harness import parsed

ORIGINAL_FLAGS = """learning_rate learning_rate_scaling warmup_epochs weight_decay
batch_norm_decay train_batch_size train_split train_epochs train_steps eval_steps
eval_batch_size checkpoint_epochs checkpoint_steps eval_split dataset
cache_dataset mode train_mode lineareval_while_pretraining checkpoint
zero_init_logits_layer fine_tune_after_block master model_dir data_dir use_tpu
tpu_name tpu_zone gcp_project optimizer momentum eval_name keep_checkpoint_max
keep_hub_module_max temperature hidden_norm proj_head_mode proj_out_dim
num_proj_layers ft_proj_selector global_bn width_multiplier resnet_depth
sk_ratio se_ratio image_size color_jitter_strength use_blur""".split()


def test_every_original_flag_exists_with_help():
    defined = {f.name: f for f in absl_flags.FLAGS.get_flags_for_module(
        simclr_flags.definitions)}
    missing = [name for name in ORIGINAL_FLAGS if name not in defined]
    assert not missing
    assert all(flag.help for flag in defined.values())
    assert defined["mode"].parser.enum_values == ["train", "eval", "train_then_eval"]
    assert defined["proj_head_mode"].parser.enum_values == [
        "none", "linear", "nonlinear"]


def test_recipe_fills_unset_flags_and_explicit_flags_win(tmp_path):
    values, origin = simclr_flags.effective_values(
        parsed("--dataset=cifar10", "--temperature=0.2"))
    assert values["temperature"] == 0.2 and origin["temperature"] == "flag"
    assert values["image_size"] == 32 and origin["image_size"] == "recipe:cifar10"
    assert values["momentum"] == 0.9 and origin["momentum"] == "default"
    config = simclr_flags.config_from_values(values, str(tmp_path))
    assert config.model.cifar_stem is True  # auto: 32 px <= 64
    assert config.data.use_blur is False


def test_train_mode_recipe_overrides_dataset_recipe(tmp_path):
    values, origin = simclr_flags.effective_values(
        parsed("--train_mode=finetune"))
    assert values["optimizer"] == "momentum" and values["nesterov"] is True
    assert values["weight_decay"] == 0.0 and origin["weight_decay"] == "recipe:finetune"
    config = simclr_flags.config_from_values(values, str(tmp_path))
    assert config.optim.warmup_epochs == 0


def test_imagenet_recipe_is_the_paper(tmp_path):
    values, _ = simclr_flags.effective_values(parsed("--dataset=imagenet2012"))
    config = simclr_flags.config_from_values(values, str(tmp_path))
    assert (config.model.resnet_depth, config.data.image_size) == (50, 224)
    assert config.train.train_batch_size == 4096
    assert config.model.cifar_stem is False
    assert config.optim.learning_rate == 0.3 and config.optim.weight_decay == 1e-6


@pytest.mark.parametrize("argv,message", [
    (["--train_batch_size=0"], "train_batch_size"),
    (["--train_mode=distill"], "--teacher"),
    (["--label_fraction=1.5"], "label_fraction"),
    (["--crop_min_area=0"], "--crop_min_area must be in"),
    (["--crop_min_area=1.2"], "--crop_min_area must be in"),
    (["--fine_tune_after_block=2"], "finetune"),
    (["--train_mode=finetune", "--contrastive_loss=supcon"],
     "--contrastive_loss=supcon only applies to --train_mode=pretrain"),
])
def test_invalid_combinations(tmp_path, argv, message):
    values, _ = simclr_flags.effective_values(parsed(*argv))
    with pytest.raises(errors.ConfigError, match=message):
        simclr_flags.config_from_values(values, str(tmp_path))


def test_every_recipe_key_is_a_flag():
    names = {f.name for f in absl_flags.FLAGS.get_flags_for_module(
        simclr_flags.definitions)}
    for recipe in [*recipes.DATASET_RECIPES.values(),
                   *recipes.TRAIN_MODE_RECIPES.values()]:
        assert set(recipe) <= names


def test_contrastive_loss_flag_reaches_the_loss_config(tmp_path):
    from simclr_tf2 import tasks
    flag = absl_flags.FLAGS["contrastive_loss"]
    assert sorted(flag.parser.enum_values) == sorted(tasks.CONTRASTIVE_LOSSES)
    values, _ = simclr_flags.effective_values(parsed("--contrastive_loss=supcon"))
    config = simclr_flags.config_from_values(values, str(tmp_path))
    assert config.loss.contrastive_loss == "supcon"
    assert config.to_flat()["contrastive_loss"] == "supcon"


def test_checkpoint_of_our_model_dir_sets_architecture_flags_not_given(tmp_path):
    import json
    from simclr_tf2 import rundir
    model_dir = tmp_path / "pretrained"
    model_dir.mkdir()
    values, origin = simclr_flags.effective_values(parsed(
        "--resnet_depth=34", "--width_multiplier=0.5", "--sk_ratio=0.0625",
        "--num_proj_layers=3"))
    recorded = simclr_flags.config_from_values(values, str(model_dir)).to_flat()
    (model_dir / rundir.FLAGS_JSON).write_text(json.dumps(recorded))
    (model_dir / rundir.FLAGS_ORIGIN_JSON).write_text(json.dumps(origin))

    for checkpoint in (str(model_dir), str(model_dir / "ckpt-7")):
        values, origin = simclr_flags.effective_values(parsed(
            "--train_mode=finetune", f"--checkpoint={checkpoint}",
            "--width_multiplier=0.25"))
        assert values["resnet_depth"] == 34 and values["sk_ratio"] == 0.0625
        assert values["num_proj_layers"] == 3
        assert origin["resnet_depth"] == f"checkpoint:{model_dir}"
        # A flag the user set wins over the checkpoint's.
        assert values["width_multiplier"] == 0.25 and origin["width_multiplier"] == "flag"
        # Not an architecture flag: stays the recipe's.
        assert origin["learning_rate"] != f"checkpoint:{model_dir}"

    # A directory without our flags_origin.json is left alone.
    values, _ = simclr_flags.effective_values(parsed(
        "--train_mode=finetune", f"--checkpoint={tmp_path / 'elsewhere' / 'ckpt-1'}"))
    assert values["resnet_depth"] != 34
