"""Checkpoints written atomically (temp file + fsync + rename) and read back weights-only."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from opspec.errors import OpspecError
from opspec.fileio import atomic_path

CHECKPOINT_VERSION = 1


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


def atomic_save(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save to a temp file in the same folder, fsync, then rename: a crash leaves the old file whole."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
    return Path(path)


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
    if payload.get("version", 0) > CHECKPOINT_VERSION:
        raise OpspecError(f"{file}: checkpoint version {payload['version']} is newer than this opspec reads")
    payload["path"] = str(file)
    return payload
