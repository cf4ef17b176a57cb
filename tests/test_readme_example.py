"""README's "Use it as a library" Python example runs as written.

The block is read from README.md and executed unchanged in a fresh
directory; then the embed command its comment names is run on the
`.keras` file it saved.
"""

import pathlib
import re

import numpy as np
from PIL import Image

from simclr_tf2.embedding import command

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
MAX_LINES = 15


def library_example():
    """The first ```python block under README's "Use it as a library"."""
    section = README.read_text().split("## Use it as a library", 1)[1]
    section = section.split("\n## ", 1)[0]
    match = re.search(r"^```python\n(.*?)^```", section, re.S | re.M)
    assert match, "README's library section has no ```python block"
    return match.group(1)


def test_example_is_short():
    lines = library_example().rstrip("\n").split("\n")
    assert len(lines) <= MAX_LINES, f"{len(lines)} lines"


def test_example_runs_as_written_then_embeds(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme_example"}
    exec(compile(library_example(), "README.md", "exec"), namespace)

    model, images, h = namespace["model"], namespace["images"], namespace["h"]
    assert np.isfinite(model.history.history["loss"]).all()
    assert h.shape == (len(images), 576) and np.isfinite(h).all()
    assert (tmp_path / "simclr.keras").is_file()

    # The command in the example's comment, on three of its images.
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(images[i]).save(folder / f"{i}.png")
    command.main(["--model=simclr.keras", f"--images={folder}", "--out=emb"])
    assert "wrote 3 embeddings of dimension 576" in capsys.readouterr().out
    rows = np.load(tmp_path / "emb" / "embeddings.npy")
    np.testing.assert_allclose(rows, h[:3], atol=1e-4)


def test_docs_library_shows_the_same_example():
    docs = README.parent / "docs" / "library.md"
    assert f"```python\n{library_example()}```" in docs.read_text()
