"""Every script in tools/ imports, uses only names its opspec modules still define, and answers --help.

The docs cite these tools for numbers (spectral_power's defaults, conversion memory, optimizer timings),
so a tool broken by a refactor elsewhere (a removed private helper) must fail here, not months later.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
SCRIPTS = sorted(TOOLS.glob("*.py"))


def _import(path: Path) -> types.ModuleType:
    """Import tools/<name>.py under a private module name (tools/ is not a package)."""
    name = f"_opspec_tool_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


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
for path in sys.argv[1:]:
    out = io.StringIO()
    sys.argv = [path, "--help"]
    code, error = None, ""
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exit:
        code = exit.code
    except BaseException as err:
        error = f"{type(err).__name__}: {err}"
    results[path] = {"code": code, "stdout": out.getvalue(), "error": error}
print(json.dumps(results))
"""


def test_every_tool_answers_help():
    """Run each tool as __main__ with --help, all in one subprocess (torch is imported once)."""
    proc = subprocess.run(
        [sys.executable, "-c", HELP_RUNNER, *map(str, SCRIPTS)],
        capture_output=True, text=True, timeout=300, cwd=TOOLS.parent,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    bad = {Path(p).name: r for p, r in results.items() if r["code"] not in (0, None) or r["error"] or "usage:" not in r["stdout"]}
    assert not bad, bad
    assert len(results) == len(SCRIPTS)
