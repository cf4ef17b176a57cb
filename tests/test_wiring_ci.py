"""`.ci/run` sets CI=true itself, and on CI a lost timing race fails.

`.ci/run` is run as a contributor runs it (`bash .ci/run`, no CI variable)
on a copy, with stand-ins for python3 (venv, pip, pytest) that record the
environment the test command gets instead of installing anything.
"""

import os
import shutil
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "tests")

FAKE_PYTHON = """#!/bin/bash
# Stand-in for python3 / the venv's python: records `-m pytest`'s CI.
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin"
  echo 'PATH="'"$FAKE_BIN"':$PATH"' > "$3/bin/activate"
  exit 0
fi
if [ "$1" = "-m" ] && [ "$2" = "pytest" ]; then
  echo "CI=${CI-unset}" > "$RECORD"
fi
exit 0
"""


def test_ci_run_exports_ci_true_itself(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, ".ci", "run"), repo / ".ci" / "run")
    fake = tmp_path / "bin"
    fake.mkdir()
    for name in ("python3", "python"):
        (fake / name).write_text(FAKE_PYTHON)
        (fake / name).chmod(0o755)
    (fake / "id").write_text("#!/bin/bash\necho 1000\n")  # not root: no apt-get
    (fake / "id").chmod(0o755)
    record = tmp_path / "ci.txt"
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(PATH=f"{fake}:/usr/bin:/bin", FAKE_BIN=str(fake),
               RECORD=str(record))
    proc = subprocess.run(["bash", str(repo / ".ci" / "run")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert record.read_text().strip() == "CI=true"


def test_a_lost_timing_race_fails_on_ci_and_skips_elsewhere(tmp_path):
    shutil.copy(os.path.join(HERE, "conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_race.py").write_text(textwrap.dedent("""
        import pytest
        def test_race():
            pytest.skip("lost a timing race: finished before the signal")
    """))
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "-p", "no:xdist", "test_race.py"]
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    here = subprocess.run(args, capture_output=True, text=True,
                          cwd=str(tmp_path), env=env, timeout=240)
    assert here.returncode == 0 and "1 skipped" in here.stdout, here.stdout[-2000:]
    on_ci = subprocess.run(args, capture_output=True, text=True,
                           cwd=str(tmp_path), env=dict(env, CI="true"),
                           timeout=240)
    assert on_ci.returncode == 1 and "1 failed" in on_ci.stdout, on_ci.stdout[-2000:]
