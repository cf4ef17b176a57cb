"""Every script in benchmarks/ answers --help: its usage prints and it exits 0.

argparse formats each help string with %-substitution, so a help text that
quotes "35-100%" crashes --help (TypeError) although the script runs; this
test catches it for all scripts at the cost of one interpreter.
"""

import os
import subprocess
import sys
import textwrap

from tests import harness

BENCHMARKS = os.path.join(harness.ROOT, "benchmarks")

# Runs each script as __main__ with argv [script, "--help"] and prints
# "<name> <exit code> <first usage line>" per script.
_DRIVER = textwrap.dedent("""
    import contextlib, io, runpy, sys
    for path in sys.argv[1:]:
        sys.argv = [path, "--help"]
        sys.path.insert(0, path.rsplit("/", 1)[0])
        out = io.StringIO()
        code = "no exit"
        try:
            with contextlib.redirect_stdout(out):
                runpy.run_path(path, run_name="__main__")
        except SystemExit as done:
            code = done.code or 0
        except Exception as error:
            code = f"{type(error).__name__}: {error}"
        usage = out.getvalue().strip().splitlines()[:1] or ["(nothing printed)"]
        print(path.rsplit("/", 1)[1], code, usage[0], sep="\\t", file=sys.__stdout__)
""")


def _entry_points():
    for name in sorted(os.listdir(BENCHMARKS)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(BENCHMARKS, name), encoding="utf-8") as handle:
            if 'if __name__ == "__main__":' in handle.read():
                yield os.path.join(BENCHMARKS, name)


def test_every_benchmark_script_prints_its_usage_on_help():
    scripts = list(_entry_points())
    assert len(scripts) >= 15, scripts
    done = subprocess.run([sys.executable, "-c", _DRIVER, *scripts], cwd=harness.ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line.split("\t") for line in done.stdout.splitlines() if "\t" in line]
    assert [name for name, *_ in lines] == [os.path.basename(p) for p in scripts]
    for name, code, usage in lines:
        assert code == "0" and usage.startswith("usage:"), (name, code, usage)
