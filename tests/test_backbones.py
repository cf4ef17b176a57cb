"""Backbones: any keras.Model as the encoder, Keras Applications by name."""

import copy
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags as absl_flags

import flags as simclr_flags
from simclr_tf2.export import saved_model
from simclr_tf2.config import ModelConfig, RunConfig
from simclr_tf2.errors import ConfigError
from simclr_tf2.models import backbones
from simclr_tf2.models import build
from simclr_tf2.models import heads
from simclr_tf2.models.simclr_model import SimCLRModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = 16


def tiny_cnn(pool=False):
    """A custom encoder: conv-BN-ReLU feature map [B, 8, 8, 6] (or pooled)."""
    inputs = keras.Input([None, None, 3])
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="c")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    if pool:
        x = keras.layers.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, x, name="tiny_cnn")


def simclr(encoder, classes=3):
    model = SimCLRModel(
        encoder, heads.ProjectionHead(mode="nonlinear", num_layers=2, out_dim=4),
        heads.supervised_head(classes), name="simclr")
    return model


def images(n=2, size=IMAGE, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, size, size, 3)).astype(
        np.float32)


def test_custom_feature_map_model_is_pooled_into_h():
    cnn = tiny_cnn()
    model = simclr(backbones.BackboneEncoder(cnn))
    x = images()
    out = model(x, training=False)
    # No ResNet stages: only h and the heads' outputs.
    assert set(out) == {"final_avg_pool", "proj_head_input",
                        "proj_head_output", "logits_sup"}
    assert out["final_avg_pool"].shape == (2, 6)
    assert out["proj_head_output"].shape == (2, 4)
    np.testing.assert_allclose(out["final_avg_pool"],
                               np.mean(cnn(x, training=False), axis=(1, 2)),
                               rtol=1e-5, atol=1e-6)


def test_custom_vector_model_is_used_as_is():
    cnn = tiny_cnn(pool=True)
    encoder = backbones.BackboneEncoder(cnn, input_mode="tf")
    x = images()
    np.testing.assert_allclose(encoder(x)["final_avg_pool"], cnn(x * 2 - 1),
                               rtol=1e-5, atol=1e-6)


def test_input_modes_scale_unit_images():
    x = tf.constant([[[[0.0, 0.5, 1.0]]]])
    np.testing.assert_allclose(backbones.scale_images(x, "0_255"),
                               [[[[0, 127.5, 255]]]])
    np.testing.assert_allclose(backbones.scale_images(x, "tf"), [[[[-1, 0, 1]]]])
    caffe = backbones.scale_images(x, "caffe").numpy().ravel()
    np.testing.assert_allclose(caffe, [255 - 103.939, 127.5 - 116.779, -123.68],
                               rtol=1e-6)
    torch = backbones.scale_images(x, "torch").numpy().ravel()
    np.testing.assert_allclose(torch[0], -0.485 / 0.229, rtol=1e-6)


def mobilenet_encoder(**kwargs):
    # The smallest MobileNetV3Small: 0.75 width, no SE / hard-swish.
    return backbones.keras_application(
        "MobileNetV3Small", alpha=0.75, minimalistic=True, **kwargs)


def test_mobilenet_v3_small_through_simclr_model():
    encoder = mobilenet_encoder(batch_norm_decay=0.9, global_bn=True)
    model = simclr(encoder)
    x = images(size=32)
    out = model(x, training=False)
    assert out["final_avg_pool"].shape == (2, 432)
    assert out["logits_sup"].shape == (2, 3)
    # The application rescales [0, 255] itself (include_preprocessing).
    direct = encoder.model(x * 255.0, training=False)
    np.testing.assert_allclose(out["final_avg_pool"],
                               np.mean(direct, axis=(1, 2)), rtol=1e-4, atol=1e-5)
    bns = [l for l in encoder.model.layers
           if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(l.synchronized and l.momentum == 0.9 for l in bns)


@pytest.mark.parametrize("make", [lambda: backbones.BackboneEncoder(tiny_cnn()),
                                  mobilenet_encoder],
                         ids=["custom", "MobileNetV3Small"])
def test_keras_file_round_trip_gives_same_outputs(tmp_path, make):
    model = simclr(make())
    x = images(size=32)
    model(x, training=False)
    for v in model.non_trainable_weights:  # Non-trivial BN statistics.
        v.assign(np.random.default_rng(1).uniform(0.5, 1.5, v.shape))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.encoder, backbones.BackboneEncoder)
    assert loaded.encoder.input_mode == model.encoder.input_mode
    want, got = model(x, training=False), loaded(x, training=False)
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5)


