"""optimizer.name=soap (opspec/optim/soap.py): heavyball's SOAP, complex weights on their real-pair view,
the schedule's LR honoured, state_dict round trip bitwise, and the config's one-line refusals."""

from __future__ import annotations

import io
import sys

import pytest
import torch
from torch import nn

pytest.importorskip("heavyball")
import heavyball  # noqa: E402

from opspec.core.errors import OpspecError  # noqa: E402
from opspec.optim import build_optimizer  # noqa: E402
from opspec.optim.soap import build_soap  # noqa: E402
from opspec.training.config import load_config  # noqa: E402


class Spectral(nn.Module):
    """A complex per-mode weight (in, out, modes) and a real bias, as an FNO block has."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(3, 4, 5, dtype=torch.cfloat, generator=g))
        self.bias = nn.Parameter(torch.randn(4, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bim,iom->bom", x, self.weight).abs().sum(-1) + self.bias


def _steps(model: nn.Module, optimizer: torch.optim.Optimizer, n: int, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(6, 3, 5, dtype=torch.cfloat, generator=g)
        optimizer.zero_grad(set_to_none=True)
        model(x).pow(2).mean().backward()
        optimizer.step()


def test_complex_weights_are_stepped_as_their_real_pair_view():
    model = Spectral()
    real_weight = nn.Parameter(torch.view_as_real(model.weight.detach()).clone())
    real_bias = nn.Parameter(model.bias.detach().clone())
    optimizer = build_soap(model, lr=1e-2, betas=(0.9, 0.95), precondition_frequency=1)
    reference = heavyball.SOAP([real_weight, real_bias], lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=1e-2,
                               shampoo_beta=0.95, precondition_frequency=1, max_precond_dim=2048)
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        x = torch.randn(6, 3, 5, dtype=torch.cfloat, generator=g)
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        reference.zero_grad()
        out = torch.einsum("bim,iom->bom", x, torch.view_as_complex(real_weight)).abs().sum(-1) + real_bias
        out.pow(2).mean().backward()
        optimizer.step()
        reference.step()
    assert torch.equal(torch.view_as_real(model.weight.detach()), real_weight.detach())
    assert torch.equal(model.bias.detach(), real_bias.detach())
    assert not torch.equal(real_weight.detach(), torch.view_as_real(Spectral().weight.detach()))  # it moved
    optimizer.zero_grad()
    assert model.weight.grad is None  # zero_grad clears the complex weight's own gradient too


def test_the_schedules_lr_is_honoured_zero_lr_moves_nothing():
    model = Spectral()
    optimizer = build_soap(model, weight_decay=0.1)
    _steps(model, optimizer, 2)
    before = [p.detach().clone() for p in model.parameters()]
    for group in optimizer.param_groups:
        group["lr"] = 0.0  # what the cosine sets after the last step
    _steps(model, optimizer, 2, seed=2)
    assert all(torch.equal(a, p.detach()) for a, p in zip(before, model.parameters()))


def test_state_dict_round_trip_continues_bitwise():
    model = Spectral()
    optimizer = build_optimizer(model, "soap", lr=1e-2, precondition_frequency=1)
    _steps(model, optimizer, 3)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # as opspec reads checkpoints
    again = Spectral()
    again.load_state_dict(saved["model"])
    restored = build_optimizer(again, "soap", lr=1e-2, precondition_frequency=1)
    restored.load_state_dict(saved["optimizer"])
    _steps(model, optimizer, 3, seed=5)
    _steps(again, restored, 3, seed=5)
    for a, b in zip(model.parameters(), again.parameters()):
        assert torch.equal(a, b)


def test_config_keys_and_refusals():
    cfg = load_config(overrides=["optimizer.name=soap", "optimizer.betas=[0.9,0.95]", "optimizer.shampoo_beta=0.9"])
    assert cfg.optimizer.precondition_frequency == 2 and list(cfg.optimizer.betas) == [0.9, 0.95]
    with pytest.raises(OpspecError, match=r"optimizer\.shampoo_beta=1\.5"):
        load_config(overrides=["optimizer.name=soap", "optimizer.shampoo_beta=1.5"])
    with pytest.raises(OpspecError, match=r"train\.precision=fp16 with optimizer\.name=soap"):
        load_config(overrides=["optimizer.name=soap", "train.precision=fp16"])
    with pytest.raises(ValueError, match="precondition_frequency must be an integer >= 1"):
        build_soap(Spectral(), precondition_frequency=0)


def test_without_heavyball_one_line_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "heavyball", None)
    with pytest.raises(ValueError, match=r"pip install 'opspec\[soap\]'"):
        build_soap(Spectral())


def test_describe_names_soap_for_every_parameter():
    from opspec.training.describe import describe

    rows = describe(Spectral(), "soap", lr=1e-2)
    assert [r.treatment for r in rows] == ["soap", "soap"] and "real-pair view" in rows[0].what
