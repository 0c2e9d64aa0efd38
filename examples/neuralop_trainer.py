"""opspec's Muon inside neuraloperator's own `Trainer`: a small Tucker TFNO learns a Poisson solve.

    python examples/neuralop_trainer.py [--epochs 8] [--optimizer muon]

neuralop's `Trainer` calls `loss.backward()` then `optimizer.step()` without a closure, so any opspec
optimizer that needs no loss works in it unchanged: `build_optimizer(model, "muon", labels=model_labels)`
gives one object that steps the TFNO's matrices with Muon (lifting, projection, skips, channel MLPs,
the Tucker factors, and the Tucker core as one matrix per pair of rank modes, as the model's labels
say) and its biases and gates with AdamW
(`python -m opspec.describe model.name=tfno` shows which, docs/models.md why). The default
lr, 8e-2, is the best of 5e-3…1.6e-1 for this tiny model over 4 epochs. SpecMuon needs the loss at every
step; without a closure it stops with a one-line error saying how to pass it.

The data need no download: a(x) is a random smooth periodic field on [0, 1)², u solves −Δu = a − ā
(zero mean), computed exactly by FFT. The operator is diagonal in Fourier space, which an FNO can
represent, so the loss falls fast.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings

import torch
from torch.utils.data import DataLoader

from opspec.models import model_labels
from opspec.optim import build_optimizer


def poisson_pairs(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, u), each (n, 1, size, size): a smooth random field and the periodic solution of −Δu = a − ā."""
    g = torch.Generator().manual_seed(seed)
    k = torch.fft.fftfreq(size, d=1.0 / size)
    k2 = (k[:, None] ** 2 + k[None, :] ** 2) * (2 * math.pi) ** 2
    decay = (1.0 + k2 / (2 * math.pi) ** 2) ** -1.5  # a's spectrum: smooth, most energy in the first modes
    noise = torch.randn(n, size, size, generator=g, dtype=torch.float64)
    a_hat = torch.fft.fft2(noise) * decay
    a_hat[:, 0, 0] = 0.0
    u_hat = torch.where(k2 > 0, a_hat / k2.clamp(min=1e-12), torch.zeros_like(a_hat))
    a = torch.fft.ifft2(a_hat).real
    u = torch.fft.ifft2(u_hat).real
    a = a / a.std()
    u = u / u.std()
    return a[:, None].float(), u[:, None].float()


def loaders(n_train: int = 32, n_test: int = 16, size: int = 16, batch_size: int = 8, seed: int = 0) -> tuple[DataLoader, dict[int, DataLoader]]:
    """neuralop-style loaders of {"x", "y"} dicts, built from tensors (no network, no files)."""
    from neuralop.data.datasets.tensor_dataset import TensorDataset

    a, u = poisson_pairs(n_train + n_test, size, seed)
    train = TensorDataset(a[:n_train], u[:n_train])
    test = TensorDataset(a[n_train:], u[n_train:])
    return (DataLoader(train, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)),
            {size: DataLoader(test, batch_size=n_test)})


def tiny_tfno(seed: int = 0) -> torch.nn.Module:
    """A two-layer Tucker TFNO (rank 0.42, as in neuralop's Darcy example), small enough for a test."""
    from neuralop.models import TFNO

    torch.manual_seed(seed)
    return TFNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=12, n_layers=2,
                factorization="tucker", rank=0.42)


def train(optimizer_name: str = "muon", epochs: int = 8, seed: int = 0, verbose: bool = False, **options) -> tuple[float, float]:
    """Train the tiny TFNO in neuralop's Trainer; (relative L2 on the test set before, after)."""
    from neuralop import LpLoss, Trainer

    train_loader, test_loaders = loaders(seed=seed)
    model = tiny_tfno(seed)
    optimizer = build_optimizer(model, optimizer_name, labels=model_labels, **options)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    l2 = LpLoss(d=2, p=2)
    trainer = Trainer(model=model, n_epochs=epochs, device="cpu", verbose=verbose, eval_interval=max(epochs // 4, 1))
    test_loader = next(iter(test_loaders.values()))
    with warnings.catch_warnings():  # neuralop's FNO warns that it ignores the batch's "y" keyword
        warnings.filterwarnings("ignore", message=".*unexpected keyword arguments.*")
        before = trainer.evaluate({"l2": l2}, test_loader, log_prefix="test")["test_l2"]
        trainer.train(train_loader, test_loaders, optimizer, scheduler, training_loss=l2, eval_losses={"l2": l2})
        after = trainer.evaluate({"l2": l2}, test_loader, log_prefix="test")["test_l2"]
    return float(before), float(after)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="muon")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=8e-2)
    args = parser.parse_args(argv)
    before, after = train(args.optimizer, args.epochs, lr=args.lr, verbose=True)
    print(f"test relative L2: {before:.4f} before, {after:.4f} after {args.epochs} epochs ({before / after:.1f}x lower)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
