"""The pip-installed package, used outside the checkout.

`pip install --no-deps --target=T <copy of the checkout>` (the dependencies
are this environment's), then everything runs from an empty directory with
only T on PYTHONPATH: the library imports from T, the checkout's top-level
names are not importable, the `simclr-embed` and `simclr-export` console scripts work, and
README's library example runs as written and its saved model embeds a folder
through that script.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.harness import TINY_FLAGS, package_source_copy, run_py

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_example():
    section = (ROOT / "README.md").read_text().split("## Use it as a library", 1)[1]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    return block


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(target dir, empty working dir, environment) of an installed copy."""
    src = package_source_copy(tmp_path_factory)
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps",
         "--no-build-isolation", "--no-index", "-q", f"--target={target}",
         str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shutil.rmtree(src)  # nothing of the source tree stays reachable
    empty = tmp_path_factory.mktemp("elsewhere")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(PYTHONPATH=str(target), PYTHONNOUSERSITE="1",
               TF_CPP_MIN_LOG_LEVEL="2")
    return target, empty, env


def _python(installed, code, timeout=300):
    _, cwd, env = installed
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_library_imports_from_the_install_and_checkout_names_do_not(installed):
    target, _, _ = installed
    proc = _python(installed, """
import importlib.util, simclr_tf2, simclr_tf2.embed, simclr_tf2.data.pipeline
print(simclr_tf2.__file__)
for name in ("flags", "export", "run", "benchmarks", "tests"):
    spec = importlib.util.find_spec(name)
    print(name, spec.origin if spec else None)
""")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.split("\n")
    assert lines[0].startswith(str(target)), lines[0]
    for line in lines[1:6]:
        name, origin = line.split(" ", 1)
        assert str(ROOT) not in origin, f"{name} importable from the checkout"
        assert not origin.startswith(str(target)), f"{name} was installed"


def test_console_script_runs_from_an_empty_directory(installed):
    target, cwd, env = installed
    script = target / "bin" / "simclr-embed"
    assert script.is_file()
    proc = subprocess.run([str(script), "--help"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--images" in proc.stdout and "--dataset" in proc.stdout


def test_simclr_embed_embeds_a_folder_outside_the_checkout(installed):
    """A tiny encoder saved as .keras by the installed library, embedded by
    the installed console script (README's example below does the same at
    full size, marked slow)."""
    target, cwd, env = installed
    proc = _python(installed, """
import os, keras, numpy as np, tensorflow as tf
from PIL import Image
from simclr_tf2.models import backbones, heads
from simclr_tf2.models.simclr_model import SimCLRModel
inputs = keras.Input([None, None, 3])
features = keras.layers.Conv2D(5, 3, name="c")(inputs)
model = SimCLRModel(backbones.BackboneEncoder(keras.Model(inputs, features)),
                    heads.ProjectionHead(mode="linear", num_layers=1, out_dim=4))
images = np.random.default_rng(0).integers(0, 256, [3, 16, 16, 3], np.uint8)
h = model(tf.constant(images / 255, tf.float32))["final_avg_pool"].numpy()
model.save("tiny.keras")
os.makedirs("tiny_photos/b", exist_ok=True)
for i in range(3):
    Image.fromarray(images[i]).save(f"tiny_photos/b/{i}.png")
np.save("tiny_h.npy", h)
""")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = subprocess.run(
        [str(target / "bin" / "simclr-embed"), "--model=tiny.keras",
         "--images=tiny_photos", "--image_size=16", "--out=tiny_emb"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote 3 embeddings of dimension 5" in proc.stdout
    np.testing.assert_allclose(np.load(cwd / "tiny_emb" / "embeddings.npy"),
                               np.load(cwd / "tiny_h.npy"), rtol=1e-4,
                               atol=1e-5)


@pytest.mark.slow
def test_readme_example_and_simclr_embed_outside_the_checkout(installed):
    target, cwd, env = installed
    code = _readme_example() + """
from PIL import Image
import os
os.makedirs("photos/a", exist_ok=True)
for i in range(3):
    Image.fromarray(images[i]).save(f"photos/a/{i}.png")
np.save("h.npy", h[:3])
"""
    proc = _python(installed, code, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (cwd / "simclr.keras").is_file()
    proc = subprocess.run(
        [str(target / "bin" / "simclr-embed"), "--model=simclr.keras",
         "--images=photos", "--out=emb"], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote 3 embeddings of dimension 576" in proc.stdout
    np.testing.assert_allclose(np.load(cwd / "emb" / "embeddings.npy"),
                               np.load(cwd / "h.npy"), atol=1e-4)


def test_simclr_export_exports_a_model_dir_outside_the_checkout(installed, tmp_path):
    """A model_dir trained by the checkout's run.py, exported by the installed
    `simclr-export` from an empty directory, loads and gives h."""
    target, cwd, env = installed
    model_dir = tmp_path / "run"
    proc = run_py("--mode=train", "--train_steps=1", f"--model_dir={model_dir}",
                  *TINY_FLAGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = subprocess.run(
        [str(target / "bin" / "simclr-export"), f"--model_dir={model_dir}",
         "--export_dir=exported"], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _python(installed, """
import tensorflow as tf
m = tf.saved_model.load("exported")
out = m(tf.zeros([2, 16, 16, 3]), trainable=False)
print(out["final_avg_pool"].shape, sorted(m.signatures))
""")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # TINY_FLAGS: ResNet-18 at 1/8 width, so h has 512 / 8 = 64 dimensions.
    assert "(2, 64)" in proc.stdout and "serving_default" in proc.stdout, proc.stdout
