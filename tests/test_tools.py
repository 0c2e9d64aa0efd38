"""Every script in tools/ imports, uses only names its opspec modules still define, and answers --help.

The docs cite these tools for numbers (spectral_power's defaults, conversion memory, optimizer timings),
so a tool broken by a refactor elsewhere (a removed private helper) must fail here, not months later.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
SHARED = {"__init__", "harness"}  # the package and its harness: no command line of their own
SCRIPTS = sorted(p for p in TOOLS.glob("*.py") if p.stem not in SHARED)


def _import(path: Path) -> types.ModuleType:
    """The tool as the package module it is (`tools.<name>`)."""
    return importlib.import_module(f"tools.{path.stem}")


def test_tools_folder_is_not_empty():
    assert len(SCRIPTS) >= 8, [p.name for p in SCRIPTS]


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_tool_imports_and_its_opspec_attributes_exist(path):
    """Import the tool, then check every `alias.attr` on an opspec module it holds (e.g. `SP._frobenius`)."""
    module = _import(path)
    assert callable(getattr(module, "main", None)), f"{path.name}: no main()"
    missing = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            target = getattr(module, node.value.id, None)
            if isinstance(target, types.ModuleType) and target.__name__.startswith("opspec"):
                if not hasattr(target, node.attr):
                    missing.append(f"{node.value.id}.{node.attr} (line {node.lineno}, {target.__name__})")
    assert not missing, f"{path.name} uses names its opspec modules no longer define: {missing}"


HELP_RUNNER = r"""
import contextlib, io, json, runpy, sys
results = {}
for name in sys.argv[1:]:
    out = io.StringIO()
    sys.argv = [name, "--help"]
    code, error = None, ""
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_module(name, run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        code = exit.code
    except BaseException as err:
        error = f"{type(err).__name__}: {err}"
    results[name] = {"code": code, "stdout": out.getvalue(), "error": error}
print(json.dumps(results))
"""


def test_every_tool_answers_help():
    """Run each tool as `python -m tools.NAME --help` would, all in one subprocess (torch is imported once)."""
    proc = subprocess.run(
        [sys.executable, "-c", HELP_RUNNER, *(f"tools.{p.stem}" for p in SCRIPTS)],
        capture_output=True, text=True, timeout=300, cwd=TOOLS.parent,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    bad = {name: r for name, r in results.items() if r["code"] not in (0, None) or r["error"] or "usage:" not in r["stdout"]}
    assert not bad, bad
    assert len(results) == len(SCRIPTS)


def test_no_tool_or_test_loads_a_tool_by_path_or_edits_sys_path():
    """Tools are the `tools` package: imported by name, run as `python -m tools.NAME`."""
    tests = [p for p in Path(__file__).resolve().parent.glob("*.py") if p.name != Path(__file__).name]
    bad = [f"tools/{p.name}" for p in TOOLS.glob("*.py") if "spec_from_file_location" in p.read_text()]
    bad += [f"{p.parent.name}/{p.name}" for p in [*TOOLS.glob("*.py"), *tests] if "sys.path.insert" in p.read_text()]
    bad += [f"tests/{p.name}" for p in tests if re.search(r"spec_from_file_location\([^)]*tools", p.read_text(), re.S)]
    assert not bad, bad


# bench_optim times a forward/backward/step as one microbenchmark (the optimizer's share of a step), profile_step
# profiles one in named phases, polar_schedules takes one gradient to have real directions to measure;
# every tool that trains a model does so through opspec's Trainer (exp_specmuon_regime's full-batch runs
# too: one-step epochs, evaluated every train.eval_every).
MICROBENCHMARKS = {"bench_optim", "profile_step", "polar_schedules"}


def test_no_tool_has_a_training_loop_of_its_own():
    loops = [p.stem for p in SCRIPTS if p.stem not in MICROBENCHMARKS and ".backward(" in p.read_text()]
    assert not loops, f"tools with a private training loop (use opspec.training.Trainer): {loops}"


def _is_module(name: str) -> bool:
    """Whether `name` (dotted) is an importable module."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _opspec_module_names(tree: ast.AST, module: types.ModuleType) -> set[str]:
    """The names a tool binds to opspec modules: its globals that are one, and what its imports (anywhere) bind."""
    names = {name for name, value in vars(module).items()
             if isinstance(value, types.ModuleType) and value.__name__.split(".")[0] == "opspec"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.asname or "opspec" for alias in node.names if alias.name.split(".")[0] == "opspec"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "opspec":
            names |= {alias.asname or alias.name for alias in node.names if _is_module(f"{node.module}.{alias.name}")}
    return names


def _root(node: ast.AST) -> str | None:
    """The name an attribute or item chain starts from (`SP` of `SP.later_steps`, `opspec` of `opspec.a.B[k]`)."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _targets(node: ast.AST) -> list[ast.AST]:
    """What an assignment or `del` statement writes, tuples unpacked."""
    if isinstance(node, (ast.Assign, ast.Delete)):
        found = list(node.targets)
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        found = [node.target]
    else:
        return []
    flat = []
    while found:
        target = found.pop()
        if isinstance(target, (ast.Tuple, ast.List)):
            found += target.elts
        else:
            flat.append(target.value if isinstance(target, ast.Starred) else target)
    return flat


def patches(path: Path) -> list[str]:
    """Each place a tool's source calls setattr / delattr or writes into an opspec module (line: statement)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    modules = _opspec_module_names(tree, _import(path))
    found = []
    for node in ast.walk(tree):
        func = node.func if isinstance(node, ast.Call) else None
        calls = isinstance(func, ast.Name) and func.id in {"setattr", "delattr"}
        writes = any(isinstance(t, (ast.Attribute, ast.Subscript)) and _root(t.value) in modules
                     for t in _targets(node))
        if calls or writes:
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_tool_patches_opspec_at_run_time():
    """Issue 24: a tool changes nothing in opspec at run time; what it needs to vary is a parameter."""
    found = {p.stem: patches(p) for p in SCRIPTS}
    found = {name: places for name, places in found.items() if places}
    assert not found, found
