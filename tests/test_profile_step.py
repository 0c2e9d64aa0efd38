"""tools/profile_step.py on a tiny Darcy FNO: the categories account for the whole optimizer step."""

from __future__ import annotations

import pytest
from conftest import TINY_OVERRIDES


def test_categories_sum_to_the_step():
    from tools.profile_step import category, profile

    assert category("opspec.run_sharded", "aten::baddbmm") == "Newton–Schulz matmuls"
    assert category("opspec.run_sharded", "aten::clone") == "layout copies"
    assert category(None, "aten::cat") == "bucketing"
    assert category("piece.adamw", "aten::_foreach_add_") == "AdamW part"
    result = profile("darcy_fno", "muon", 2, 1, TINY_OVERRIDES)
    cats, step = result["categories"], result["phases"]["phase.optimizer"]
    assert sum(cats.values()) == pytest.approx(step)
    assert cats["Newton–Schulz matmuls"] > 0 and cats["AdamW part"] > 0 and cats["direction"] > 0
    assert result["matrices"] > 0 and result["ops_per_step"] > 0
