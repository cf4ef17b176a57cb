"""Mutation testing of the core modules, each against its own test files.

    python benchmarks/mutation.py losses knn subsets schedule
    python benchmarks/mutation.py --list
    python benchmarks/mutation.py all --out=mutation.md

For each module named, mutmut (2.x, requirements-dev.txt) makes one small
change at a time to the module's source (an operator, a constant, a
comparison, a keyword argument...) and runs only that module's test files;
a mutant that leaves every test green "survived": a change the tests cannot
see. The report gives killed / total per module and the diff of every
survivor, to be killed by a new test or explained as equivalent.

The run works on a copy of the checkout (mutmut edits files in place), so
the checkout stays clean and usable while it runs. One process at a time,
started with `nice` in a session of its own whose scheduling group is
niced too (Linux autogroups), so that it yields to a training job: it uses
about one core. TensorFlow is imported once by a fork server and every
mutant's tests run in a forked child (about 4 s a mutant instead of 12 s
with a fresh interpreter each time). mutmut's
results are kept per module in .mutation-cache/ (--cache_dir): killed
mutants stay killed, so after adding tests a re-run tests only the
survivors; --cache_dir='' starts afresh.

Module paths and test files are in MODULES below: one place to edit when
modules move.
"""

import argparse
import collections
import contextlib
import fcntl
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (paths to mutate, test files that should kill its mutants). The
# fast unit tests come first: pytest -x stops at the first failure.
MODULES = {
    "losses": (["simclr_tf2/losses/"],
               ["tests/test_mutants_losses.py", "tests/test_losses.py",
                "tests/test_supcon.py"]),
    "knn": (["simclr_tf2/knn.py"],
            ["tests/test_mutants_knn.py", "tests/test_knn.py"]),
    "subsets": (["simclr_tf2/data/subsets.py"],
                ["tests/test_mutants_subsets.py", "tests/test_subsets.py"]),
    "schedule": (["simclr_tf2/optim/schedule.py"],
                 ["tests/test_mutants_schedule.py", "tests/test_optim.py"]),
    "tasks": (["simclr_tf2/tasks/"],
              ["tests/test_mutants_tasks.py", "tests/test_tasks.py"]),
    "pipeline": (["simclr_tf2/data/pipeline.py"],
                 ["tests/test_mutants_pipeline.py", "tests/test_input_order.py",
                  "tests/test_wiring_augmentation_flags.py"]),
    "embedding": (["simclr_tf2/embedding/"],
                  ["tests/test_mutants_embedding.py", "tests/test_embedding.py"]),
    "memory": (["simclr_tf2/memory/"],
               ["tests/test_mutants_memory.py", "tests/test_memory.py",
                "tests/test_memory_ema.py"]),
    "same_run": (["simclr_tf2/rundir/same_run.py"], ["tests/test_same_run.py"]),
}

PYTEST_ARGS = ["-q", "-x", "-n", "0", "-p", "no:cacheprovider",
               "-W", "ignore::DeprecationWarning"]
CHILD_TIMEOUT = 300  # seconds; a mutant that hangs the tests counts as killed
# mutmut 2.5 waits forever when its worker process ends without a result;
# a run whose cache records nothing for this long is stopped.
STALL_SECONDS = 3 * CHILD_TIMEOUT


# --- fork server: TensorFlow imported once, each test run in a fork -------

def serve(sock_path):
    """Imports the heavy dependencies (no project code), then forks per request."""
    import keras  # noqa: F401
    import numpy  # noqa: F401
    import pytest
    import tensorflow  # noqa: F401
    parent = os.getppid()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    server.settimeout(30)
    while True:
        try:
            conn, _ = server.accept()
        except socket.timeout:  # Outlive no parent: it runs in its own session.
            if os.getppid() != parent:
                return
            continue
        request = json.loads(_recv(conn))
        if request.get("stop"):
            conn.close()
            return
        pid = os.fork()
        if pid == 0:  # child: fresh imports of the (mutated) project code
            os.chdir(request["cwd"])
            sys.path.insert(0, request["cwd"])
            log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(log, 1)
            os.dup2(log, 2)
            import signal
            signal.alarm(CHILD_TIMEOUT)
            os._exit(int(pytest.main(request["args"])))
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        conn.sendall(str(code).encode())
        conn.close()


def lower_session_priority(pid, niceness):
    """Gives process `pid`'s session (a session leader's autogroup) the
    niceness. Where the kernel groups processes by session
    (/proc/sys/kernel/sched_autogroup_enabled), nice alone only orders the
    processes of one session: a niced test run in its own session would
    still take a full core from a training run in another. Returns whether
    the kernel took it."""
    try:
        with open(f"/proc/{pid}/autogroup", "w") as autogroup:
            autogroup.write(str(niceness))
        return True
    except OSError:
        return False


