"""docs/DESIGN.md's file map (§1) names exactly the modules that exist: none missing, none invented."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _map_block() -> str:
    text = (ROOT / "docs" / "DESIGN.md").read_text()
    section = text[text.index("## 1. The house"):text.index("## 2. ")]
    return section[section.index("```"):section.rindex("```")]


def test_every_module_is_on_the_map():
    named = set(re.findall(r"[\w]+\.py", _map_block()))
    modules = {p.name for p in (ROOT / "opspec").rglob("*.py") if p.name != "__init__.py"}
    assert modules - named == set(), "modules missing from DESIGN.md §1"


def test_the_map_names_no_module_that_does_not_exist():
    named = set(re.findall(r"[\w]+\.py", _map_block()))
    existing = {p.name for folder in ("opspec", "examples", "tools", "tests") for p in (ROOT / folder).rglob("*.py")}
    assert named - existing == set(), "DESIGN.md §1 names files that do not exist"


def test_every_package_folder_is_on_the_map():
    block = _map_block()
    folders = {p.parent.name for p in (ROOT / "opspec").rglob("__init__.py")} - {"opspec"}
    assert {f for f in folders if f"{f}/" not in block} == set()
