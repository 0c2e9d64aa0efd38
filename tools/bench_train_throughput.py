"""Training throughput (samples/s): opspec's loop against neuraloperator's own `Trainer`, side by side.

Both train the same FNO (same seed, so the same initial weights) on the same tensors read from
one canonical file, with the same batch size, AdamW settings, cosine schedule, unit-Gaussian
normalizers and relative-L2 training loss. Each measurement runs in a fresh subprocess (so one
trainer's process settings cannot leak into the other's), the variants alternate round by round so
that machine noise hits them alike, and each subprocess discards its first (warm-up) epoch.

Variants: `opspec` (opspec.train.Trainer as `python -m opspec.train` runs it), `neuralop`
(neuraloperator's Trainer.train_one_epoch), and `neuralop+malloc` (neuraloperator's Trainer in a
process given the same glibc allocator setting opspec's trainer applies, to show where a gain comes from),
and `bare` (opspec's `Trainer.step` fed in-memory tensors by randperm and index: the same step without
the epoch's DataLoader).

    python -m tools.bench_train_throughput --rounds 5 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from tools.harness import alternate, markdown_table, run_json, tool_command

# The comparison is of training loops, so both sides use torch's AdamW (as recorded in docs/RESULTS.md).
BENCH_OPTIMIZER = ["optimizer.name=adamw", "optimizer.lr=3e-3"]
VARIANTS = ("opspec", "neuralop", "neuralop+malloc", "bare")


def measure(variant: str, epochs: int, overrides: list[str]) -> list[float]:
    """Samples/s of each epoch after the first, for one variant, in this process."""
    import torch
    from tqdm import tqdm

    from opspec.training.assemble import build_bare_model, data_meta, optimizer_from_config, seed_everything
    from opspec.training.config import load_config
    from opspec.training.schedule import build_scheduler
    from opspec.training.trainer import Trainer

    cfg = load_config(overrides=["train.progress=false", f"train.epochs={epochs + 1}", *BENCH_OPTIMIZER, *overrides])
    if variant in ("opspec", "bare"):
        trainer = Trainer(cfg, run_dir="/tmp/opspec_bench_throughput")
        n = len(trainer.train_data)
        a, u = trainer.train_data[torch.arange(n)] if variant == "bare" else (None, None)

        def epoch(k: int) -> None:
            if variant == "opspec":
                trainer.train_epoch(k, tqdm(disable=True))
                return
            trainer.net.train()
            for idx in torch.randperm(n).split(cfg.train.batch_size):
                trainer.step((a[idx], u[idx]), k)

    else:
        from neuralop.data.datasets.tensor_dataset import TensorDataset
        from neuralop.data.transforms.data_processors import DefaultDataProcessor
        from neuralop.data.transforms.normalizers import UnitGaussianNormalizer
        from neuralop.losses import LpLoss
        from neuralop.training import Trainer as NeuralopTrainer

        from opspec.data import OperatorDataset
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
        model = build_bare_model(cfg.model, data_meta(data.file))
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

    def child(r: int, v: str) -> list[float]:
        return run_json(tool_command("bench_train_throughput", "--worker", v, "--epochs", str(args.epochs), *args.overrides))

    seen: dict[str, list[float]] = {v: [] for v in variants}

    def say(r: int, v: str, result: list[float]) -> None:
        seen[v] += result
        if all(len(x) == (r + 1) * args.epochs for x in seen.values()):  # the round is complete
            print(f"round {r + 1}: " + ", ".join(f"{w} {statistics.median(seen[w]):.1f}" for w in variants)
                  + " samples/s (running medians)", flush=True)

    runs = alternate(variants, args.rounds, child, say)
    rates = {v: [x for run in rs for x in run] for v, rs in runs.items()}
    med = {v: statistics.median(x) for v, x in rates.items()}
    base = med.get("neuralop")
    rows = [(v, f"{med[v]:.1f}", f"{min(rates[v]):.1f}", f"{max(rates[v]):.1f}", f"{med[v] / base:.3f}" if base else "-")
            for v in variants]
    print("\n" + markdown_table(("variant", "samples/s (median)", "min", "max", "ratio to neuralop"), rows))


if __name__ == "__main__":
    main()
