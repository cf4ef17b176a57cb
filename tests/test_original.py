"""Loading models written by the original SimCLR TF2 code: parity, inference, refusals.

The fixtures (tests/fixtures/original/, see its README) were written by the
original code; outputs.npz holds its own SavedModel's outputs on a fixed input.
"""

import os

import numpy as np
import pytest

from simclr_tf2 import errors
from simclr_tf2.models.resnet import ResNet
from simclr_tf2.original import convert, loader
from tests.harness import ORIGINAL_KEYS, original_fixture, relative_error

NAMES = ("r18_v1", "r50_sk_se", "r18_ft")


def assert_parity(model, name, tolerance=1e-4):
    """Our outputs equal the original SavedModel's, with inference and batch statistics."""
    reference = np.load(os.path.join(original_fixture(name), "outputs.npz"))
    for mode in ("infer", "train"):
        outputs = model(reference["images"], training=mode == "train")
        for key in ORIGINAL_KEYS:
            error = relative_error(np.asarray(outputs[key]), reference[f"{key}/{mode}"])
            assert error <= tolerance, (name, mode, key, error)


@pytest.mark.parametrize("name", NAMES)
def test_loaded_model_matches_original_savedmodel_outputs(name):
    model = convert.model_from_original(original_fixture(name))[0]
    assert_parity(model, name)


def test_fixture_outputs_come_from_the_original_savedmodel():
    # Provenance: the committed SavedModel (the original's own export) gives outputs.npz.
    import tensorflow as tf
    module = tf.saved_model.load(os.path.join(original_fixture("r18_ft"), "saved_model", "8"))
    reference = np.load(os.path.join(original_fixture("r18_ft"), "outputs.npz"))
    outputs = module(tf.constant(reference["images"]), trainable=False)
    for key in ORIGINAL_KEYS:
        # The same graph and weights; oneDNN may pick another summation
        # order on another CPU or load, so equality is to float32 rounding.
        assert relative_error(outputs[key].numpy(),
                              reference[f"{key}/infer"]) <= 1e-6, key


def test_savedmodel_dir_and_ckpt_prefix_load_the_same_weights():
    from_dir = convert.model_from_original(original_fixture("r18_v1"))[0]
    from_prefix = convert.model_from_original(os.path.join(original_fixture("r18_v1"), "ckpt-8"))[0]
    from_saved, original, _, _ = convert.model_from_original(
        os.path.join(original_fixture("r18_v1"), "saved_model", "8"))
    assert original.prefix.endswith(os.path.join("8", "variables", "variables"))
    assert original.model_dir == original_fixture("r18_v1")  # its flags.json is used
    for a, b, c in zip(from_dir.weights, from_prefix.weights, from_saved.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(a.numpy(), c.numpy())
    assert_parity(from_saved, "r18_v1")


@pytest.mark.parametrize("name, expected", [
    ("r18_v1", dict(resnet_depth=18, width_multiplier=0.0625, cifar_stem=True, sk_ratio=0.0,
                    se_ratio=0.0, num_proj_layers=2, proj_out_dim=16, num_classes=10,
                    ft_proj_selector=0, image_size=32)),
    ("r50_sk_se", dict(resnet_depth=50, width_multiplier=0.0625, cifar_stem=False,
                       sk_ratio=0.0625, se_ratio=0.25, num_proj_layers=3, proj_out_dim=16,
                       num_classes=10, ft_proj_selector=0, image_size=40)),
    ("r18_ft", dict(resnet_depth=18, num_proj_layers=2, ft_proj_selector=1)),
])
def test_architecture_inferred_from_checkpoint(name, expected):
    arch = loader.open_original(original_fixture(name)).arch
    assert {k: arch[k] for k in expected} == expected


def test_architecture_inferred_without_flags_json(tmp_path):
    # A published SavedModel comes without flags.json: shapes alone decide.
    original = loader.open_original(original_fixture("r50_sk_se"))
    graph_only = loader.architecture.infer_from_variables(original.graph)
    assert graph_only["resnet_depth"] == 50 and graph_only["sk_ratio"] == 0.0625
    assert graph_only["se_ratio"] == 0.25 and not graph_only["cifar_stem"]


@pytest.mark.parametrize("kwargs, flag", [
    (dict(depth=50, sk_ratio=0.0625), "--se_ratio=0.25"),
    (dict(depth=50, se_ratio=0.25), "--sk_ratio=0.0625"),
    (dict(depth=18, sk_ratio=0.0625, se_ratio=0.25), "--resnet_depth=50"),
    (dict(depth=50, sk_ratio=0.0625, se_ratio=0.25, width_multiplier=0.125),
     "--width_multiplier=0.0625"),
])
def test_mismatched_encoder_is_refused_naming_the_flag(kwargs, flag):
    original = loader.open_original(original_fixture("r50_sk_se"))
    encoder = ResNet(cifar_stem=False, **{"width_multiplier": 0.0625, **kwargs})
    encoder.build((None, 40, 40, 3))
    before = [w.numpy().copy() for w in encoder.weights]
    with pytest.raises(errors.OriginalCheckpointError) as info:
        loader.load_into(original, encoder)
    message = str(info.value)
    assert "\n" not in message and flag in message and "differences" in message
    # All or nothing: no variable was assigned.
    for w, b in zip(encoder.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)


def test_projection_head_depth_mismatch_names_num_proj_layers():
    original = loader.open_original(original_fixture("r18_v1"))
    arch = dict(original.arch, num_proj_layers=3)
    encoder, head, _ = convert.build_parts(arch)
    encoder.build((None, 32, 32, 3))
    head.build((None, encoder.num_features))
    with pytest.raises(errors.OriginalCheckpointError, match="--num_proj_layers=2"):
        loader.load_into(original, encoder, head)


def test_missing_projection_head_names_proj_head_mode():
    original = loader.open_original(original_fixture("r18_v1"))
    encoder, head, _ = convert.build_parts(dict(original.arch, proj_head_mode="none"))
    encoder.build((None, 32, 32, 3))
    head.build((None, encoder.num_features))
    with pytest.raises(errors.OriginalCheckpointError, match="--proj_head_mode=nonlinear"):
        loader.load_into(original, encoder, head)


def test_not_an_original_model_is_refused(tmp_path):
    assert not loader.is_original(str(tmp_path))
    with pytest.raises(errors.OriginalCheckpointError, match="not a model_dir"):
        loader.open_original(str(tmp_path))
