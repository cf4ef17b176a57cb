"""The model_dir lock: one training per directory, stale locks taken over."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from simclr_tf2 import errors
from simclr_tf2.rundir import run_lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lock_path(model_dir):
    return os.path.join(model_dir, run_lock.LOCK_NAME)


def _write_lock(model_dir, **owner):
    os.makedirs(model_dir, exist_ok=True)
    with open(_lock_path(model_dir), "w") as f:
        json.dump(owner, f)


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _python(code, *args):
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_second_acquire_is_refused_with_holder_and_fix(tmp_path):
    model_dir = str(tmp_path / "m")
    first = run_lock.RunLock(model_dir).acquire()
    with pytest.raises(errors.ModelDirInUseError) as info:
        run_lock.RunLock(model_dir).acquire()
    message = str(info.value)
    assert isinstance(info.value, errors.UserError) and "\n" not in message
    for fragment in (model_dir, f"pid {os.getpid()}", socket.gethostname(),
                     "--model_dir", _lock_path(model_dir)):
        assert fragment in message, message
    first.release()
    assert not os.path.exists(_lock_path(model_dir))
    run_lock.RunLock(model_dir).acquire().release()  # Free again.


def test_stale_lock_of_a_dead_pid_is_taken_over(tmp_path, caplog):
    model_dir = str(tmp_path)
    dead = _dead_pid()
    _write_lock(model_dir, pid=dead, host=socket.gethostname(), since="then")
    lock = run_lock.RunLock(model_dir).acquire()
    with open(_lock_path(model_dir)) as f:
        assert json.load(f)["pid"] == os.getpid()
    assert any(str(dead) in r.getMessage() and "stale" in r.getMessage()
               for r in caplog.records)
    assert os.listdir(model_dir) == [run_lock.LOCK_NAME]  # Nothing left aside.
    lock.release()


def test_reused_pid_counts_as_stale_but_other_hosts_never_do(tmp_path):
    model_dir = str(tmp_path)
    # Our own (live) pid, but a process start time that is not ours: the pid
    # was reused after the run that wrote the lock died.
    _write_lock(model_dir, pid=os.getpid(), host=socket.gethostname(),
                start_time=-1)
    run_lock.RunLock(model_dir).acquire().release()
    # A lock from another host cannot be checked: refused, even if the pid
    # means nothing here.
    _write_lock(model_dir, pid=_dead_pid(), host="elsewhere.example")
    with pytest.raises(errors.ModelDirInUseError, match="elsewhere.example"):
        run_lock.RunLock(model_dir).acquire()


def test_unreadable_lock_blocks_only_while_fresh(tmp_path):
    model_dir = str(tmp_path)
    open(_lock_path(model_dir), "w").close()  # Created, not yet written.
    with pytest.raises(errors.ModelDirInUseError):
        run_lock.RunLock(model_dir).acquire()
    old = time.time() - 2 * run_lock.UNREADABLE_GRACE_SECS
    os.utime(_lock_path(model_dir), (old, old))
    run_lock.RunLock(model_dir).acquire().release()


def test_hold_releases_on_error_and_never_removes_a_foreign_lock(tmp_path):
    model_dir = str(tmp_path)
    with pytest.raises(KeyError):
        with run_lock.hold(model_dir):
            assert os.path.exists(_lock_path(model_dir))
            raise KeyError("boom")
    assert not os.path.exists(_lock_path(model_dir))
    with run_lock.hold(model_dir, enabled=False) as lock:
        assert lock is None and not os.path.exists(_lock_path(model_dir))
    lock = run_lock.RunLock(model_dir).acquire()
    _write_lock(model_dir, pid=1, host="someone-else")  # Not ours any more.
    lock.release()
    assert os.path.exists(_lock_path(model_dir))


def test_unwritable_model_dir_is_a_config_error(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(errors.ConfigError, match="cannot be written"):
        run_lock.RunLock(str(tmp_path / "a_file" / "m")).acquire()


HOLD = """
import sys, time
from simclr_tf2.rundir import run_lock
with run_lock.hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_lock_is_released_at_exit_and_a_killed_holder_does_not_block(tmp_path):
    model_dir = str(tmp_path)
    done = _python(HOLD, model_dir, "0")
    assert done.communicate(timeout=60)[0].strip() == "held"
    assert not os.path.exists(_lock_path(model_dir))

    killed = _python(HOLD, model_dir, "60")
    assert killed.stdout.readline().strip() == "held"
    with pytest.raises(errors.ModelDirInUseError, match=f"pid {killed.pid} "):
        run_lock.RunLock(model_dir).acquire()
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert os.path.exists(_lock_path(model_dir))  # Left behind...
    run_lock.RunLock(model_dir).acquire().release()  # ...but not blocking.


def test_racing_runs_on_a_stale_lock_let_exactly_one_in(tmp_path):
    model_dir = str(tmp_path)
    _write_lock(model_dir, pid=_dead_pid(), host=socket.gethostname())
    racers = [_python(HOLD, model_dir, "5") for _ in range(4)]
    outputs = [r.communicate(timeout=60) for r in racers]
    winners = [out for out, _ in outputs if out.strip() == "held"]
    losers = [err for _, err in outputs if "ModelDirInUseError" in err]
    assert len(winners) == 1 and len(losers) == 3, outputs
