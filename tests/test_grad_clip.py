"""Global gradient clipping (opspec.training.precision.clip_grad_norm_) with complex gradients, by hand and
against torch's clipping of the real views; and train.grad_clip + train.warmup_epochs in a run that
is interrupted and resumed."""

from __future__ import annotations

import math

import pytest
import torch

from opspec.training.precision import clip_grad_norm_


def _params():
    real = torch.nn.Parameter(torch.zeros(3))
    cplx = torch.nn.Parameter(torch.zeros(2, dtype=torch.complex64))
    real.grad = torch.tensor([3.0, 0.0, -4.0])
    cplx.grad = torch.tensor([1 + 2j, -2 + 0.5j], dtype=torch.complex64)
    return real, cplx


def test_norm_counts_real_and_imaginary_parts_and_clips_to_max_norm():
    real, cplx = _params()
    by_hand = math.sqrt(3**2 + 4**2 + 1**2 + 2**2 + 2**2 + 0.5**2)  # √34.25
    total = clip_grad_norm_([real, cplx], max_norm=1.1)
    assert total.item() == pytest.approx(by_hand, rel=1e-7)
    scale = 1.1 / (by_hand + 1e-6)
    torch.testing.assert_close(real.grad, torch.tensor([3.0, 0.0, -4.0]) * scale)
    torch.testing.assert_close(cplx.grad, torch.tensor([1 + 2j, -2 + 0.5j], dtype=torch.complex64) * scale)
    after = math.sqrt(real.grad.square().sum().item() + cplx.grad.abs().square().sum().item())
    assert after == pytest.approx(1.1, rel=1e-5)


def test_matches_torch_clipping_of_the_real_views():
    g = torch.Generator().manual_seed(0)
    shapes = [(4, 3, 5, 3), (7,), (2, 6)]
    ours = [torch.nn.Parameter(torch.zeros(s, dtype=torch.complex64 if len(s) == 4 else torch.float32)) for s in shapes]
    for p in ours:
        p.grad = torch.randn(p.shape, dtype=p.dtype, generator=g)
    theirs = [torch.nn.Parameter(torch.view_as_real(p.detach()).clone() if p.is_complex() else p.detach().clone()) for p in ours]
    for p, q in zip(ours, theirs):
        q.grad = (torch.view_as_real(p.grad) if p.is_complex() else p.grad).clone()
    total = clip_grad_norm_(ours, 0.5)
    reference = torch.nn.utils.clip_grad_norm_(theirs, 0.5)
    assert total.item() == pytest.approx(reference.item(), rel=1e-6)
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(torch.view_as_real(p.grad) if p.is_complex() else p.grad, q.grad)


def test_below_max_norm_the_gradients_are_untouched():
    real, cplx = _params()
    before = (real.grad.clone(), cplx.grad.clone())
    assert clip_grad_norm_([real, cplx, torch.nn.Parameter(torch.zeros(1))], max_norm=10.0).item() == pytest.approx(math.sqrt(34.25))
    assert torch.equal(real.grad, before[0]) and torch.equal(cplx.grad, before[1])


def test_resume_is_bitwise_with_clipping_and_warmup(tiny_overrides, tmp_path):
    from opspec.training.checkpoint import load_checkpoint
    from opspec.training.config import load_config
    from opspec.training.trainer import Trainer

    class Stop(Exception):
        pass

    def stop_after_2(trainer, record):
        if record["epoch"] == 2:
            raise Stop

    cfg = load_config(overrides=tiny_overrides + ["train.epochs=4", "train.grad_clip=0.05", "train.warmup_epochs=2",
                                                  "optimizer.name=muon"])
    full = Trainer(cfg, run_dir=tmp_path / "full")
    history = full.fit()
    base = full.optimizer.param_groups[0]["initial_lr"]
    # 11 samples (1 of 12 held out) in batches of 4: 3 steps per epoch; the record's lr is its last step's:
    # 3/6, 6/6, then the per-step cosine over the 6 steps after the warm-up, ½(1 + cos(π·s/6)) for s = 2, 5
    expected = [0.5, 1.0, 0.5 * (1 + math.cos(math.pi * 2 / 6)), 0.5 * (1 + math.cos(math.pi * 5 / 6))]
    assert [r["lr"] / base for r in history] == pytest.approx(expected, rel=1e-12)
    stopped = Trainer(cfg, run_dir=tmp_path / "stopped", callbacks=[stop_after_2])
    with pytest.raises(Stop):
        stopped.fit()
    payload = load_checkpoint(tmp_path / "stopped")
    assert payload["config"]["train"]["grad_clip"] == 0.05 and payload["config"]["train"]["warmup_epochs"] == 2
    resumed = Trainer(load_config(base=payload["config"]), resume=payload)
    resumed.fit()
    for (key, a), b in zip(full.net.state_dict().items(), resumed.net.state_dict().values()):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), key
