"""Training throughput (samples/s): opspec's loop against neuraloperator's own `Trainer`, side by side.

Both train the same FNO (same seed, so the same initial weights) on the same tensors read from
one canonical file, with the same batch size, AdamW settings, cosine schedule, unit-Gaussian
normalizers and relative-L2 training loss. Each measurement runs in a fresh subprocess (so one
trainer's process settings cannot leak into the other's), the variants alternate round by round so
that machine noise hits them alike, and each subprocess discards its first (warm-up) epoch.

Variants: `opspec` (opspec.train.Trainer as `python -m opspec.train` runs it), `neuralop`
(neuraloperator's Trainer.train_one_epoch), and `neuralop+malloc` (neuraloperator's Trainer in a
process given the same glibc allocator setting opspec's trainer applies, to show where a gain comes from),
and `bare` (a plain loop over in-memory tensors: randperm, index, forward, loss, backward, step).

    python tools/bench_train_throughput.py --rounds 5 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

# The comparison is of training loops, so both sides use torch's AdamW (as recorded in docs/RESULTS.md).
BENCH_OPTIMIZER = ["optimizer.name=adamw", "optimizer.lr=3e-3"]
VARIANTS = ("opspec", "neuralop", "neuralop+malloc", "bare")


def measure(variant: str, epochs: int, overrides: list[str]) -> list[float]:
    """Samples/s of each epoch after the first, for one variant, in this process."""
    import torch
    from tqdm import tqdm

    from opspec.training.config import load_config
    from opspec.training.trainer import Trainer, build_scheduler, optimizer_from_config, seed_everything

    cfg = load_config(overrides=["train.progress=false", f"train.epochs={epochs + 1}", *BENCH_OPTIMIZER, *overrides])
    if variant == "opspec":
        trainer = Trainer(cfg, run_dir="/tmp/opspec_bench_throughput")
        n = len(trainer.train_data)

        def epoch(k: int) -> None:
            trainer.train_epoch(k, tqdm(disable=True))

    elif variant == "bare":
        from opspec.data import OperatorDataset, fit_normalizer
        from opspec.training.metrics import relative_l2
        from opspec.models import NormalizedOperator, build_model

        data = OperatorDataset(cfg.data.path, "train", cfg.data.train_resolution)
        a, u = data[torch.arange(len(data))]
        n = len(data)
        seed_everything(cfg.seed)
        net = NormalizedOperator(build_model(cfg.model, a.shape[1], u.shape[1]), fit_normalizer(data, "a"), fit_normalizer(data, "u"))
        optimizer = optimizer_from_config(net.model, cfg.optimizer)
        scheduler = build_scheduler(optimizer, cfg.train)

        def epoch(k: int) -> None:
            net.train()
            for idx in torch.randperm(n).split(cfg.train.batch_size):
                optimizer.zero_grad(set_to_none=True)
                loss = relative_l2(net(a[idx]), u[idx]).mean()
                loss.backward()
                optimizer.step()
            scheduler.step()

    else:
        from neuralop.data.datasets.tensor_dataset import TensorDataset
        from neuralop.data.transforms.data_processors import DefaultDataProcessor
        from neuralop.data.transforms.normalizers import UnitGaussianNormalizer
        from neuralop.losses import LpLoss
        from neuralop.training import Trainer as NeuralopTrainer

        from opspec.data import OperatorDataset
        from opspec.models import build_model
        from opspec.training.runtime import keep_freed_memory

        if variant == "neuralop+malloc":
            keep_freed_memory()
        data = OperatorDataset(cfg.data.path, "train", cfg.data.train_resolution)
        a, u = data[torch.arange(len(data))]
        n = len(data)
        loader = torch.utils.data.DataLoader(TensorDataset(a, u), batch_size=cfg.train.batch_size, shuffle=True)
        in_norm, out_norm = UnitGaussianNormalizer(dim=[0, 2, 3]), UnitGaussianNormalizer(dim=[0, 2, 3])
        in_norm.fit(a)
        out_norm.fit(u)
        seed_everything(cfg.seed)
        model = build_model(cfg.model, a.shape[1], u.shape[1])
        trainer = NeuralopTrainer(model=model, n_epochs=epochs + 1, device="cpu", data_processor=DefaultDataProcessor(in_norm, out_norm))
        trainer.optimizer = optimizer_from_config(trainer.model, cfg.optimizer)
        trainer.scheduler = build_scheduler(trainer.optimizer, cfg.train)
        trainer.regularizer = None
        loss = LpLoss(d=2, p=2, reduction="mean")

        def epoch(k: int) -> None:
            trainer.train_one_epoch(k, loader, lambda out, y, **_: loss(out, y))

    rates = []
    for k in range(1, epochs + 2):
        start = time.perf_counter()
        epoch(k)
        rates.append(n / (time.perf_counter() - start))
    return rates[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="subprocesses per variant, alternating")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per subprocess (after one warm-up)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="config overrides (default experiment otherwise)")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.epochs, args.overrides)))
        return
    from opspec.training.config import load_config
    from opspec.training.trainer import ensure_data

    cfg = load_config(overrides=[*BENCH_OPTIMIZER, *args.overrides])
    ensure_data(cfg)
    print(f"FNO modes {list(cfg.model.n_modes)} width {cfg.model.hidden_channels}, {cfg.data.n_train} samples at "
          f"{cfg.data.train_resolution}^2, batch {cfg.train.batch_size}, AdamW lr {cfg.optimizer.lr}; "
          f"{args.rounds} rounds x {args.epochs} epochs", flush=True)
    variants = args.variants.split(",")
    rates: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        for v in order:
            cmd = [sys.executable, __file__, "--worker", v, "--epochs", str(args.epochs), *args.overrides]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            rates[v] += json.loads(out)
        print(f"round {r + 1}: " + ", ".join(f"{v} {statistics.median(rates[v]):.1f}" for v in variants) + " samples/s (running medians)", flush=True)
    med = {v: statistics.median(x) for v, x in rates.items()}
    print("\n| variant | samples/s (median) | min | max | ratio to neuralop |")
    print("|---|---|---|---|---|")
    base = med.get("neuralop")
    for v in variants:
        ratio = f"{med[v] / base:.3f}" if base else "-"
        print(f"| {v} | {med[v]:.1f} | {min(rates[v]):.1f} | {max(rates[v]):.1f} | {ratio} |")


if __name__ == "__main__":
    main()
