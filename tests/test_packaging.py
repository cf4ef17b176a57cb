"""`pip install .` ships the library alone, with requirements.txt's dependencies."""

import email
import pathlib
import subprocess
import sys
import zipfile

import pytest
from packaging.requirements import Requirement

from tests.harness import package_source_copy

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _requirements(lines):
    """{normalised name: specifier set} of requirement lines."""
    result = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            result[req.name.lower().replace("_", "-")] = req.specifier
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    # Build from a copy: setuptools writes build/ and *.egg-info next to
    # pyproject.toml, and the checkout should stay clean.
    src = package_source_copy(tmp_path_factory)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps",
         "--no-build-isolation", "--no-index", "-q", "-w", str(out), str(src)],
        check=True, capture_output=True, timeout=120)
    (path,) = out.glob("*.whl")
    return zipfile.ZipFile(path)


def test_wheel_installs_only_the_library(wheel):
    top = {name.split("/", 1)[0] for name in wheel.namelist()}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert len(dist_info) == 1
    assert top - dist_info == {"simclr_tf2"}
    # Subpackages come along (not just the top-level __init__).
    for sub in ("models", "data", "optim", "original", "analysis", "export", "embedding",
                "rundir"):
        assert f"simclr_tf2/{sub}/__init__.py" in wheel.namelist()


def test_wheel_dependencies_are_requirements_txt(wheel):
    (meta,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    message = email.message_from_bytes(wheel.read(meta))
    declared = _requirements(message.get_all("Requires-Dist"))
    listed = _requirements((ROOT / "requirements.txt").read_text().splitlines())
    assert declared == listed
    assert "tensorflow" in declared


def test_console_scripts_point_at_embed_and_export(wheel):
    (entry,) = [n for n in wheel.namelist()
                if n.endswith(".dist-info/entry_points.txt")]
    scripts = wheel.read(entry).decode()
    assert "simclr-embed = simclr_tf2.embedding.command:main" in scripts
    assert "simclr-export = simclr_tf2.export.command:main" in scripts
