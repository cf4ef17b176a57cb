"""Drives one invocation of run.py: train, eval or train_then_eval, then export."""

import os
import shutil

from simclr_tf2 import distribute
from simclr_tf2 import evaluate
from simclr_tf2 import run_lock
from simclr_tf2.teacher import load_teacher
from simclr_tf2.train import Run


def write_flags_json(config, origin):
    """model_dir/flags.json: every effective value and where it came from."""
    payload = dict(config.to_dict(), origin=dict(sorted(origin.items())))
    evaluate.atomic_write_json(
        os.path.join(config.train.model_dir, "flags.json"), payload)


def _export(run, printer):
    """Exports the current weights to model_dir/saved_model/<step>/."""
    if not run.config.train.export_after_eval or not run.is_chief:
        return
    from export import saved_model  # The top-level exporter package.
    path = saved_model.export_to_model_dir(
        run.model, run.config, run.global_step,
        keep=run.config.train.keep_hub_module_max)
    printer(f"exported SavedModel to {path}")


def run(config, origin, printer=print):
    """Runs the mode asked for in `config.train.mode`.

    Args:
      config: RunConfig-like object.
      origin: flag name -> where its value came from (for flags.json).
      printer: function taking a line of progress text.

    Returns:
      The last evaluation result dict, or None for --mode=train.
    """
    strategy = distribute.make_strategy(
        use_tpu=config.distribute.use_tpu, tpu_name=config.distribute.tpu_name,
        tpu_zone=config.distribute.tpu_zone,
        gcp_project=config.distribute.gcp_project,
        master=config.distribute.master,
        num_logical_cpu_devices=config.distribute.num_logical_cpu_devices)
    is_chief = distribute.task_info(strategy)[0]
    # One training per model_dir; --mode=eval only reads checkpoints and may
    # watch a directory being trained.
    with run_lock.hold(config.train.model_dir,
                       enabled=is_chief and config.train.mode != "eval"):
        return _run(config, origin, printer, strategy, is_chief)


def _run(config, origin, printer, strategy, is_chief):
    """`run` after the strategy is made and the model_dir lock is held."""
    if is_chief:
        write_flags_json(config, origin)
    teacher = None
    if config.train.train_mode == "distill":
        teacher = load_teacher(config.train.teacher, config.data.image_size)
        printer(f"teacher: {teacher.path} ({teacher.num_classes} classes)")
    session = Run(config, strategy, printer=printer, teacher=teacher)
    mode = config.train.mode
    result = None
    if mode in ("train", "train_then_eval"):
        session.train()
    if mode == "train_then_eval":
        result = session.evaluate()
        _export(session, printer)
    elif mode == "eval":
        result = session.evaluate_checkpoints(
            on_result=lambda _: _export(session, printer))
    if not session.is_chief:
        shutil.rmtree(session.write_dir, ignore_errors=True)
    return result
