"""The training application: build data, model and optimizer; fit; evaluate.

`Run` holds what train and eval share (source, strategy, model, checkpoint
manager, summary writers); `train` and `evaluate_checkpoints` drive it.
The configuration is any object with the fields of flags/config.py's
RunConfig (data, model, optim, train sections); nothing here reads flags.
"""

import json
import math
import os

import keras
import tensorflow as tf

from simclr_tf2 import callbacks as callbacks_lib
from simclr_tf2 import checkpoints
from simclr_tf2 import distribute
from simclr_tf2 import errors
from simclr_tf2 import evaluate
from simclr_tf2 import knn
from simclr_tf2 import objectives
from simclr_tf2.data import pipeline
from simclr_tf2.data import registry
from simclr_tf2.data import subsets
from simclr_tf2.models import build
from simclr_tf2 import optim
from simclr_tf2.original import hooks as original_hooks  # [original]


TRAINING_DONE = "training_done.json"


def _recorded_final_step(model_dir):
    """The final step a finished training run recorded, or None."""
    path = os.path.join(model_dir, TRAINING_DONE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return int(json.load(f)["final_step"])


def resolve_eval_split(source, requested):
    """The requested eval split, or 'test' when 'validation' does not exist."""
    available = source.info.num_examples
    if requested in available or "[" in requested:
        return requested
    if requested == "validation" and "test" in available:
        return "test"
    raise registry.DataError(
        f"eval split {requested!r} not in dataset {source.info.name} "
        f"(splits: {', '.join(sorted(available))}); pass --eval_split.")


class Run:
    """One configured run: data source, strategy, model, checkpoints.

    Args:
      config: RunConfig-like object.
      strategy: the tf.distribute strategy to build under.
      printer: function taking one line of progress text.
      teacher: callable images -> logits for train_mode=distill.
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
                          os.path.join(train.model_dir, f".worker_{task_id}"))
        tf.io.gfile.makedirs(self.write_dir)
        self.source = registry.open_source(data.dataset, data.data_dir)
        self.num_classes = (teacher.num_classes if teacher is not None
                            else self.source.info.num_classes)
        self.example_ids = self._label_subset()
        self.num_train_examples = (
            len(self.example_ids) if self.example_ids is not None
            else self.source.num_examples(data.train_split))
        batch = train.train_batch_size
        if batch % strategy.num_replicas_in_sync:
            raise errors.ConfigError(
                f"--train_batch_size={batch} is not divisible by the "
                f"{strategy.num_replicas_in_sync} replicas; use a multiple of "
                f"{strategy.num_replicas_in_sync}.")
        self.warmup_steps, self.total_steps = optim.warmup_and_total_steps(
            self.num_train_examples, batch, config.optim.warmup_epochs,
            train.train_epochs, train.train_steps)
        self.checkpoint_steps = train.checkpoint_steps or max(1, round(
            train.checkpoint_epochs * self.num_train_examples / batch))
        with strategy.scope():
            self.model, self.optimizer = self._build(teacher)
        self.checkpoint, self.manager = checkpoints.make_manager(
            self.model, self.optimizer, self.write_dir,
            train.keep_checkpoint_max)

    def _label_subset(self):
        """Example ids of the labelled subset to fine-tune on, or None.

        Chosen once (class-balanced, --seed) and written to
        model_dir/label_subset.txt; a resumed run reads that file back.
        """
        data, train = self.config.data, self.config.train
        if train.train_mode != "finetune" or (
                data.label_fraction >= 1.0 and not data.label_subset_file):
            return None
        path = os.path.join(self.write_dir, "label_subset.txt")
        if data.label_subset_file:
            ids = subsets.read_subset_file(data.label_subset_file)
        elif tf.io.gfile.exists(path):
            ids = subsets.read_subset_file(path)
        else:
            labels, all_ids = subsets.labels_and_ids(self.source, data.train_split)
            ids = subsets.balanced_subset(labels, all_ids, data.label_fraction,
                                          train.seed)
        subsets.write_subset_file(path, ids)
        self.printer(f"label subset: {len(ids)} examples of {data.train_split} "
                     f"(ids in {path})")
        return ids

    def _build(self, teacher):
        cfg = self.config
        keras.mixed_precision.set_global_policy(cfg.train.precision)
        keras.utils.set_random_seed(cfg.train.seed)
        model = build.build_model(
            cfg.model, num_classes=self.num_classes,
            train_mode=cfg.train.train_mode, image_size=cfg.data.image_size)
        objective = objectives.Objective(
            cfg.train.train_mode, temperature=cfg.train.temperature,
            hidden_norm=cfg.train.hidden_norm,
            weight_decay=optim.weight_decay_policy(cfg.optim.optimizer,
                                                   cfg.optim.weight_decay),
            teacher=teacher, distill_temperature=cfg.train.distill_temperature,
            distill_label_weight=cfg.train.distill_label_weight)
        schedule = optim.build_learning_rate_schedule(
            cfg.optim.learning_rate, cfg.optim.learning_rate_scaling,
            cfg.train.train_batch_size, self.num_train_examples,
            cfg.optim.warmup_epochs, cfg.train.train_epochs,
            cfg.train.train_steps)
        optimizer = optim.build_optimizer(
            cfg.optim.optimizer, schedule, momentum=cfg.optim.momentum,
            weight_decay=cfg.optim.weight_decay, nesterov=cfg.optim.nesterov)
        model.compile(optimizer=optimizer, objective=objective,
                      micro_batch_size=cfg.train.micro_batch_size,
                      jit_compile=cfg.train.jit_compile,
                      steps_per_execution=cfg.train.steps_per_execution)
        model.optimizer.build(model.trainable_variables)
        return model, model.optimizer

    @property
    def global_step(self):
        return int(self.optimizer.iterations.numpy())

    def summary_writer(self, name):
        return tf.summary.create_file_writer(
            os.path.join(self.write_dir, name))

    # ------------------------------------------------------------- training
    def train_dataset(self, seed_offset=0):
        data = self.config.data
        return pipeline.build_train_dataset(
            self.source, data.train_split, self.config.train.train_batch_size,
            self.config.train.train_mode, data.image_size,
            data.color_jitter_strength, data.use_blur,
            seed=self.config.train.seed, cache=data.cache_dataset,
            example_ids=self.example_ids, start_step=seed_offset)

    def restore_or_initialise(self):
        """Resumes the run, or loads --checkpoint into a fresh one."""
        restored = checkpoints.restore_latest(self.checkpoint,
                                              self.config.train.model_dir)
        if restored:
            self.printer(f"resumed from {restored} (step {self.global_step})")
        elif self.config.train.checkpoint and original_hooks.is_original(
                self.config.train.checkpoint):
            # [original] a model of the original SimCLR TF2 code, mapped by structure.
            path, head = original_hooks.init_from_original(
                self.model, self.config.train.checkpoint,
                load_supervised_head=not self.config.model.zero_init_logits_layer)
            self.printer(f"initialised encoder, projection head{' and classifier' if head else ''}"
                         f" from the original SimCLR checkpoint {path}")
        elif self.config.train.checkpoint:
            path = checkpoints.init_from_checkpoint(
                self.model, self.config.train.checkpoint)
            # The classifier is not loaded: it keeps its fresh (or zero,
            # --zero_init_logits_layer) initialisation.
            self.printer(f"initialised encoder and projection head from {path}")

    def train(self):
        """Trains to `total_steps`, checkpointing every `checkpoint_steps`."""
        self.restore_or_initialise()
        start = self.global_step
        if start >= self.total_steps:
            self.printer(f"already at step {start} >= {self.total_steps}; nothing to train.")
            self.record_training_done()
            return
        done_marker = os.path.join(self.config.train.model_dir, TRAINING_DONE)
        if self.is_chief and tf.io.gfile.exists(done_marker):
            tf.io.gfile.remove(done_marker)  # This run goes further.
        writer = self.summary_writer("train")
        dataset = self.train_dataset(seed_offset=start)
        self._write_example_views(dataset, writer)
        epochs_left = math.ceil((self.total_steps - start) / self.checkpoint_steps)
        initial_epoch = start // self.checkpoint_steps
        self.printer(
            f"training steps {start}..{self.total_steps} of "
            f"{self.config.train.train_batch_size} examples "
            f"({self.num_train_examples} in the split), "
            f"{self.strategy.num_replicas_in_sync} replica(s), "
            f"checkpoint every {self.checkpoint_steps} steps")
        self.model.fit(
            dataset, initial_epoch=initial_epoch,
            epochs=initial_epoch + epochs_left,
            steps_per_epoch=self.checkpoint_steps, verbose=0,
            callbacks=self._callbacks(writer))
        self.record_training_done()

    def _callbacks(self, writer):
        train = self.config.train
        callbacks = [
            callbacks_lib.CheckpointSaver(self.manager, writer),
            callbacks_lib.StopAtStep(self.total_steps),
            callbacks_lib.ProgressLogger(
                self.total_steps, train.train_batch_size,
                train.log_every_steps, writer, self.printer),
        ]
        if train.knn_eval_every_steps and self.num_classes:
            callbacks.append(callbacks_lib.PeriodicKnnEval(
                train.knn_eval_every_steps, self.knn_accuracy, writer,
                self.printer))
        return callbacks

    def _write_example_views(self, dataset, writer, count=4):
        """A few augmented training inputs as TensorBoard images."""
        batch = next(iter(dataset.take(1)))["image"][:count]
        views = tf.split(batch, batch.shape[-1] // 3, axis=-1)
        with writer.as_default(step=self.global_step):
            for i, view in enumerate(views):
                tf.summary.image(f"augmented_view_{i + 1}", view, max_outputs=count)

    # ----------------------------------------------------------- evaluation
    def eval_dataset(self):
        data, train = self.config.data, self.config.train
        split = resolve_eval_split(self.source, data.eval_split)
        return pipeline.build_eval_dataset(
            self.source, split, train.eval_batch_size, data.image_size,
            cache=data.cache_dataset, num_steps=train.eval_steps)

    def evaluate(self, dataset=None):
        """Evaluates the current weights; writes and returns the result."""
        if self.num_classes == 0:
            raise registry.DataError(
                f"dataset {self.source.info.name} has no labels, so it cannot "
                "be evaluated; evaluate on a labelled dataset or use --mode=train.")
        dataset = dataset or self.eval_dataset()
        result = evaluate.evaluate_model(self.model, dataset, self.global_step)
        if self.config.train.knn_eval:
            result["eval/knn_top_1_accuracy"] = self.knn_accuracy(dataset)
        name = self.config.train.eval_name
        evaluate.write_result(self.write_dir, result,
                              self.summary_writer(f"eval_{name}" if name else "eval"))
        self.printer(evaluate.format_result(result))
        return result

    def knn_accuracy(self, eval_dataset=None):
        """Weighted kNN top-1 of h: train split as bank, eval split as queries."""
        data, train = self.config.data, self.config.train
        bank_split = pipeline.build_eval_dataset(
            self.source, data.train_split, train.eval_batch_size,
            data.image_size, cache=data.cache_dataset,
            max_examples=train.knn_max_bank, seed=train.seed)
        self.printer(knn.bank_note(self.source.num_examples(data.train_split),
                                   train.knn_max_bank))
        bank, bank_labels = knn.extract_features(self.model, bank_split)
        queries, query_labels = knn.extract_features(
            self.model, eval_dataset or self.eval_dataset())
        return knn.knn_accuracy(bank, bank_labels, queries, query_labels,
                                self.num_classes, k=train.knn_k,
                                temperature=train.knn_temperature)

    def evaluate_checkpoints(self, on_result=None):
        """--mode=eval: evaluates every new checkpoint until the final step.

        Args:
          on_result: optional function(result) called after each evaluation.

        Stops after the checkpoint of the final step: `total_steps` of these
        flags, or the step a finished training run recorded in
        model_dir/training_done.json (so evaluating a finished run with other
        length flags does not wait for checkpoints that will never come).

        Args:
          on_result: optional function(result) called after each evaluation.

        Returns:
          The last result.

        Raises:
          CheckpointMismatchError: no checkpoint within --eval_timeout_secs.
        """
        dataset, result = self.eval_dataset(), None
        model_dir = self.config.train.model_dir
        for path in tf.train.checkpoints_iterator(
                model_dir, timeout=self.config.train.eval_timeout_secs):
            restore = tf.train.Checkpoint(
                model=checkpoints.model_trackable(self.model),
                global_step=self.optimizer.iterations)
            checkpoints.restore(restore, path, "model")
            result = self.evaluate(dataset)
            if on_result:
                on_result(result)
            final = _recorded_final_step(model_dir)
            if self.global_step >= min(self.total_steps, final or self.total_steps):
                break
        if result is None:
            raise errors.CheckpointMismatchError(
                f"no checkpoint appeared in {model_dir} within "
                f"{self.config.train.eval_timeout_secs} s; train first "
                "(--mode=train or train_then_eval) or raise --eval_timeout_secs.")
        return result

    def record_training_done(self):
        """Notes the final step in model_dir/training_done.json (chief only)."""
        if self.is_chief:
            evaluate.atomic_write_json(
                os.path.join(self.config.train.model_dir, TRAINING_DONE),
                {"final_step": self.global_step})
