"""The synthetic data and the model the throughput benchmark times.

`SyntheticSource` implements the Source API of simclr_tf2/data/source.py
with random smooth uint8 images held in memory (or their JPEG bytes), so the
benchmark needs no data and no network; `build_model` compiles a pretraining
SimCLRModel with LARS as `experiment.Experiment` does.
"""

import os
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from simclr_tf2 import tasks  # noqa: E402
from simclr_tf2 import optim  # noqa: E402
from simclr_tf2.data.source import DatasetInfo  # noqa: E402
from simclr_tf2.data.source import Source  # noqa: E402
from simclr_tf2.models import build  # noqa: E402

NUM_CLASSES = 10


class SyntheticSource(Source):
    """Random smooth uint8 images in memory, as raw arrays or JPEG bytes.

    Args:
      num_examples: images in the single split "train".
      side: image height and width.
      jpeg: store JPEG-encoded bytes and decode them in the pipeline.
      seed: numpy seed.
      channels: 3 (colour) or 1 (grey, as Fashion-MNIST).
    """

    def __init__(self, num_examples, side, jpeg=False, seed=0, channels=3):
        super().__init__(DatasetInfo(
            name="synthetic", num_classes=NUM_CLASSES,
            num_examples={"train": num_examples},
            image_shape=(side, side, channels)))
        self.channels = channels
        rng = np.random.default_rng(seed)
        # Low-resolution noise upsampled: JPEG sizes closer to photographs.
        coarse = rng.uniform(0, 255, (num_examples, 8, 8, 3)).astype(np.float32)
        images = tf.image.resize(coarse, [side, side], method="bicubic")
        self.images = tf.cast(tf.clip_by_value(images, 0, 255),
                              tf.uint8).numpy()[..., :channels]
        self.labels = rng.integers(0, NUM_CLASSES, num_examples)
        self.jpeg = None
        if jpeg:
            self.jpeg = np.array([tf.io.encode_jpeg(im, quality=90).numpy()
                                  for im in self.images], dtype=object)

    def _refs(self, part):
        # In memory: the references are the examples themselves.
        window = slice(part.start, part.stop)
        example = {"label": self.labels[window],
                   "id": np.arange(part.start, part.stop, dtype=np.int64)}
        if self.jpeg is None:
            example["image"] = self.images[window]
        else:
            example["jpeg"] = self.jpeg[window]
        return tf.data.Dataset.from_tensor_slices(example)

    def _load(self, refs, splits):
        if self.jpeg is None:
            return refs

        def decode(ex):
            ex = dict(ex)
            ex["image"] = tf.io.decode_jpeg(ex.pop("jpeg"), channels=self.channels)
            return ex

        return refs.map(decode, num_parallel_calls=tf.data.AUTOTUNE)


def model_config(depth, width, cifar_stem):
    """A ModelConfig-like namespace with run.py's pretraining defaults."""
    return types.SimpleNamespace(
        resnet_depth=depth, width_multiplier=width, cifar_stem=cifar_stem,
        sk_ratio=0.0, se_ratio=0.0, batch_norm_decay=0.9, global_bn=True,
        proj_head_mode="nonlinear", proj_out_dim=128, num_proj_layers=3,
        ft_proj_selector=0, zero_init_logits_layer=False,
        fine_tune_after_block=-1, lineareval_while_pretraining=True)


def build_model(cfg, image_size, precision, micro_batch_size=0,
                jit_compile=False, steps_per_execution=1, memory_size=0):
    """A compiled pretraining SimCLRModel with LARS, as experiment.Experiment
    builds it (memory_size > 0: with SimCLRv2's memory, momentum 0.999)."""
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    model = build.build_model(
        cfg, num_classes=NUM_CLASSES, task=tasks.PretrainTask,
        image_size=image_size)
    task = tasks.PretrainTask(
        temperature=0.1, weight_decay=optim.weight_decay_policy("lars", 1e-6),
        memory_size=memory_size)
    model.compile(optimizer=optim.build_optimizer(
        "lars", 0.3, momentum=0.9, weight_decay=1e-6), task=task,
        micro_batch_size=micro_batch_size,
        jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    model.optimizer.build(model.trainable_variables)
    task.build_state(model, (image_size, image_size, 3))
    return model
