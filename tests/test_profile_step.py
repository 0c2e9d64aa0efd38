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


def test_the_floor_keeps_only_the_model_and_the_newton_schulz_matmuls():
    """AdamW's step 100 µs of which 20 its optimizer; Muon's matmuls 30 µs: floor (80 + 30) / 100."""
    from tools.profile_step import step_floor

    adamw = {"phases": {"phase.zero_grad": 5.0, "phase.forward": 25.0, "phase.backward": 50.0, "phase.optimizer": 20.0}}
    muon = {"categories": {"Newton–Schulz matmuls": 30.0, "map, other": 7.0, "AdamW part": 3.0}}
    assert step_floor(muon, adamw) == pytest.approx(1.10)
