"""Tests of export/: the SavedModel / TF-Hub module, its signatures and CLI.

Every loading test runs in a fresh Python process whose working directory is
a temporary folder and whose PYTHONPATH is cleared, and first proves that the
project is not importable there: the export must stand on its own.
"""

import json
import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from simclr_tf2.export import saved_model
from simclr_tf2.rundir import checkpoints
from simclr_tf2.config import RunConfig
from simclr_tf2.data import augment
from simclr_tf2.models import build
from simclr_tf2.optim import weight_decay_loss
from tests.harness import fresh_python, model_config, png_bytes, tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = 16
STEP = 7
WEIGHT_DECAY = 1e-4


def randomize(model, seed=0):
    """Non-trivial BN parameters and statistics, so every gradient is non-zero."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        shape = tuple(v.shape)
        if v.path.endswith(("gamma", "moving_variance")):
            v.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        elif v.path.endswith(("beta", "moving_mean")):
            v.assign(rng.normal(0.0, 0.1, shape).astype(np.float32))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A global-BN model, its checkpoint + flags.json, and its export.

    model_dir/saved_model/ holds older exports 3 and 5 before exporting step
    7 with keep=2, so pruning is exercised too.
    """
    base = tmp_path_factory.mktemp("export")
    model_dir = base / "model_dir"
    keras.utils.set_random_seed(1)
    config = RunConfig.from_flat(dict(
        model_config(), image_size=IMAGE, dataset="digits",
        weight_decay=WEIGHT_DECAY, optimizer="lars", train_mode="pretrain",
        model_dir=str(model_dir)))
    model = build.build_model(config.model, num_classes=10,
                              task="pretrain", image_size=IMAGE)
    randomize(model)
    for old in ("3", "5"):
        os.makedirs(model_dir / "saved_model" / old)
    (model_dir / "flags.json").write_text(json.dumps(config.to_flat()))
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    optimizer.iterations.assign(STEP)
    _, manager = checkpoints.make_manager(model, optimizer, str(model_dir), 1)
    manager.save(checkpoint_number=STEP)
    path = saved_model.export_to_model_dir(model, config, STEP, keep=2)
    return types.SimpleNamespace(
        base=base, model_dir=model_dir, path=path,
        ref=str(_write_reference(model, base)))


def _write_reference(model, base):
    """In-memory outputs: moving statistics first, then batch statistics.

    Computed in a tf.function, as the export runs: graph optimisations (op
    fusion) change float rounding by ~1e-6 relative against eager
    execution, which on feature maps of magnitude ~20 exceeds atol=1e-5.
    """
    forward = tf.function(lambda x, training: model(x, training=training))
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(4, IMAGE, IMAGE, 3)).astype(np.float32)
    data, pixels = png_bytes(rng, 20, 24)
    (base / "image.png").write_bytes(data)
    np.save(base / "request.npy", np.array([data], dtype=object),
            allow_pickle=True)
    png_images = augment.preprocess_for_eval(pixels, IMAGE)[None]
    arrays = {"x": x}
    arrays.update({f"png_{k}": v.numpy() for k, v in
                   forward(png_images, False).items()})
    arrays.update({f"f_{k}": v.numpy() for k, v in
                   forward(x, False).items()})
    arrays["reg"] = weight_decay_loss(model.trainable_variables, WEIGHT_DECAY,
                                      "momentum").numpy()
    arrays.update({f"t_{k}": v.numpy() for k, v in
                   forward(x, True).items()})
    np.savez(base / "ref.npz", **arrays)
    return base / "ref.npz"


def test_export_layout_pruning_and_info(exported):
    root = exported.model_dir / "saved_model"
    assert exported.path == str(root / str(STEP))
    assert sorted(os.listdir(root)) == ["5", str(STEP)]  # keep=2, no temp dirs
    assert os.path.isfile(os.path.join(exported.path, "saved_model.pb"))
    info = json.load(open(os.path.join(exported.path, saved_model.EXPORT_INFO)))
    assert info["image_size"] == IMAGE and info["global_step"] == STEP
    assert info["signatures"] == ["serving_bytes", "serving_default"]
    assert info["config"]["image_size"] == IMAGE  # The flat flags.json.
    assert len(info["trainable_variables"]) < len(info["variables"])


