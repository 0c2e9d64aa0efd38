"""The run folder's rules: run names, what a resume may write into, and what a run checks before it starts.

A run name is one folder name under `out_dir` (no `/` or `\\`, not `.` or `..`), never a path. A run
that sets none is named `<problem>_<model>` (`darcy_fno`, `shear_flow_tfno`).

A resume writes into the folder of its target, so the target must be that folder's own state:
`RUN`, `RUN/last.pt`, or `RUN/best.pt` when it is as far as `last.pt` (resuming an older best.pt
would discard the epochs after it). Any other checkpoint file, a folder's `metrics.jsonl` that
another run wrote, and `train.epochs` below the epochs the folder has done are refused with one line
before anything is written (README "Resume").
"""

from __future__ import annotations

import math
import netrc
import os
import shutil
import subprocess
import sysconfig
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from opspec.core.errors import OpspecError
from opspec.core.fileio import FolderLock, atomic_write_text

RUN_NAME_MAX = 200


def run_name_error(name: Any) -> str | None:
    """Why `name` is not a run name (one folder name under out_dir, not a path), or None if it is one."""
    bad = (not isinstance(name, str) or name.strip() in ("", ".", "..") or len(name) > RUN_NAME_MAX
           or any(c in name for c in "/\\") or any(ord(c) < 32 for c in name))
    if bad:
        return (f"run_name={name!r}: expected a folder name (no '/' or '\\', not '.' or '..', at most {RUN_NAME_MAX} "
                "characters), not a path; out_dir sets where run folders go")
    return None


def default_run_name(problem: str, model: str) -> str:
    """The run name of a run that sets none: `<problem>_<model>`."""
    return f"{problem}_{model}"


def _epoch_of(path: Path) -> int | None:
    """The epoch a checkpoint file holds, or None if it is missing or unreadable (checkpoint.py reads it)."""
    from opspec.training.checkpoint import checkpoint_epoch  # here: checkpoint → assemble → config → this module

    return checkpoint_epoch(path)


