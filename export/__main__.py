"""`python -m export`: export a SavedModel / TF-Hub module from a checkpoint.

    python -m export --model_dir=DIR [--checkpoint=CKPT] [--export_dir=OUT]

Rebuilds the model from DIR/flags.json, restores the checkpoint (the latest
in DIR by default) and writes the export atomically. User errors (no
flags.json, no or mismatching checkpoint, existing export_dir) print one
line on stderr and exit with status 1. SIGTERM or SIGINT stops the export
with nothing written (the temporary directory is removed) and exit status
128 + signal number (130 SIGINT, 143 SIGTERM).
"""

import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from simclr_tf2 import cli  # noqa: E402
from simclr_tf2 import errors  # noqa: E402
from simclr_tf2 import rundir  # noqa: E402
from simclr_tf2 import signals  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None,
                    "run.py model directory holding flags.json and checkpoints.")
flags.DEFINE_string("checkpoint", None,
                    "Checkpoint prefix (ckpt-N) or directory; default: the "
                    "latest checkpoint in --model_dir.")
flags.DEFINE_string("export_dir", None,
                    "Where to write the SavedModel; default: "
                    "MODEL_DIR/saved_model/<global_step>.")
flags.DEFINE_bool("include_projection_head", True,
                  "Output proj_head_input / proj_head_output (and keep the "
                  "projection head's variables).")
flags.DEFINE_bool("include_supervised_head", True,
                  "Output logits_sup when the checkpoint has a supervised head.")
flags.DEFINE_bool("image_bytes_signature", True,
                  "Add the 'serving_bytes' signature taking encoded JPEG/PNG "
                  "bytes (besides 'serving_default' on float images).")
flags.DEFINE_enum("serving_outputs", "vectors", ["vectors", "all"],
                  "What the serving signatures return: 'vectors' (final_avg_pool, "
                  "proj_head_*, logits_sup) or 'all' (also the feature maps).")
flags.DEFINE_bool("overwrite", False, "Replace an existing --export_dir.")
flags.mark_flag_as_required("model_dir")


def main(argv):
    from export import preflight  # No TensorFlow yet: fail fast.
    if len(argv) > 1:
        raise preflight.ExportError(f"unexpected arguments {argv[1:]}; flags "
                                    "look like --name=value.")
    if _export_original():  # [original] a model_dir of the original SimCLR TF2 code
        return
    config, raw = preflight.load_run_config(FLAGS.model_dir)
    if FLAGS.export_dir:
        preflight.check_destination(FLAGS.export_dir, FLAGS.overwrite)
    tf = cli.quiet_tensorflow_import()
    tf.get_logger().setLevel("ERROR")  # Unused checkpoint values are not news.
    from export import from_checkpoint
    from export import module
    from export import saved_model

    model, step, path = from_checkpoint.restore_model(
        config, FLAGS.checkpoint or FLAGS.model_dir)
    export_dir = FLAGS.export_dir or rundir.export_dir(FLAGS.model_dir, step)
    out = saved_model.export_model(
        model, config, export_dir,
        include_projection_head=FLAGS.include_projection_head,
        include_supervised_head=FLAGS.include_supervised_head,
        overwrite=FLAGS.overwrite,
        serving_outputs=(module.VECTOR_OUTPUTS
                         if FLAGS.serving_outputs == "vectors" else None),
        include_bytes_signature=FLAGS.image_bytes_signature,
        info={"global_step": step, "checkpoint": path,
              "config": raw})
    print(f"exported {path} (step {step}) to {out}", flush=True)


def _export_original():
    """Exports an original SimCLR TF2 model_dir / checkpoint; False if it is ours."""
    # Ours records where its flags came from; the original code does not.
    if os.path.isfile(os.path.join(FLAGS.model_dir, rundir.FLAGS_ORIGIN_JSON)) \
            and not FLAGS.checkpoint:
        return False
    cli.quiet_tensorflow_import()
    from export import module
    from export import original
    if not original.is_original_source(FLAGS.model_dir, FLAGS.checkpoint):
        return False
    out, step, path = original.export_original(
        FLAGS.checkpoint or FLAGS.model_dir, FLAGS.export_dir,
        include_projection_head=FLAGS.include_projection_head,
        include_supervised_head=FLAGS.include_supervised_head,
        overwrite=FLAGS.overwrite,
        serving_outputs=(module.VECTOR_OUTPUTS
                         if FLAGS.serving_outputs == "vectors" else None),
        include_bytes_signature=FLAGS.image_bytes_signature)
    print(f"exported original SimCLR checkpoint {path} (step {step}) to {out}", flush=True)
    return True


def _parse_flags(argv):
    """absl flag parsing, but a bad flag is one line on stderr and exit 1."""
    try:
        return FLAGS(argv)
    except flags.Error as err:
        cli.exit_with_error(f"{errors.one_line(err)} (see python -m export --helpfull)")


def entry_point():
    # [preemption] SIGTERM / SIGINT stop the export with nothing partial
    # written (exit status 128 + signal number); see simclr_tf2/signals.py.
    signals.install()
    logging.set_verbosity(logging.WARNING)
    cli.report_user_errors(lambda: app.run(main, flags_parser=_parse_flags))


if __name__ == "__main__":
    entry_point()