def test_graph_has_no_custom_gradients(exported):
    """Global BN's all-reduce would leave custom-gradient ops behind."""
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(exported.path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    graph = proto.meta_graphs[0].graph_def
    nodes = list(graph.node) + [n for fn in graph.library.function
                                for n in fn.node_def]
    assert not [n.name for n in nodes if "_gradient_op_type" in n.attr]
    assert not [n.name for n in nodes if n.op == "IdentityN"]


def test_tf_and_hub_load_match_model_in_both_bn_modes(exported):
    fresh_python("""
import tensorflow_hub as hub
x = ref["x"]
for m in (tf.saved_model.load(path), hub.load(path)):
    out = m(x, trainable=False)
    assert set(out) == {k[2:] for k in ref.files if k.startswith("f_")}, out
    for k in out:
        close(out[k], ref["f_" + k])
    close(m(tf.constant(x))["final_avg_pool"], ref["f_final_avg_pool"])
    serve = m.signatures["serving_default"](images=tf.constant(x))
    assert {"final_avg_pool", "logits_sup"} <= set(serve), serve
    for k in serve:
        close(serve[k], ref["f_" + k])
    # Other image sizes work: the ResNet ends in global pooling.
    assert m(np.ones([2, 24, 20, 3], np.float32))["final_avg_pool"].shape == (2, 64)
    close(m.regularization_losses[0](), ref["reg"])
assert len(m.trainable_variables) < len(m.variables)
out = m(x, trainable=True)  # Batch statistics (and moving-average updates).
for k in out:
    close(out[k], ref["t_" + k])
with tf.GradientTape() as tape:
    loss = sum(tf.reduce_sum(tf.sin(v)) for v in m(x, trainable=True).values())
grads = tape.gradient(loss, m.trainable_variables)
assert all(g is not None for g in grads), "gradient missing"
assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads), "zero gradient"
for bad in (np.ones([2, 16, 16, 1], np.float32), np.ones([16, 16, 3], np.float32)):
    try:
        m(bad)
    except (ValueError, TypeError, tf.errors.InvalidArgumentError):
        pass
    else:
        raise AssertionError(f"shape {bad.shape} was accepted")
""", exported.path, exported.ref, cwd=exported.base)


def test_hub_keras_layer_fine_tuning_changes_every_weight(exported):
    fresh_python("""
import tensorflow_hub as hub
import tf_keras
layer = hub.KerasLayer(path, trainable=True)
inputs = tf_keras.Input((16, 16, 3))
out = layer(inputs)
head = tf_keras.layers.Dense(3)(tf_keras.layers.Concatenate()(
    [out["proj_head_output"], out["logits_sup"]]))
model = tf_keras.Model(inputs, head)
model.compile(tf_keras.optimizers.SGD(0.1),
              tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
assert len(model.losses) == 1  # the module's weight decay
weights = layer.trainable_weights
assert len(weights) == len(hub.load(path).trainable_variables)
statistics = layer.non_trainable_weights  # BN moving means and variances
before = [w.numpy().copy() for w in weights + statistics]
model.fit(ref["x"], np.array([0, 1, 2, 0]), batch_size=4, epochs=1, verbose=0)
same = [w.name for b, w in zip(before, weights + statistics)
        if np.array_equal(b, w.numpy())]
# Every weight moved, and so did the statistics: fit ran with training=True.
assert statistics and not same, same
""", exported.path, exported.ref, cwd=exported.base)


def test_keras3_tfsm_layer(exported):
    fresh_python("""
import keras
layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
out = layer(ref["x"])
close(out["final_avg_pool"], ref["f_final_avg_pool"])
close(out["logits_sup"], ref["f_logits_sup"])
inputs = keras.Input((16, 16, 3))
model = keras.Model(inputs, layer(inputs)["final_avg_pool"])
close(model.predict(ref["x"], verbose=0), ref["f_final_avg_pool"])
""", exported.path, exported.ref, cwd=exported.base)


def test_saved_model_cli_show_and_run_on_png(exported):
    show = tool("saved_model_cli", "show", "--all", "--dir", exported.path,
                cwd=exported.base)
    assert show.returncode == 0, show.stderr[-3000:]
    assert "signature_def['serving_default']" in show.stdout
    assert "signature_def['serving_bytes']" in show.stdout
    outdir = exported.base / "cli_out"
    run = tool("saved_model_cli", "run", "--dir", exported.path, "--tag_set",
               "serve", "--signature_def", "serving_bytes", "--inputs",
               f"image_bytes={exported.base / 'request.npy'}", "--outdir",
               str(outdir), cwd=exported.base)
    assert run.returncode == 0, run.stderr[-3000:]
    ref = np.load(exported.ref)
    for key in ("final_avg_pool", "logits_sup", "proj_head_output"):
        np.testing.assert_allclose(np.load(outdir / f"{key}.npy"),
                                   ref[f"png_{key}"], atol=1e-5, rtol=0)


# The checkout's `python -m export` (absl) and the library's command
# (`simclr-export`, also `python -m simclr_tf2.export`).
EXPORT_COMMANDS = ["export", "simclr_tf2.export"]


@pytest.mark.parametrize("command", EXPORT_COMMANDS)
def test_python_m_export_from_checkpoint_matches_run_export(exported, command):
    out = exported.base / f"from_checkpoint_{command}"
    proc = tool(command, f"--model_dir={exported.model_dir}",
                f"--export_dir={out}", cwd=ROOT, project=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"(step {STEP})" in proc.stdout
    # Loading in this process is fine here: the test is about equal weights.
    a, b = tf.saved_model.load(exported.path), tf.saved_model.load(str(out))
    x = np.load(exported.ref)["x"]
    for trainable in (False, True):
        out_a, out_b = a(x, trainable), b(x, trainable)
        assert set(out_a) == set(out_b)
        for k in out_a:
            np.testing.assert_allclose(out_a[k], out_b[k], atol=1e-5, rtol=0)


@pytest.mark.parametrize("command", EXPORT_COMMANDS)
@pytest.mark.parametrize("args,fragment", [
    (["--model_dir={base}/nowhere"], "no flags.json"),
    (["--model_dir={model_dir}", "--checkpoint={model_dir}/ckpt-99"],
     "does not exist"),
    (["--model_dir={model_dir}", "--export_dir={path}"], "already exists"),
])
def test_python_m_export_user_errors(exported, args, fragment, command):
    args = [a.format(base=exported.base, model_dir=exported.model_dir,
                     path=exported.path) for a in args]
    proc = tool(command, *args, cwd=ROOT, project=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert fragment in lines[0]
