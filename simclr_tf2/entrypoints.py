"""What the command-line entry points share: a quiet TF start and one-line errors.

Flag parsing stays in the entry points themselves (run.py, export/__main__.py,
simclr_tf2/export/command.py, simclr_tf2/embedding/command.py,
simclr_tf2/analysis/__main__.py).

run.py, the export and embed commands and `python -m simclr_tf2.analysis` end a user
error (a `simclr_tf2.errors.UserError`: bad flag, missing data, mismatched
checkpoint, ...) with one `error: ...` line on stderr and exit status 1;
anything else is a bug and keeps its traceback. Setting
SIMCLR_TF2_TRACEBACK=1 shows the traceback of user errors too.
"""

import os
import sys

from simclr_tf2.training import preemption
from simclr_tf2.errors import UserError
from simclr_tf2.errors import one_line


def exit_with_error(message, status=1):
    """Prints `error: message` to stderr and exits with `status`."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def quiet_tensorflow_import():
    """Imports TF and lists devices with fd 2 muted; returns the tf module.

    TF's C++ start-up notices (oneDNN, CUDA probing) bypass
    TF_CPP_MIN_LOG_LEVEL; muting them keeps stderr for real problems.
    """
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf
        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)
    return tf


def report_user_errors(function):
    """Calls function(); a `UserError` becomes one `error:` line and exit 1.

    A SIGTERM / SIGINT that stopped the program (`preemption.Interrupted`)
    becomes one line and exit status 75 (a checkpoint of the step reached
    was saved) or 128 + the signal number (nothing new was written).

    Args:
      function: the program, called without arguments. Any exception other
        than a UserError propagates with its traceback.
    """
    try:
        function()
    except preemption.Interrupted as stop:  # [preemption] SIGTERM / SIGINT
        print(preemption.stop_message(stop), file=sys.stderr, flush=True)
        sys.stdout.flush()
        # Everything is on disk (checkpoints and summaries are flushed, the
        # model_dir lock released). A normal interpreter exit after fit was
        # interrupted spent 9 s tearing TensorFlow down (tiny model, 2 CPU
        # cores), a large part of a preemption notice; skip it.
        os._exit(preemption.exit_status(stop))
    except UserError as err:
        if os.environ.get("SIMCLR_TF2_TRACEBACK"):
            raise
        exit_with_error(one_line(err))
