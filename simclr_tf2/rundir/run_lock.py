"""One training run per model_dir: a lock file created with O_EXCL.

`hold(model_dir)` creates `model_dir/training.lock`, a small JSON object
naming the holder (pid, host, process start time, since when), and removes
it when the block ends, normally or by an exception. A second run on the
same model_dir stops with `ModelDirInUseError`, one line naming the
model_dir, the holder and the fix.

A lock left behind by a killed run does not block the next one: when its
pid is no longer alive on this host (or the pid now belongs to a process
that started later), the lock is stale and is taken over. A lock written on
another host cannot be checked and always counts as held; the message says
which file to delete if that run is gone.

Only local paths are locked (os.open); a remote model_dir (`gs://...`) is
not.
"""

import contextlib
import json
import logging
import os
import socket
import time

from simclr_tf2 import rundir
from simclr_tf2.errors import ConfigError, ModelDirInUseError

LOCK_NAME = rundir.LOCK
# A lock file that is still empty or unparsable after this many seconds was
# left by a run killed between creating and writing it.
UNREADABLE_GRACE_SECS = 10.0

logger = logging.getLogger(__name__)


def _process_start(pid):
    """Start time of process `pid` (clock ticks since boot; Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _read(path):
    """The lock's JSON object; {} if unreadable; None if there is no lock."""
    try:
        with open(path) as f:
            owner = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _is_stale(path, owner):
    """True when the lock's holder is surely gone."""
    if not owner:
        try:
            return time.time() - os.path.getmtime(path) > UNREADABLE_GRACE_SECS
        except OSError:
            return False
    if owner.get("host") != socket.gethostname():
        return False
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # Alive, owned by another user.
    start = owner.get("start_time")
    now = _process_start(pid)
    return start is not None and now is not None and now != start


class RunLock:
    """The lock of one model_dir; `acquire()` it, then `release()` it."""

    def __init__(self, model_dir):
        self.model_dir = model_dir
        self.path = os.path.join(model_dir, LOCK_NAME)
        self._content = None

    def acquire(self, attempts=3):
        """Takes the lock, taking over a stale one.

        Raises:
          ModelDirInUseError: a live run holds it.
          ConfigError: the lock file cannot be created (model_dir not writable).
        """
        for _ in range(attempts):
            if self._create():
                return self
            owner = _read(self.path)
            if owner is None:
                continue  # Released in the meantime.
            if not _is_stale(self.path, owner):
                raise ModelDirInUseError(self._in_use_message(owner))
            self._take_over(owner)
        raise ModelDirInUseError(self._in_use_message(_read(self.path) or {}))

    def release(self):
        """Removes the lock file if it is still ours."""
        if self._content is not None and _read(self.path) == self._content:
            os.remove(self.path)
        self._content = None

    def _create(self):
        content = {"pid": os.getpid(), "host": socket.gethostname(),
                   "start_time": _process_start(os.getpid()),
                   "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        try:
            os.makedirs(self.model_dir, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as err:
            raise ConfigError(
                f"model_dir {self.model_dir} cannot be written ({err.strerror}); "
                "pass a writable --model_dir.") from err
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(content))
        self._content = content
        return True

    def _take_over(self, stale):
        """Moves a stale lock aside and deletes it, unless it changed meanwhile."""
        aside = f"{self.path}.stale-{os.getpid()}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if _read(aside) == stale:
            os.remove(aside)
            logger.warning("removed the stale lock %s of pid %s on %s (no "
                           "longer running)", self.path, stale.get("pid"),
                           stale.get("host"))
            return
        try:  # Another run's fresh lock: put it back.
            os.link(aside, self.path)
        except OSError:
            pass
        os.remove(aside)

    def _in_use_message(self, owner):
        return (f"model_dir {self.model_dir} is in use by another training run "
                f"(pid {owner.get('pid', '?')} on host {owner.get('host', '?')}, "
                f"since {owner.get('since', '?')}); wait for it to end, or pass "
                f"another --model_dir. If that run is gone, delete {self.path}.")


@contextlib.contextmanager
def hold(model_dir, enabled=True):
    """Holds model_dir's lock for the `with` block (nothing if not enabled)."""
    if not enabled or "://" in model_dir:
        yield None
        return
    lock = RunLock(model_dir).acquire()
    try:
        yield lock
    finally:
        lock.release()
