"""`python -m opspec.train`: data file → model → optimizer → checkpoints, then a table across resolutions.

The only module that composes data, models and optimizers. Each epoch appends one JSON line to
`metrics.jsonl` and atomically rewrites `last.pt` (and `best.pt` when the test error improves);
`--resume` continues a run so that it ends with the same weights as an uninterrupted one.

`torchrun --nproc_per_node=N -m opspec.train …` trains data-parallel (DDP; docs/distributed.md):
each rank takes a share of every global batch, the spectral optimizers share their per-matrix
work, the test error is computed over shares and gathered, and rank 0 alone writes and prints.
Every rank keeps the full model and optimizer state, so a checkpoint resumes on any number of ranks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from opspec.checkpoint import CHECKPOINT_VERSION, atomic_save, load_checkpoint, rng_state, set_rng_state, tensor_state_dict
from opspec.config import load_config, to_container, to_yaml
from opspec.data import CanonicalFile, OperatorDataset, fit_normalizer
from opspec.data.batches import epoch_loader
from opspec.data.generate import OPTIONS as GENERATE_OPTIONS, generate_dataset
from opspec.distributed import all_sum, barrier, broadcast, close, init_ranks
from opspec.errors import OpspecError, cli_main
from opspec.evaluate import evaluate_model, format_table, summary_json
from opspec.metrics import relative_l2
from opspec.models import NormalizedOperator, build_model
from opspec.optim import build_optimizer, options_from_config
from opspec.plots import plot_curves
from opspec.runtime import keep_freed_memory


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; anything else must be a device torch knows and has."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise OpspecError(f"train.device={name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OpspecError(f"train.device={name!r}: CUDA is not available on this machine")
    return device


def ensure_data(cfg: DictConfig, progress: bool = True, device: torch.device | None = None) -> CanonicalFile:
    """Open the configured data file, generating it first (with progress, on `device`) when it is missing."""
    path = Path(cfg.data.path)
    if not path.exists() and cfg.data.generate:
        print(f"{path} is missing: generating {cfg.data.n_train}+{cfg.data.n_test} {cfg.data.problem} samples "
              f"at resolution {cfg.data.grid_resolution} (seed {cfg.data.seed})", flush=True)
        options = {k: cfg.data.get(k) for k in GENERATE_OPTIONS[cfg.data.problem] if k in cfg.data}
        if "device" in GENERATE_OPTIONS[cfg.data.problem] and device is not None:
            options["device"] = str(device)
        try:
            generate_dataset(
                cfg.data.problem,
                path,
                resolution=cfg.data.grid_resolution,
                n_train=cfg.data.n_train,
                n_test=cfg.data.n_test,
                seed=cfg.data.seed,
                progress=progress,
                **options,
            )
        except ValueError as err:  # the generators validate their arguments before writing anything
            raise OpspecError(f"data: generating {cfg.data.problem}: {err}") from None
    return CanonicalFile(path)


def optimizer_from_config(model: torch.nn.Module, cfg: DictConfig,
                          process_group: torch.distributed.ProcessGroup | None = None) -> torch.optim.Optimizer:
    """The configured optimizer as one object over the whole model (opspec.optim.build_optimizer with
    the section's keys that optimizer takes, as opspec/optim/options.py declares them); the spectral
    ones share their work across `process_group`'s ranks."""
    options = options_from_config(cfg.name, to_container(cfg))
    try:
        return build_optimizer(model, cfg.name, process_group=process_group, **options)
    except ValueError as err:  # an option out of range: one line naming it
        raise OpspecError(f"optimizer: {err}") from None


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: DictConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule: cosine to zero over the run, step halving, or constant."""
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def new_run_dir(out_dir: str, run_name: str) -> Path:
    """checkpoints/<run_name>, or <run_name>_2, _3 … if that one already holds a run (nothing is overwritten)."""
    base = Path(out_dir) / run_name
    candidate, k = base, 1
    while (candidate / "last.pt").exists() or (candidate / "metrics.jsonl").exists():
        k += 1
        candidate = base.with_name(f"{run_name}_{k}")
    return candidate


EpochCallback = Callable[["Trainer", dict[str, Any]], None]


class Trainer:
    """One training run: builds everything from the config (or a checkpoint) and fits epoch by epoch."""

    def __init__(
        self,
        cfg: DictConfig,
        resume: dict[str, Any] | None = None,
        run_dir: str | os.PathLike | None = None,
        callbacks: Sequence[EpochCallback] = (),
    ) -> None:
        self.cfg = cfg
        self.callbacks = list(callbacks)
        self.ranks, self.device = init_ranks(resolve_device(cfg.train.device), cfg.train.dist_timeout_s)
        main = self.ranks.is_main
        if cfg.train.keep_freed_memory:
            keep_freed_memory()
        if main:  # one rank generates a missing file; the others open it when it is complete
            self.file = ensure_data(cfg, progress=cfg.train.progress, device=self.device)
        barrier(self.ranks)
        if not main:
            self.file = ensure_data(cfg, progress=False, device=self.device)
        self.train_data = OperatorDataset(self.file, "train", cfg.data.train_resolution, in_memory=cfg.data.in_memory)
        self.test_data = OperatorDataset(self.file, "test", cfg.data.train_resolution, in_memory=cfg.data.in_memory)
        for r in cfg.data.eval_resolutions:
            self.file.stride(r)
        a0, u0 = self.train_data[0]
        self.meta = {"in_channels": a0.shape[0], "out_channels": u0.shape[0], "n_space": a0.ndim - 1, "grid": self.file.grid}

        seed_everything(cfg.seed)  # the same seed on every rank: the same initial weights everywhere
        model = build_model(cfg.model, self.meta["in_channels"], self.meta["out_channels"], self.meta["n_space"], self.meta["grid"])
        self.net = NormalizedOperator(model, fit_normalizer(self.train_data, "a"), fit_normalizer(self.train_data, "u"))
        self.net.to(self.device)
        self.optimizer = optimizer_from_config(self.net.model, cfg.optimizer, self.ranks.group)
        self.scheduler = build_scheduler(self.optimizer, cfg.train)
        self.epoch = 0
        self.best = math.inf
        if resume is not None:
            try:
                self.net.load_state_dict(resume["model"])
                self.optimizer.load_state_dict(resume["optimizer"])
                self.scheduler.load_state_dict(resume["scheduler"])
            except (RuntimeError, ValueError, KeyError) as err:
                raise OpspecError(
                    f"{resume['path']}: the checkpoint does not fit the model/optimizer this config builds "
                    f"(did an override change model.* or optimizer.*?): {str(err).splitlines()[0]}"
                ) from None
            self.epoch = int(resume["epoch"])
            self.best = float(resume["best"])
            set_rng_state(resume["rng"])
            self.run_dir = Path(resume["path"]).parent if run_dir is None else Path(run_dir)
            if main:
                self._truncate_metrics(self.epoch)
        else:
            self.run_dir = Path(run_dir) if run_dir is not None else new_run_dir(cfg.out_dir, cfg.run_name)
            self.run_dir = Path(broadcast(self.ranks, str(self.run_dir)))
            if main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                (self.run_dir / "metrics.jsonl").write_text("")
        if main:
            (self.run_dir / "config.yaml").write_text(to_yaml(cfg))
        # DDP averages the gradients across ranks in the backward pass (its buffers are the fixed normalizers)
        self.train_net: torch.nn.Module = self.net
        if self.ranks.enabled:
            self.train_net = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device] if self.device.type == "cuda" else None, forward_sync_buffers=False)

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    def _truncate_metrics(self, epoch: int) -> None:
        """Drop metric lines past the checkpoint's epoch (written before a crash, now replayed)."""
        lines = self.metrics_path.read_text().splitlines() if self.metrics_path.exists() else []
        kept = [line for line in lines if line.strip() and json.loads(line)["epoch"] <= epoch]
        tmp = self.metrics_path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.metrics_path)

    def loss(self, a: torch.Tensor, u: torch.Tensor, n_global: int | None = None, weight: float = 1.0) -> torch.Tensor:
        """The FNO paper's training loss, the mean relative L2 of the decoded prediction, as this rank's
        part of it: Σ over its share / samples in the global batch (× ranks: DDP averages over ranks)."""
        errors = relative_l2(self.train_net(a), u)
        return errors.sum() * (weight * self.ranks.world_size / (n_global or len(a)))

    def train_epoch(self, epoch: int, bar: tqdm) -> dict[str, float]:
        self.net.train()
        cfg = self.cfg
        world = self.ranks.world_size
        total, count = torch.zeros((), dtype=torch.float64), 0
        start = time.perf_counter()
        loader = epoch_loader(self.train_data, cfg.train.batch_size, cfg.seed, epoch, cfg.train.num_workers,
                              self.ranks.rank, world)
        for a, u, n_global, weight in loader:
            a, u = a.to(self.device, non_blocking=True), u.to(self.device, non_blocking=True)

            def closure() -> torch.Tensor:
                self.optimizer.zero_grad(set_to_none=True)
                loss = self.loss(a, u, n_global, weight)
                loss.backward()
                return all_sum(self.ranks, loss.detach() / world)  # the global batch's loss on every rank

            loss = self.optimizer.step(closure)
            total += loss.detach().double().cpu() * n_global
            count += n_global
            bar.update(1)
        seconds = time.perf_counter() - start
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        return {"train_loss": float(total) / count, "lr": lr, "epoch_seconds": seconds, "samples_per_second": count / seconds}

    def checkpoint(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "config": to_container(self.cfg),
            "meta": self.meta,
            "epoch": self.epoch,
            "best": self.best,
            "model": tensor_state_dict(self.net),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
        }

    def fit(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        epochs = cfg.train.epochs
        steps = math.ceil(len(self.train_data) / cfg.train.batch_size)
        history = []
        main = self.ranks.is_main
        bar = tqdm(total=epochs * steps, initial=self.epoch * steps, desc="train", unit="step",
                   disable=not (cfg.train.progress and main), dynamic_ncols=True, leave=False)
        with bar:
            for epoch in range(self.epoch + 1, epochs + 1):
                record: dict[str, Any] = {"epoch": epoch, **self.train_epoch(epoch, bar)}
                test = evaluate_model(self.net, self.file, [cfg.data.train_resolution], cfg.train.eval_batch_size,
                                      self.device, ranks=self.ranks)
                record["test_rel_l2"] = test[cfg.data.train_resolution]["rel_l2_mean"]
                self.epoch = epoch
                improved = record["test_rel_l2"] < self.best
                self.best = min(self.best, record["test_rel_l2"])
                if main:
                    with self.metrics_path.open("a") as fh:
                        fh.write(json.dumps(record) + "\n")
                    payload = self.checkpoint()
                    atomic_save(payload, self.run_dir / "last.pt")
                    if improved:
                        atomic_save(payload, self.run_dir / "best.pt")
                    bar.set_postfix(loss=f"{record['train_loss']:.4f}", test=f"{record['test_rel_l2']:.4f}")
                    tqdm.write(
                        f"epoch {epoch:>4}/{epochs}  train rel L2 {record['train_loss']:.5f}  test rel L2 "
                        f"{record['test_rel_l2']:.5f}  lr {record['lr']:.2e}  {record['samples_per_second']:.0f} samples/s"
                    )
                history.append(record)
                for callback in self.callbacks:
                    callback(self, record)
        return history


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m opspec.train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML config (default: the built-in default experiment)")
    parser.add_argument("--resume", help="a run folder or checkpoint to continue (its config, then overrides)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=10 optimizer.lr=1e-3")
    return parser.parse_args(argv)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    say = print if os.environ.get("RANK", "0") == "0" else (lambda *a, **k: None)  # rank 0 alone prints
    resume = None
    if args.resume:
        resume = load_checkpoint(args.resume, prefer="last")
        cfg = load_config(args.config, args.overrides, base=resume["config"])
        say(f"resuming {resume['path']} after epoch {resume['epoch']}")
    else:
        cfg = load_config(args.config, args.overrides)
    started = time.perf_counter()
    trainer = Trainer(cfg, resume=resume)
    ranks = trainer.ranks
    say(f"run folder: {trainer.run_dir}  ({len(trainer.train_data)} train / {len(trainer.test_data)} test samples "
        f"at resolution {cfg.data.train_resolution}, device {trainer.device}"
        + (f", {ranks.world_size} ranks" if ranks.enabled else "") + ")", flush=True)
    try:
        trainer.fit()
        results = evaluate_model(trainer.net, trainer.file, list(cfg.data.eval_resolutions), cfg.train.eval_batch_size,
                                 trainer.device, ranks=ranks)
    except RuntimeError as err:  # a collective failed: another rank died, or waited past train.dist_timeout_s
        if not ranks.enabled:
            raise
        raise OpspecError(
            f"rank {ranks.rank}: lost contact with the other ranks ({str(err).strip().splitlines()[0][:200]}); "
            f"the last complete checkpoint is in {trainer.run_dir}: continue with --resume {trainer.run_dir}"
        ) from None
    finally:
        close(ranks)
    if ranks.is_main:
        (trainer.run_dir / "eval.json").write_text(json.dumps(summary_json(results), indent=2) + "\n")
        plot_curves(trainer.metrics_path, trainer.run_dir / "curves.png")
    say(f"\nrelative L2 on the test split of {trainer.file.path} (last epoch, {trainer.epoch}):")
    say(format_table(results, cfg.data.train_resolution))
    say(f"\ncheckpoints in {trainer.run_dir}; total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
