"""`python -m opspec.describe` and `describe(model)`: one row per parameter, as the optimizer will treat it."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from neuralop.models import FNO, TFNO

from opspec.optim import build_optimizer
from opspec.training.describe import describe, format_rows, main

SMALL = ["model.hidden_channels=6", "model.n_layers=2", "model.n_modes=[4,4]", "data.path=/nonexistent/darcy.h5"]


def test_fno_rows_match_a_hand_count():
    torch.manual_seed(0)
    model = FNO(n_modes=(12, 12), in_channels=1, out_channels=1, hidden_channels=32, n_layers=4)
    rows = {r.name: r for r in describe(model, "muon", lr=0.01, adamw_lr=0.003, adjust_lr="match_rms_adamw")}
    assert len(rows) == len(list(model.parameters()))
    spectral = rows["fno_blocks.convs.2.weight.tensor"]
    # (in, out, 12, 7): one 32×32 complex matrix per kept Fourier mode, 12·7 = 84 of them
    assert (spectral.layout, spectral.matrices, spectral.rows, spectral.cols) == ("per_mode", 84, 32, 32)
    assert spectral.dtype == torch.complex64
    assert math.isclose(spectral.scale, 0.2 * math.sqrt(32)) and math.isclose(spectral.lr, 0.01 * 0.2 * math.sqrt(32))
    lifting = rows["lifting.fcs.0.weight"]  # Conv1d (64, 3, 1): out 64 × in 3; 0.2·√max(64, 3)
    assert (lifting.layout, lifting.rows, lifting.cols) == ("conv", 64, 3) and math.isclose(lifting.scale, 1.6)
    bias = rows["fno_blocks.convs.0.bias"]
    assert (bias.treatment, bias.matrices, bias.lr) == ("adamw", 0, 0.003)


def test_tfno_rows_show_the_factorized_parts_and_overrides():
    torch.manual_seed(0)
    model = TFNO(n_modes=(12, 12), in_channels=1, out_channels=1, hidden_channels=32, n_layers=2, rank=0.42)
    rows = {r.name: r for r in describe(model, "muon", lr=0.02, adjust_lr="original")}
    core = rows["fno_blocks.convs.0.weight.core"]  # (r_in, r_out, r_m1, r_m2): one r_in × r_out matrix per rank pair
    r_in, r_out, r_m1, r_m2 = core.shape
    assert (core.layout, core.matrices, core.rows, core.cols) == ("per_mode", r_m1 * r_m2, r_in, r_out)
    assert "Tucker core" in core.what
    factor = rows["fno_blocks.convs.0.weight.factors.factor_2"]  # (12 modes × rank)
    assert (factor.layout, factor.matrices, (factor.rows, factor.cols)) == ("matrix", 1, tuple(factor.shape))
    assert math.isclose(factor.scale, math.sqrt(max(1.0, factor.rows / factor.cols)))
    adamw_factors = {r.name: r for r in describe(model, "muon", lr=0.02, treat={"*.factors.*": "adamw"})}
    assert adamw_factors["fno_blocks.convs.0.weight.factors.factor_2"].treatment == "adamw"
    assert adamw_factors["fno_blocks.convs.0.weight.core"].layout == "per_mode"


def test_adamw_rows_and_totals():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    rows = describe(model, "adamw", lr=1e-3)
    assert [r.treatment for r in rows] == ["adamw"] * 4 and all(r.lr == 1e-3 for r in rows)
    text = format_rows(describe(model, "muon", lr=0.02))
    assert "total: 4 parameters, 23 elements; 2 matrices per step in 2 shape groups" in text
    assert "  matrix: 2 parameters, 18 elements" in text and "  adamw: 2 parameters, 5 elements" in text


def test_cli_prints_one_row_per_parameter_of_the_configured_model(capsys):
    assert main([*SMALL, "model.name=tfno", "model.options.rank=0.42", "optimizer.treat={'*.core': flatten}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "model tfno (1 → 1 channels, 2-D), optimizer muon"
    assert out[1].split()[:9] == ["parameter", "shape", "dtype", "treatment", "matrices", "matrix", "lr", "scale", "lr"]
    body = out[3:out.index("")]
    from opspec.training.config import load_config
    from opspec.models import build_model

    model = build_model(load_config(overrides=[*SMALL, "model.name=tfno", "model.options.rank=0.42"]).model, 1, 1, 2)
    assert [line.split()[0] for line in body] == [n for n, _ in model.named_parameters()]
    core = next(line for line in body if line.startswith("fno_blocks.convs.1.weight.core"))
    assert core.split()[3] == "flatten"
    total = sum(p.numel() for p in model.parameters())
    assert any(line.startswith(f"total: {len(body)} parameters, {total:,} elements") for line in out)


def test_cli_bad_option_is_one_line(capsys):
    assert main([*SMALL, "model.options.bogus=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: model.options.bogus: FNO takes no keyword 'bogus'"
    assert main([*SMALL, "optimizer.treat={'*.cor': adamw}"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: optimizer: treat: pattern '*.cor' matches no")


# Small zoo models whose rows and groups were recorded before the model rules moved out of optim
# (tests/golden/zoo_treatments.json, written by the code at 57dae46): the labels must reproduce them.
GOLDEN = Path(__file__).parent / "golden" / "zoo_treatments.json"
ZOO_SMALL = ["model.hidden_channels=6", "model.n_layers=2", "model.n_modes=[4,4]"]
ZOO = {
    "fno": [],
    "fno_group_norm_soft_gating": ["model.options.norm=group_norm", "model.options.fno_skip=soft-gating"],
    "fno_separable": ["model.options.separable=true"],
    "tfno_tucker": ["model.name=tfno", "model.options.rank=0.42"],
    "tfno_tucker_separable": ["model.name=tfno", "model.options.rank=0.42", "model.options.separable=true"],
    "tfno_cp": ["model.name=tfno", "model.options.factorization=cp"],
    "tfno_tt": ["model.name=tfno", "model.options.factorization=tt", "model.options.rank=0.42"],
    "uno": ["model.name=uno"],
    "codano": ["model.name=codano", "model.options.use_positional_encoding=true", "model.options.variable_ids=[a]",
               "model.options.positional_encoding_modes=[4,4]", "model.options.enable_cls_token=true"],
    "deeponet": ["model.name=deeponet", "model.sensors=8", "model.branch_width=16", "model.trunk_width=16", "model.depth=2",
                 "model.basis=4"],
}


@pytest.mark.parametrize("case", sorted(ZOO))
def test_zoo_rows_and_groups_are_those_recorded_before_labels(case):
    """Every parameter of every zoo model: the same row (treatment, matrices, scale, what) and the same param
    groups in the same order (so an old checkpoint's optimizer state loads) as before."""
    from conftest import unchecked_model
    from opspec.models import model_labels

    golden = json.loads(GOLDEN.read_text())[case]
    torch.manual_seed(0)
    model = unchecked_model([*ZOO_SMALL, *ZOO[case]], 1, 1, 2)
    names = {id(p): n for n, p in model.named_parameters()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = format_rows(describe(model, "muon", lr=0.01, adamw_lr=0.003, adjust_lr="match_rms_adamw"))
        groups = build_optimizer(model, "muon", labels=model_labels).param_groups
    assert table.splitlines() == golden["table"]
    assert [[g.get("layout", "auto") if g["use_spectral"] else "adamw", [names[id(p)] for p in g["params"]]]
            for g in groups] == golden["groups"]
