"""What tests share: tiny models, tasks, runs, subprocesses and fixtures.

Test files import shared helpers from here (and fixtures from conftest.py),
never from each other, so an API rename is adapted here once: tiny models
and their tasks (`model_cfg`, `make_model`, `compile_model`, `batch`,
`tiny_model`), tiny runs (`tiny_config`, `tiny_experiment`, `run_py` with
`TINY_FLAGS`), gradients by one tape or by gradient caching, a two-replica
`mirrored` strategy, fresh interpreters without the project (`fresh_python`,
`tool`), flag parsing (`parsed`) and the original code's fixtures.
"""

import copy
import importlib
import os
import shutil
import socket
import subprocess
import sys
import types

from absl import flags as absl_flags

import keras
import numpy as np
import tensorflow as tf

from simclr_tf2.training import evaluator as _evaluator
from simclr_tf2 import optim
from simclr_tf2 import tasks as _tasks
from simclr_tf2.tasks import base as _task_base
from simclr_tf2.config import RunConfig
from simclr_tf2.models import build
from simclr_tf2.models import heads
from simclr_tf2.models.simclr_model import SimCLRModel
from simclr_tf2.training.experiment import Experiment

IMAGE = 16


def model_cfg(**overrides):
    """A tiny ModelConfig-like namespace (ResNet-18 at 1/8 width)."""
    base = dict(resnet_depth=18, width_multiplier=0.125, cifar_stem=True,
                sk_ratio=0.0, se_ratio=0.0, batch_norm_decay=0.9,
                global_bn=False, proj_head_mode="nonlinear", proj_out_dim=8,
                num_proj_layers=2, ft_proj_selector=0,
                zero_init_logits_layer=False, fine_tune_after_block=-1,
                lineareval_while_pretraining=True)
    base.update(overrides)
    return types.SimpleNamespace(**base)


def make_task(train_mode="pretrain", optimizer="lars", weight_decay=1e-4,
                   **kwargs):
    """The training task a run would compile (pretrain: temperature 0.5)."""
    if train_mode == "pretrain":
        kwargs.setdefault("temperature", 0.5)
    return _tasks.get(train_mode)(
        weight_decay=optim.weight_decay_policy(optimizer, weight_decay),
        **kwargs)


def compile_model(model, train_mode="pretrain", optimizer="lars",
                  learning_rate=0.1, weight_decay=1e-4, task=None,
                  **compile_kwargs):
    """Compiles `model` with a task and builds its optimizer."""
    if task is None:
        task = make_task(train_mode, optimizer, weight_decay)
    model.compile(optimizer=optim.build_optimizer(
        optimizer, learning_rate, weight_decay=weight_decay),
        task=task, **compile_kwargs)
    model.optimizer.build(model.trainable_variables)
    return model


def make_model(train_mode="pretrain", num_classes=3, image_size=IMAGE,
               optimizer="lars", weight_decay=1e-4, compile=True, seed=0,
               learning_rate=0.1, micro_batch_size=0, **cfg):
    """A built (and by default compiled) SimCLRModel from `model_cfg(**cfg)`."""
    keras.utils.set_random_seed(seed)
    model = build.build_model(model_cfg(**cfg), num_classes=num_classes,
                              task=train_mode, image_size=image_size)
    if compile:
        compile_model(model, train_mode, optimizer, learning_rate=learning_rate,
                      weight_decay=weight_decay, micro_batch_size=micro_batch_size)
    return model


def supervised_loss_and_metrics(labels, logits):
    """(loss, metrics) of the supervised head's loss on one batch."""
    return _task_base.supervised_loss(labels, logits)


def compute_gradients(model, data):
    """(loss, metrics, grads) of one batch by the model's own task."""
    return model.loss_and_gradients(data)


def evaluate_model(model, dataset, global_step):
    """The result dict ("eval/label_top_1_accuracy", ...) of one pass."""
    return _evaluator.evaluate_model(model, dataset, global_step)


def random_images(n, size=IMAGE, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.uniform(size=(n, size, size, channels)), tf.float32)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


TINY_FLAGS = ["--resnet_depth=18", "--width_multiplier=0.125", "--image_size=16",
        "--proj_out_dim=8", "--num_proj_layers=2", "--train_batch_size=32",
        "--eval_batch_size=64", "--log_every_steps=1"]


def run_py(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), *args],
                          capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env)


def assert_user_error(proc, *fragments):
    """Non-zero exit, one 'error:' line on stderr naming the problem, no traceback."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [l for l in proc.stderr.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


TINY_RUN = dict(dataset="digits", image_size=16, resnet_depth=18,
            width_multiplier=0.125, proj_out_dim=8, num_proj_layers=2,
            train_batch_size=32, eval_batch_size=128, eval_steps=1,
            log_every_steps=1, global_bn=False, knn_eval=False,
            learning_rate=0.1, warmup_epochs=0)


def tiny_config(model_dir, **overrides):
    return RunConfig.from_flat(dict(TINY_RUN, model_dir=str(model_dir), **overrides))


def tiny_experiment(model_dir, lines=None, **overrides):
    printer = (lines.append if lines is not None else lambda _: None)
    return Experiment(tiny_config(model_dir, **overrides),
                      tf.distribute.get_strategy(), printer=printer)


def batch(views=2, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": tf.constant(rng.uniform(size=(n, IMAGE, IMAGE, 3 * views)),
                                 tf.float32),
            "label": tf.constant(rng.integers(0, 3, size=n), tf.int64)}


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


ORIGINAL_FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "original")


ORIGINAL_KEYS = ("initial_conv", "initial_max_pool", "block_group1", "block_group2", "block_group3", "block_group4",
        "final_avg_pool", "proj_head_output", "logits_sup")


def original_fixture(name):
    return os.path.join(ORIGINAL_FIXTURES, name)


def relative_error(ours, reference):
    return np.max(np.abs(ours - reference)) / np.max(np.abs(reference))


def freeze_batch_norm(model, seed=0):
    """BN in inference mode, with non-trivial moving statistics."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            shape = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.1, shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, shape))


