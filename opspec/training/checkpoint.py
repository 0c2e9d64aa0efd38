"""The checkpoint format and the run folder's agreement: one home for both.

A checkpoint is a dict that `torch.load(..., weights_only=True)` reads: the config, the data's
shapes (`meta`), the epoch, the best selection error so far (validation; test in a run without
validation) and its epoch, that epoch's metrics record,
and the model (with its normalizers), optimizer, scheduler and RNG states. It is built here
(`make_payload`), written here (`atomic_save`), restored into a trainer's parts here
(`restore_training_state`) and rebuilt into a model here (`model_from_checkpoint`).

A run folder holds `last.pt`, `best.pt` and `metrics.jsonl`. Each epoch writes last.pt, then
best.pt (when the selection error improved), then the metrics line; `reconcile_run` brings the three
back into agreement after a crash at any point (it runs on every resume).
"""

from __future__ import annotations

import errno
import json
import math
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from opspec.core.errors import OpspecError
from opspec.core.fileio import atomic_path, atomic_write_text, strict_json
from opspec.training.assemble import build_net, check_meta
from opspec.training.config import load_config

CHECKPOINT_VERSION = 1
NORMALIZER_KEYS = ("in_norm.mean", "in_norm.std", "out_norm.mean", "out_norm.std")


def tensor_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state_dict with only tensors (neuraloperator adds a non-tensor `_metadata` entry)."""
    return {k: v for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}


def rng_state() -> dict[str, Any]:
    """Every RNG the training loop may draw from, in a form `weights_only` loading accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_payload(
    config: dict[str, Any],
    meta: dict[str, Any],
    epoch: int,
    best: float,
    best_epoch: int,
    record: dict[str, Any] | None,
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    **extra: Any,
) -> dict[str, Any]:
    """The checkpoint of a run after `epoch`: everything an exact resume and a rebuild of the model need
    (`extra`: more state of the trainer's parts, e.g. a gradient scaler's, under its own key)."""
    return {
        **extra,
        "version": CHECKPOINT_VERSION,
        "config": config,
        "meta": meta,
        "epoch": epoch,
        "best": best,
        "best_epoch": best_epoch,
        "record": record,
        "model": tensor_state_dict(net),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
    }