def _recv(conn):
    chunks = []
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            break
    return b"".join(chunks).decode()


def client(sock_path, test_files):
    """mutmut's runner: asks the fork server to run pytest; its exit code."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(sock_path)
    request = {"cwd": os.getcwd(), "args": PYTEST_ARGS + test_files,
               "log": os.path.join(os.getcwd(), ".mutation-last-run.log")}
    conn.sendall((json.dumps(request) + "\n").encode())
    reply = conn.recv(64).decode()
    conn.close()
    return int(reply)


def stop_server(sock_path):
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(sock_path)
    conn.sendall(b'{"stop": true}\n')
    conn.close()


# --- driving mutmut ------------------------------------------------------

def copy_checkout(dest):
    """Tracked and untracked (not ignored) files of the checkout -> dest."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
        capture_output=True, text=True, check=True).stdout.split("\n")
    for rel in filter(None, files):
        src = os.path.join(ROOT, rel)
        if not os.path.isfile(src):
            continue
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel))


def parse_junit(xml_text):
    """`mutmut junitxml` -> [(mutant id, status, diff)]; status is "killed",
    "survived", "suspicious", "timeout" or "skipped"."""
    import xml.etree.ElementTree as ET
    found = []
    for case in ET.fromstring(xml_text).iter("testcase"):
        mutant = int(case.get("name").split("#")[1])
        failure = case.find("failure")
        skipped = case.find("skipped")
        if failure is not None:
            status = failure.get("message", "bad_survived").replace("bad_", "")
            found.append((mutant, status, failure.text or ""))
        elif skipped is not None:
            found.append((mutant, "skipped", ""))
        else:
            found.append((mutant, "killed", ""))
    return found


def run_module(name, workdir, sock_path, mutmut, cache_dir):
    paths, tests = MODULES[name]
    tests = [t for t in tests if os.path.exists(os.path.join(workdir, t))]
    cache = os.path.join(workdir, ".mutmut-cache")
    if os.path.exists(cache):
        os.remove(cache)
    # mutmut keeps killed mutants killed and re-tests the others when the
    # tests change: a later run re-tests only the survivors.
    kept = os.path.join(cache_dir, f"{name}.mutmut-cache") if cache_dir else None
    if kept and os.path.exists(kept):
        shutil.copy(kept, cache)
    runner = (f"{sys.executable} {os.path.join(workdir, 'benchmarks', 'mutation.py')}"
              f" --client={sock_path} " + " ".join(tests))
    start = time.time()
    out, err, stalled = run_watched(
        [mutmut, "run", "--paths-to-mutate", ",".join(paths),
         "--tests-dir", "tests", "--runner", runner, "--no-progress",
         "--simple-output", "--test-time-base", "30"], workdir, cache)
    if stalled:
        print(f"{name}: mutmut recorded no result for {STALL_SECONDS} s and was "
              "stopped; its untested mutants stay in the cache", file=sys.stderr)
    elapsed = time.time() - start
    xml_text = subprocess.run([mutmut, "junitxml"], cwd=workdir,
                              capture_output=True, text=True).stdout
    counts = tally(parse_junit(xml_text), cached_statuses(cache))
    if kept:
        os.makedirs(cache_dir, exist_ok=True)
        shutil.copy(cache, kept)
    shutil.move(cache, os.path.join(workdir, f".mutmut-cache-{name}"))
    if counts["total"] == 0 or counts["untested"]:
        print(out[-3000:], err[-3000:], file=sys.stderr)
    return dict(counts, module=name, paths=paths, tests=tests,
                seconds=round(elapsed))