def full_batch_gradients(model, data):
    """Unscaled loss and gradients by one tape over the whole batch."""
    task = model.task
    with tf.GradientTape() as tape:
        outputs = model(task.model_inputs(data), training=True)
        loss, _ = task.compute_loss(model, data, outputs)
        loss += task.regularization(model.trainable_variables)[0]
    return loss, tape.gradient(loss, model.trainable_variables)


def cached_gradients(model, data):
    loss, _, grads = model.loss_and_gradients(data)
    return loss, grads


def tiny_model(global_bn=False, micro_batch_size=0):
    keras.utils.set_random_seed(0)
    model = SimCLRModel(
        _TinyEncoder(global_bn, name="tiny_encoder"),
        heads.ProjectionHead(out_dim=8, global_bn=global_bn),
        heads.supervised_head(3))
    model(tf.zeros([1, IMAGE, IMAGE, 3]), training=False)
    return compile_model(model, micro_batch_size=micro_batch_size)


def mirrored():
    """A 2-replica MirroredStrategy with collective keys of its own.

    Strategies in one process otherwise share group and instance keys, and a
    later one running different collectives aborts ("Collective instance N
    expected type ...").
    """
    _KEY_BASE[0] += 1_000
    tf.distribute.MirroredStrategy._collective_key_base = _KEY_BASE[0]
    try:
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    finally:
        tf.distribute.MirroredStrategy._collective_key_base = 0


def distributed_step(strategy, model, data):
    """One train_step on the global batch `data`, split over the replicas."""
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(
        int(data["label"].shape[0]), drop_remainder=True)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))

    @tf.function
    def step():
        logs = strategy.run(model.train_step, args=(next(iterator),))
        return {k: strategy.reduce("MEAN", v, axis=None)
                for k, v in logs.items()}

    return step()


def parsed(*argv):
    """run.py's flags parsed from `argv` into fresh FlagValues."""
    import flags as simclr_flags  # Registers run.py's flags (only where used).
    values = absl_flags.FlagValues()
    for flag in absl_flags.FLAGS.get_flags_for_module(
            simclr_flags.definitions):
        values[flag.name] = copy.deepcopy(flag)  # Fresh value/present state.
    values(["run.py", *argv])
    return values


# Runs first in every fresh process: the project must not be importable.
PRELUDE = """
import json, sys
import numpy as np
for name in ("simclr_tf2", "export"):
    try:
        __import__(name)
    except ImportError:
        continue
    raise SystemExit(f"project package {name} is importable")
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
path, ref = sys.argv[1], np.load(sys.argv[2])
def close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=0)
"""


def fresh_python(code, *args, cwd, timeout=300):
    """Runs PRELUDE + code in a new interpreter without the project on sys.path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run([sys.executable, "-c", PRELUDE + code, *args],
                          cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # e.g. "Importing a function ... with ops with unsaved custom gradients".
    assert "custom gradient" not in proc.stderr, proc.stderr[-4000:]
    return proc.stdout


def tool(name, *args, cwd, project=False):
    """Runs a console script of the venv (or `python -m` with the project)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if project:
        env["PYTHONPATH"] = ROOT
        command = [sys.executable, "-m", name, *args]
    else:
        command = [os.path.join(os.path.dirname(sys.executable), name), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def model_config():
    return dict(resnet_depth=18, width_multiplier=0.125, cifar_stem=True,
                sk_ratio=0.0, se_ratio=0.0, batch_norm_decay=0.9,
                global_bn=True, proj_head_mode="nonlinear", proj_out_dim=8,
                num_proj_layers=2, ft_proj_selector=0,
                zero_init_logits_layer=False, fine_tune_after_block=-1,
                lineareval_while_pretraining=True)


def png_bytes(rng, height, width, channels=3):
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return tf.io.encode_png(pixels).numpy(), pixels


class _TinyEncoder(keras.layers.Layer):
    """Conv + BN + pool: a SimCLRModel encoder that traces fast."""

    def __init__(self, global_bn, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(8, 3, strides=2, use_bias=False)
        self.bn = keras.layers.BatchNormalization(synchronized=global_bn)

    def call(self, images, training=None):
        x = tf.nn.relu(self.bn(self.conv(images), training=training))
        return {"final_avg_pool": tf.reduce_mean(x, axis=[1, 2])}


_KEY_BASE = [10_000]


def package_source_copy(tmp_path_factory):
    """A temporary copy of what `pip install` builds from (pyproject.toml,
    requirements.txt, README.md and simclr_tf2/), so that building or
    installing leaves no build/ or *.egg-info in the checkout."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "requirements.txt", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    shutil.copytree(os.path.join(ROOT, "simclr_tf2"), src / "simclr_tf2",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return src


def blobs(n, d, seed, separation):
    """(rows float32 [n, d], labels int [n]): three Gaussian clusters whose
    centres lie `separation` standard deviations apart on average."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    centres = rng.normal(size=(3, d)) * separation
    return (centres[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


def benchmark_module(name):
    """benchmarks/<name>.py, imported as a module."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)
