"""Evaluation: top-1/top-5 of the classifier, kNN of h, checkpoint polling.

`Evaluator` works on an `experiment.Experiment`: it evaluates the current
weights (after training) or, for --mode=eval, every new checkpoint of the
model_dir until the final one. Results go to model_dir/result*.json
(`write_result`) and are printed as one line (`format_result`).
"""

import os

import tensorflow as tf

from simclr_tf2.rundir import checkpoints
from simclr_tf2 import errors
from simclr_tf2 import knn
from simclr_tf2 import rundir
from simclr_tf2.training import preemption
from simclr_tf2.data import pipeline


def evaluate_model(model, eval_dataset, global_step):
    """Runs one pass over `eval_dataset`.

    Args:
      model: a compiled SimCLRModel.
      eval_dataset: batches {"image": [b, S, S, 3], "label": [b]}.
      global_step: the step of the weights, recorded in the result.

    Returns:
      Dict with the original SimCLR keys: "eval/label_top_1_accuracy",
      "eval/label_top_5_accuracy", "eval/regularization_loss" and
      "global_step", all floats.
    """
    metrics = model.evaluate(eval_dataset, verbose=0, return_dict=True)
    result = {f"eval/{name}": float(value) for name, value in metrics.items()}
    result["global_step"] = float(global_step)
    return result


def write_result(model_dir, result, summary_writer=None):
    """Writes result.json and result_<step>.json (and eval summaries)."""
    step = int(result["global_step"])
    rundir.atomic_write_json(
        os.path.join(model_dir, rundir.result_json(step)), result)
    rundir.atomic_write_json(os.path.join(model_dir, rundir.RESULT_JSON), result)
    if summary_writer is not None:
        with summary_writer.as_default(step=step):
            for name, value in result.items():
                if name != "global_step":
                    tf.summary.scalar(name, value)
        summary_writer.flush()


def format_result(result):
    """One human-readable line of an evaluation result."""
    shown = ", ".join(f"{k.replace('eval/', '')}={v:.4f}"
                      for k, v in sorted(result.items()) if k != "global_step")
    return f"eval at step {int(result['global_step'])}: {shown}"


def resolve_eval_split(source, requested):
    """The requested eval split, or 'test' when 'validation' does not exist."""
    available = source.info.num_examples
    if requested in available or "[" in requested:
        return requested
    if requested == "validation" and "test" in available:
        return "test"
    raise errors.DataError(
        f"eval split {requested!r} not in dataset {source.info.name} "
        f"(splits: {', '.join(sorted(available))}); pass --eval_split.")


class Evaluator:
    """Evaluates an experiment's model on the eval split.

    Args:
      experiment: an `experiment.Experiment`.
    """

    def __init__(self, experiment):
        self.experiment = experiment
        self.config = experiment.config
        self.printer = experiment.printer

    def eval_dataset(self):
        """Batches {"image": [b, S, S, 3], "label": [b]}, one pass."""
        data, evaluation = self.config.data, self.config.evaluation
        split = resolve_eval_split(self.experiment.source, data.eval_split)
        return pipeline.build_eval_dataset(
            self.experiment.source, split, evaluation.eval_batch_size,
            data.image_size, cache=data.cache_dataset,
            num_steps=evaluation.eval_steps)

    def evaluate(self, dataset=None):
        """Evaluates the current weights; writes and returns the result."""
        exp, evaluation = self.experiment, self.config.evaluation
        if exp.num_classes == 0:
            raise errors.DataError(
                f"dataset {exp.source.info.name} has no labels, so it cannot "
                "be evaluated; evaluate on a labelled dataset or use --mode=train.")
        dataset = dataset or self.eval_dataset()
        result = evaluate_model(exp.model, dataset, exp.global_step)
        if evaluation.knn_eval:
            result["eval/knn_top_1_accuracy"] = self.knn_accuracy(dataset)
        name = evaluation.eval_name
        # [preemption] result_<step>.json and result.json are written as a
        # pair; a SIGTERM / SIGINT in between waits until both are there.
        with preemption.deferred():
            write_result(exp.write_dir, result,
                         exp.summary_writer(rundir.eval_summaries(name)))
        self.printer(format_result(result))
        return result

    def knn_accuracy(self, eval_dataset=None):
        """Weighted kNN top-1 of h: train split as bank, eval split as queries."""
        exp, data, evaluation = self.experiment, self.config.data, self.config.evaluation
        bank_split = pipeline.build_eval_dataset(
            exp.source, data.train_split, evaluation.eval_batch_size,
            data.image_size, cache=data.cache_dataset,
            max_examples=evaluation.knn_max_bank, seed=self.config.train.seed)
        self.printer(knn.bank_note(exp.source.num_examples(data.train_split),
                                   evaluation.knn_max_bank))
        bank, bank_labels = knn.extract_features(exp.model, bank_split)
        queries, query_labels = knn.extract_features(
            exp.model, eval_dataset or self.eval_dataset())
        return knn.knn_accuracy(bank, bank_labels, queries, query_labels,
                                exp.num_classes, k=evaluation.knn_k,
                                temperature=evaluation.knn_temperature)

    def evaluate_checkpoints(self, on_result=None):
        """--mode=eval: evaluates every new checkpoint until the final step.

        Stops after the checkpoint of the final step: `total_steps` of these
        flags, or the step a finished training run recorded in
        model_dir/training_done.json (so evaluating a finished run with other
        length flags does not wait for checkpoints that will never come).

        Args:
          on_result: optional function(result) called after each evaluation.

        Returns:
          The last result.

        A damaged checkpoint (truncated by a full disk, say) is skipped with a
        warning, and the newest readable one before it is evaluated instead.

        Raises:
          CheckpointMismatchError: no checkpoint within --eval_timeout_secs.
          DamagedCheckpointError: every checkpoint listed is damaged.
        """
        exp = self.experiment
        dataset, result = self.eval_dataset(), None
        model_dir = self.config.train.model_dir
        timeout = self.config.evaluation.eval_timeout_secs
        for path in tf.train.checkpoints_iterator(model_dir, timeout=timeout):
            restore = checkpoints.weights_checkpoint(
                exp.model, global_step=exp.optimizer.iterations)
            # A damaged newest checkpoint: the newest readable one before it
            # (with a warning naming it), as a resumed training does.
            checkpoints.restore_latest(restore, model_dir, newest=path)
            result = self.evaluate(dataset)
            if on_result:
                on_result(result)
            final = rundir.recorded_final_step(model_dir)
            step = max(exp.global_step, rundir.checkpoint_step(path))
            if step >= min(exp.total_steps, final or exp.total_steps):
                break
        if result is None:
            raise errors.CheckpointMismatchError(
                f"no checkpoint appeared in {model_dir} within {timeout} s; "
                "train first (--mode=train or train_then_eval) or raise "
                "--eval_timeout_secs.")
        return result