def _same_record(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two metrics records of one epoch that the same run wrote (the losses are bitwise the same)."""
    keys = ("epoch", "train_loss", "test_rel_l2")
    return all(k in a and k in b for k in keys) and all(
        a[k] == b[k] or (isinstance(a[k], float) and isinstance(b[k], float) and math.isclose(a[k], b[k], rel_tol=1e-12))
        for k in keys)


def check_resume_target(payload: dict[str, Any], epochs: int, run_dir: str | os.PathLike | None = None) -> Path:
    """The run folder a resume of `payload` (a loaded checkpoint, with its "path") to `epochs` epochs writes
    into, after checking that the checkpoint is that folder's own state and that no finished epoch would be
    discarded; an OpspecError naming the target and what was expected otherwise. Nothing is written."""
    target = Path(payload["path"])
    folder = Path(run_dir) if run_dir is not None else target.parent
    where = f"--resume {target}"
    epoch = int(payload["epoch"])
    lock = FolderLock(folder)  # a run folder being written now: its files move under us, so that is the answer
    if lock.held_elsewhere():
        raise OpspecError(f"{folder}: another trainer ({lock.holder()}) is writing this run folder; "
                          "expected one writer per run folder")
    last, best = folder / "last.pt", folder / "best.pt"
    last_epoch = _epoch_of(last)
    is_last = target.resolve() == last.resolve()
    is_best = target.resolve() == best.resolve()
    if not (is_last or is_best):
        raise OpspecError(
            f"{where}: expected a run folder, its last.pt or its best.pt (a resume writes into the checkpoint's "
            f"folder, {folder}, and {target.name} is not its own state); to continue from this checkpoint, copy it "
            f"as last.pt into a folder of its own and resume that folder")
    if is_best and last_epoch is not None and last_epoch != epoch:
        raise OpspecError(
            f"{where}: best.pt holds epoch {epoch}, but {folder}/last.pt holds epoch {last_epoch}; resuming best.pt "
            f"would discard epochs {epoch + 1}..{last_epoch}" if last_epoch > epoch else
            f"{where}: best.pt holds epoch {epoch}, but {folder}/last.pt holds epoch {last_epoch}, an older one: "
            f"the two files are not one run's")
    from opspec.training.checkpoint import read_metrics  # here: checkpoint → assemble → config → this module
    records = read_metrics(folder / "metrics.jsonl")
    ahead = [r["epoch"] for r in records if r["epoch"] > epoch]
    if ahead:
        raise OpspecError(
            f"{where}: {folder}/metrics.jsonl records epochs up to {max(ahead)}, past the checkpoint's epoch {epoch}; "
            f"resuming would discard them (expected --resume {folder}, whose last.pt is the run's latest state)")
    own = payload.get("record")
    mine = next((r for r in records if r["epoch"] == epoch), None)
    if isinstance(own, dict) and mine is not None and not _same_record(own, mine):
        raise OpspecError(
            f"{where}: {folder}/metrics.jsonl records another run's epoch {epoch} (test_rel_l2 {mine['test_rel_l2']:.6g}, "
            f"the checkpoint's is {own.get('test_rel_l2')!r}); expected the run folder this checkpoint was written in")
    if epochs < epoch:
        raise OpspecError(f"{where}: train.epochs={epochs}, but the run has finished epoch {epoch}; "
                          f"expected at least {epoch}")
    return folder


def restore_config_yaml(run_dir: str | os.PathLike, config: dict[str, Any]) -> None:
    """Write back the config of the checkpoint a failed resume started from, so that config.yaml describes
    the run that last.pt holds (a resume that trained no epoch changed nothing else)."""
    from opspec.training.config import load_config, to_yaml

    run_dir = Path(run_dir)
    cfg = load_config(base={**config, "out_dir": str(run_dir.parent), "run_name": run_dir.name})
    atomic_write_text(run_dir / "config.yaml", to_yaml(cfg))


# -- the environment a run needs, checked before its folder is made -----------------------------------

WANDB_MODES = ("online", "offline", "disabled", "dryrun", "run", "shared")


def _wandb_key_present() -> bool:
    """Whether wandb finds an API key: WANDB_API_KEY, or the netrc entry of its host."""
    if os.environ.get("WANDB_API_KEY", "").strip():
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def check_wandb_environment() -> None:
    """train.log=wandb: WANDB_MODE must be a mode wandb knows, and an online run needs an API key."""
    mode = os.environ.get("WANDB_MODE", "offline")
    if mode not in WANDB_MODES:
        raise OpspecError(f"train.log=wandb: WANDB_MODE={mode!r}, expected one of {list(WANDB_MODES)}")
    if mode in ("online", "run", "shared") and not _wandb_key_present():
        raise OpspecError(f"train.log=wandb with WANDB_MODE={mode}: no wandb API key (expected WANDB_API_KEY, or "
                          "`wandb login`); unset WANDB_MODE to log offline")


@lru_cache(maxsize=None)
def _compiler_failure(compiler: str) -> str | None:
    """Why `compiler` cannot build what torch.compile's CPU backend builds (C++ including Python.h), or None."""
    found = shutil.which(compiler)
    if found is None:
        return f"{compiler} is not on PATH"
    source = "#include <Python.h>\n#include <cmath>\nint main() { return std::isnan(0.0) ? 1 : 0; }\n"
    with tempfile.TemporaryDirectory(prefix="opspec-cxx-") as folder:
        src = Path(folder) / "probe.cpp"
        src.write_text(source)
        try:
            result = subprocess.run([found, "-x", "c++", "-fsyntax-only", f"-I{sysconfig.get_paths()['include']}",
                                     str(src)], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"{found} did not run ({err})"
    if result.returncode != 0:
        first = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[0]
        return f"{found} failed on a test program ({first[:160]})"
    return None


def check_compile_environment(device: torch.device) -> None:
    """train.compile=true on the CPU: the C++ compiler torch.compile uses must compile a program with Python.h."""
    if device.type != "cpu":
        return
    compiler = os.environ.get("CXX") or next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)
    if compiler is None:
        raise OpspecError("train.compile=true on the CPU needs a C++ compiler (g++ or clang++), none is on PATH")
    failure = _compiler_failure(compiler)
    if failure is not None:
        raise OpspecError(f"train.compile=true on the CPU needs a working C++ compiler: {failure}; expected one that "
                          "builds C++ against Python.h (install g++ and the Python headers), or train.compile=false")


def check_environment(cfg: Any, device: torch.device) -> None:
    """Everything outside the config that a run needs, checked before any data is generated or folder made."""
    precision = (cfg.model.get("options", None) or {}).get("fno_block_precision", "full")
    if precision in ("half", "mixed") and device.type != "cuda":
        raise OpspecError(f"model.options.fno_block_precision={precision} on the {device.type}: half-precision FFTs "
                          "run on CUDA only; expected full (or train.device=cuda)")
    if cfg.train.compile:
        check_compile_environment(device)
    if cfg.train.log == "wandb":
        check_wandb_environment()
