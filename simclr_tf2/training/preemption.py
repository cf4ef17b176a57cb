"""Preemption: SIGTERM / SIGINT stop a run cleanly, never half-written.

A preempted cloud machine gets SIGTERM some seconds before it is killed; a
person stops a run with Ctrl-C (SIGINT). `install()` (called first thing by
run.py and the export and embed commands) replaces Python's handlers for
both:

- Outside a `deferred()` block the first signal raises `Interrupted` where
  the main thread is, like Ctrl-C's KeyboardInterrupt; the writers of
  result files and exports remove their temporary files on any exception,
  so nothing partial is left.
- Inside a `deferred()` block (a training run, a result being written) the
  signal is only recorded; the code polls `received()` at a safe point
  (training: the end of the current step or `steps_per_execution` block,
  in `callbacks.CheckpointSaver`, the one writer of a run's checkpoints,
  which also agrees on the step with TensorFlow's
  PreemptionCheckpointHandler across workers), saves and stops. Leaving the block with a recorded signal raises
  `Interrupted`.
- A second signal ends the process at once (`os._exit`) with status
  128 + signal number. Checkpoints and exports are only ever made visible
  by an atomic rename, so an exit in the middle of a save leaves the
  previous checkpoint intact.

Exit statuses (see `exit_status`): 75 (EX_TEMPFAIL, "try again") when a
checkpoint of the step reached was saved and the same command resumes;
128 + signal number (130 for SIGINT, 143 for SIGTERM, the shell convention
for a process ended by a signal) when the work stopped without saving.

This module does not import TensorFlow, so it can be installed before the
slow TF import.
"""

import contextlib
import os
import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)

# sysexits.h EX_TEMPFAIL: a temporary failure; the same command resumes.
EXIT_SAVED = 75


class Interrupted(BaseException):
    """A signal stopped work that keeps nothing partial (eval, export, set-up).

    A BaseException, like KeyboardInterrupt, so that `except Exception`
    clauses do not swallow it.

    Attributes:
      signum: the signal number.
      saved: the checkpoint path written for this stop, or None.
      step: the global step of `saved`, or None.
    """

    def __init__(self, signum, saved=None, step=None):
        super().__init__(signal_name(signum))
        self.signum = signum
        self.saved = saved
        self.step = step


def signal_name(signum):
    """'SIGTERM', 'SIGINT', ... for a signal number."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_status(stop):
    """The process exit status for an `Interrupted` (see the module docstring)."""
    return EXIT_SAVED if stop.saved else 128 + stop.signum


def stop_message(stop):
    """The one line printed for an `Interrupted`."""
    name = signal_name(stop.signum)
    if stop.saved:
        return (f"stopped by {name}: checkpoint {stop.saved} (step {stop.step}) "
                "saved; run the same command to resume.")
    return (f"stopped by {name} before anything new was written; the "
            "checkpoints and results already in model_dir are kept.")


class _Capture:
    """The process-wide handler state (signals reach the main thread only)."""

    def __init__(self):
        self.signum = None
        self.depth = 0
        self.forward = None
        self.installed = False


_state = _Capture()
_lock = threading.Lock()


def _handle(signum, frame):
    if _state.signum is not None:
        # Second signal: the person (or the scheduler) insists. No Python
        # clean-up runs; atomic renames keep the previous checkpoint whole.
        os.write(2, (f"stopped by a second {signal_name(signum)} without "
                     "saving; the previous checkpoint is kept.\n").encode())
        os._exit(128 + signum)
    _state.signum = signum
    if _state.forward is not None:
        # A multi-worker run: TensorFlow's PreemptionCheckpointHandler decides
        # the step every worker saves at (see callbacks.CheckpointSaver).
        _state.forward(signal.SIGTERM, frame)
    elif _state.depth == 0:
        raise Interrupted(signum)


def install():
    """Routes SIGTERM and SIGINT to this module (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in SIGNALS:
        signal.signal(signum, _handle)
    _state.installed = True


def installed():
    """Whether `install()` ran in this process."""
    return _state.installed


def received():
    """The number of the signal received so far, or None."""
    return _state.signum


def reset():
    """Forgets a received signal (tests; a process that handled it)."""
    _state.signum = None


def forward_to(handler):
    """Hands the first signal to `handler(signum, frame)` (None: stop forwarding).

    Used while TensorFlow's PreemptionCheckpointHandler owns the decision of
    when to save; a second signal still ends the process at once.
    """
    _state.forward = handler
    if _state.installed and threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:  # TF's handler replaced ours for SIGTERM.
            signal.signal(signum, _handle)


@contextlib.contextmanager
def deferred():
    """Within the block a signal is only recorded; poll it with `received()`.

    Raises:
      Interrupted: on leaving the block (outermost level) if a signal was
        recorded and not handled inside.
    """
    with _lock:
        _state.depth += 1
    try:
        yield
    finally:
        with _lock:
            _state.depth -= 1
            outermost = _state.depth == 0
    if outermost and _state.signum is not None and _state.forward is None:
        raise Interrupted(_state.signum)
