"""Training: resume or initialise, fit to the final step, checkpoint, log.

`Trainer` drives `model.fit` on an `experiment.Experiment`; what one step
computes is the model's `train_step` with the experiment's `tasks.Task`.
"""

import math

import tensorflow as tf

from simclr_tf2.training import callbacks as callbacks_lib
from simclr_tf2.rundir import checkpoints
from simclr_tf2 import rundir
from simclr_tf2.training import preemption
from simclr_tf2.data import pipeline
from simclr_tf2.original import hooks as original_hooks  # [original]


class Trainer:
    """Trains an experiment's model to `total_steps`.

    Args:
      experiment: an `experiment.Experiment`.
      knn_accuracy: optional function () -> float, the periodic kNN monitor
        (--knn_eval_every_steps), e.g. `Evaluator.knn_accuracy`.
    """

    def __init__(self, experiment, knn_accuracy=None):
        self.experiment = experiment
        self.config = experiment.config
        self.knn_accuracy = knn_accuracy
        self.printer = experiment.printer

    def train_dataset(self, seed_offset=0):
        """Batches {"image": [B, S, S, 6 or 3], "label": [B], "id": [B]}
        (and "teacher_image" [B, S, S, 3] when a distillation teacher sees
        whole images), repeated."""
        exp, data = self.experiment, self.config.data
        return pipeline.build_train_dataset(
            exp.source, data.train_split, self.config.train.train_batch_size,
            exp.task.train_transform_for(data), seed=self.config.train.seed,
            cache=data.cache_dataset, example_ids=exp.example_ids, labelled_ids=exp.labelled_ids,
            start_step=seed_offset)

    def restore_or_initialise(self):
        """Resumes the run, or loads --checkpoint into a fresh one."""
        exp, train = self.experiment, self.config.train
        restored = checkpoints.restore_latest(exp.checkpoint, train.model_dir)
        if restored:
            self.printer(f"resumed from {restored} (step {exp.global_step})")
        elif train.checkpoint and original_hooks.is_original(train.checkpoint):
            # [original] a model of the original SimCLR TF2 code, mapped by structure.
            path, head = original_hooks.init_from_original(
                exp.model, train.checkpoint,
                load_supervised_head=not self.config.model.zero_init_logits_layer)
            self.printer(f"initialised encoder, projection head{' and classifier' if head else ''}"
                         f" from the original SimCLR checkpoint {path}")
        elif train.checkpoint:
            path = checkpoints.init_from_checkpoint(exp.model, train.checkpoint)
            # The classifier is not loaded: it keeps its fresh (or zero,
            # --zero_init_logits_layer) initialisation.
            self.printer(f"initialised encoder and projection head from {path}")
        if not restored and train.checkpoint:
            # State that follows the weights (the pretraining memory's EMA
            # copy) starts from the loaded ones, not the random init.
            with exp.strategy.scope():
                exp.task.reset_state(exp.model)

    def train(self):
        """Trains to `total_steps`, checkpointing every `checkpoint_steps`."""
        exp = self.experiment
        self.restore_or_initialise()
        start = exp.global_step
        if start >= exp.total_steps:
            self.printer(f"already at step {start} >= {exp.total_steps}; nothing to train.")
            self.record_training_done()
            return
        if exp.is_chief:
            rundir.clear_final_step(self.config.train.model_dir)  # This run goes further.
        writer = exp.summary_writer(rundir.TRAIN_SUMMARIES)
        dataset = self.train_dataset(seed_offset=start)
        self._write_example_views(dataset, writer)
        epochs_left = math.ceil((exp.total_steps - start) / exp.checkpoint_steps)
        initial_epoch = start // exp.checkpoint_steps
        self.printer(
            f"training steps {start}..{exp.total_steps} of "
            f"{self.config.train.train_batch_size} examples "
            f"({exp.num_train_examples} in the split), "
            f"{exp.strategy.num_replicas_in_sync} replica(s), "
            f"checkpoint every {exp.checkpoint_steps} steps")
        # SIGTERM / SIGINT: the CheckpointSaver saves the step reached.
        with preemption.deferred():
            exp.model.fit(
                dataset, initial_epoch=initial_epoch,
                epochs=initial_epoch + epochs_left,
                steps_per_epoch=exp.checkpoint_steps, verbose=0,
                callbacks=self._callbacks(writer))
            self.record_training_done()
            if preemption.received() is not None:  # during the final save
                raise preemption.Interrupted(
                    preemption.received(), saved=exp.manager.latest_checkpoint,
                    step=exp.global_step)

    def _callbacks(self, writer):
        exp, train = self.experiment, self.config.train
        callbacks = [
            callbacks_lib.StopAtStep(exp.total_steps),
            callbacks_lib.ProgressLogger(
                exp.total_steps, train.train_batch_size,
                train.log_every_steps, writer, self.printer),
            # After the NaN guard, so a diverged step is never saved.
            callbacks_lib.CheckpointSaver(exp.manager, exp.strategy, writer),
        ]
        if train.knn_eval_every_steps and exp.num_classes and self.knn_accuracy:
            callbacks.append(callbacks_lib.PeriodicKnnEval(
                train.knn_eval_every_steps, self.knn_accuracy, writer,
                self.printer))
        return callbacks

    def _write_example_views(self, dataset, writer, count=4):
        """A few augmented training inputs as TensorBoard images."""
        batch = next(iter(dataset.take(1)))["image"][:count]
        views = self.experiment.task.views(batch)
        with writer.as_default(step=self.experiment.global_step):
            for i, view in enumerate(views):
                tf.summary.image(f"augmented_view_{i + 1}", view, max_outputs=count)

    def record_training_done(self):
        """Notes the final step in model_dir/training_done.json (chief only)."""
        if self.experiment.is_chief:
            rundir.record_final_step(self.config.train.model_dir,
                                     self.experiment.global_step)
