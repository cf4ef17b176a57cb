"""Checks that need no TensorFlow: the run's flags.json and the destination.

`python -m export` runs them before TensorFlow starts, so a wrong path fails
in a fraction of a second.
"""

import os

from simclr_tf2 import config as config_lib
from simclr_tf2.errors import ConfigError
from simclr_tf2.errors import ExportError


def load_run_config(model_dir):
    """Reads `model_dir/flags.json` (flat, ours or the original code's).

    Args:
      model_dir: a run.py model directory.

    Returns:
      (config, raw): a `simclr_tf2.config.RunConfig` and the decoded JSON.

    Raises:
      ExportError: missing or unreadable flags.json.
    """
    try:
        return config_lib.read_flags_json(model_dir)
    except ConfigError as err:
        raise ExportError(str(err)) from err


def check_destination(export_dir, overwrite):
    """The absolute `export_dir`.

    Raises:
      ExportError: it exists and `overwrite` is False.
    """
    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir) and not overwrite:
        raise ExportError(
            f"export directory {export_dir} already exists; remove it, pass "
            "--overwrite, or choose another --export_dir.")
    return export_dir
