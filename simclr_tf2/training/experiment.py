"""What training and evaluation share: source, step plan, model, checkpoints.

`Experiment` is built once per run.py invocation from a `config.RunConfig`;
`trainer.Trainer` and `evaluator.Evaluator` work on it. Nothing here reads
flags.
"""

import os

import keras
import tensorflow as tf

from simclr_tf2.rundir import checkpoints
from simclr_tf2.training import distribute
from simclr_tf2 import errors
from simclr_tf2 import optim
from simclr_tf2 import rundir
from simclr_tf2 import tasks
from simclr_tf2.data import registry
from simclr_tf2.data import subsets
from simclr_tf2.models import build

class Experiment:
    """One configured run: data source, step plan, compiled model, checkpoints.

    Args:
      config: a `config.RunConfig`.
      strategy: the tf.distribute strategy to build under.
      printer: function taking one line of progress text.
      teacher: callable images -> logits for train_mode=distill.

    Attributes:
      task: the run's `tasks.Task` object (compiled into the model).
      source, num_classes, example_ids (fine-tuning label subset or None),
      labelled_ids (distillation: the ids whose labels training may read,
      or None for all),
      num_train_examples, warmup_steps, total_steps, checkpoint_steps,
      model, optimizer, checkpoint, manager, is_chief, write_dir (model_dir,
      or a private directory on non-chief workers).
    """

    def __init__(self, config, strategy, printer=print, teacher=None):
        self.config = config
        self.strategy = strategy
        self.printer = printer
        data, train = config.data, config.train
        # Non-chief workers of a multi-worker run write their (identical)
        # checkpoints and summaries to a private directory.
        self.is_chief, task_id = distribute.task_info(strategy)
        self.write_dir = (train.model_dir if self.is_chief else
                          rundir.worker_dir(train.model_dir, task_id))
        tf.io.gfile.makedirs(self.write_dir)
        self.source = registry.open_source(data.dataset, data.data_dir)
        self.num_classes = (teacher.num_classes if teacher is not None
                            else self.source.info.num_classes)
        task_type = tasks.get(train.train_mode)
        task_type.check_data(config, self.num_classes, self.source.info.name)
        self.task = task_type.from_config(config, teacher)
        subset = self._label_subset()
        # Fine-tuning trains on the subset; distillation trains on every
        # example and reads only the subset's labels.
        self.example_ids = subset if self.task.uses_label_subset else None
        self.labelled_ids = (subset if self.task.hides_labels_outside_subset
                             else None)
        self.num_train_examples = (
            len(self.example_ids) if self.example_ids is not None
            else self.source.num_examples(data.train_split))
        self._plan_steps()
        with strategy.scope():
            self.model, self.optimizer = self._build()
            # The task's own state (the pretraining memory), checkpointed
            # next to the model.
            self.task.build_state(self.model, (data.image_size,) * 2 + (3,))
        self.checkpoint, self.manager = checkpoints.make_manager(
            self.model, self.optimizer, self.write_dir,
            train.keep_checkpoint_max, **self.task.checkpoint_children())

    def _plan_steps(self):
        """warmup_steps, total_steps and checkpoint_steps of the run."""
        train, replicas = self.config.train, self.strategy.num_replicas_in_sync
        batch = train.train_batch_size
        if batch % replicas:
            raise errors.ConfigError(
                f"--train_batch_size={batch} is not divisible by the "
                f"{replicas} replicas; use a multiple of {replicas}.")
        self.warmup_steps, self.total_steps = optim.warmup_and_total_steps(
            self.num_train_examples, batch, self.config.optim.warmup_epochs,
            train.train_epochs, train.train_steps)
        per_step = optim.scaling_batch_size(batch, self.num_train_examples)
        self.checkpoint_steps = train.checkpoint_steps or max(1, round(
            train.checkpoint_epochs * self.num_train_examples / per_step))
        per_call = self.config.runtime.steps_per_execution
        if per_call > 1 and (self.total_steps % per_call
                             or self.checkpoint_steps % per_call):
            # Keras ends a fit epoch only between executions, so a run or
            # checkpoint interval that is not a multiple would overshoot.
            raise errors.ConfigError(
                f"--steps_per_execution={per_call} must divide the run's "
                f"{self.total_steps} steps and its checkpoint interval of "
                f"{self.checkpoint_steps} steps; set --train_steps and "
                f"--checkpoint_steps to multiples of {per_call}, or use "
                "--steps_per_execution=1.")

    def _label_subset(self):
        """Example ids of the labelled subset (fine-tuning trains on them;
        distillation reads only their labels), or None.

        Chosen once (class-balanced, --seed) and written to
        model_dir/label_subset.txt; a resumed run reads that file back.
        """
        data, train = self.config.data, self.config.train
        reads_subset = (self.task.uses_label_subset
                        or self.task.hides_labels_outside_subset)
        if not reads_subset or (
                data.label_fraction >= 1.0 and not data.label_subset_file):
            return None
        path = os.path.join(self.write_dir, rundir.LABEL_SUBSET)
        if data.label_subset_file:
            ids = subsets.read_subset_file(data.label_subset_file)
        elif tf.io.gfile.exists(path):
            ids = subsets.read_subset_file(path)
        else:
            labels, all_ids = subsets.labels_and_ids(self.source, data.train_split)
            ids = subsets.balanced_subset(labels, all_ids, data.label_fraction,
                                          train.seed)
        subsets.write_subset_file(path, ids)
        hidden = (", every other label hidden"
                  if self.task.hides_labels_outside_subset else "")
        self.printer(f"label subset: {len(ids)} examples of {data.train_split} "
                     f"(ids in {path}{hidden})")
        return ids

    def _build(self):
        """The compiled model (task, optimizer) and its optimizer."""
        cfg = self.config
        keras.mixed_precision.set_global_policy(cfg.runtime.precision)
        keras.utils.set_random_seed(cfg.train.seed)
        model = build.build_model(
            cfg.model, num_classes=self.num_classes,
            task=self.task, image_size=cfg.data.image_size)
        schedule = optim.build_learning_rate_schedule(
            cfg.optim.learning_rate, cfg.optim.learning_rate_scaling,
            cfg.train.train_batch_size, self.num_train_examples,
            cfg.optim.warmup_epochs, cfg.train.train_epochs,
            cfg.train.train_steps)
        optimizer = optim.build_optimizer(
            cfg.optim.optimizer, schedule, momentum=cfg.optim.momentum,
            weight_decay=cfg.optim.weight_decay, nesterov=cfg.optim.nesterov)
        model.compile(optimizer=optimizer,
                      task=self.task,
                      micro_batch_size=cfg.train.micro_batch_size,
                      jit_compile=cfg.runtime.jit_compile,
                      steps_per_execution=cfg.runtime.steps_per_execution)
        model.optimizer.build(model.trainable_variables)
        return model, model.optimizer

    @property
    def global_step(self):
        """The run's current step (what the checkpoint saves as global_step)."""
        return checkpoints.global_step(self.optimizer)

    def summary_writer(self, name):
        """A TensorBoard writer for write_dir/<name>."""
        return tf.summary.create_file_writer(
            os.path.join(self.write_dir, name))
