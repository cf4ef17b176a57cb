"""`python -m export`: export a SavedModel / TF-Hub module from a checkpoint.

    python -m export --model_dir=DIR [--checkpoint=CKPT] [--export_dir=OUT]

absl flags over `simclr_tf2.export.command.export_model_dir` (the library's
`simclr-export` takes the same options). Rebuilds the model from
DIR/flags.json, restores the checkpoint (the latest in DIR by default) and
writes the export atomically. User errors (no flags.json, no or
mismatching checkpoint, existing export_dir) print one line on stderr and
exit with status 1. SIGTERM or SIGINT stops the export with nothing written
(the temporary directory is removed) and exit status 128 + signal number
(130 SIGINT, 143 SIGTERM).
"""

import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from simclr_tf2 import entrypoints  # noqa: E402
from simclr_tf2 import errors  # noqa: E402
from simclr_tf2.training import preemption  # noqa: E402
from simclr_tf2.export import command  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, command.HELP["model_dir"])
flags.DEFINE_string("checkpoint", None, command.HELP["checkpoint"])
flags.DEFINE_string("export_dir", None, command.HELP["export_dir"])
for _name, _default in command.BOOL_DEFAULTS.items():
    flags.DEFINE_bool(_name, _default, command.HELP[_name])
flags.DEFINE_enum("serving_outputs", "vectors", list(command.SERVING_OUTPUTS),
                  command.HELP["serving_outputs"])
flags.mark_flag_as_required("model_dir")


def main(argv):
    if len(argv) > 1:
        raise errors.ExportError(f"unexpected arguments {argv[1:]}; flags "
                                 "look like --name=value.")
    command.export_model_dir(
        FLAGS.model_dir, FLAGS.checkpoint, FLAGS.export_dir,
        include_projection_head=FLAGS.include_projection_head,
        include_supervised_head=FLAGS.include_supervised_head,
        image_bytes_signature=FLAGS.image_bytes_signature,
        serving_outputs=FLAGS.serving_outputs, overwrite=FLAGS.overwrite,
        printer=lambda line: print(line, flush=True))


def _parse_flags(argv):
    """absl flag parsing, but a bad flag is one line on stderr and exit 1."""
    try:
        return FLAGS(argv)
    except flags.Error as err:
        entrypoints.exit_with_error(f"{errors.one_line(err)} (see python -m export --helpfull)")


def entry_point():
    # SIGTERM / SIGINT stop the export with nothing partial written (exit
    # status 128 + signal number).
    preemption.install()
    logging.set_verbosity(logging.WARNING)
    entrypoints.report_user_errors(lambda: app.run(main, flags_parser=_parse_flags))


if __name__ == "__main__":
    entry_point()
