"""The errors a user can fix: one base class, one subclass per kind.

The entry points (run.py, `python -m export`, `python -m simclr_tf2.analysis`)
print a `UserError` as one `error: ...` line on stderr and exit with status
1; any other exception is a bug and keeps its traceback. Raise a `UserError`
only where the cause is known to be the user's input (a flag, a path, a
file), with a message naming the problem and the fix.

The second base classes (ValueError, RuntimeError) keep older `except`
clauses working.
"""


class UserError(Exception):
    """A one-line, fixable user mistake: the message names the problem and the fix.

    Whitespace in the message (newlines included) collapses to single spaces,
    so it always prints as one line.
    """

    def __init__(self, message):
        super().__init__(" ".join(str(message).split()))


class ConfigError(UserError, ValueError):
    """A bad flag value or combination of flags (or command-line argument)."""


class DataError(UserError):
    """Missing, unprepared or unreadable data (dataset, split, subset file)."""


class CheckpointMismatchError(UserError, ValueError):
    """A checkpoint that is missing or does not fit the model built from the flags."""


class CheckpointVanishedError(CheckpointMismatchError):
    """A checkpoint whose files were deleted (a trainer's rotation) before they could be held."""


class OriginalCheckpointError(CheckpointMismatchError):
    """A checkpoint of the original SimCLR TF2 code that does not fit the model."""


class DamagedCheckpointError(UserError):
    """A checkpoint whose files cannot be read (truncated, corrupt or missing)."""


class WriteError(UserError):
    """A checkpoint or export that could not be written (full disk, permissions)."""


def one_line(err, limit=None, first_line_only=False):
    """An exception's message on one line (its type name if empty).

    Args:
      err: the exception.
      limit: keep at most this many characters (None: all).
      first_line_only: keep the first line only, for messages whose later
        lines are detail (TensorFlow's errors); otherwise every line is
        joined with single spaces.
    """
    text = str(err).strip()
    if not text:
        return type(err).__name__
    text = text.splitlines()[0] if first_line_only else " ".join(text.split())
    return text[:limit] if limit else text


def io_reason(err):
    """A short reason for a failed write: 'no space left on device', ... or its first line."""
    text = str(err).lower()
    for known in ("No space left on device", "Permission denied",
                  "Read-only file system", "Disk quota exceeded"):
        if known.lower() in text:
            return known.lower()
    return one_line(err, limit=200, first_line_only=True)


class TrainingDivergedError(UserError, RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is kept."""


class ExportError(UserError, ValueError):
    """A user error of the exporter (no flags.json, existing destination, ...)."""


class ModelDirInUseError(UserError):
    """Another training run holds the model_dir's lock."""
