"""One place where the newer tests reach the training task and evaluation.

The tests in test_metrics.py, test_wiring.py, test_lars_exclusions.py,
test_mixed_precision.py, test_export_variants.py and test_resume.py build
models, tasks and evaluation results through these helpers only, so an API
rename is adapted here once.
"""

import types

import keras
import numpy as np
import tensorflow as tf

from simclr_tf2.training import evaluator as _evaluator
from simclr_tf2 import optim
from simclr_tf2 import tasks as _tasks
from simclr_tf2.tasks import base as _task_base
from simclr_tf2.models import build

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
               **cfg):
    """A built (and by default compiled) SimCLRModel from `model_cfg(**cfg)`."""
    keras.utils.set_random_seed(seed)
    model = build.build_model(model_cfg(**cfg), num_classes=num_classes,
                              task=train_mode, image_size=image_size)
    if compile:
        compile_model(model, train_mode, optimizer, weight_decay=weight_decay)
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