def test_unknown_application_is_one_line_listing_names():
    with pytest.raises(ConfigError) as err:
        backbones.application_name("keras_applications:ResNet51")
    message = str(err.value)
    assert "\n" not in message and "ResNet51" in message
    assert "EfficientNetV2B0" in message and "MobileNetV3Small" in message
    with pytest.raises(ConfigError):
        backbones.application_name("vit")


def test_image_size_below_minimum_is_a_config_error():
    backbones.check_image_size("keras_applications:InceptionV3", 75)
    with pytest.raises(ConfigError, match="image_size >= 75"):
        backbones.check_image_size("keras_applications:InceptionV3", 32)


def parsed(*argv):
    values = absl_flags.FlagValues()
    for flag in absl_flags.FLAGS.get_flags_for_module(simclr_flags.definitions):
        values[flag.name] = copy.deepcopy(flag)
    values(["run.py", *argv])
    return values


BACKBONE = "--backbone=keras_applications:MobileNetV3Small"


def test_recipe_resnet_shape_is_ignored_with_a_backbone(tmp_path):
    # The digits recipe sets resnet_depth/width_multiplier: no conflict.
    values, _ = simclr_flags.effective_values(parsed(BACKBONE, "--image_size=32"))
    config = simclr_flags.config_from_values(values, str(tmp_path))
    assert config.model.backbone == "keras_applications:MobileNetV3Small"


@pytest.mark.parametrize("flag", ["--sk_ratio=0.0625", "--se_ratio=0.25",
                                  "--resnet_depth=18", "--width_multiplier=2",
                                  "--cifar_stem=true",
                                  "--fine_tune_after_block=2"])
def test_resnet_flags_with_a_backbone_are_one_line(flag):
    with pytest.raises(ConfigError) as err:
        simclr_flags.effective_values(parsed(BACKBONE, "--image_size=32", flag))
    name = flag[2:].split("=")[0]
    assert name in str(err.value) and "\n" not in str(err.value)


def test_flags_reject_unknown_backbone_and_small_images():
    with pytest.raises(ConfigError, match="unknown --backbone"):
        simclr_flags.effective_values(parsed("--backbone=keras_applications:Nope"))
    with pytest.raises(ConfigError, match="image_size >= 71"):
        simclr_flags.effective_values(parsed(
            "--backbone=keras_applications:Xception", "--image_size=32"))


def test_build_model_dispatches_and_freezes_for_linear_eval():
    cfg = ModelConfig(backbone="keras_applications:MobileNetV3Small",
                      proj_out_dim=4, num_proj_layers=1,
                      fine_tune_after_block=4)
    model = build.build_model(cfg, num_classes=3, task="finetune",
                              image_size=32)
    assert isinstance(model.encoder, backbones.BackboneEncoder)
    assert not model.encoder.trainable_weights
    assert model.supervised_head.trainable_weights
    with pytest.raises(ConfigError, match="fine_tune_after_block=1"):
        backbones.set_fine_tune_after_block(model.encoder, 1)


def test_export_module_of_a_backbone_serves_its_pooled_output():
    """Unit level: the hub module computes the model's h, no ResNet keys."""
    config = RunConfig.from_flat(dict(
        backbone="keras_applications:MobileNetV3Small", image_size=32,
        proj_out_dim=4, num_proj_layers=1))
    model = build.build_model(config.model, num_classes=3,
                              task="pretrain", image_size=32)
    module = saved_model.build_module(model, 32)
    x = images(size=32)
    got = module(tf.constant(x), trainable=False)
    assert "block_group4" not in got and "initial_conv" not in got
    np.testing.assert_allclose(got["final_avg_pool"],
                               model(x, training=False)["final_avg_pool"],
                               rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["MobileNetV3Small", "EfficientNetV2B0"])
