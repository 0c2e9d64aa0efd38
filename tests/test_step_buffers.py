"""The allocation-free Newton–Schulz (buffers made once per call, chunks written into one output) gives
bit for bit what the plain loop of fresh tensors and a concatenation of chunks gave."""

from __future__ import annotations

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
