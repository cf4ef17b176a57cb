"""Keras callbacks of a training run: progress, summaries, checkpoints, NaN guard."""

import math
import time

import keras
import tensorflow as tf

from simclr_tf2.rundir import checkpoints
from simclr_tf2.errors import TrainingDivergedError


class ProgressLogger(keras.callbacks.Callback):
    """Prints a progress line and writes train summaries every N steps.

    Also stops training with TrainingDivergedError as soon as the loss is
    NaN/Inf, before any checkpoint of the diverged weights is written.

    Args:
      total_steps: the final global step.
      global_batch_size: examples per step (for images/s).
      every_n_steps: logging period.
      summary_writer: a tf.summary writer or None.
      printer: function taking one line of text.
    """

    def __init__(self, total_steps, global_batch_size, every_n_steps,
                 summary_writer=None, printer=print):
        super().__init__()
        self.total_steps = total_steps
        self.global_batch_size = global_batch_size
        self.every_n_steps = max(1, every_n_steps)
        self.summary_writer = summary_writer
        self.printer = printer
        self._last_time = None
        self._last_step = None

    def on_train_begin(self, logs=None):
        self._last_time, self._last_step = time.time(), checkpoints.global_step(self.model.optimizer)

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        loss = float(logs.get("loss", 0.0))
        step = checkpoints.global_step(self.model.optimizer)
        if not math.isfinite(loss):
            self.model.stop_training = True
            raise TrainingDivergedError(
                f"loss became {loss} at step {step}; the last good checkpoint "
                "is kept. Lower --learning_rate or raise --warmup_epochs.")
        if step % self.every_n_steps and step != self.total_steps:
            return
        now = time.time()
        images_per_sec = ((step - self._last_step) * self.global_batch_size
                          / max(now - self._last_time, 1e-9))
        self._last_time, self._last_step = now, step
        shown = " | ".join(f"{k} {float(v):.4g}" for k, v in logs.items())
        self.printer(f"step {step}/{self.total_steps} | "
                     f"{images_per_sec:.1f} images/s | {shown}")
        if self.summary_writer is not None:
            with self.summary_writer.as_default(step=step):
                for name, value in logs.items():
                    tf.summary.scalar(f"train/{name}", float(value))
                tf.summary.scalar("train/images_per_sec", images_per_sec)


class StopAtStep(keras.callbacks.Callback):
    """Ends fit() exactly at `total_steps` even mid-epoch."""

    def __init__(self, total_steps):
        super().__init__()
        self.total_steps = total_steps

    def on_train_batch_end(self, batch, logs=None):
        if checkpoints.global_step(self.model.optimizer) >= self.total_steps:
            self.model.stop_training = True


class CheckpointSaver(keras.callbacks.Callback):
    """Saves a checkpoint at the end of each fit 'epoch' and of training.

    One fit epoch is one checkpoint interval (--checkpoint_steps). Never
    saves after a non-finite loss, so diverged weights cannot replace the
    last good checkpoint.
    """

    def __init__(self, manager, summary_writer=None):
        super().__init__()
        self.manager = manager
        self.summary_writer = summary_writer
        self._saved_step = None
        self._healthy = True

    def on_train_batch_end(self, batch, logs=None):
        self._healthy = math.isfinite(float((logs or {}).get("loss", 0.0)))

    def _save(self):
        step = checkpoints.global_step(self.model.optimizer)
        if self._healthy and step != self._saved_step:
            checkpoints.save(self.manager, step)
            self._saved_step = step
        if self.summary_writer is not None:
            self.summary_writer.flush()

    def on_epoch_end(self, epoch, logs=None):
        self._save()

    def on_train_end(self, logs=None):
        self._save()


class PeriodicKnnEval(keras.callbacks.Callback):
    """Every N steps, measures kNN accuracy of the representation.

    Args:
      every_n_steps: period in global steps.
      measure: function() -> accuracy float.
      summary_writer: a tf.summary writer or None.
      printer: function taking one line of text.
    """

    def __init__(self, every_n_steps, measure, summary_writer=None,
                 printer=print):
        super().__init__()
        self.every_n_steps = every_n_steps
        self.measure = measure
        self.summary_writer = summary_writer
        self.printer = printer

    def on_train_batch_end(self, batch, logs=None):
        step = checkpoints.global_step(self.model.optimizer)
        if step % self.every_n_steps:
            return
        accuracy = self.measure()
        self.printer(f"step {step} | knn_top_1_accuracy {accuracy:.4f}")
        if self.summary_writer is not None:
            with self.summary_writer.as_default(step=step):
                tf.summary.scalar("train/knn_top_1_accuracy", accuracy)
