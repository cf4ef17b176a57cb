"""User errors are one line; everything else (a bug) keeps its traceback."""

import ast
import os
import subprocess
import sys

import pytest

from simclr_tf2 import entrypoints, errors
from simclr_tf2.rundir import run_lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--resnet_depth=18", "--width_multiplier=0.125", "--image_size=16",
        "--proj_out_dim=8", "--num_proj_layers=2", "--train_batch_size=32",
        "--eval_batch_size=64"]


def _python_files():
    for top in ("simclr_tf2", "flags", "export", "run.py"):
        path = os.path.join(ROOT, top)
        if path.endswith(".py"):
            yield path
        for folder, _, names in os.walk(path):
            yield from (os.path.join(folder, n) for n in names if n.endswith(".py"))


def test_every_error_class_has_one_home_simclr_tf2_errors():
    """Error classes are defined in simclr_tf2/errors.py and imported from there only."""
    for path in _python_files():
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                assert path.endswith(os.path.join("simclr_tf2", "errors.py")), \
                    f"{path} defines {node.name}"
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name.endswith("Error"):
                        assert node.module == "simclr_tf2.errors", \
                            f"{path} imports {alias.name} from {node.module}"


def test_every_user_error_class_shares_the_base():
    for cls in (errors.ConfigError, errors.DataError,
                errors.CheckpointMismatchError, errors.TrainingDivergedError,
                errors.ExportError, errors.DamagedCheckpointError,
                errors.ModelDirInUseError):
        assert issubclass(cls, errors.UserError), cls
    # Older `except ValueError` / `except RuntimeError` clauses still work.
    for cls in (errors.ConfigError, errors.CheckpointMismatchError,
                errors.ExportError):
        assert issubclass(cls, ValueError), cls
    assert issubclass(errors.TrainingDivergedError, RuntimeError)
    assert str(errors.DataError("no data\n  in   /x;\nfix it")) == "no data in /x; fix it"


def test_report_user_errors_prints_one_line_and_exits_1(capsys, monkeypatch):
    monkeypatch.delenv("SIMCLR_TF2_TRACEBACK", raising=False)

    def fail():
        raise errors.ConfigError("--foo must be positive;\n pass --foo=1.")

    with pytest.raises(SystemExit) as info:
        entrypoints.report_user_errors(fail)
    assert info.value.code == 1
    assert capsys.readouterr().err == "error: --foo must be positive; pass --foo=1.\n"
    monkeypatch.setenv("SIMCLR_TF2_TRACEBACK", "1")
    with pytest.raises(errors.ConfigError):
        entrypoints.report_user_errors(fail)


@pytest.mark.parametrize("bug", [ValueError("bad shape"), OSError(5, "I/O"),
                                 KeyError("x"), IndexError("Read less bytes")])
def test_report_user_errors_lets_bugs_through(bug, monkeypatch):
    monkeypatch.delenv("SIMCLR_TF2_TRACEBACK", raising=False)

    def fail():
        raise bug

    with pytest.raises(type(bug)) as info:
        entrypoints.report_user_errors(fail)
    assert info.value is bug


def _run_py(*args, code=None, timeout=300):
    """run.py's entry point in a subprocess, optionally after `code`."""
    program = ("import sys, run\n" + (code or "") +
               "\nsys.argv = ['run.py'] + sys.argv[1:]\nrun.entry_point()\n")
    return subprocess.run([sys.executable, "-c", program, *args], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT),
                          capture_output=True, text=True, timeout=timeout)


def _assert_one_line(proc, *fragments):
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_run_py_reports_a_user_error_in_one_line(tmp_path):
    proc = _run_py("--mode=train", "--warmup_epochs=-1",
                   f"--model_dir={tmp_path}")
    _assert_one_line(proc, "--warmup_epochs")


BUG = """
from simclr_tf2.training import runner
def buggy_run(*args, **kwargs):
    raise {error}
runner.run = buggy_run
"""


@pytest.mark.parametrize("error", ["ValueError('a genuine bug')",
                                   "OSError(28, 'a genuine bug')"])
def test_run_py_keeps_the_traceback_of_a_bug(tmp_path, error):
    proc = _run_py("--mode=train", "--train_steps=1", f"--model_dir={tmp_path}",
                   code=BUG.format(error=error))
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "buggy_run" in proc.stderr
    assert "a genuine bug" in proc.stderr.splitlines()[-1]
    assert not [l for l in proc.stderr.splitlines() if l.startswith("error:")]


def test_second_training_on_a_model_dir_is_refused_but_eval_may_watch(tmp_path):
    model_dir = str(tmp_path / "m")
    lock = run_lock.RunLock(model_dir).acquire()  # "Another training run".
    try:
        proc = _run_py("--mode=train", "--train_steps=1",
                       f"--model_dir={model_dir}", *TINY)
        _assert_one_line(proc, model_dir, f"pid {os.getpid()}", "in use")
        assert not os.path.exists(os.path.join(model_dir, "flags.json"))
        # --mode=eval takes no lock: it gets as far as waiting for a checkpoint.
        proc = _run_py("--mode=eval", "--eval_timeout_secs=1",
                       f"--model_dir={model_dir}", *TINY)
        _assert_one_line(proc, "no checkpoint appeared")
    finally:
        lock.release()
