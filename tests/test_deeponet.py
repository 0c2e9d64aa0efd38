"""DeepONet: shapes, resolution independence, the einsum combine, Muon's share, and training → checkpoint → evaluate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from einops import rearrange

from opspec.training.checkpoint import load_checkpoint
from opspec.training.config import load_config
from opspec.data import CanonicalFile, OperatorDataset
from opspec.data.generate import generate_dataset
from opspec.training.evaluate import evaluate_model, main as evaluate_main, model_from_checkpoint
from opspec.models import DeepONet, build_model
from opspec.models.deeponet import grid_coords
from opspec.optim import build_optimizer, split_parameters
from opspec.training.trainer import main as train_main

SMALL = dict(branch_width=16, trunk_width=16, depth=2, basis=8)
DEEPONET = ["model.name=deeponet", "model.branch_width=32", "model.trunk_width=32", "model.depth=2", "model.basis=16"]


def _smooth(coords: torch.Tensor, channels: int) -> torch.Tensor:
    """A smooth periodic test function of the coordinates (Q, d), one variant per channel: (channels, Q)."""
    return torch.stack([torch.sin(2 * math.pi * (coords + 0.1 * c)).sum(-1) + 0.3 * c for c in range(channels)])


def _sampled(n: int, n_space: int, channels: int, periodic: bool) -> torch.Tensor:
    """The smooth function on an n-point grid per axis: (1, channels, n, …)."""
    return _smooth(grid_coords((n,) * n_space, periodic), channels).reshape(1, channels, *(n,) * n_space)


@pytest.mark.parametrize(
    "n_space, c_in, c_out, space, periodic",
    [(1, 1, 1, (64,), True), (1, 2, 3, (40,), False), (2, 1, 1, (17, 17), False), (2, 10, 4, (12, 12), True)],
)
def test_shapes(n_space, c_in, c_out, space, periodic):
    torch.manual_seed(0)
    model = DeepONet(c_in, c_out, n_space, sensors=9, periodic=periodic, **SMALL)
    assert model(torch.randn(3, c_in, *space)).shape == (3, c_out, *space)
    coarse = tuple(s // 2 for s in space)
    assert model(torch.randn(2, c_in, *coarse)).shape == (2, c_out, *coarse)
    with pytest.raises(ValueError, match="expected"):
        model(torch.randn(2, c_in + 1, *space))


@pytest.mark.parametrize(
    "n_space, periodic, coarse, fine, sensors, tol",
    [
        (1, False, 33, 65, 33, 1e-5),  # sensors on shared grid points: the same branch input
        (1, False, 33, 65, 20, 3e-3),  # sensors between grid points: interpolation error only
        (1, True, 32, 64, 24, 3e-3),
        (2, False, 17, 33, 12, 1e-2),
        (2, True, 16, 32, 16, 1e-5),
    ],
)
def test_resolution_independence(n_space, periodic, coarse, fine, sensors, tol):
    torch.manual_seed(0)
    model = DeepONet(2, 2, n_space, sensors=sensors, periodic=periodic, **SMALL)
    low = model(_sampled(coarse, n_space, 2, periodic))
    high = model(_sampled(fine, n_space, 2, periodic))
    shared = high[(..., *(slice(None, None, 2),) * n_space)]
    assert shared.shape == low.shape
    assert ((shared - low).norm() / low.norm()).item() < tol


def test_einsum_combine_equals_explicit_loop():
    torch.manual_seed(0)
    model = DeepONet(2, 3, 2, sensors=6, periodic=False, **SMALL)
    a = torch.randn(2, 2, 7, 7)
    out = model(a)
    sensed = torch.nn.functional.interpolate(a, size=(6, 6), mode="bilinear", align_corners=True).reshape(2, -1)
    coef = model.branch(sensed).reshape(2, 3, SMALL["basis"])
    phi = model.trunk(grid_coords((7, 7), periodic=False)).reshape(49, 3, SMALL["basis"])
    loop = torch.empty(2, 3, 49)
    for b in range(2):
        for c in range(3):
            for q in range(49):
                loop[b, c, q] = sum(coef[b, c, k] * phi[q, c, k] for k in range(SMALL["basis"])) + model.bias[c]
    torch.testing.assert_close(rearrange(out, "b c x y -> b c (x y)"), loop, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_space", [1, 2])
def test_muon_gets_the_weight_matrices(n_space):
    model = DeepONet(2, 2, n_space, sensors=8, **SMALL)
    matrices, others = split_parameters(model)
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    # every weight but a 1-D trunk's first layer (width × 1: a vector, AdamW's) is a matrix for Muon
    expected = [m.weight for m in linear if min(m.weight.shape) >= 2]
    assert len(expected) == len(linear) - (n_space == 1)
    assert {id(p) for p in matrices} == {id(p) for p in expected}
    assert all(p.ndim == 1 or min(p.shape) == 1 for p in others)
    groups = build_optimizer(model, "muon", lr=1e-2).param_groups
    spectral = [g for g in groups if g["use_spectral"]][0]["params"]
    assert {id(p) for p in spectral} == {id(p) for p in expected}


@pytest.fixture(scope="session")
def burgers_file(tmp_path_factory) -> Path:
    """12 train / 6 test Burgers samples on a 64-point periodic grid (strides to 32, 16, …)."""
    path = tmp_path_factory.mktemp("data") / "burgers64.h5"
    return generate_dataset("burgers", path, resolution=64, n_train=12, n_test=6, seed=1, progress=False)


def _burgers_overrides(burgers_file: Path, tmp_path: Path) -> list[str]:
    return [
        "data.problem=burgers", f"data.path={burgers_file}", "data.generate=false", "data.train_resolution=32",
        "data.eval_resolutions=[32,64]", "model.sensors=32", "train.batch_size=4", "train.eval_batch_size=8",
        "train.progress=false", "train.epochs=3", f"out_dir={tmp_path / 'runs'}",
    ]


@pytest.mark.parametrize("problem", ["darcy", "burgers"])
def test_train_checkpoint_evaluate_round_trip(problem, tiny_overrides, burgers_file, tmp_path, capsys):
    if problem == "darcy":
        overrides, held_out = [*tiny_overrides, "model.sensors=9"], ["5", "17"]
    else:
        overrides, held_out = _burgers_overrides(burgers_file, tmp_path), ["16", "64"]
    overrides += [*DEEPONET, "optimizer.lr=1e-1", "optimizer.adamw_lr=1e-2", "run_name=deeponet"]
    assert train_main(overrides) == 0
    run = Path([o for o in overrides if o.startswith("out_dir=")][0].split("=", 1)[1]) / "deeponet"
    losses = [json.loads(line)["train_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and losses[-1] < losses[0], losses

    payload = load_checkpoint(run)
    net = model_from_checkpoint(payload)
    assert isinstance(net.model, DeepONet) and net.model.periodic == (problem == "burgers")
    cfg = load_config(base=payload["config"])
    file = CanonicalFile(cfg.data.path)
    trained = json.loads((run / "eval.json").read_text())  # the trained model's own table, before saving
    rebuilt = evaluate_model(net, file, list(cfg.data.eval_resolutions))
    for r in cfg.data.eval_resolutions:
        assert rebuilt[r]["rel_l2_mean"] == pytest.approx(trained[str(r)]["rel_l2_mean"], rel=1e-6)
    a, u = OperatorDataset(file, "test", int(held_out[-1]))[list(range(4))]
    with torch.no_grad():
        pred = net(a)
    assert pred.shape == u.shape and torch.isfinite(pred).all()

    out_json = tmp_path / "eval.json"
    assert evaluate_main([str(run), "--resolutions", *held_out, "--json", str(out_json), "--plot", str(tmp_path / "e.png")]) == 0
    result = json.loads(out_json.read_text())
    assert set(result) == set(held_out) and all(0 < v["rel_l2_mean"] < 10 for v in result.values())
    assert "rel L2 mean" in capsys.readouterr().out


def test_build_model_needs_the_spatial_dimensions():
    cfg = load_config(overrides=["model.name=deeponet"]).model
    assert isinstance(build_model(cfg, 1, 1, 2), DeepONet)
    with pytest.raises(ValueError, match="n_space"):
        build_model(cfg, 1, 1)