def restore_training_state(
    payload: dict[str, Any],
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
) -> None:
    """Load a checkpoint's model, optimizer, scheduler (None: the caller rebuilds it) and RNG states.

    A checkpoint that does not fit the parts (another model or optimizer) is one OpspecError.
    """
    try:
        net.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(payload["scheduler"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise OpspecError(
            f"{payload['path']}: the checkpoint does not fit the model/optimizer its config builds: "
            f"{str(err).strip().splitlines()[0][:300]}"
        ) from None
    set_rng_state(payload["rng"])


def model_from_checkpoint(payload: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the normalized model a checkpoint holds, from its own config and shapes."""

    where = payload.get("path", "checkpoint")
    meta = check_meta(payload.get("meta"), where)
    cfg = load_config(base=payload["config"])
    try:
        net = build_net(cfg.model, meta)  # unit normalizers: the checkpoint's are loaded next
        missing, unexpected = net.load_state_dict(payload["model"], strict=False)
    except (RuntimeError, ValueError, TypeError) as err:  # a size mismatch, or a meta that builds no model
        raise OpspecError(
            f"{where}: weights do not fit the model its config builds ({str(err).strip().splitlines()[0][:200]})"
        ) from None
    if missing or unexpected:
        raise OpspecError(
            f"{where}: weights do not fit the model its config builds (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return net


def atomic_save(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save to a temp file in the same folder, fsync, then rename: a crash leaves the old file whole."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            try:
                torch.save(payload, fh)
            except RuntimeError as err:  # torch's zip writer reports a failed write (disk full, file too large) so
                raise OSError(errno.EIO, f"writing the checkpoint failed, is the disk full? ({str(err).strip()[:120]})",
                              str(path)) from None
    return Path(path)


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a file over `dst` atomically (a crash leaves the old `dst` whole)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


def resolve_checkpoint(path: str | os.PathLike, prefer: str = "last") -> Path:
    """A checkpoint file from a file path or a run folder (whose `last.pt` / `best.pt` is taken)."""
    path = Path(path)
    if path.is_dir():
        for name in (f"{prefer}.pt", "last.pt", "best.pt"):
            if (path / name).is_file():
                return path / name
        raise OpspecError(f"{path}: run folder holds no checkpoint (expected last.pt or best.pt)")
    if not path.is_file():
        raise OpspecError(f"{path}: no such checkpoint")
    return path


def load_checkpoint(path: str | os.PathLike, prefer: str = "last") -> dict[str, Any]:
    """Read a checkpoint written by opspec (weights-only unpickling: no code runs from the file)."""
    file = resolve_checkpoint(path, prefer)
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise OpspecError(f"{file}: not a readable opspec checkpoint ({type(err).__name__})") from None
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise OpspecError(f"{file}: not an opspec checkpoint (expected keys 'model' and 'config')")
    version = payload.get("version", 0)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise OpspecError(f"{file}: checkpoint version {version!r} is not one this opspec reads (1..{CHECKPOINT_VERSION})")
    payload["path"] = str(file)
    return payload


# ---------------------------------------------------------------------------------------------
# metrics.jsonl and the agreement of last.pt, best.pt and metrics.jsonl


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl, skipping a torn (half-written) or non-JSON line."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int) and _finite(record.get("test_rel_l2")):
            records.append(record)
    return records


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def selection_error(record: dict[str, Any]) -> float:
    """The error best.pt is chosen on: `val_rel_l2`, or `test_rel_l2` in a run without validation."""
    return record.get("val_rel_l2", record["test_rel_l2"])


def best_of(records: list[dict[str, Any]]) -> tuple[float, int]:
    """The lowest selection error and its epoch (the first such epoch, as the trainer's strict `<` picks)."""
    best, epoch = math.inf, 0
    for r in records:
        if selection_error(r) < best:
            best, epoch = selection_error(r), r["epoch"]
    return best, epoch


def append_metrics(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record as a strict JSON line (NaN and Infinity are refused)."""
    line = strict_json(record) + "\n"
    with open(path, "a") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch stored in a checkpoint file, or None if it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:
        return None


@dataclass
class RunState:
    """What a run folder says after `reconcile_run`: the kept records, the best error and its epoch."""

    records: list[dict[str, Any]]
    best: float
    best_epoch: int
    notes: list[str] = field(default_factory=list)


def reconcile_run(run_dir: str | os.PathLike, payload: dict[str, Any]) -> RunState:
    """Make metrics.jsonl and best.pt agree with the checkpoint a run resumes from (`payload`, epoch k).

    metrics.jsonl keeps its whole records of epochs ≤ k (a torn line and lines of epochs replayed
    after the crash go) and regains epoch k's record from the checkpoint if the crash came before
    it was written. best.pt must be the epoch of the lowest selection error in those records: when that
    is epoch k and best.pt is older or missing (a crash between the writes of last.pt and best.pt),
    best.pt is rebuilt from the checkpoint, which holds the same state.
    """
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    epoch = int(payload["epoch"])
    records = [r for r in read_metrics(metrics) if r["epoch"] <= epoch]
    notes = []
    record = payload.get("record")
    if isinstance(record, dict) and record.get("epoch") == epoch and not any(r["epoch"] == epoch for r in records):
        records.append(record)
        notes.append(f"metrics.jsonl: restored epoch {epoch}'s line from the checkpoint")
    text = "".join(strict_json(r) + "\n" for r in records)
    if not metrics.exists() or metrics.read_text(errors="replace") != text:
        atomic_write_text(metrics, text)
    best, best_epoch = best_of(records)
    if not records:  # a run folder without metrics (an old or hand-made one): trust the checkpoint
        best, best_epoch = float(payload.get("best", math.inf)), int(payload.get("best_epoch", 0) or 0)
    best_path = run_dir / "best.pt"
    if best_epoch:
        stored = checkpoint_epoch(best_path)
        if stored != best_epoch:
            if best_epoch == epoch and Path(payload["path"]).resolve() != best_path.resolve():
                atomic_copy(payload["path"], best_path)
                notes.append(f"best.pt: rebuilt as epoch {epoch} (it was {'missing' if stored is None else f'epoch {stored}'})")
            else:
                notes.append(f"best.pt: holds epoch {stored}, but the best epoch in metrics.jsonl is {best_epoch}, "
                             "whose weights are gone; it is replaced at the next improvement")
    return RunState(records, best, best_epoch, notes)