def run_watched(command, cwd, watched, stall_s=STALL_SECONDS, poll_s=60):
    """Runs `command` to its end, or kills it once the file `watched` (its
    results) has not changed for stall_s seconds: (stdout, stderr, stalled)."""
    proc = subprocess.Popen(command, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    start = time.time()
    while True:
        try:
            out, err = proc.communicate(timeout=poll_s)
            return out, err, False
        except subprocess.TimeoutExpired:
            changed = os.path.getmtime(watched) if os.path.exists(watched) else start
            if time.time() - max(changed, start) > stall_s:
                proc.kill()
                out, err = proc.communicate()
                return out, err, True


def cached_statuses(cache_path):
    """{mutant id: status} from mutmut 2's cache (sqlite): "ok_killed",
    "bad_survived", "bad_timeout", "ok_suspicious", "skipped", "untested"."""
    with contextlib.closing(sqlite3.connect(cache_path)) as db:
        return dict(db.execute("SELECT id, status FROM Mutant"))


def tally(found, statuses):
    """Counts of one module's mutants.

    Args:
      found: parse_junit's [(mutant id, status, diff)], where an untested
        mutant looks killed (`mutmut junitxml` writes it so).
      statuses: cached_statuses' {mutant id: status}, which says which
        mutants were never tested (a run stopped early).

    Returns:
      {"total", "killed" (timeouts and suspicious runs count as killed),
      "survived", "untested", "by_status", "survivors": [(id, diff)]}.
    """
    found = [(m, "untested" if statuses.get(m) == "untested" else status, diff)
             for m, status, diff in found]
    by_status = dict(collections.Counter(status for _, status, _ in found))
    survivors = [(m, diff.strip()) for m, status, diff in found if status == "survived"]
    return {"total": len(found),
            "killed": sum(by_status.get(s, 0) for s in ("killed", "timeout", "suspicious")),
            "survived": len(survivors), "untested": by_status.get("untested", 0),
            "by_status": by_status, "survivors": survivors}


@contextlib.contextmanager
def exclusive(cache_dir):
    """Holds cache_dir for one run: two runs on one cache would overwrite
    each other's results. Exits with a one-line error when it is taken."""
    if not cache_dir:
        yield
        return
    os.makedirs(cache_dir, exist_ok=True)
    with open(os.path.join(cache_dir, ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.exit(f"error: another mutation run is using --cache_dir={cache_dir}; "
                     "wait for it to end or pass another --cache_dir.")
        yield


def report(results):
    lines = ["| module | killed / total | score | untested | time |",
             "|---|---|---|---|---|"]
    for r in results:
        score = r["killed"] / r["total"] if r["total"] else float("nan")
        lines.append(f"| {r['module']} | {r['killed']} / {r['total']} | "
                     f"{score:.0%} | {r['untested']} | {r['seconds'] // 60} min |")
    if any(r["untested"] for r in results):
        lines.append("\nSome mutants were not tested (the run stopped early); "
                     "a re-run with the same --cache_dir tests them.")
    for r in results:
        if r["survivors"]:
            lines.append(f"\n### {r['module']}: {r['survived']} survivor(s)"
                         f" (tests: {' '.join(r['tests'])})\n")
            for mutant, diff in r["survivors"]:
                lines.append(f"```diff\n{diff}\n```")
    return "\n".join(lines)


def run_modules(names, mutmut, args):
    """Runs each module's mutants in one working copy; their result dicts."""
    workdir = tempfile.mkdtemp(prefix="simclr_mutation_")
    copy_checkout(workdir)
    sock_path = os.path.join(workdir, ".mutation.sock")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
               TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=workdir)
    server = subprocess.Popen(
        ["nice", "-n", str(args.nice), sys.executable, __file__, f"--serve={sock_path}"],
        cwd=workdir, env=env, start_new_session=True)
    lower_session_priority(server.pid, args.nice)
    results = []
    try:
        while not os.path.exists(sock_path):
            if server.poll() is not None:
                raise RuntimeError("the fork server did not start")
            time.sleep(0.5)
        for name in names:
            result = run_module(name, workdir, sock_path, mutmut,
                                args.cache_dir)
            results.append(result)
            print(f"{name}: {result['killed']} / {result['total']} killed, "
                  f"{result['untested']} untested ({result['seconds']} s)", flush=True)
    finally:
        if server.poll() is None:
            stop_server(sock_path)
            server.wait(timeout=60)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"working copy kept: {workdir}")
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help=f"of {', '.join(MODULES)}, or all")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--out", help="also write the report (markdown) here")
    parser.add_argument("--nice", type=int, default=10,
                        help="niceness of the test runs (default 10)")
    parser.add_argument(
        "--cache_dir", default=os.path.join(ROOT, ".mutation-cache"),
        help="mutmut's results per module, kept between runs so that a "
             "re-run tests only the mutants that survived ('' : start afresh)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the working copy (to inspect mutants)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.serve:
        return serve(args.serve)
    if args.client:
        return client(args.client, args.modules + rest)
    if args.list or not args.modules:
        for name, (paths, tests) in MODULES.items():
            print(f"{name:10} {' '.join(paths):32} {' '.join(tests)}")
        return 0
    names = list(MODULES) if args.modules == ["all"] else args.modules
    unknown = set(names) - set(MODULES)
    if unknown:
        parser.error(f"unknown module(s) {sorted(unknown)}; see --list")
    mutmut = shutil.which("mutmut") or os.path.join(
        os.path.dirname(sys.executable), "mutmut")
    with exclusive(args.cache_dir):
        results = run_modules(names, mutmut, args)
    text = report(results)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
