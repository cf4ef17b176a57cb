"""Library side of run.py: one --mode (train, eval, train_then_eval), end to end.

`run` makes the strategy, refuses to resume a model_dir trained with
other flags (`rundir.same_run`), records the configuration in model_dir
(flags.json, flags_origin.json), loads a distillation teacher, then trains
(`trainer.Trainer`) and/or evaluates (`evaluator.Evaluator`) one
`experiment.Experiment`, and hands each evaluated model to an exporter.
The exporter is passed in (run.py passes
`simclr_tf2.export.saved_model.export_to_model_dir`), so training does not
depend on the exporter.
"""

import shutil

from simclr_tf2.training import distribute
from simclr_tf2.rundir import run_lock, same_run
from simclr_tf2 import rundir
from simclr_tf2 import tasks
from simclr_tf2.training.evaluator import Evaluator
from simclr_tf2.training.experiment import Experiment
from simclr_tf2.training.teacher import load_teacher
from simclr_tf2.training.trainer import Trainer


def _make_strategy(runtime):
    """The tf.distribute strategy of a `config.RuntimeConfig`."""
    return distribute.make_strategy(
        use_tpu=runtime.use_tpu, tpu_name=runtime.tpu_name,
        tpu_zone=runtime.tpu_zone, gcp_project=runtime.gcp_project,
        master=runtime.master,
        num_logical_cpu_devices=runtime.num_logical_cpu_devices)


def run(config, origin, printer=print, exporter=None):
    """Runs the mode asked for in `config.train.mode`.

    Args:
      config: a `config.RunConfig`.
      origin: flag name -> where its value came from (flags_origin.json).
      printer: function taking a line of progress text.
      exporter: function (model, config, global_step, keep) -> export path,
        called on the chief after each evaluation when
        config.export.export_after_eval; None: no export.

    Returns:
      The last evaluation result dict, or None for --mode=train.
    """
    strategy = _make_strategy(config.runtime)
    is_chief = distribute.task_info(strategy)[0]
    # One training per model_dir; --mode=eval only reads checkpoints and may
    # watch a directory being trained.
    with run_lock.hold(config.train.model_dir,
                       enabled=is_chief and config.train.mode != "eval"):
        return _run(config, origin, printer, exporter, strategy, is_chief)


def _run(config, origin, printer, exporter, strategy, is_chief):
    """`run` after the strategy is made and the model_dir lock is held."""
    model_dir = config.train.model_dir
    if config.train.mode != "eval":  # every worker, so none waits for a failed chief
        same_run.check_resumable(model_dir, config.to_flat())
    # An evaluator watching a training must not overwrite the trainer's record.
    if is_chief and (config.train.mode != "eval" or not rundir.has_flags_json(model_dir)):
        rundir.write_flags_json(model_dir, config.to_flat(), origin)
    teacher = None
    if tasks.get(config.train.train_mode).needs_teacher:
        teacher = load_teacher(config.distillation.teacher, config.data.image_size)
        printer(f"teacher: {teacher.path} ({teacher.num_classes} classes)")
    experiment = Experiment(config, strategy, printer=printer, teacher=teacher)
    evaluator = Evaluator(experiment)
    trainer = Trainer(experiment, knn_accuracy=evaluator.knn_accuracy)

    def export(_=None):
        if exporter is None or not config.export.export_after_eval \
                or not experiment.is_chief:
            return
        path = exporter(experiment.model, config, experiment.global_step,
                        keep=config.export.keep_hub_module_max)
        printer(f"exported SavedModel to {path}")

    mode, result = config.train.mode, None
    if mode in ("train", "train_then_eval"):
        trainer.train()
    if mode == "train_then_eval":
        result = evaluator.evaluate()
        export()
    elif mode == "eval":
        result = evaluator.evaluate_checkpoints(on_result=export)
    if not experiment.is_chief:
        shutil.rmtree(experiment.write_dir, ignore_errors=True)
    return result
