"""Full-batch training (train.batch_size=all) and SpecMuon's windowed loss energy against the paper's method."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from opspec.core.errors import OpspecError
from opspec.optim import build_optimizer
from opspec.optim.rsav import ENERGY_KEY, LossEMA
from opspec.training.checkpoint import load_checkpoint
from opspec.training.config import batch_samples, load_config
from opspec.training.metrics import relative_l2
from opspec.training.trainer import Trainer
from conftest import StopAfter, stop_after

DEEPONET = ["model.name=deeponet", "model.sensors=9", "model.branch_width=8", "model.trunk_width=8", "model.depth=2",
            "model.basis=4"]


def test_batch_size_all_is_accepted_and_bad_values_are_refused():
    assert load_config(overrides=["train.batch_size=all"]).train.batch_size == "all"
    assert batch_samples("all", 37) == 37 and batch_samples(20, 37) == 20
    for bad in ("some", "0", "2.5"):
        with pytest.raises(OpspecError, match="train.batch_size"):
            load_config(overrides=[f"train.batch_size={bad}"])


@pytest.mark.parametrize("model", [[], DEEPONET], ids=["fno", "deeponet"])
def test_full_batch_epoch_is_one_step_with_the_whole_training_loss_as_energy(tiny_overrides, tmp_path, model):
    cfg = load_config(overrides=tiny_overrides + model + ["train.batch_size=all", "train.epochs=1",
                                                          "optimizer.name=specmuon", "optimizer.loss_ema=0"])
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    a, u = trainer.train_data[torch.arange(len(trainer.train_data))]
    with torch.no_grad():
        full = float(relative_l2(trainer.net(a), u).mean())
    (record,) = trainer.fit()
    assert trainer.steps_per_epoch == 1
    assert record["train_loss"] == pytest.approx(full, rel=1e-5)
    assert float(trainer.optimizer.state[ENERGY_KEY]["ema"]) == pytest.approx(full, rel=1e-5)


def test_a_full_batch_comes_in_file_order_every_epoch(tiny_overrides, tmp_path):
    """A full batch is not shuffled: its loss is summed in the same (file) order each epoch, so full-batch
    training does not change with the epoch's seed; a smaller batch is still drawn at random."""
    from opspec.data.batches import epoch_loader

    trainer = Trainer(load_config(overrides=tiny_overrides + ["train.batch_size=all"]), run_dir=tmp_path / "run")
    data = trainer.train_data
    a_all, u_all = data[torch.arange(len(data))]
    for epoch in (1, 2, 7):
        (batch,) = list(trainer.batches(epoch))
        assert torch.equal(batch[0], a_all) and torch.equal(batch[1], u_all)
    first = [torch.cat([b[0] for b in epoch_loader(data, 4, 0, e)]) for e in (1, 2)]
    assert not torch.equal(first[0], a_all) and not torch.equal(first[0], first[1])


def test_full_batch_resume_matches_the_uninterrupted_run(tiny_overrides, tmp_path):
    cfg = load_config(overrides=tiny_overrides + ["train.batch_size=all", "train.epochs=3", "optimizer.name=specmuon",
                                                  "optimizer.energy_window=2", "optimizer.energy_shift=0.01"])
    full = Trainer(cfg, run_dir=tmp_path / "full")
    full.fit()
    stopped = Trainer(cfg, run_dir=tmp_path / "stopped", callbacks=[stop_after(2)])
    with pytest.raises(StopAfter):
        stopped.fit()
    payload = load_checkpoint(tmp_path / "stopped")
    resumed = Trainer(load_config(base=payload["config"]), resume=payload)
    resumed.fit()
    for key, value in full.net.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, resumed.net.state_dict()[key]), key


def test_energy_window_is_the_mean_of_the_last_n_losses():
    source, state, group = LossEMA(), {}, {"loss_ema": 0.9, "energy_window": 3}
    for loss, mean in zip([1.0, 2.0, 6.0, 10.0, 1.0], [1.0, 1.5, 3.0, 6.0, 17 / 3]):
        assert source(loss, state, group) == pytest.approx(mean, rel=1e-12)


def _paper_specmuon(W: np.ndarray, X: np.ndarray, Y: np.ndarray, steps: int, lr: float, mu: float, C: float,
                    xi: float, eps: float) -> tuple[np.ndarray, list[float]]:
    """The paper's full-batch method, written out with numpy: E = √(L(θ_t) + C) at the current point,
    every singular mode guided (k = rank), θ ← θ − lr B with B ← μB + Σ_j (r̃_j/E) u_j v_jᵀ."""
    W = W.copy()
    B = np.zeros_like(W)
    r = None
    losses = []
    for _ in range(steps):
        R = X @ W.T - Y
        L = float((R**2).mean())
        G = 2 * R.T @ X / R.size
        E = math.sqrt(L + C)
        norm = np.linalg.norm(G)
        U, s, Vt = np.linalg.svd(G / (norm + eps), full_matrices=False)
        sigma = s * norm
        r = np.full(len(s), E) if r is None else r
        r_tilde = r / (1 + lr * sigma / (2 * E**2))
        r = np.minimum(np.minimum(E, np.sqrt((1 - xi) * r_tilde**2 + xi * r**2)), r)
        B = mu * B + (U * (r_tilde / E)) @ Vt
        W -= lr * B
        losses.append(L)
    return W, losses


@pytest.mark.parametrize("energy", [{"energy_window": 1}, {"loss_ema": 0.0}], ids=["window", "ema0"])
def test_full_batch_specmuon_is_the_papers_method(energy):
    rng = np.random.default_rng(0)
    X, Y, W0 = rng.normal(size=(40, 5)), rng.normal(size=(40, 4)), rng.normal(size=(4, 5)) * 0.3
    lr, mu, C, xi, eps = 0.05, 0.9, 0.1, 0.2, 1e-8
    want, want_losses = _paper_specmuon(W0, X, Y, 30, lr, mu, C, xi, eps)

    layer = nn.Linear(5, 4, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W0))
    opt = build_optimizer(layer, "specmuon", lr=lr, momentum=mu, energy_shift=C, relaxation=xi, spectral_eps=eps,
                          guided_modes=4, topk="svd", adjust_lr="none", weight_decay=0.0, compute_dtype="float64",
                          **energy)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((layer(Xt) - Yt) ** 2).mean()
        loss.backward()
        return loss

    got_losses = [float(opt.step(closure).detach()) for _ in range(30)]
    np.testing.assert_allclose(got_losses, want_losses, rtol=1e-9)
    np.testing.assert_allclose(layer.weight.detach().numpy(), want, rtol=1e-8, atol=1e-10)
    assert want_losses[-1] < 0.8 * want_losses[0]
