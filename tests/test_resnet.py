"""Tests for the ResNet encoder: sizes, shapes, SK/SE, freezing, sync BN."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2.models.resnet import ResNet, cifar_stem_for, set_fine_tune_after_block

GROUP_KEYS = [f"block_group{i}" for i in range(1, 5)]
OUTPUT_KEYS = {"initial_conv", "initial_max_pool", *GROUP_KEYS, "final_avg_pool"}


def _built(size=16, **kwargs):
    encoder = ResNet(**kwargs)
    encoder.build((None, size, size, 3))
    return encoder


def _num_trainable(layer):
    return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)


def _images(batch=2, size=16, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, size, size, 3)).astype("float32")


def _moving_stats(encoder):
    return {w.path: w.numpy().copy() for w in encoder.non_trainable_weights}


# Parameter counts of the original SimCLR TF2 encoder (google-research/simclr
# tf2/resnet.py), measured by building it with tf-keras: (trainable, all).
# R50 equals torchvision's resnet50 minus fc; R18 has 4,224 more than
# torchvision's (the original projects block_group1's first block shortcut).
ORIGINAL_COUNTS = {
    (18, 1, 0.0, 0.0): (11_180_736, 11_190_464),
    (34, 1, 0.0, 0.0): (21_288_896, 21_306_048),
    (50, 1, 0.0, 0.0): (23_508_032, 23_561_152),        # SimCLRv2 r50_1x_sk0
    (50, 1, 0.0625, 0.0): (35_215_584, 35_277_408),     # r50_1x_sk1
    (50, 1, 0.0625, 0.25): (37_746_576, 37_808_400),
    (18, 1, 0.0625, 0.25): (11_550_528, 11_560_384),
    (101, 2, 0.0625, 0.0): (257_132_224, 257_377_984),  # r101_2x_sk1
    (152, 3, 0.0625, 0.0): (794_704_160, 795_235_360),  # r152_3x_sk1
}
BIG = [key for key in ORIGINAL_COUNTS if key[0] > 50]


@pytest.mark.parametrize("config", [
    pytest.param(key, marks=pytest.mark.slow) if key in BIG else key
    for key in ORIGINAL_COUNTS])
def test_parameter_count_matches_original(config):
    depth, width, sk_ratio, se_ratio = config
    encoder = _built(depth=depth, width_multiplier=width, sk_ratio=sk_ratio,
                     se_ratio=se_ratio)
    assert (_num_trainable(encoder), encoder.count_params()) == ORIGINAL_COUNTS[config]


@pytest.mark.parametrize("depth, width, cifar, channels", [
    (18, 0.25, False, (16, 16, 32, 64, 128)),
    (18, 0.25, True, (16, 16, 32, 64, 128)),
    (50, 0.125, False, (8, 32, 64, 128, 256)),
    (50, 0.125, True, (8, 32, 64, 128, 256)),
])
def test_output_keys_and_shapes(depth, width, cifar, channels):
    size = 32
    encoder = ResNet(depth=depth, width_multiplier=width, cifar_stem=cifar)
    outputs = encoder(_images(size=size), training=False)
    assert set(outputs) == OUTPUT_KEYS
    stem_size = size if cifar else size // 2
    pool_size = stem_size if cifar else stem_size // 2
    assert outputs["initial_conv"].shape == (2, stem_size, stem_size, channels[0])
    assert outputs["initial_max_pool"].shape == (2, pool_size, pool_size, channels[0])
    # As the original: initial_conv is the conv before BN, the pool input after BN-ReLU.
    assert np.min(outputs["initial_conv"]) < 0 <= np.min(outputs["initial_max_pool"])
    for i, key in enumerate(GROUP_KEYS):
        spatial = pool_size // 2 ** i
        assert outputs[key].shape == (2, spatial, spatial, channels[i + 1])
    assert outputs["final_avg_pool"].shape == (2, channels[-1])
    assert encoder.num_features == channels[-1] == round(
        (2048 if depth >= 50 else 512) * width)
    np.testing.assert_allclose(
        outputs["final_avg_pool"], np.mean(outputs["block_group4"], axis=(1, 2)),
        rtol=1e-5, atol=1e-6)


def test_odd_input_size_rounds_up():
    outputs = ResNet(depth=18, width_multiplier=0.125)(_images(size=17))
    assert outputs["initial_conv"].shape[1:3] == (9, 9)
    assert outputs["initial_max_pool"].shape[1:3] == (5, 5)


def test_cifar_stem_for():
    assert cifar_stem_for(32) and cifar_stem_for(64)
    assert not cifar_stem_for(96) and not cifar_stem_for(224)


def test_batch_norm_naming_and_zero_init():
    encoder = _built(depth=50, width_multiplier=0.125, sk_ratio=0.0625, se_ratio=0.25)
    for w in encoder.weights:
        is_bn = w.path.rsplit("/", 1)[-1] in ("gamma", "beta", "moving_mean",
                                              "moving_variance")
        assert is_bn == ("batch_normalization" in w.path), w.path
    last_gammas = [w for w in encoder.weights if "conv_last/" in w.path
                   and w.path.endswith("gamma")]
    assert len(last_gammas) == 16  # One per bottleneck block of ResNet-50.
    assert all(np.all(w.numpy() == 0) for w in last_gammas)


@pytest.mark.parametrize("depth", [18, 50])
def test_selective_kernel_and_squeeze_excitation(depth):
    plain = _built(depth=depth, width_multiplier=0.125)
    sk = ResNet(depth=depth, width_multiplier=0.125, sk_ratio=0.0625)
    se = ResNet(depth=depth, width_multiplier=0.125, se_ratio=0.25)
    for variant in (sk, se):
        outputs = variant(_images(batch=1), training=True)
        assert outputs["block_group4"].shape == (1, 1, 1, plain.num_features)
        assert outputs["final_avg_pool"].shape == (1, plain.num_features)
    # R18 + SK: only the deep stem and ResNet-D shortcuts change, and the
    # three 3x3 stem convs hold fewer weights than one 7x7.
    assert _num_trainable(se) > _num_trainable(plain)
    assert (_num_trainable(sk) > _num_trainable(plain)) == (depth == 50)
    assert [conv.filters for conv in sk.stem.convs] == [4, 4, 8]  # Deep stem.
    # Selective kernels only in bottleneck blocks, as the original.
    assert any("/sk_conv/" in w.path for w in sk.weights) == (depth == 50)
    if depth == 50:
        first_sk = sk.block_groups[0].blocks[0].branch[-2]
        assert first_sk.squeeze.units == 32  # max(int(8 * 0.0625), min_dim=32)
    # SE reduces to block width * se_ratio (not the 4x bottleneck output).
    first_se = se.block_groups[1].blocks[0].branch[-1]
    assert first_se.reduce.units == int(16 * 0.25)
    assert first_se.filters == (64 if depth == 50 else 16)
    assert any("/se/" in w.path for w in se.weights)
    # ResNet-D shortcuts average-pool first: strided ones pad then pool VALID.
    names = [[layer.name for layer in sk.block_groups[g].blocks[0].shortcut]
             for g in (0, 1)]
    assert names == [["avg_pool", "projection"], ["pool_pad", "avg_pool", "projection"]]
    assert sk.block_groups[0].blocks[0].shortcut[0].strides == (1, 1)


def test_fine_tune_after_block_4_freezes_everything():
    encoder = _built(depth=18, width_multiplier=0.125, cifar_stem=True)
    set_fine_tune_after_block(encoder, 4)
    assert encoder.trainable_weights == []
    before = _moving_stats(encoder)
    images = _images(batch=4)
    trained = encoder(images, training=True)["final_avg_pool"]
    for path, value in _moving_stats(encoder).items():
        np.testing.assert_array_equal(value, before[path], err_msg=path)
    inferred = encoder(images, training=False)["final_avg_pool"]
    np.testing.assert_allclose(trained, inferred, rtol=1e-6)


def test_fine_tune_after_block_2_trains_only_groups_3_and_4():
    encoder = _built(depth=18, width_multiplier=0.125, cifar_stem=True)
    set_fine_tune_after_block(encoder, 2)
    groups = {w.path.split("/")[1] for w in encoder.trainable_weights}
    assert groups == {"block_group3", "block_group4"}
    assert not encoder.stem.trainable and encoder.block_groups[2].trainable
    set_fine_tune_after_block(encoder, -1)
    assert len(encoder.trainable_weights) == len(
        [w for w in encoder.weights if "moving_" not in w.path])
    with pytest.raises(ValueError, match="fine_tune_after_block"):
        set_fine_tune_after_block(encoder, 5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(depth=42), "depth 42"),
    (dict(depth=18, width_multiplier=0), "width_multiplier"),
    (dict(depth=18, width_multiplier=-0.5), "width_multiplier"),
])
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResNet(**kwargs)


def test_get_config_round_trip_and_use_inside_model():
    encoder = _built(depth=18, width_multiplier=0.25, cifar_stem=True,
                     sk_ratio=0.0625, se_ratio=0.25, batch_norm_decay=0.99,
                     global_bn=True, name="encoder")
    clone = ResNet.from_config(encoder.get_config())
    clone.build((None, 16, 16, 3))
    assert clone.get_config() == encoder.get_config()
    assert clone.count_params() == encoder.count_params()
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, clone(inputs)["final_avg_pool"])
    assert model(_images()).shape == (2, clone.num_features)


def test_mixed_bfloat16_under_jit():
    # Batch 8 at 32 px: block group 4 is 1x1, so training-mode BN normalises
    # over the batch alone; with 2 images it divides by the spread of 2
    # numbers and amplifies bf16 rounding 5-15x depending on the random
    # weights (relative error 0.01-0.16 over seeds); with 8 it stays ~0.02.
    keras.utils.set_random_seed(0)
    images = _images(batch=8, size=32)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        encoder = ResNet(depth=18, width_multiplier=0.125, sk_ratio=0.0625)
        outputs = tf.function(lambda x: encoder(x, training=True),
                              jit_compile=True)(images)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert outputs["block_group4"].dtype == tf.bfloat16
    assert outputs["final_avg_pool"].dtype == tf.float32
    assert all(w.dtype == "float32" for w in encoder.weights)
    # Same weights in float32: bf16 within a few % (by norm), not just finite.
    reference = ResNet(depth=18, width_multiplier=0.125, sk_ratio=0.0625)
    reference(images, training=False)
    for target, source in zip(reference.weights, encoder.weights):
        target.assign(source)
    want = tf.function(lambda x: reference(x, training=True),
                       jit_compile=True)(images)
    for key in ("block_group4", "final_avg_pool"):
        got = tf.cast(outputs[key], tf.float32).numpy()
        error = np.linalg.norm(got - want[key]) / np.linalg.norm(want[key])
        assert error < 0.05, (key, error)


def test_per_layer_dtype_policy_reaches_sub_layers():
    encoder = ResNet(depth=18, width_multiplier=0.125, cifar_stem=True,
                     dtype="mixed_bfloat16")
    outputs = encoder(_images())
    assert outputs["block_group4"].dtype == tf.bfloat16
    assert outputs["final_avg_pool"].dtype == tf.float32


def _relative(stats):
    """Drops the (auto-numbered) encoder name from weight paths."""
    return {path.split("/", 1)[1]: value for path, value in stats.items()}


def _replica_moving_stats(global_bn, images, initial_weights):
    """BN moving stats after one training call on 2 replicas, half batch each."""
    devices = [d.name for d in tf.config.list_logical_devices("CPU")[:2]]
    assert len(devices) == 2, "conftest.py should configure 2 logical CPUs"
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        encoder = _built(depth=18, width_multiplier=0.125, cifar_stem=True,
                         global_bn=global_bn)
    encoder.set_weights(initial_weights)
    half = len(images) // 2
    shards = strategy.experimental_distribute_values_from_function(
        lambda ctx: images[ctx.replica_id_in_sync_group * half:][:half])
    tf.function(lambda x: strategy.run(
        lambda y: encoder(y, training=True)["final_avg_pool"], args=(x,)))(shards)
    return _relative(_moving_stats(encoder))


def test_global_bn_matches_single_device_full_batch():
    images = _images(batch=8)
    images[4:] = 3.0 * images[4:] + 1.0  # Replica batches differ in statistics.
    reference = _built(depth=18, width_multiplier=0.125, cifar_stem=True)
    # Non-zero gammas so the residual branches reach the deeper BN layers.
    reference.set_weights([np.random.default_rng(1).uniform(0.5, 1.5, w.shape)
                           if w.path.endswith("gamma") else w.numpy()
                           for w in reference.weights])
    initial_weights = reference.get_weights()
    reference(images, training=True)
    expected = _relative(_moving_stats(reference))
    synced = _replica_moving_stats(True, images, initial_weights)
    assert synced.keys() == expected.keys() and len(expected) == 2 * 21
    # training=True reached every BN (else this comparison would be vacuous).
    assert all(np.all(v != 0) for p, v in expected.items() if p.endswith("mean"))
    for path, value in expected.items():
        np.testing.assert_allclose(synced[path], value, rtol=1e-5, atol=1e-5,
                                   err_msg=path)
    # Control: without sync, each replica normalises with its own half's
    # statistics, so the moving variance differs from the full batch's.
    local = _replica_moving_stats(False, images, initial_weights)
    first_var = "initial_conv/conv_0/batch_normalization/moving_variance"
    assert not np.allclose(local[first_var], expected[first_var], rtol=1e-3)
