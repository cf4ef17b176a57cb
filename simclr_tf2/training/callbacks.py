"""Keras callbacks of a training run: progress, summaries, checkpoints, NaN guard.

`CheckpointSaver` writes every checkpoint of a run, including the one a
SIGTERM / SIGINT asks for (see `preemption`).
"""

import math
import os
import shutil
import signal
import tempfile
import time

import keras
import tensorflow as tf

from simclr_tf2.errors import TrainingDivergedError
from simclr_tf2.rundir import checkpoints
from simclr_tf2.training import preemption


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
    """Writes every checkpoint of a training run: each interval, the end, a signal.

    One fit 'epoch' is one checkpoint interval (--checkpoint_steps); the
    last step is saved at the end of fit. Never saves after a non-finite
    loss, so diverged weights cannot replace the last good checkpoint.

    SIGTERM / SIGINT (recorded by `preemption`, polled after each step or
    `steps_per_execution` block): the step reached is saved (or found saved)
    and `preemption.Interrupted` raised with its path, which the entry point
    turns into one line and exit status 75.

    Several workers (MultiWorkerMirroredStrategy) must all save the same
    step and then stop together, or the survivors hang in their next
    all-reduce. There TensorFlow's own
    `tf.distribute.experimental.PreemptionCheckpointHandler` decides the
    step: the signalled worker publishes "save after the next step" through
    the coordination service and waits until every worker has acknowledged
    it; its save_fn is this callback's save. `preemption` forwards SIGINT to
    it as SIGTERM so Ctrl-C on one worker behaves like a preemption.

    Where TF's handler does not apply the signal is handled here, in this
    process:
    - one process (default, OneDevice or Mirrored strategy): no peer to
      agree with, and TF's handler would only watch SIGTERM and save one
      step later;
    - TPUStrategy: one Python process drives all TPU cores, so the local
      signal is the whole job's signal; TF's handler only reacts to TPU
      maintenance events on Google's internal TPU platform and does nothing
      on Cloud TPU VMs (failure_handling_util.PlatformDevice.GCE_TPU);
    - MultiWorkerMirroredStrategy on a Google Cloud CPU VM: TF's handler
      disables itself there (GCE_CPU); a SIGTERM then stops the signalled
      worker at its next step and the cluster's collectives fail, which
      ends the other workers with an error; they resume from the chief's
      last checkpoint.

    Signals reach this callback only when the process called
    `preemption.install()` (run.py does, first thing); a notebook or another
    program that trains with `Trainer` calls it to get the same behaviour.
    Put this callback after the NaN guard (`ProgressLogger`), so a diverged
    step raises before a signal could save it.

    Args:
      manager: the run's tf.train.CheckpointManager.
      strategy: the run's tf.distribute strategy (multi-worker: TF's
        handler), or None.
      summary_writer: flushed with every save and before stopping, or None.
    """

    def __init__(self, manager, strategy=None, summary_writer=None):
        super().__init__()
        self.manager = manager
        self.strategy = strategy
        self.summary_writer = summary_writer
        self.saved_step = None
        self.saved_path = None
        self._healthy = True
        self._handler = None
        self._handler_dir = None

    def on_train_begin(self, logs=None):
        if _is_multi_worker(self.strategy):
            self._start_tf_handler()

    def on_train_batch_end(self, batch, logs=None):
        self._healthy = math.isfinite(float((logs or {}).get("loss", 0.0)))
        if self._handler is not None:
            # Counts this block on every worker; saves and stops (via
            # _save / _stop) once the agreed block is reached.
            self._handler.save_checkpoint_if_preempted()
        elif preemption.received() is not None:
            self._stop(self._save())

    def on_epoch_end(self, epoch, logs=None):
        self._save()
        # A signal during that save: the step is on disk; stop without
        # training another step.
        if self._handler is None and preemption.received() is not None:
            self._stop(self._save())

    def on_train_end(self, logs=None):
        self._save()
        self._close_tf_handler()

    def _save(self):
        """Writes the checkpoint of the current step once; returns its path.

        Returns None (and writes nothing) after a non-finite loss.
        """
        step = checkpoints.global_step(self.model.optimizer)
        if self._healthy and step != self.saved_step:
            self.saved_path = checkpoints.save(self.manager, step)
            self.saved_step = step
        if self.summary_writer is not None:
            self.summary_writer.flush()
        return self.saved_path if step == self.saved_step else None

    def _stop(self, path):
        if self.summary_writer is not None:
            self.summary_writer.flush()
        self._close_tf_handler()
        # A worker stopped by a peer's signal reports it as SIGTERM.
        raise preemption.Interrupted(
            preemption.received() or signal.SIGTERM, saved=path,
            step=checkpoints.global_step(self.model.optimizer))

    def _start_tf_handler(self):
        """TF's PreemptionCheckpointHandler, agreeing on the step across workers.

        It is given an empty tf.train.Checkpoint in a private temporary
        directory (it restores and saves only its own run counter there), and
        save_fn / exit_fn that write the run's checkpoint through `_save` and
        stop fit. Its counter starts at 0 on every worker at every start,
        since all workers resume from the chief's model_dir at the same step.
        """
        self._handler_dir = tempfile.mkdtemp(prefix="simclr_tf2_preemption_")
        config = tf.distribute.experimental.TerminationConfig(
            exit_fn=self._exit_from_tf_handler,
            save_fn=self._save_from_tf_handler, grace_period=0)
        self._handler = tf.distribute.experimental.PreemptionCheckpointHandler(
            self.strategy.cluster_resolver, tf.train.Checkpoint(),
            checkpoint_dir=os.path.join(self._handler_dir, "counter"),
            termination_config=config)
        # TF installed its SIGTERM handler; ours stays in front of it so that
        # SIGINT counts too and a second signal ends the process at once.
        preemption.forward_to(signal.getsignal(signal.SIGTERM))

    def _save_from_tf_handler(self, *unused_args, **unused_kwargs):
        self._save()

    def _exit_from_tf_handler(self):
        self._stop(self.saved_path)

    def _close_tf_handler(self):
        if self._handler is None:
            return
        self._handler = None
        preemption.forward_to(None)
        shutil.rmtree(self._handler_dir, ignore_errors=True)


def _is_multi_worker(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and resolver is not None and bool(resolver.cluster_spec().jobs))


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
