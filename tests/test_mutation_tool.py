"""benchmarks/mutation.py's scheduling: its test runs yield to training jobs."""

import os
import subprocess
import sys

import pytest

from tests import harness

mutation = harness.benchmark_module("mutation")


def _autogroups_on():
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as enabled:
            return enabled.read().strip() == "1"
    except OSError:
        return False


@pytest.mark.skipif(not _autogroups_on(), reason="the kernel does not group by session")
def test_a_session_of_its_own_gets_the_niceness_and_the_callers_does_not():
    def autogroup(pid):
        with open(f"/proc/{pid}/autogroup") as f:
            return f.read().split()  # ["/autogroup-<n>", "nice", "<niceness>"]
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                               start_new_session=True)
    try:
        # Empty where the caller sits in the root group (a process of init's
        # session, as under some CI runners): that group has no niceness.
        mine = autogroup(os.getpid())
        assert mutation.lower_session_priority(sleeper.pid, 19)
        assert autogroup(sleeper.pid)[1:] == ["nice", "19"]
        assert autogroup(sleeper.pid)[:1] != mine[:1]
        assert autogroup(os.getpid()) == mine
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not mutation.lower_session_priority(sleeper.pid, 19)  # Gone: no error.
