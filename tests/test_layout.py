"""Structural tests that keep the layout honest: no import cycles, ``core`` at the bottom, complete
``dvc.yaml`` deps, thin stage shims, registries that match ``params.yaml``.

The import graph is read with :mod:`ast`, never by importing: every ``import``/``from ... import``
anywhere in a file counts, function-level ones included. Rules:

- ``from P import x`` points at module ``P.x`` when that is a module (a submodule import), else at
  ``P``; ``import P.x.y`` points at the longest prefix that is a module.
- Importing ``a.b.c`` first runs the ``__init__`` of ``a`` and of ``a.b``, so an import of a module
  also points at each package enclosing it that does not enclose the importer (those are already
  being initialised when the importer runs). Hence ``pkg/__init__`` importing ``pkg.sub`` is fine, but ``pkg.sub``
  importing a name from ``pkg`` while ``pkg/__init__`` imports ``pkg.sub`` is a cycle, and so is
  ``a.x -> b.y`` when ``b/__init__`` imports ``a.x``.
- The top package ``singer_ssl`` encloses everything and is never an implicit target; only its
  module-level imports count (its lazy re-exports such as ``load_model`` import ``singer_ssl.api``
  only when a user calls them), and :func:`test_top_package_imports_nothing_at_load` keeps those
  empty. An explicit ``import singer_ssl`` (e.g. for ``__version__``) still points at it.
- For ``dvc.yaml`` deps, a file holding only a docstring (an empty package ``__init__``) runs
  nothing and needs no dep.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "singer_ssl"
MAX_SHIM_LINES = 40

Graph = dict[str, set[str]]


# ------------------------------------------------------------------------------ the import graph

def module_files(root: Path, package: str) -> dict[str, Path]:
    """Module name -> its file, for every ``.py`` file of ``root/package`` (``__init__`` = the package)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _longest_module(name: str, modules: set[str]) -> str | None:
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return None


