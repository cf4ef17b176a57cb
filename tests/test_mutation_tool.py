"""benchmarks/mutation.py: its test runs yield to training jobs, its counts are
honest about untested mutants, and one run holds a cache at a time."""

import os
import sqlite3
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


def _junit(cases):
    """A `mutmut junitxml` document: (mutant id, failure message or None)."""
    rows = "".join(
        f'<testcase name="Mutant #{m}">'
        + (f'<failure message="{msg}">diff {m}</failure>' if msg else "")
        + "</testcase>" for m, msg in cases)
    return f'<testsuites><testsuite name="mutmut">{rows}</testsuite></testsuites>'


def test_untested_mutants_are_not_counted_as_killed(tmp_path):
    # mutmut junitxml writes an untested mutant like a killed one; the cache
    # says which it is (a run that stopped early left 83 of 132 so).
    cache = str(tmp_path / "cache.sqlite")
    with sqlite3.connect(cache) as db:
        db.execute("CREATE TABLE Mutant (id INTEGER PRIMARY KEY, status TEXT)")
        db.executemany("INSERT INTO Mutant VALUES (?, ?)", [
            (1, "ok_killed"), (2, "bad_survived"), (3, "untested"), (4, "untested"),
            (5, "bad_timeout")])
    found = mutation.parse_junit(_junit(
        [(1, None), (2, "bad_survived"), (3, None), (4, None), (5, "bad_timeout")]))
    counts = mutation.tally(found, mutation.cached_statuses(cache))
    assert (counts["total"], counts["killed"], counts["survived"], counts["untested"]) == (5, 2, 1, 2)
    assert counts["survivors"] == [(2, "diff 2")]
    text = mutation.report([dict(counts, module="pipeline", tests=["t.py"], seconds=60)])
    assert "| pipeline | 2 / 5 | 40% | 2 | 1 min |" in text
    assert "Some mutants were not tested" in text


def test_a_second_run_on_the_same_cache_dir_is_refused(tmp_path):
    with mutation.exclusive(str(tmp_path)):
        with pytest.raises(SystemExit) as refused:
            with mutation.exclusive(str(tmp_path)):
                pass
    assert str(refused.value) == (
        f"error: another mutation run is using --cache_dir={tmp_path}; "
        "wait for it to end or pass another --cache_dir.")
    with mutation.exclusive(str(tmp_path)):  # Free again once the first ends.
        pass


def test_a_run_whose_results_stop_changing_is_stopped(tmp_path):
    results = tmp_path / "cache"
    results.write_text("")
    # Writes its results once, then hangs (as mutmut does when its worker dies).
    hang = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]
    out, _, stalled = mutation.run_watched(hang, str(tmp_path), str(results),
                                           stall_s=1, poll_s=0.5)
    assert stalled and out == "started\n"
    # A run that keeps writing its results, then ends, is left to finish.
    busy = [sys.executable, "-c", "import time, pathlib\n"
            "for i in range(6):\n"
            f"    pathlib.Path({str(results)!r}).write_text(str(i)); time.sleep(0.4)\n"
            "print('done')"]
    out, _, stalled = mutation.run_watched(busy, str(tmp_path), str(results),
                                           stall_s=1.5, poll_s=0.3)
    assert not stalled and out == "done\n" and results.read_text() == "5"
