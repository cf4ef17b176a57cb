"""README.md and docs/: every relative link resolves, README stays a front page.

CI and outside checks read the two set-up commands from README.md, so their
exact text is pinned here; README.md is capped at 300 lines so that detail
goes to docs/ pages, each reachable by a link.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 300
SETUP_COMMANDS = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -r "
    "requirements.txt && python run.py --mode=train_then_eval",
    "python3 -m venv .venv && . .venv/bin/activate && pip install -r "
    "requirements.txt -r requirements-dev.txt && python -m pytest -q",
)

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target), with an optional "title".
_LINK = re.compile(r"\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def _markdown_files():
    return [README] + sorted((ROOT / "docs").rglob("*.md"))


def _prose(text):
    """`text` without fenced blocks and inline code, where `](` is not a link."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def links(text):
    """Relative link targets of a markdown text (URLs and mail links left out)."""
    return [t for t in _LINK.findall(_prose(text))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def slug(heading):
    """GitHub's anchor for a heading: lowercase, punctuation dropped, '-' for spaces."""
    text = heading.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    return {slug(h) for h in _HEADING.findall(_FENCE.sub("", path.read_text()))}


def broken_links(path):
    """['target: why'] for each link in `path` that does not resolve."""
    problems = []
    for target in links(path.read_text()):
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            problems.append(f"{target}: no heading with anchor #{fragment}")
    return problems


def test_link_parser_finds_relative_links_and_skips_code_and_urls():
    text = ("See [a](docs/a.md#x) and ![p](img.png \"t\"), not [u](https://x.org).\n"
            "`[c](inline.md)`\n```\n[d](fenced.md)\n```\n")
    assert links(text) == ["docs/a.md#x", "img.png"]


def test_slug_matches_github_anchors():
    assert slug("Fashion-MNIST, a 1/8-width configuration") == (
        "fashion-mnist-a-18-width-configuration")
    assert slug("What a run leaves in `model_dir`") == "what-a-run-leaves-in-model_dir"


def test_broken_link_is_reported(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n[ok](page.md#top) [gone](missing.md) [bad](#nowhere)\n")
    assert broken_links(page) == [
        "missing.md: no such file", "#nowhere: no heading with anchor #nowhere"]


@pytest.mark.parametrize("path", _markdown_files(),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    assert broken_links(path) == []


def test_every_docs_page_is_reachable_from_readme():
    reached, todo = set(), [README.resolve()]
    while todo:
        page = todo.pop()
        if page in reached or page.suffix != ".md" or not page.exists():
            continue
        reached.add(page)
        todo += [(page.parent / t.partition("#")[0]).resolve()
                 for t in links(page.read_text()) if t.partition("#")[0]]
    unreached = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "docs").glob("*.md"))
                 if p.resolve() not in reached]
    assert unreached == []


def test_readme_is_a_front_page_with_the_two_setup_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    for command in SETUP_COMMANDS:
        assert command in text
