"""Exporting a model_dir's checkpoint to a SavedModel: what the export commands run.

    simclr-export --model_dir=DIR [--checkpoint=CKPT] [--export_dir=OUT]

(also `python -m simclr_tf2.export`, and `python -m export` in a checkout,
which parses the same options with absl). The model is rebuilt from
DIR/flags.json, the checkpoint (the latest in DIR by default) restored and
the export written atomically. DIR may be a model_dir of the original
SimCLR TF2 code. User errors (no flags.json, no or mismatching checkpoint,
existing export_dir) print one line on stderr and exit with status 1.
SIGTERM or SIGINT stops the export with nothing written (the temporary
directory is removed) and exit status 128 + signal number.
"""

import argparse
import os

from simclr_tf2 import entrypoints
from simclr_tf2 import rundir
from simclr_tf2.training import preemption
from simclr_tf2.errors import ConfigError

PROG = "simclr-export"
SERVING_OUTPUTS = ("vectors", "all")

# name -> (default, help): the options both command lines offer.
HELP = {
    "model_dir": "run.py model directory holding flags.json and checkpoints.",
    "checkpoint": "Checkpoint prefix (ckpt-N) or directory; default: the "
                  "latest checkpoint in --model_dir.",
    "export_dir": "Where to write the SavedModel; default: "
                  "MODEL_DIR/saved_model/<global_step>.",
    "include_projection_head": "Output proj_head_input / proj_head_output (and "
                               "keep the projection head's variables).",
    "include_supervised_head": "Output logits_sup when the checkpoint has a "
                               "supervised head.",
    "image_bytes_signature": "Add the 'serving_bytes' signature taking encoded "
                             "JPEG/PNG bytes (besides 'serving_default' on "
                             "float images).",
    "serving_outputs": "What the serving signatures return: 'vectors' "
                       "(final_avg_pool, proj_head_*, logits_sup) or 'all' "
                       "(also the feature maps).",
    "overwrite": "Replace an existing --export_dir.",
}
BOOL_DEFAULTS = {"include_projection_head": True, "include_supervised_head": True,
                 "image_bytes_signature": True, "overwrite": False}


def export_model_dir(model_dir: str, checkpoint: str | None = None,
                     export_dir: str | None = None, *,
                     include_projection_head: bool = True,
                     include_supervised_head: bool = True,
                     image_bytes_signature: bool = True,
                     serving_outputs: str = "vectors", overwrite: bool = False,
                     printer=print) -> str:
    """Exports a checkpoint of `model_dir` (ours or the original code's).

    Args:
      model_dir: a run's model directory (flags.json and checkpoints).
      checkpoint: a ckpt-N prefix or directory; None: model_dir's latest.
      export_dir: destination; None: model_dir/saved_model/<step>/ (our
        runs only).
      include_projection_head, include_supervised_head, image_bytes_signature,
      serving_outputs, overwrite: as the command-line options (see HELP).
      printer: function taking the one line that reports the export.

    Returns:
      The export directory.

    Raises:
      UserError: no flags.json, no or mismatching checkpoint, existing
        export_dir without overwrite.
    """
    from simclr_tf2.export import preflight  # No TensorFlow yet: fail fast.
    if serving_outputs not in SERVING_OUTPUTS:
        raise ConfigError(f"serving_outputs={serving_outputs!r}; use one of "
                          f"{', '.join(SERVING_OUTPUTS)}.")
    options = dict(include_projection_head=include_projection_head,
                   include_supervised_head=include_supervised_head,
                   overwrite=overwrite,
                   include_bytes_signature=image_bytes_signature)
    # Ours records where its flags came from; the original code does not.
    ours = os.path.isfile(os.path.join(model_dir, rundir.FLAGS_ORIGIN_JSON))
    if not ours or checkpoint:
        out = _export_original(model_dir, checkpoint, export_dir,
                               serving_outputs, options, printer)
        if out is not None:
            return out
    config, raw = preflight.load_run_config(model_dir)
    if export_dir:
        preflight.check_destination(export_dir, overwrite)
    tf = entrypoints.quiet_tensorflow_import()
    tf.get_logger().setLevel("ERROR")  # Unused checkpoint values are not news.
    from simclr_tf2.export import from_checkpoint
    from simclr_tf2.export import saved_model

    model, step, path = from_checkpoint.restore_model(config, checkpoint or model_dir)
    out = saved_model.export_model(
        model, config, export_dir or rundir.export_dir(model_dir, step),
        serving_outputs=_outputs(serving_outputs),
        info={"global_step": step, "checkpoint": path, "config": raw},
        **options)
    printer(f"exported {path} (step {step}) to {out}")
    return out


def _outputs(serving_outputs):
    from simclr_tf2.export import module
    return module.VECTOR_OUTPUTS if serving_outputs == "vectors" else None


def _export_original(model_dir, checkpoint, export_dir, serving_outputs,
                     options, printer):
    """Exports an original SimCLR TF2 model_dir / checkpoint; None if it is ours."""
    entrypoints.quiet_tensorflow_import()
    from simclr_tf2.export import original
    if not original.is_original_source(model_dir, checkpoint):
        return None
    out, step, path = original.export_original(
        checkpoint or model_dir, export_dir,
        serving_outputs=_outputs(serving_outputs), **options)
    printer(f"exported original SimCLR checkpoint {path} (step {step}) to {out}")
    return out


def _bool(text):
    value = str(text).lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parser():
    """The argparse parser of `simclr-export` (absl-style --name / --noname)."""
    p = argparse.ArgumentParser(
        prog=PROG, description="Exports a checkpoint of a run's model_dir to a "
        "SavedModel (also a TF-Hub module).")
    p.add_argument("--model_dir", required=True, help=HELP["model_dir"])
    p.add_argument("--checkpoint", default=None, help=HELP["checkpoint"])
    p.add_argument("--export_dir", default=None, help=HELP["export_dir"])
    for name, default in BOOL_DEFAULTS.items():
        p.add_argument(f"--{name}", nargs="?", const=True, default=default,
                       type=_bool, metavar="BOOL",
                       help=f"{HELP[name]} (default: {str(default).lower()})")
        p.add_argument(f"--no{name}", dest=name, action="store_false",
                       help=argparse.SUPPRESS)
    p.add_argument("--serving_outputs", choices=SERVING_OUTPUTS,
                   default="vectors", help=HELP["serving_outputs"])
    return p


def main(argv=None):
    """Console entry point (`simclr-export`)."""
    # SIGTERM / SIGINT stop the export with nothing partial written.
    preemption.install()
    args = parser().parse_args(argv)
    entrypoints.report_user_errors(lambda: export_model_dir(
        args.model_dir, args.checkpoint, args.export_dir,
        include_projection_head=args.include_projection_head,
        include_supervised_head=args.include_supervised_head,
        image_bytes_signature=args.image_bytes_signature,
        serving_outputs=args.serving_outputs, overwrite=args.overwrite,
        printer=lambda line: print(line, flush=True)))