def test_run_train_then_eval_exports_a_loadable_backbone(tmp_path, name):
    """run.py pretrains on digits, evaluates and exports; a fresh process loads it."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    model_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "run.py"), "--mode=train_then_eval",
         f"--backbone=keras_applications:{name}", "--train_steps=3",
         "--image_size=32", "--train_batch_size=16", "--eval_batch_size=64",
         "--knn_eval=false", f"--model_dir={model_dir}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (model_dir / "result.json").is_file()
    (step,) = os.listdir(model_dir / "saved_model")
    env.pop("PYTHONPATH")
    code = (
        "import sys, numpy as np, tensorflow as tf\n"
        "try:\n    import simclr_tf2\n    raise SystemExit('project importable')\n"
        "except ImportError:\n    pass\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "out = m(np.ones([2, 32, 32, 3], np.float32), trainable=False)\n"
        "assert 'block_group1' not in out, sorted(out)\n"
        "print(out['final_avg_pool'].shape[1])\n")
    load = subprocess.run(
        [sys.executable, "-c", code, str(model_dir / "saved_model" / step)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert load.returncode == 0, load.stderr[-3000:]
    assert int(load.stdout.split()[-1]) == {"MobileNetV3Small": 576,
                                            "EfficientNetV2B0": 1280}[name]


def test_backbone_trains_under_two_replicas_with_synchronised_bn(
        two_replica_strategy):
    """Global BN: both replicas normalise with the statistics of the whole batch."""
    strategy = two_replica_strategy
    with strategy.scope():
        encoder = backbones.BackboneEncoder(
            backbones.with_batch_norm(tiny_cnn(), 0.9, True))
        encoder(tf.zeros([1, IMAGE, IMAGE, 3]))
    x = images(n=4)
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(x).batch(4))

    @tf.function
    def forward(batch):
        return strategy.run(lambda b: encoder(b, training=True)["final_avg_pool"],
                            args=(batch,))

    per_replica = strategy.experimental_local_results(forward(next(iter(dataset))))
    got = np.concatenate([t.numpy() for t in per_replica])
    # Single-device reference over the whole batch of 4.
    encoder_1 = backbones.BackboneEncoder(
        backbones.with_batch_norm(tiny_cnn(), 0.9, False))
    encoder_1(tf.zeros([1, IMAGE, IMAGE, 3]))
    for a, b in zip(encoder_1.weights, encoder.weights):
        a.assign(b.numpy())
    want = encoder_1(x, training=True)["final_avg_pool"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_export_module_saves_dropout_random_state(tmp_path):
    """Dropout's seed state is no weight, yet the training trace needs it."""
    inputs = keras.Input([None, None, 3])
    x = keras.layers.Conv2D(4, 3, name="c")(inputs)
    x = keras.layers.Dropout(0.5, noise_shape=(None, 1, 1, 1), name="drop")(x)
    model = simclr(backbones.BackboneEncoder(keras.Model(inputs, x)))
    model(images(), training=False)
    config = RunConfig.from_flat(dict(image_size=IMAGE))
    path = saved_model.export_model(model, config, str(tmp_path / "export"))
    loaded = tf.saved_model.load(path)
    x = tf.constant(images(n=32))  # P(no image dropped) = 2**-32.
    np.testing.assert_allclose(loaded(x, trainable=False)["final_avg_pool"],
                               model(x, training=False)["final_avg_pool"],
                               rtol=1e-5, atol=1e-6)
    dropped = loaded(x, trainable=True)["final_avg_pool"].numpy()
    assert (np.abs(dropped).sum(axis=1) == 0).any()  # Some images dropped.


def test_lars_neither_decays_nor_adapts_a_keras_application_s_norm_layers():
    # Keras Applications name their batch norm "..._bn" and "bn", not
    # "batch_normalization": the exclusions must still find every one.
    import re
    from simclr_tf2.optim import factory
    encoder = backbones.keras_application("MobileNetV3Small")
    paths = [v.path for v in encoder.trainable_weights]
    excluded = {p for p in paths
                if any(re.search(x, p) for x in factory.EXCLUDE_FROM_WEIGHT_DECAY)}
    vectors = {v.path for v in encoder.trainable_weights if len(v.shape) <= 1}
    assert vectors and excluded == vectors  # BN gamma/beta and biases only
    assert not factory._decayed_by_loss(
        next(p for p in paths if p.endswith("_bn/gamma")), optimizer_decays=False)
