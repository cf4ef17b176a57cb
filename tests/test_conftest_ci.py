"""On CI (CI=true) the distributed tests cannot silently skip."""

import os
import shutil
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))

# TensorFlow's devices initialised before conftest.py runs (as when a plugin
# or sitecustomize imports it first): the 2-logical-device split fails.
DRIVER = """
import sys
import tensorflow as tf
tf.config.list_logical_devices("CPU")
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "test_two.py"]))
"""


def test_two_device_tests_fail_on_ci(tmp_path):
    shutil.copy(os.path.join(HERE, "conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_two.py").write_text(textwrap.dedent("""
        def test_needs_two(two_replica_strategy):
            assert two_replica_strategy.num_replicas_in_sync == 2
    """))
    env = dict(os.environ, CI="true")
    on_ci = subprocess.run([sys.executable, "-c", DRIVER], capture_output=True,
                           text=True, cwd=str(tmp_path), env=env, timeout=240)
    # Without CI=true the same run skips the test (exit 0, "1 skipped"); on
    # CI it must fail, naming why.
    assert on_ci.returncode not in (0, 5), on_ci.stdout[-2000:]
    output = on_ci.stdout + on_ci.stderr
    assert "1 skipped" not in output, output[-2000:]
    assert "CI=true" in output, output[-2000:]