def _from_base(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The absolute module name of ``from <base> import ...`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def import_nodes(path: Path, load_time_only: bool = False) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a file (function-level ones too, unless ``load_time_only``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if load_time_only else ast.walk(tree)
    return [n for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom))]


def explicit_imports(path: Path, importer: str, modules: set[str], load_time_only: bool = False) -> set[str]:
    """The known modules that the file at ``path`` (module ``importer``) names in its imports."""
    is_package = path.name == "__init__.py"
    found: set[str | None] = set()
    for node in import_nodes(path, load_time_only):
        if isinstance(node, ast.Import):
            found |= {_longest_module(a.name, modules) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, importer, is_package)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else _longest_module(base, modules))
    return {m for m in found if m is not None and m != importer}


def enclosing_packages(module: str, top: str) -> list[str]:
    """The packages that ``module`` lies in, below the top package: ``a.b.c`` -> ``[a.b]``."""
    parts = module.split(".")
    return [".".join(parts[:n]) for n in range(2, len(parts))] if parts[0] == top else []


def edges_of(importer: str, targets: set[str], top: str) -> set[str]:
    """``targets`` plus each package enclosing a target that does not enclose ``importer``."""
    mine = set(enclosing_packages(importer, top))
    implicit = {p for t in targets for p in enclosing_packages(t, top)}
    return (targets | (implicit - mine)) - {importer}


def import_graph(root: Path, package: str) -> Graph:
    """Module -> the modules it imports (rules in this file's docstring)."""
    files = module_files(root, package)
    modules = set(files)
    return {m: edges_of(m, explicit_imports(p, m, modules, load_time_only=m == package), package)
            for m, p in files.items()}


def find_cycles(graph: Graph) -> list[list[str]]:
    """Cycles ``[a, b, ..., a]`` found by a depth-first search (one per back edge; empty when acyclic)."""
    state: dict[str, str] = {}  # "open" while on the stack, "done" after
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def imports_leaving(graph: Graph, inside: str) -> dict[str, set[str]]:
    """For modules in package ``inside``: the modules outside it that they import (empty when clean)."""
    def within(m: str) -> bool:
        return m == inside or m.startswith(inside + ".")

    return {m: bad for m, targets in graph.items() if within(m) and (bad := {t for t in targets if not within(t)})}


# ------------------------------------------------------------------------------ dvc.yaml deps

def stage_definitions(dvc_yaml: Path) -> dict[str, dict]:
    """Stage name -> its definition (the ``do:`` body of a ``foreach`` stage)."""
    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    return {name: body.get("do", body) for name, body in stages.items()}


def shim_of(stage: dict) -> str | None:
    """The ``stages/<x>.py`` script of a stage's ``cmd`` (first such token), or None."""
    cmd = stage["cmd"] if isinstance(stage["cmd"], str) else " ".join(stage["cmd"])
    return next((tok for tok in cmd.split() if re.fullmatch(r"stages/\w+\.py", tok)), None)


def dep_paths(stage: dict) -> list[str]:
    """The ``deps:`` of a stage as plain paths (a dep may be a one-key mapping with options)."""
    return [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]


def closure(start: set[str], graph: Graph) -> set[str]:
    """Every module reachable from ``start`` (``start`` included)."""
    seen, todo = set(), list(start)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    return seen


def runs_code(path: Path) -> bool:
    """False for a file holding only a docstring (an empty package ``__init__``)."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return not all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def covered(file: str, deps: list[str]) -> bool:
    """Whether a dep is ``file`` itself or a folder holding it."""
    return any(file == d.rstrip("/") or file.startswith(d.rstrip("/") + "/") for d in deps)


def stage_files(root: Path, shim: str, package: str) -> set[str]:
    """The shim and the files (relative to ``root``) of every ``package`` module it runs."""
    files = module_files(root, package)
    graph = import_graph(root, package)
    name = "stages." + Path(shim).stem
    first = edges_of(name, explicit_imports(root / shim, name, set(files)), package)
    used = {files[m] for m in closure(first, graph)}
    return {shim} | {p.relative_to(root).as_posix() for p in used if runs_code(p)}


def missing_deps(root: Path, dvc_yaml: Path, package: str) -> dict[str, list[str]]:
    """Stage -> the files it runs that no dep covers (its shim included); only stages with gaps."""
    out = {}
    for name, stage in stage_definitions(dvc_yaml).items():
        shim = shim_of(stage)
        if shim is None:
            out[name] = ["<cmd runs no stages/<x>.py>"]
            continue
        deps = dep_paths(stage)
        gaps = sorted(f for f in stage_files(root, shim, package) if (f == shim and shim not in deps)
                      or (f != shim and not covered(f, deps)))
        if gaps:
            out[name] = gaps
    return out


# ------------------------------------------------------------------------------ the real tree

def test_no_import_cycles():
    cycles = find_cycles(import_graph(ROOT, PACKAGE))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_core_imports_nothing_else_from_the_package():
    leaks = imports_leaving(import_graph(ROOT, PACKAGE), f"{PACKAGE}.core")
    assert not leaks, "singer_ssl.core imports outside core: " + "; ".join(
        f"{m} -> {', '.join(sorted(t))}" for m, t in sorted(leaks.items()))


def test_top_package_imports_nothing_at_load():
    """Why the top package may be left out of the graph: importing it runs no other module."""
    assert not import_nodes(ROOT / PACKAGE / "__init__.py", load_time_only=True)


def test_dvc_deps_cover_every_module_a_stage_runs():
    gaps = missing_deps(ROOT, ROOT / "dvc.yaml", PACKAGE)
    assert not gaps, "dvc.yaml deps missing: " + "; ".join(f"{s}: {', '.join(f)}" for s, f in sorted(gaps.items()))


def test_stage_shims_are_thin():
    shims = sorted(p for p in (ROOT / "stages").glob("*.py") if p.name != "__init__.py")
    assert shims
    long = {p.name: n for p in shims if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_SHIM_LINES}
    assert not long, f"stage shims over {MAX_SHIM_LINES} lines: {long}"


def test_encoder_registry_matches_params_yaml():
    """(The objectives' registry against ``losses:`` is checked in test_losses.py.)"""
    from singer_ssl import encoders

    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert set(encoders.NAMES) == set(params["encoders"])


# ------------------------------------------------------------------------------ the checkers can fail

def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")


def test_cycle_checker_finds_known_cycles(tmp_path: Path):
    _write(tmp_path, {
        "pkg/__init__.py": '"""pkg"""\n',
        "pkg/a.py": "def f():\n    from pkg.b import g\n",          # function-level import counts
        "pkg/b.py": "from pkg import a\n\ndef g():\n    pass\n",
        "pkg/reg/__init__.py": "from pkg.reg import one\nHELPER = 1\n",  # package importing its submodule: fine
        "pkg/reg/one.py": "from pkg.reg import two\n",                   # sibling submodule: fine
        "pkg/reg/two.py": "X = 2\n",
    })
    assert find_cycles(import_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b", "pkg.a"]]

    (tmp_path / "pkg/reg/two.py").write_text("from pkg.reg import HELPER\n")  # back into its package's __init__
    assert ["pkg.reg", "pkg.reg.one", "pkg.reg.two", "pkg.reg"] in find_cycles(import_graph(tmp_path, "pkg"))


def test_cycle_checker_sees_a_package_init_run_implicitly(tmp_path: Path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/x.py": "import pkg.sub.y\n",              # runs pkg/sub/__init__ first ...
        "pkg/sub/__init__.py": "from pkg import x\n",  # ... which imports pkg.x back
        "pkg/sub/y.py": "",
    })
    assert find_cycles(import_graph(tmp_path, "pkg")) == [["pkg.sub", "pkg.x", "pkg.sub"]]


def test_core_checker_finds_a_leak(tmp_path: Path):
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/core/__init__.py": "", "pkg/core/io.py": "from . import util\n",
                      "pkg/core/util.py": "def f():\n    from pkg.model import m\n", "pkg/model.py": ""})
    assert imports_leaving(import_graph(tmp_path, "pkg"), "pkg.core") == {"pkg.core.util": {"pkg.model"}}


def test_deps_checker_finds_a_missing_dep(tmp_path: Path):
    _write(tmp_path, {
        "pkg/__init__.py": '"""docstring only: runs nothing"""\n',
        "pkg/core/__init__.py": "",
        "pkg/core/io.py": "X = 1\n",
        "pkg/step.py": "from pkg.core import io\n\ndef run():\n    from pkg.extra import helper\n",
        "pkg/extra/__init__.py": "from pkg.extra import helper\n",
        "pkg/extra/helper.py": "X = 1\n",
        "stages/step.py": "from pkg.step import run\n",
    })
    stage = {"cmd": "python stages/step.py ${key}",
             "deps": ["stages/step.py", "pkg/core", "pkg/step.py", "pkg/extra", "data/in/${key}"]}
    dvc = tmp_path / "dvc.yaml"
    dvc.write_text(yaml.safe_dump({"stages": {"step": {"foreach": ["a"], "do": stage}}}))
    assert missing_deps(tmp_path, dvc, "pkg") == {}

    stage["deps"] = ["pkg/core", "pkg/step.py", "pkg/extra/__init__.py"]
    dvc.write_text(yaml.safe_dump({"stages": {"step": stage}}))
    assert missing_deps(tmp_path, dvc, "pkg") == {"step": ["pkg/extra/helper.py", "stages/step.py"]}


def test_train_declares_every_result_setting_and_no_runtime_one():
    """Editing train.log_every (how often it logs) must not retrain; editing any other train.* key must."""
    import dataclasses

    from singer_ssl.training.config import RUNTIME_KEYS, TrainSettings

    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]["train"]
    declared = {p.split(".", 1)[1] for p in stage["params"] if isinstance(p, str) and p.startswith("train.")}
    assert "train" not in stage["params"]
    assert declared == {f.name for f in dataclasses.fields(TrainSettings)} - set(RUNTIME_KEYS)
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert declared <= set(params["train"])  # DVC refuses a declared param that params.yaml lacks


def test_every_progress_bar_is_quiet_in_log_files():
    """Every tqdm bar in the package says when it is off (``disable=None``: only on a terminal), so a stage
    writing to a log file prints no carriage-return floods."""
    import ast

    missing = []
    for path in sorted((ROOT / "singer_ssl").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "tqdm":
                if not any(k.arg == "disable" for k in node.keywords):
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not missing, missing
