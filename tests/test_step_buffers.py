"""The allocation-free Newton–Schulz (buffers made once per call, chunks written into one output) gives
bit for bit what the plain loop of fresh tensors and a concatenation of chunks gave."""

from __future__ import annotations

import copy
import importlib

import pytest
import torch

P = importlib.import_module("opspec.optim.polar")  # the module (opspec.optim.polar is also its function's name)


def plain_polar(G: torch.Tensor, steps: int, coefficients: str, chunk: int) -> torch.Tensor:
    """polar as it was: fresh A, B, X each step, chunk results concatenated."""
    schedule = P.coefficient_schedule(coefficients, steps)
    m, n = G.shape[-2:]
    X = G.reshape(-1, m, n)
    X = X / (P.frobenius_norms(X) * P.NORM_INFLATION[coefficients] + 1e-7)
    wide = m <= n
    X = X if wide else X.mH
    outs = []
    for x in X.split(chunk):
        x = x.resolve_conj().contiguous()
        for a, b, c in schedule:
            A = torch.bmm(x, x.mH)
            B = torch.baddbmm(A, A, A, beta=b, alpha=c)
            x = torch.baddbmm(x, B, x, beta=a)
        outs.append(x)
    X = torch.cat(outs)
    return (X if wide else X.mH).reshape(G.shape)


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
@pytest.mark.parametrize("shape", [(40, 16, 24), (40, 24, 16), (3, 32, 32)])
@pytest.mark.parametrize("coefficients,steps", [("quintic", 5), ("polar_express", 4), ("quintic", 1)])
@pytest.mark.parametrize("chunk_bytes", [None, 4096])
def test_polar_bitwise_as_plain_loop(monkeypatch, dtype, shape, coefficients, steps, chunk_bytes):
    torch.manual_seed(0)
    monkeypatch.setattr(P, "CPU_CHUNK_BYTES", chunk_bytes)
    G = torch.randn(shape, dtype=dtype)
    chunk = P._chunk_size(G if shape[1] <= shape[2] else G.mH, torch.float32) if chunk_bytes else shape[0]
    if chunk_bytes is not None and shape[0] > 3:
        assert chunk < shape[0]  # the chunked path runs
    got = P.polar(G, steps=steps, coefficients=coefficients, compute_dtype=torch.float32)
    assert torch.equal(got, plain_polar(G, steps, coefficients, chunk))


def _two_steps(layouts: tuple[str, str], rules: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """A spectral weight after a step under (layouts[0], rules[0]) and a second step after the group's options
    were changed to (layouts[1], rules[1]); beside it, the second step of a fresh optimizer built with the new
    options and the first one's state."""
    from opspec.optim import Muon

    torch.manual_seed(1)
    p = torch.nn.Parameter(torch.randn(6, 4, 3, 2, dtype=torch.complex64))
    grads = [torch.randn_like(p) for _ in range(2)]
    opt = Muon([p], lr=0.1, layout=layouts[0], adjust_lr=rules[0])
    p.grad = grads[0]
    opt.step()
    q = torch.nn.Parameter(p.detach().clone())
    fresh = Muon([q], lr=0.1, layout=layouts[1], adjust_lr=rules[1])
    opt.param_groups[0].update(layout=layouts[1], adjust_lr=rules[1])
    fresh.load_state_dict(copy.deepcopy(opt.state_dict()))  # its own momentum buffer, not opt's
    p.grad, q.grad = grads[1], grads[1].clone()
    opt.step()
    fresh.step()
    return p.detach(), q.detach()


@pytest.mark.parametrize("layouts,rules", [(("per_mode", "flatten"), ("original", "original")),
                                           (("per_mode", "per_mode"), ("original", "match_rms_adamw"))])
def test_cached_plan_follows_group_changes(layouts, rules):
    """A parameter's cached layout and LR scale are resolved again when its group's layout or adjust_lr changes."""
    kept, fresh = _two_steps(layouts, rules)
    assert torch.equal(kept, fresh)
    unchanged, _ = _two_steps((layouts[0], layouts[0]), (rules[0], rules[0]))
    assert not torch.allclose(kept, unchanged)  # the change matters: a stale plan would be caught
