"""`python -m opspec.train`: data file → model → optimizer → checkpoints, then a table across resolutions.

The Trainer is the one training loop (fit → train_epoch → step, with the hooks of callbacks.py); what
it trains is built by assemble.py from the config and the data. Every `train.eval_every` epochs
(default 1: each epoch) and at the last, the run is tested (and validated), appends one JSON line to
`metrics.jsonl` and atomically rewrites `last.pt` (and `best.pt` when the validation error improves:
held-out train samples or the file's valid split, opspec/data/holdout.py; the test error when
data.val_fraction=0); the epochs in between are only trained.
`--resume` continues a run from its `last.pt` so that it ends with the same weights as an uninterrupted one.

`torchrun --nproc_per_node=N -m opspec.train …` trains data-parallel (DDP; docs/distributed.md):
each rank takes a share of every global batch, the spectral optimizers share their per-matrix
work, the test error is computed over shares and gathered, and rank 0 alone writes and prints.
Every rank keeps the full model and optimizer state, so a checkpoint resumes on any number of ranks.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from opspec.training.assemble import assemble, data_meta
from opspec.training.assemble import optimizer_from_config, seed_everything  # noqa: F401  (their old home's names)
from opspec.training.callbacks import (Callback, DivergedError, EpochCallback, FiniteCheck, OptimizerTimer, RunLog, Step,
                                       as_callback, grads_finite, why_not_finite)
from opspec.training.checkpoint import (NORMALIZER_KEYS, append_metrics, atomic_copy, atomic_save, load_checkpoint, make_payload,
                               reconcile_run, restore_training_state, selection_error)
from opspec.training.config import batch_samples, load_config, to_container, to_yaml
from opspec.data import CanonicalFile, OperatorDataset
from opspec.data.batches import epoch_loader
from opspec.data.holdout import Validation, validation_of
from opspec.data.multifile import open_data
from opspec.data.generate import OPTIONS as GENERATE_OPTIONS, generate_dataset
from opspec.training.distributed import all_sum, barrier, broadcast, close, init_ranks, ranks_from_env
from opspec.core.errors import OpspecError, cli_main, os_error_line
from opspec.training.evaluate import check_finite, evaluate_model, format_table, plot_samples, summary_json
from opspec.core.fileio import FolderLock, atomic_write_json, atomic_write_text, remove_stale_temps
from opspec.training.metrics import relative_l2
from opspec.models.zoo import check_modes_fit, probe_model
from opspec.training.plots import plot_curves
from opspec.training.loggers import RunLogger, build_logger, check_logger
from opspec.training.precision import Precision, check_compile, clip_grad_norm_, compile_module, keep_spectral_fp32
from opspec.training.runfolder import check_environment, check_resume_target, restore_config_yaml
from opspec.training.runtime import keep_freed_memory
from opspec.training.schedule import build_scheduler


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
    pattern = any(c in str(path) for c in "*?[")  # a glob of files (opspec/data/multifile.py) is never generated
    if not path.exists() and cfg.data.generate and not pattern:
        if cfg.data.problem not in GENERATE_OPTIONS:
            raise OpspecError(f"data.path={path}: no such file, and data.problem={cfg.data.problem!r} is not one opspec "
                              f"generates ({', '.join(GENERATE_OPTIONS)}); expected the file it was converted to")
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
    return open_data(path)


def _holds_run(folder: Path) -> bool:
    return (folder / "last.pt").exists() or (folder / "metrics.jsonl").exists()


def run_dir_candidates(out_dir: str, run_name: str) -> Iterator[Path]:
    """checkpoints/<run_name>, <run_name>_2, _3 …, skipping those that already hold a run."""
    base = Path(out_dir) / run_name
    for k in itertools.count(1):
        candidate = base if k == 1 else base.with_name(f"{run_name}_{k}")
        if not _holds_run(candidate):
            yield candidate


def new_run_dir(out_dir: str, run_name: str) -> Path:
    """checkpoints/<run_name>, or <run_name>_2, _3 … if that one already holds a run (nothing is overwritten)."""
    return next(run_dir_candidates(out_dir, run_name))


RUN_OUTPUTS = ("last.pt", "best.pt", "metrics.jsonl", "config.yaml", "eval.json", "curves.png")

# What --resume lets an override change (README "Resume"); every other change is refused with one line.
RESUME_HONOURED = ("train.epochs", "optimizer.lr")  # deliberately: the schedule is rebuilt
RESUME_NEUTRAL = ("train.device", "train.progress", "train.num_workers", "train.eval_batch_size", "train.eval_every",
                  "train.keep_freed_memory", "train.dist_timeout_s", "data.path", "data.generate", "data.in_memory",
                  "data.eval_resolutions", "out_dir", "run_name", "train.compile", "train.log",
                  "train.mlflow_uri", "train.mlflow_experiment")  # how the run is carried out, not what it computes


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resume_changes(saved: dict[str, Any], cfg: DictConfig, epoch: int, where: str) -> dict[str, tuple[Any, Any]]:
    """The keys a resumed run changes against its checkpoint's config, {key: (old, new)}, of those
    honoured on resume (train.epochs, optimizer.lr); any other change of what the run computes is an error."""
    old = _flatten(to_container(load_config(base=saved)))
    new = _flatten(to_container(cfg))
    changed = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
               if old.get(k) != new.get(k) and not (old.get(k) in (None, {}) and new.get(k) in (None, {}))}
    for key, (before, after) in changed.items():
        if key not in RESUME_HONOURED and key not in RESUME_NEUTRAL:
            raise OpspecError(
                f"--resume {where}: {key}={after!r} would change the run (it has {before!r}); on resume only "
                f"{', '.join(RESUME_HONOURED)} and how the run is carried out may change: start a new run instead"
            )
    if "train.epochs" in changed and cfg.train.epochs < epoch:
        raise OpspecError(f"--resume {where}: train.epochs={cfg.train.epochs}, but the run has finished epoch {epoch}; "
                          f"expected at least {epoch}")
    return {k: v for k, v in changed.items() if k in RESUME_HONOURED}


_why_not_finite = why_not_finite  # the name it had before callbacks.py held it


class Trainer:
    """One training run: builds everything from the config (or a checkpoint) and fits epoch by epoch.

    `__init__` runs the steps in order: ranks and device, data, model, optimizer and schedule, start
    a run folder or restore a checkpoint, DDP wrap. Everything that can refuse the config comes before
    the run folder is created. Rank 0 (`self.ranks.is_main`) alone writes.

    `epoch` is the last epoch completed (trained, and when due tested and checkpointed), `saved_epoch`
    the one `last.pt` holds (0: none yet); with `train.eval_every` > 1 the second can be behind the first.
    """

    saved_epoch = 0

    def __init__(
        self,
        cfg: DictConfig,
        resume: dict[str, Any] | None = None,
        run_dir: str | os.PathLike | None = None,
        callbacks: Sequence[Callback | EpochCallback] = (),
        sync_timing: bool | None = None,
        datasets: tuple[OperatorDataset, OperatorDataset] | None = None,
        normalizers: tuple[torch.nn.Module, torch.nn.Module] | None = None,
        validation: Validation | None = None,
        worker_niceness: int | None = None,
    ) -> None:
        """`callbacks`: Callback objects, or functions f(trainer, record) called at each evaluated epoch's end.
        `sync_timing`: on CUDA, time optimizer.step between synchronizes (default: when train.log is on).
        `datasets`: (train, test) to use instead of the splits of `data.path` at `data.train_resolution`
        (tools); `normalizers`: (in, out) to use instead of fitting them on the training split;
        `validation`: with `datasets`, the samples of their file to validate on (default: none);
        `worker_niceness`: os.nice increment of out-of-core reading workers (default: batches.WORKER_NICENESS)."""
        self.cfg = cfg
        self.callbacks: list[Callback] = [FiniteCheck(), OptimizerTimer(), RunLog(), *map(as_callback, callbacks)]
        self.should_stop = False  # a callback sets it to end training after the current step
        self.global_step = 0
        self._datasets, self._normalizers, self._validation = datasets, normalizers, validation
        self.worker_niceness = worker_niceness
        if validation is not None and datasets is None:
            raise ValueError("Trainer: `validation` goes with `datasets` (without them data.val_fraction decides)")
        self.notes: list[str] = []  # what a resume honoured or repaired (the CLI prints them)
        self.lock: FolderLock | None = None
        self.created_dir = False  # this trainer made its run folder (discard() may remove it)
        self._created_root: Path | None = None  # the highest folder made for it
        if resume:
            run_dir = check_resume_target(resume, cfg.train.epochs, run_dir)
        changes = resume_changes(resume["config"], cfg, int(resume["epoch"]), resume["path"]) if resume else {}
        self._init_ranks_and_device()
        check_environment(cfg, self.device)
        self._init_data()
        self._init_model()
        self._init_optimizer_and_schedule()
        if resume is None:
            self._start(run_dir)
        else:
            self._restore(resume, run_dir, changes)
        self._wrap_ddp()
        self._init_logger()
        if sync_timing is not None:
            self.sync_timing = sync_timing

    # -- the steps of __init__ ------------------------------------------------------------------

    def _init_ranks_and_device(self) -> None:
        self.ranks, self.device = init_ranks(resolve_device(self.cfg.train.device), self.cfg.train.dist_timeout_s)
        if self.cfg.train.keep_freed_memory:
            keep_freed_memory()

    def _init_data(self) -> None:
        cfg, main = self.cfg, self.ranks.is_main
        if self._datasets is not None:  # given by a tool: the config's data section is not read
            self.train_data, self.test_data = self._datasets
            self.file = self.train_data.file
            self.meta = data_meta(self.file)
            self.validation = self._validation  # a tool that gives datasets gives its validation samples, or none
            return
        if main:  # one rank generates a missing file; the others open it when it is complete
            self.file = ensure_data(cfg, progress=cfg.train.progress, device=self.device)
        barrier(self.ranks)
        if not main:
            self.file = ensure_data(cfg, progress=False, device=self.device)
        if self.file.problem and self.file.problem != cfg.data.problem:
            raise OpspecError(f"data.problem={cfg.data.problem!r}, but {self.file.path} holds {self.file.problem!r} data; "
                              f"expected data.problem={self.file.problem} or another data.path")
        self.validation = validation_of(self.file.splits, self.file.n_samples("train"), cfg.data.val_fraction, cfg.data.seed)
        self.train_data = OperatorDataset(self.file, "train", cfg.data.train_resolution, in_memory=cfg.data.in_memory,
                                          indices=None if self.validation is None else self.validation.train_indices)
        self.test_data = OperatorDataset(self.file, "test", cfg.data.train_resolution, in_memory=cfg.data.in_memory)
        for r in cfg.data.eval_resolutions:
            self.file.stride(r)
        self.meta = data_meta(self.file)
        check_modes_fit(cfg.model, self.train_data[0][0].shape[1:])  # the training grid as the file gives it ('/K' included)

    def _init_model(self) -> None:
        """Model, optimizer and schedule, built by the one assembly (seeded: the same weights on every rank)."""
        self._parts = assemble(self.cfg, self.meta, self.train_data, self.device, self.ranks.group, self._normalizers)
        self.net = self._parts.net
        a0, u0 = self.train_data[0]
        probe_model(self.net.model, a0[None].to(self.device), u0.shape, self.cfg.model.name)

    def _init_optimizer_and_schedule(self) -> None:
        self.optimizer, self.scheduler = self._parts.optimizer, self._parts.scheduler
        self.steps_per_epoch = self._parts.steps_per_epoch
        self.batch_size = batch_samples(self.cfg.train.batch_size, len(self.train_data))  # "all": full batch
        self.epoch = 0
        self.best, self.best_epoch = math.inf, 0
        train = self.cfg.train
        self.precision = Precision(train.precision, self.device)  # refuses a dtype torch cannot autocast to here
        if self.precision.dtype is not None:
            keep_spectral_fp32(self.net)
        if train.compile:
            check_compile(self.device)
        check_logger(train.log)
        self.logger: RunLogger = RunLogger()
        self.sync_timing = train.log != "none"  # on CUDA, time optimizer.step between synchronizes (logged runs)

    def _on_main(self, action: Callable[[], Any]) -> Any:
        """Run `action` on rank 0 and give every rank its result; an OpspecError there is raised on every rank."""
        result, error = None, None
        if self.ranks.is_main:
            try:
                result = action()
            except OpspecError as err:
                error = str(err)
        result, error = broadcast(self.ranks, (result, error))
        if error is not None:
            raise OpspecError(error)
        return result

    def _lock(self, folder: Path) -> FolderLock | None:
        """This process's lock on a run folder, or None if another process holds it."""
        lock = FolderLock(folder)
        try:
            return lock if lock.acquire() else None
        except OSError as err:  # a read-only run folder
            raise OpspecError(f"{folder}: cannot write in the run folder ({err.strerror or err})") from None

    def _start(self, run_dir: str | os.PathLike | None) -> None:
        """A new run: claim a fresh run folder (locked), with an empty metrics.jsonl and the config."""

        def claim() -> str:
            candidates = [Path(run_dir)] if run_dir is not None else run_dir_candidates(self.cfg.out_dir, self.cfg.run_name)
            for candidate in candidates:
                self.created_dir = not candidate.exists()
                self._created_root = next((p for p in reversed([candidate, *candidate.parents]) if not p.exists()), None)
                try:
                    candidate.mkdir(parents=True, exist_ok=True)
                except OSError as err:
                    raise OpspecError(f"out_dir={self.cfg.out_dir}: cannot create the run folder {candidate} "
                                      f"({err.strerror or err})") from None
                self.lock = self._lock(candidate)
                if run_dir is not None and self.lock is None:
                    raise OpspecError(f"{candidate}: another trainer ({FolderLock(candidate).holder()}) is writing "
                                      "this run folder; expected one writer per run folder")
                if self.lock is not None and (run_dir is not None or not _holds_run(candidate)):
                    return str(candidate)
                if self.lock is not None:  # another run started here in the meantime: take the next name
                    self.lock.release()
                    self.lock = None
            raise AssertionError("unreachable: run_dir_candidates never ends")

        self.run_dir = Path(self._on_main(claim))
        if self.ranks.is_main:
            for name in RUN_OUTPUTS:
                remove_stale_temps(self.run_dir / name)
            try:
                atomic_write_text(self.metrics_path, "")
                atomic_write_text(self.run_dir / "config.yaml", to_yaml(self.cfg))
            except OSError as err:
                removed = self.discard()
                raise OpspecError(f"{os_error_line(err)}" + ("; the run folder is removed" if removed else "")) from None

    def _restore(self, resume: dict[str, Any], run_dir: str | os.PathLike | None, changes: dict[str, tuple[Any, Any]]) -> None:
        """Continue a run from its checkpoint: states, schedule (rebuilt if an override asks), run folder repaired."""
        cfg = self.cfg
        self.run_dir = Path(resume["path"]).parent if run_dir is None else Path(run_dir)
        if cfg.out_dir != str(self.run_dir.parent) or cfg.run_name != self.run_dir.name:  # record where it really is
            self.cfg = cfg = load_config(base={**to_container(cfg), "out_dir": str(self.run_dir.parent),
                                               "run_name": self.run_dir.name})
        saved = resume.get("model", {})
        for key in NORMALIZER_KEYS:
            mine = self.net.state_dict()[key].cpu()
            if key in saved and (saved[key].shape != mine.shape or not torch.allclose(saved[key], mine, rtol=1e-5, atol=1e-7)):
                raise OpspecError(f"data.path={cfg.data.path}: its training split is not the one {self.run_dir} was "
                                  "trained on (the fitted normalizers differ); expected the run's data file")
        base_lrs = [group["initial_lr"] for group in self.optimizer.param_groups]  # this config's, before the load
        epoch = int(resume["epoch"])
        restore_training_state(resume, self.net, self.optimizer, None)
        self.precision.load_state_dict(resume.get("grad_scaler") or {})
        self.epoch = self.saved_epoch = epoch
        # The schedule is a closed form of (step, config): rebuilt at the epoch the run stands at, with the
        # config's base LRs, it continues an unchanged run exactly and honours train.epochs / optimizer.lr.
        for group, lr in zip(self.optimizer.param_groups, base_lrs):
            group["initial_lr"] = lr
        self.scheduler = build_scheduler(self.optimizer, cfg.train, self.steps_per_epoch, start_epoch=epoch)
        if changes:
            said = ", ".join(f"{k} {before} → {after}" for k, (before, after) in changes.items())
            self.notes.append(f"{said}: the LR schedule ({cfg.train.scheduler}) is rebuilt as a run of {cfg.train.epochs} "
                              f"epochs at lr {cfg.optimizer.lr:g} has it; epoch {epoch + 1} starts at lr "
                              f"{self.optimizer.param_groups[0]['lr']:.4g}")

        def repair() -> tuple[float, int, list[str]]:
            self.lock = self._lock(self.run_dir)
            if self.lock is None:
                raise OpspecError(f"{self.run_dir}: another trainer ({FolderLock(self.run_dir).holder()}) is writing "
                                  "this run folder; expected one writer per run folder")
            for name in RUN_OUTPUTS:
                remove_stale_temps(self.run_dir / name)
            state = reconcile_run(self.run_dir, resume)
            atomic_write_text(self.run_dir / "config.yaml", to_yaml(cfg))
            return state.best, state.best_epoch, state.notes

        self.best, self.best_epoch, notes = self._on_main(repair)
        self.notes += notes

    def _wrap_ddp(self) -> None:
        # DDP averages the gradients across ranks in the backward pass (its buffers are the fixed normalizers)
        self.train_net: torch.nn.Module = self.net
        if self.ranks.enabled:
            self.train_net = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device] if self.device.type == "cuda" else None, forward_sync_buffers=False)
        if self.cfg.train.compile:  # the training forward only; evaluation runs the plain model
            self.train_net = compile_module(self.train_net, self.device)

    def _init_logger(self) -> None:
        """train.log on rank 0; a resumed run continues its global-step axis."""
        self.global_step = self.epoch * self.steps_per_epoch
        self.logger = build_logger(self.cfg.train.log, self.run_dir, to_container(self.cfg), to_yaml(self.cfg),
                                   self.ranks.is_main, start_step=self.epoch * self.steps_per_epoch)

    # -- training -------------------------------------------------------------------------------

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    def close(self) -> None:
        """Release the run folder's lock (the OS releases it anyway when the process ends)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        self.logger.close()
        self.logger = RunLogger()

    def discard(self) -> bool:
        """Remove the run folder of a new run that saved no checkpoint (it holds nothing to resume): a run
        that cannot start leaves no folder behind. True if it was removed."""
        if not (self.created_dir and self.saved_epoch == 0 and self.ranks.is_main and self.lock is not None):
            return False
        for name in ("metrics.jsonl", "config.yaml"):
            (self.run_dir / name).unlink(missing_ok=True)
        for name in RUN_OUTPUTS:
            remove_stale_temps(self.run_dir / name)
        if {p.name for p in self.run_dir.iterdir()} != {".lock"}:
            return False
        (self.run_dir / ".lock").unlink()
        self.close()
        self.run_dir.rmdir()
        folder = self.run_dir.parent  # and the folders made for it (out_dir), when left empty
        while self._created_root is not None and self._created_root in (folder, *folder.parents) and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
        return True

    def loss(self, a: torch.Tensor, u: torch.Tensor, n_global: int | None = None, weight: float = 1.0) -> torch.Tensor:
        """The FNO paper's training loss, the mean relative L2 of the decoded prediction, as this rank's
        part of it: Σ over its share / samples in the global batch (× ranks: DDP averages over ranks)."""
        with self.precision.autocast():  # the forward pass alone; the loss is taken in fp32
            prediction = self.train_net(a)
        errors = relative_l2(prediction.float(), u)
        return errors.sum() * (weight * self.ranks.world_size / (n_global or len(a)))

    def stop_error(self, epoch: int, step: int, what: str, cause: str) -> DivergedError:
        """The DivergedError that stops the run at (epoch, step), saying what went wrong and what is kept."""
        kept = (f"its last good checkpoint (epoch {self.saved_epoch}) is in {self.run_dir}" if self.saved_epoch
                else "no checkpoint was saved yet" if self.epoch
                else "no epoch finished, so there is no checkpoint")
        return DivergedError(f"epoch {epoch}, step {step}: {what} ({cause}); the run is stopped and {kept}")

    _stop = stop_error  # the name it had before the callbacks raised it

    def _grads_finite(self) -> bool:
        return grads_finite(self.net.parameters())

    def _hook(self, name: str, *args: Any) -> None:
        """Call hook `name` on every callback, in order."""
        for callback in self.callbacks:
            getattr(callback, name)(self, *args)

    def step(self, batch: Sequence[Any], epoch: int | None = None, index: int | None = None) -> torch.Tensor:
        """One optimizer step on `batch` = (a, u) or (a, u, n_global, weight) as the epoch's loader gives
        it; returns the global batch's loss (detached, the same on every rank). `epoch` and `index`
        (1-based) place it for the hooks and messages; by default it follows the run's last step.

        Zero the gradients; forward and loss; backward; the global loss; unscale (fp16); the
        finiteness check (a hook); clip; optimizer.step(closure) (timed by a hook); the schedule."""
        a, u = batch[0], batch[1]
        n_global, weight = (batch[2], batch[3]) if len(batch) > 2 else (len(a) * self.ranks.world_size, 1.0)
        self.global_step += 1
        epoch = self.epoch + 1 if epoch is None else epoch
        index = self.global_step - (epoch - 1) * self.steps_per_epoch if index is None else index
        a, u = a.to(self.device, non_blocking=True), u.to(self.device, non_blocking=True)
        info = Step(epoch, index, self.global_step, a, u, n_global, self.optimizer.param_groups[0]["lr"])
        self._hook("on_step_start", info)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(a, u, n_global, weight)
        self.precision.backward(loss)  # fp16: of the scaled loss
        info.loss = all_sum(self.ranks, loss.detach() / self.ranks.world_size)  # the global batch's loss on every rank
        self.precision.unscale_(self.optimizer)
        self._hook("on_after_backward", info)
        if self.cfg.train.grad_clip is not None:
            info.grad_norm = clip_grad_norm_(self.net.parameters(), self.cfg.train.grad_clip)
        self._hook("on_before_optimizer_step", info)
        self.precision.step(self.optimizer, info.loss)  # optimizer.step(closure); the closure hands over the loss
        self._hook("on_after_optimizer_step", info)
        with warnings.catch_warnings():  # fp16: torch warns when the scaler skipped the first optimizer step
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            self.scheduler.step()
        self._hook("on_step_end", info)
        return info.loss

    def batches(self, epoch: int) -> Any:
        """Epoch `epoch`'s batches of this rank: (a, u, n_global, weight), shuffled by (seed, epoch)
        (in memory, a full batch in file order: `epoch_loader`)."""
        cfg = self.cfg
        return epoch_loader(self.train_data, self.batch_size, cfg.seed, epoch, cfg.train.num_workers,
                            self.ranks.rank, self.ranks.world_size, self.worker_niceness)

    def train_epoch(self, epoch: int, bar: tqdm | None = None) -> dict[str, float]:
        """One pass over the training split by `step`: the record's training part (train_loss, lr, timing).
        A callback that sets `should_stop` ends it after that step."""
        self.net.train()
        total, count = torch.zeros((), dtype=torch.float64), 0
        self.global_step = (epoch - 1) * self.steps_per_epoch
        self._hook("on_epoch_start", epoch)
        start = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        for index, batch in enumerate(self.batches(epoch), 1):
            lr = self.optimizer.param_groups[0]["lr"]
            loss = self.step(batch, epoch, index)
            total += loss.double().cpu() * batch[2]
            count += batch[2]
            if bar is not None:
                bar.update(1)
            if self.should_stop:
                break
        seconds = time.perf_counter() - start
        record = {"train_loss": float(total) / count, "lr": lr, "epoch_seconds": seconds, "samples_per_second": count / seconds}
        self._hook("on_train_epoch_end", record)
        return record

    def checkpoint(self, record: dict[str, Any] | None = None) -> dict[str, Any]:
        """The checkpoint payload of the run as it stands (opspec.training.checkpoint owns the format)."""
        scaler = {"grad_scaler": self.precision.state_dict()} if self.precision.scaler.is_enabled() else {}  # fp16
        return make_payload(to_container(self.cfg), self.meta, self.epoch, self.best, self.best_epoch, record,
                            self.net, self.optimizer, self.scheduler, **scaler)

    def _save_epoch(self, record: dict[str, Any], improved: bool) -> None:
        """last.pt, then best.pt (a copy, when improved), then the metrics line: see checkpoint.reconcile_run."""
        atomic_save(self.checkpoint(record), self.run_dir / "last.pt")
        self.saved_epoch = self.epoch
        if improved:
            atomic_copy(self.run_dir / "last.pt", self.run_dir / "best.pt")
        append_metrics(self.metrics_path, record)

    def validation_error(self, epoch: int) -> float:
        """Mean relative L2 on the validation samples at the training resolution (a non-finite one stops the run)."""
        assert self.validation is not None
        resolution = self.cfg.data.train_resolution
        result = evaluate_model(self.net, self.file, [resolution], self.cfg.train.eval_batch_size, self.device,
                                split=self.validation.split, ranks=self.ranks, indices=self.validation.indices)
        error = result[self.file.label(resolution)]["rel_l2_mean"]
        if not math.isfinite(error):
            raise self._stop(epoch, self.steps_per_epoch, f"the validation error is {error}",
                             "a validation sample holds NaN or Inf, or an all-zero target, or the weights diverged")
        return error

    def fit(self) -> list[dict[str, Any]]:
        """Train from the run's epoch to `train.epochs`: each epoch trained; every `train.eval_every`
        epochs and at the last also tested (and validated), checkpointed and written to metrics.jsonl
        (rank 0), then the epoch-end hooks; returns the records of those evaluated epochs.
        A `should_stop` set during an epoch ends the run without recording that partial epoch."""
        cfg = self.cfg
        epochs, every = cfg.train.epochs, cfg.train.eval_every
        steps = self.steps_per_epoch
        history: list[dict[str, Any]] = []
        main = self.ranks.is_main
        bar = tqdm(total=epochs * steps, initial=self.epoch * steps, desc="train", unit="step",
                   disable=not (cfg.train.progress and main), dynamic_ncols=True, leave=False)
        self._hook("on_fit_start")
        with bar:
            for epoch in range(self.epoch + 1, epochs + 1):
                record: dict[str, Any] = {"epoch": epoch, **self.train_epoch(epoch, bar)}
                if self.should_stop:
                    break
                if epoch % every and epoch != epochs:  # trained only: no test, checkpoint or record
                    self.epoch = epoch
                    continue
                test = evaluate_model(self.net, self.file, [cfg.data.train_resolution], cfg.train.eval_batch_size,
                                      self.device, ranks=self.ranks)
                try:
                    check_finite(test, self.file)
                except OpspecError as err:
                    raise self.stop_error(epoch, steps, "the test error is not finite", str(err)) from None
                record["test_rel_l2"] = test[self.file.label(cfg.data.train_resolution)]["rel_l2_mean"]
                if self.validation is not None:
                    record["val_rel_l2"] = self.validation_error(epoch)
                self.epoch = epoch
                improved = selection_error(record) < self.best  # validation; test without a validation split
                if improved:
                    self.best, self.best_epoch = selection_error(record), epoch
                if main:
                    self._save_epoch(record, improved)
                    bar.set_postfix(loss=f"{record['train_loss']:.4f}", test=f"{record['test_rel_l2']:.4f}")
                    val = f"  val rel L2 {record['val_rel_l2']:.5f}" if "val_rel_l2" in record else ""
                    tqdm.write(
                        f"epoch {epoch:>4}/{epochs}  train rel L2 {record['train_loss']:.5f}{val}  test rel L2 "
                        f"{record['test_rel_l2']:.5f}  lr {record['lr']:.2e}  {record['samples_per_second']:.0f} samples/s"
                    )
                self.saved_epoch = epoch  # rank 0 wrote last.pt; every rank knows it
                history.append(record)
                self._hook("on_epoch_end", record)
                if self.should_stop:
                    break
        self._hook("on_fit_end", history)
        return history


def log_final(trainer: Trainer, results: dict[int, dict[str, Any]]) -> None:
    """To train.log: the final errors at every resolution, the learning curves and the test-sample figure."""
    step = trainer.epoch * trainer.steps_per_epoch
    trainer.logger.log_epoch(step, {f"final_rel_l2_mean_{r}": v["rel_l2_mean"] for r, v in results.items()})
    trainer.logger.log_figure("curves", trainer.run_dir / "curves.png", step)
    resolution = list(trainer.cfg.data.eval_resolutions)[-1]
    figure = plot_samples(copy.deepcopy(trainer.net).cpu(), trainer.file, resolution, trainer.run_dir / "eval_samples.png")
    trainer.logger.log_figure("eval_samples", figure, step)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m opspec.train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML config (default: the built-in default experiment)")
    parser.add_argument("--resume", help="a run folder or checkpoint to continue (its config, then overrides: "
                                         "train.epochs and optimizer.lr may change; README 'Resume')")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=10 optimizer.lr=1e-3")
    return parser.parse_args(argv)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    say = print if ranks_from_env().is_main else (lambda *a, **k: None)  # rank 0 alone prints
    resume = None
    if args.resume:
        resume = load_checkpoint(args.resume, prefer="last")
        cfg = load_config(args.config, args.overrides, base=resume["config"])
    else:
        cfg = load_config(args.config, args.overrides)
    started = time.perf_counter()
    trainer = Trainer(cfg, resume=resume)
    cfg, ranks = trainer.cfg, trainer.ranks
    try:
        if resume is not None:
            say(f"resuming {resume['path']} after epoch {resume['epoch']}")
        for note in trainer.notes:
            say(f"resume: {note}")
        say(f"run folder: {trainer.run_dir}  ({len(trainer.train_data)} train / {len(trainer.test_data)} test samples "
            f"at resolution {cfg.data.train_resolution}, device {trainer.device}"
            + (f", {ranks.world_size} ranks" if ranks.enabled else "") + ")", flush=True)
        if trainer.validation is None:
            say("best.pt is chosen on the TEST error: no validation split (data.val_fraction=0)", flush=True)
        else:
            n_split = trainer.file.n_samples(trainer.validation.split)
            say(f"best.pt is chosen on the validation error ({trainer.validation.describe(n_split)})", flush=True)
        try:
            trainer.fit()
            results = evaluate_model(trainer.net, trainer.file, list(cfg.data.eval_resolutions),
                                     cfg.train.eval_batch_size, trainer.device, ranks=ranks)
            check_finite(results, trainer.file)
        except OSError as err:  # the disk filled up or the folder became read-only while training
            if not (trainer.run_dir / "last.pt").exists():
                trainer.saved_epoch = 0  # the first checkpoint failed: nothing of the run is saved
            if trainer.discard():
                raise OpspecError(f"{os_error_line(err)}; the run saved no checkpoint, so its folder is removed") from None
            if not (trainer.run_dir / "last.pt").exists():
                raise OpspecError(f"{os_error_line(err)}; the run saved no checkpoint, so there is nothing to resume "
                                  f"in {trainer.run_dir}") from None
            if resume is not None and trainer.saved_epoch == int(resume["epoch"]):
                restore_config_yaml(trainer.run_dir, resume["config"])
            raise OpspecError(f"{os_error_line(err)}; the last complete checkpoint is in {trainer.run_dir}: "
                              f"continue with --resume {trainer.run_dir}") from None
        except DivergedError as err:
            if trainer.discard():
                raise DivergedError(f"{err}; its run folder is removed") from None
            if resume is not None and trainer.saved_epoch == int(resume["epoch"]):  # config.yaml: the run last.pt holds
                restore_config_yaml(trainer.run_dir, resume["config"])
            raise
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
            atomic_write_json(trainer.run_dir / "eval.json", summary_json(results))
            plot_curves(trainer.metrics_path, trainer.run_dir / "curves.png")
            if trainer.logger.active:
                log_final(trainer, results)
    finally:
        trainer.close()
    say(f"\nrelative L2 on the test split of {trainer.file.path} (last epoch, {trainer.epoch}; best.pt: epoch "
        f"{trainer.best_epoch}, lowest {'validation' if trainer.validation else 'test'} error):")
    say(format_table(results, trainer.file.label(cfg.data.train_resolution)))
    say(f"\ncheckpoints in {trainer.run_dir}; total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
