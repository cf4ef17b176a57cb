"""The package's layout: few top-level modules, no import cycle between its
folders, and each model_dir name spelled in one module."""

import ast
import collections
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "simclr_tf2"
MAX_TOP_LEVEL_MODULES = 8


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text())


def _part(path):
    """The top-level folder (or module) of simclr_tf2 a file belongs to."""
    rel = path.relative_to(PACKAGE).parts
    return rel[0] if len(rel) > 1 else rel[0][:-3]


def _imported_parts(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = node.module.split(".")
            if names[0] != "simclr_tf2":
                continue
            if len(names) > 1:
                yield names[1]
            else:
                yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names = alias.name.split(".")
                if names[0] == "simclr_tf2" and len(names) > 1:
                    yield names[1]


def test_top_level_holds_few_modules_beside_the_subpackages():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules
    assert (PACKAGE / "py.typed").is_file()


def test_no_import_cycle_between_the_package_folders():
    edges = collections.defaultdict(set)
    for path, tree in _modules():
        part = _part(path)
        edges[part] |= {p for p in _imported_parts(tree) if p != part}

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n)))
                   for n in edges.get(start, ()))

    cycles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a]
                    if a < b and reaches(b, a))
    assert not cycles, cycles


def test_the_library_never_reads_absl_flags():
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "absl":
                assert "flags" not in {a.name for a in node.names}, path
            if isinstance(node, ast.Import):
                assert "absl.flags" not in {a.name for a in node.names}, path


def test_model_dir_names_are_spelled_in_rundir_only():
    """A model_dir file name (or the ckpt-N pattern) as a string of its own
    appears in simclr_tf2/rundir/__init__.py only; the rest import it."""
    owner = PACKAGE / "rundir" / "__init__.py"
    names = {"flags.json", "flags_origin.json", "result.json", "training.lock",
             "training_done.json", "label_subset.txt", "saved_model",
             "saved_model.pb", "ckpt"}
    for path, tree in _modules():
        if path == owner:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value not in names, f"{path}:{node.lineno}: {node.value!r}"
            if isinstance(node, ast.JoinedStr):
                parts = [v.value for v in node.values if isinstance(v, ast.Constant)]
                assert not any(p.startswith("ckpt-") or p.startswith("result_")
                               for p in parts), f"{path}:{node.lineno}"
