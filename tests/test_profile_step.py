"""tools/profile_step.py on a tiny Darcy FNO: the categories account for the whole optimizer step."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_OVERRIDES


def test_categories_sum_to_the_step():
    import opspec.optim.step as step_module
    from tools.profile_step import MAP, category, profile

    assert category(MAP, "aten::baddbmm") == "Newton–Schulz matmuls"
    assert category(MAP, "aten::clone") == "layout copies"
    assert category(None, "aten::cat") == "bucketing"
    assert category("AdamW part", "aten::_foreach_add_") == "AdamW part"
    before = dict(vars(step_module))
    result = profile("darcy_fno", "muon", 2, 1, TINY_OVERRIDES)
    assert all(vars(step_module)[name] is value for name, value in before.items()), "profile swapped a step.py name"
    cats, step = result["categories"], result["phases"]["phase.optimizer"]
    assert sum(cats.values()) == pytest.approx(step)
    assert cats["Newton–Schulz matmuls"] > 0 and cats["AdamW part"] > 0 and cats["direction"] > 0
    assert result["matrices"] > 0 and result["ops_per_step"] > 0


def test_pieces_are_found_by_their_frames_outermost_first():
    """adamw_group_step calls directions.adam_direction: its ops stay the AdamW part's, as the step sees them."""
    from opspec.optim.muon import Muon
    from tools.profile_step import MAP, piece_of, step_pieces, top_level_ops

    class Event:
        """A profiler event as the tool reads one: its name and the events directly under it."""

        def __init__(self, name: str, *children: Event) -> None:
            self.name, self.cpu_children = name, list(children)

    pieces = step_pieces(Muon([torch.zeros(3, 3, requires_grad=True)]))
    assert piece_of(Event("/x/opspec/optim/layouts.py(79): to_matrices"), pieces) == "layout copies"
    assert piece_of(Event("opspec/optim/muon.py(113): direction"), pieces) == "direction"
    assert piece_of(Event("other/layouts.py(1): to_matrices"), pieces) is None
    assert piece_of(Event("opspec.run_sharded"), pieces) is None
    step = Event("phase.optimizer", Event("opspec/optim/step.py(167): step",
        Event("opspec/optim/adamw.py(27): adamw_group_step",
              Event("opspec/optim/directions.py(37): adam_direction", Event("aten::_foreach_lerp_"))),
        Event("opspec/optim/sharding.py(81): run_sharded", Event("aten::bmm", Event("aten::mm"))),
        Event("aten::cat")))
    assert [(piece, op.name) for piece, op in top_level_ops(step, pieces)] == [
        ("AdamW part", "aten::_foreach_lerp_"), (MAP, "aten::bmm"), (None, "aten::cat")]


def test_the_floor_keeps_only_the_model_and_the_newton_schulz_matmuls():
    """AdamW's step 100 µs of which 20 its optimizer; Muon's matmuls 30 µs: floor (80 + 30) / 100."""
    from tools.profile_step import step_floor

    adamw = {"phases": {"phase.zero_grad": 5.0, "phase.forward": 25.0, "phase.backward": 50.0, "phase.optimizer": 20.0}}
    muon = {"categories": {"Newton–Schulz matmuls": 30.0, "map, other": 7.0, "AdamW part": 3.0}}
    assert step_floor(muon, adamw) == pytest.approx(1.10)
