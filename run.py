"""Command-line entry point: absl flags -> RunConfig -> simclr_tf2.training.runner.run.

    python run.py --mode=train_then_eval --train_batch_size=4096

SimCLR pretraining, fine-tuning, distillation and evaluation. Flags are
defined in flags/definitions.py (the original SimCLR TF2 flags plus our
own); this file parses them, turns them into a `simclr_tf2.config.RunConfig`
(flags/config.py), and runs `simclr_tf2.training.runner.run` with the
`simclr_tf2.export` package as its exporter.
User errors end with one line on stderr and exit status 1 (set
SIMCLR_TF2_TRACEBACK=1 to see the Python traceback instead).
SIGTERM (a preempted machine) or SIGINT (Ctrl-C) during training: the step
in flight finishes, a checkpoint of it is saved, one line names it, and the
exit status is 75 (EX_TEMPFAIL); the same command resumes. Elsewhere (start,
evaluation, export) the work stops with nothing partial written, status
128 + signal number (130 SIGINT, 143 SIGTERM). A second signal ends the
process at once (128 + signal number); the previous checkpoint stays whole.
"""

import os
import tempfile
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore")

from absl import app  # noqa: E402
from absl import flags as absl_flags  # noqa: E402
from absl import logging  # noqa: E402

import flags as simclr_flags  # noqa: E402  (registers the flags)
from simclr_tf2 import entrypoints  # noqa: E402
from simclr_tf2 import errors  # noqa: E402
from simclr_tf2.training import preemption  # noqa: E402

FLAGS = absl_flags.FLAGS


def _print(line):
    print(line, flush=True)


def _prepare_model_dir(model_dir):
    """Creates model_dir (fresh temp dir by default) and checks it is writable."""
    if not model_dir:
        model_dir = tempfile.mkdtemp(prefix="simclr_tf2_")
        _print(f"model_dir (fresh): {model_dir}")
    try:
        os.makedirs(model_dir, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=model_dir, prefix=".probe_")
        probe.close()
    except OSError as err:
        raise errors.ConfigError(
            f"model_dir {model_dir} cannot be written ({err.strerror}); pass a "
            "writable --model_dir.") from err
    return model_dir


def _print_config(values, origin):
    _print("effective configuration (value  [source]):")
    for name in sorted(values):
        _print(f"  {name} = {values[name]!r}  [{origin[name]}]")


def _known_flag_values():
    """Effective values of this project's flags only (not absl's own)."""
    ours = {f.name for f in FLAGS.get_flags_for_module(simclr_flags.definitions)}
    values, origin = simclr_flags.effective_values(FLAGS)
    return ({k: v for k, v in values.items() if k in ours},
            {k: v for k, v in origin.items() if k in ours})


def main(argv):
    if len(argv) > 1:
        raise errors.ConfigError(
            f"unexpected arguments {argv[1:]}; flags look like --name=value.")
    values, origin = _known_flag_values()
    model_dir = _prepare_model_dir(values["model_dir"])
    config = simclr_flags.config_from_values(values, model_dir)
    _print_config(dict(values, model_dir=model_dir), origin)

    # Imported late so that TF starts after flags are validated.
    entrypoints.quiet_tensorflow_import()
    if config.runtime.num_logical_cpu_devices > 1:
        from simclr_tf2.training import distribute
        distribute.configure_logical_cpus(config.runtime.num_logical_cpu_devices)
    from simclr_tf2.export import saved_model
    from simclr_tf2.training import runner
    runner.run(config, origin, printer=_print,
                   exporter=saved_model.export_to_model_dir)


def _parse_flags(argv):
    """absl flag parsing, but a bad flag is one line on stderr and exit 1."""
    try:
        return FLAGS(argv)
    except absl_flags.Error as err:
        entrypoints.exit_with_error(f"{errors.one_line(err)} (see python run.py --helpfull)")


def entry_point():
    preemption.install()  # before the slow TF import: see simclr_tf2/training/preemption.py
    logging.set_verbosity(logging.WARNING)
    try:
        entrypoints.report_user_errors(lambda: app.run(main, flags_parser=_parse_flags))
    except KeyboardInterrupt:
        entrypoints.exit_with_error("interrupted; the last checkpoint is kept.", 130)


if __name__ == "__main__":
    entry_point()
