"""Checks that need no TensorFlow: the run's flags.json and the destination.

`python -m export` runs them before TensorFlow starts, so a wrong path fails
in a fraction of a second.
"""

import json
import os
import types

from simclr_tf2.errors import ExportError  # noqa: F401  (re-exported)

SECTIONS = ("data", "model", "optim", "train")


def load_run_config(model_dir):
    """Reads `model_dir/flags.json` into attribute-access sections.

    Args:
      model_dir: a run.py model directory.

    Returns:
      (config, raw): a namespace with `data`, `model`, `optim`, `train`
      sections, and the decoded JSON dict.

    Raises:
      ExportError: missing, unreadable or incomplete flags.json.
    """
    path = os.path.join(model_dir, "flags.json")
    if not os.path.isfile(path):
        raise ExportError(
            f"no flags.json in {model_dir}; pass the --model_dir of a run.py "
            "run (it records the architecture there).")
    try:
        with open(path) as f:
            raw = json.load(f)
        config = types.SimpleNamespace(
            **{s: types.SimpleNamespace(**raw[s]) for s in SECTIONS})
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ExportError(
            f"cannot read {path} ({type(err).__name__}: {err}); it must be "
            f"the JSON run.py writes, with sections {', '.join(SECTIONS)}.") from err
    return config, raw


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
