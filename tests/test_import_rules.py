"""DESIGN's import rules, read off every source file's syntax tree (imports inside functions included).

optim imports no opspec module outside optim and no model library; data imports nothing from
training, optim or models; core imports no other opspec package; models imports nothing from
training or optim.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL_LIBRARIES = ("neuralop", "tltorch", "tensorly")

# package → (what it may not import: module prefixes; what it may import of opspec, if restricted)
RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    "opspec.optim": (MODEL_LIBRARIES, ("opspec.optim",)),
    "opspec.data": (("opspec.training", "opspec.optim", "opspec.models"), None),
    "opspec.core": ((), ("opspec.core",)),
    "opspec.models": (("opspec.training", "opspec.optim"), None),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, anywhere in it, relative ones resolved;
    `importlib.import_module` and `__import__` of a literal name count too."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.append((node.lineno, prefix))
            if node.module is None:  # `from . import x`: x is a module of the package
                found += [(node.lineno, f"{prefix}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def forbidden_imports(package: str, source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, name) of every import in `source` (module `module`) that `RULES[package]` forbids."""
    forbidden, allowed_opspec = RULES[package]
    out = []
    for line, name in imported_modules(source, module, is_package):
        bad = any(_within(name, f) for f in forbidden)
        if allowed_opspec is not None and _within(name, "opspec"):
            bad = bad or not any(_within(name, a) for a in allowed_opspec)
        if bad:
            out.append((line, name))
    return out


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_keeps_its_import_rules(package):
    files = sorted((ROOT / Path(*package.split("."))).rglob("*.py"))
    assert files
    found = [f"{path.relative_to(ROOT)}:{line} imports {name}" for path in files
             for line, name in forbidden_imports(package, path.read_text(), _module_name(path), path.name == "__init__.py")]
    assert found == []


def test_the_reader_sees_imports_inside_functions_relative_and_by_name():
    source = (
        "import torch\n"
        "def f():\n"
        "    from opspec.models import build_model\n"
        "    from ..core import errors\n"
        "    from . import layouts\n"
        "    return importlib.import_module('neuralop.models')\n"
    )
    names = sorted(name for _, name in imported_modules(source, "opspec.optim.build"))
    assert names == ["neuralop.models", "opspec.core", "opspec.models", "opspec.optim", "opspec.optim.layouts", "torch"]
    assert forbidden_imports("opspec.optim", source, "opspec.optim.build") == [
        (3, "opspec.models"), (4, "opspec.core"), (6, "neuralop.models")]
    assert forbidden_imports("opspec.models", "from ..optim import build\n", "opspec.models.labels") == [(1, "opspec.optim")]
    assert forbidden_imports("opspec.data", "import opspec.training.config as c\n", "opspec.data.batches") == [
        (1, "opspec.training.config")]
    assert forbidden_imports("opspec.core", "from opspec.data import x\n", "opspec.core.errors") == [(1, "opspec.data")]


def test_importing_optim_loads_no_model_data_or_training_module():
    code = ("import sys, opspec.optim; print(sorted(m for m in sys.modules if m.startswith(("
            "'opspec.models', 'opspec.data', 'opspec.training', 'neuralop', 'tltorch', 'tensorly'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()
    assert out == "[]"
