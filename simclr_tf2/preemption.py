"""Preemption-safe training: on SIGTERM / SIGINT save the step reached and stop.

`SaveOnSignal` is a Keras callback for `model.fit`. After each step (or
`steps_per_execution` block) it checks whether a signal arrived
(`signals.received()`, recorded while training runs inside
`signals.deferred()`); if so it writes a checkpoint of that step through
`checkpoints.save` (the usual atomic CheckpointManager write) and raises
`signals.Interrupted` carrying the saved path, which the entry point turns
into one line and exit status 75.

Several workers (MultiWorkerMirroredStrategy) must all save the same step
and then stop together, or the survivors hang in their next all-reduce.
There TensorFlow's own `tf.distribute.experimental.PreemptionCheckpointHandler`
decides the step: the signalled worker publishes "save after the next
step" through the coordination service and waits until every worker has
acknowledged it. Our signal handler forwards SIGINT to it as SIGTERM so
Ctrl-C on one worker behaves like a preemption.

Where TF's handler does not apply we use the single-process path above:
- one process (default, OneDevice or Mirrored strategy): no peer to agree
  with, and TF's handler would only watch SIGTERM and save one step later;
- TPUStrategy: one Python process drives all TPU cores, so the local
  signal is the whole job's signal; TF's handler only reacts to TPU
  maintenance events on Google's internal TPU platform and returns without
  doing anything on Cloud TPU VMs (failure_handling_util.PlatformDevice.GCE_TPU);
- MultiWorkerMirroredStrategy on a Google Cloud CPU VM: TF's handler
  disables itself there (GCE_CPU); a SIGTERM then stops the signalled
  worker at its next step and the cluster's collectives fail, which ends
  the other workers with an error; they resume from the chief's last
  checkpoint.

The signals reach this callback only when the process called
`signals.install()` (run.py does, first thing); a notebook or another
program that trains with `Trainer` calls it to get the same behaviour.
"""

import os
import shutil
import signal
import tempfile

import keras
import tensorflow as tf

from simclr_tf2.rundir import checkpoints
from simclr_tf2 import rundir
from simclr_tf2 import signals


def _is_multi_worker(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and resolver is not None and bool(resolver.cluster_spec().jobs))


class SaveOnSignal(keras.callbacks.Callback):
    """Saves a checkpoint of the step reached when SIGTERM / SIGINT arrives.

    Put it after the NaN guard (`callbacks.ProgressLogger`) so a diverged
    step raises before it could be saved.

    Args:
      manager: the run's tf.train.CheckpointManager.
      strategy: the run's tf.distribute strategy (multi-worker: TF's handler).
      summary_writer: flushed before stopping, or None.
    """

    def __init__(self, manager, strategy, summary_writer=None):
        super().__init__()
        self.manager = manager
        self.strategy = strategy
        self.summary_writer = summary_writer
        self._handler = None
        self._handler_dir = None
        self._saved_by_tf_handler = None

    def on_train_begin(self, logs=None):
        if _is_multi_worker(self.strategy):
            self._start_tf_handler()

    def on_train_batch_end(self, batch, logs=None):
        if self._handler is not None:
            # Counts this block on every worker; saves and stops (via
            # _save / _stop) once the agreed block is reached.
            self._handler.save_checkpoint_if_preempted()
        elif signals.received() is not None:
            self._stop(self._save())

    def on_epoch_end(self, epoch, logs=None):
        # A signal during the periodic save (CheckpointSaver, just before):
        # that step is on disk already; stop without training another step.
        if self._handler is None and signals.received() is not None:
            self._stop(self._save())

    def on_train_end(self, logs=None):
        self._close_tf_handler()

    def _save(self):
        """Writes (or finds) the checkpoint of the current step; returns its path."""
        step = checkpoints.global_step(self.model.optimizer)
        path = os.path.join(self.manager.directory, rundir.checkpoint_name(step))
        if path not in self.manager.checkpoints:
            path = checkpoints.save(self.manager, step)
        return path

    def _stop(self, path):
        if self.summary_writer is not None:
            self.summary_writer.flush()
        self._close_tf_handler()
        # A worker stopped by a peer's signal reports it as SIGTERM.
        raise signals.Interrupted(signals.received() or signal.SIGTERM,
                                  saved=path, step=checkpoints.global_step(self.model.optimizer))

    def _start_tf_handler(self):
        """TF's PreemptionCheckpointHandler, agreeing on the step across workers.

        It is given an empty tf.train.Checkpoint in a private temporary
        directory (it restores and saves only its own run counter there), and
        save_fn / exit_fn that write the run's checkpoint through
        `checkpoints.save` and stop fit. Its counter starts at 0 on every
        worker at every start, since all workers resume from the chief's
        model_dir at the same step.
        """
        self._handler_dir = tempfile.mkdtemp(prefix="simclr_tf2_preemption_")
        config = tf.distribute.experimental.TerminationConfig(
            exit_fn=self._exit_from_tf_handler,
            save_fn=self._save_from_tf_handler, grace_period=0)
        self._handler = tf.distribute.experimental.PreemptionCheckpointHandler(
            self.strategy.cluster_resolver, tf.train.Checkpoint(),
            checkpoint_dir=os.path.join(self._handler_dir, "ckpt"),
            termination_config=config)
        # TF installed its SIGTERM handler; ours stays in front of it so that
        # SIGINT counts too and a second signal ends the process at once.
        signals.forward_to(signal.getsignal(signal.SIGTERM))

    def _save_from_tf_handler(self, *unused_args, **unused_kwargs):
        self._saved_by_tf_handler = self._save()

    def _exit_from_tf_handler(self):
        self._stop(self._saved_by_tf_handler)

    def _close_tf_handler(self):
        if self._handler is None:
            return
        self._handler = None
        signals.forward_to(None)
        shutil.rmtree(self._handler_dir, ignore_errors=True)
