"""The one place a run's parts are built from a config: the data's meta, the normalized model, the
optimizer and the LR schedule.

The Trainer, the checkpoint's model rebuild, `evaluate`, `describe` and the tools all call these, so
a model is built one way everywhere (the same keywords, the same RNG draws in the same order).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from opspec.core.errors import OpspecError
from opspec.data import OperatorDataset, UnitGaussianNormalizer, fit_normalizer
from opspec.models import NormalizedOperator, build_model
from opspec.optim import build_optimizer, options_from_config
from opspec.models import model_labels
from opspec.training.config import batch_samples, to_container
from opspec.training.schedule import build_scheduler

META_KEYS = ("in_channels", "out_channels", "n_space")

# Channels and spatial dimensions of each problem's data when no data file is at hand (the generators').
PROBLEM_SHAPES = {"darcy": (1, 1, 2), "burgers": (1, 1, 1)}


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch: the model's initial weights are a function of the seed alone."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def data_meta(file: Any, split: str | None = None) -> dict[str, Any]:
    """{in_channels, out_channels, n_space, grid} of a canonical file or set's `split` (default: train if
    it has one): what a model is built for (extra axes such as time count as channels, as the Dataset reads them)."""
    n_space = len(file.space_dims)
    split = split or ("train" if "train" in file.splits else file.splits[0])
    c_in, c_out = (math.prod(file.shapes[split][var][1:len(file.shapes[split][var]) - n_space]) for var in ("a", "u"))
    return {"in_channels": c_in, "out_channels": c_out, "n_space": n_space, "grid": file.grid}


def problem_meta(cfg: DictConfig) -> dict[str, Any]:
    """The meta of the configured problem's generated data, for when no data file is at hand (describe)."""
    if cfg.data.problem == "navier_stokes":
        return {"in_channels": int(cfg.data.t_in or 10), "out_channels": int(cfg.data.t_out or 10), "n_space": 2,
                "grid": "periodic"}
    if cfg.data.problem not in PROBLEM_SHAPES:
        raise OpspecError(f"data.path={cfg.data.path}: no such file; the shapes of data.problem={cfg.data.problem!r} "
                          "data come from its file (expected the converted file)")
    c_in, c_out, n_space = PROBLEM_SHAPES[cfg.data.problem]
    return {"in_channels": c_in, "out_channels": c_out, "n_space": n_space,
            "grid": "periodic" if cfg.data.problem == "burgers" else "nodal"}


def check_meta(meta: Any, where: str) -> dict[str, Any]:
    """A checkpoint's meta, refused in one line when it lacks what a model is built from."""
    if not isinstance(meta, dict) or not set(META_KEYS) <= set(meta):
        raise OpspecError(f"{where}: checkpoint has no 'meta' with in_channels, out_channels and n_space "
                          "(expected a checkpoint written by opspec.train)")
    return meta


def build_bare_model(model_cfg: DictConfig, meta: dict[str, Any]) -> torch.nn.Module:
    """The configured model for the data's meta, without normalizers (a checkpoint older than `grid` is nodal)."""
    return build_model(model_cfg, meta["in_channels"], meta["out_channels"], meta["n_space"], meta.get("grid", "nodal"))


def build_net(model_cfg: DictConfig, meta: dict[str, Any], train_data: OperatorDataset | None = None,
              normalizers: tuple[torch.nn.Module, torch.nn.Module] | None = None) -> NormalizedOperator:
    """The configured model wrapped with its normalizers: fitted on `train_data`, given, or unit (to be loaded)."""
    model = build_bare_model(model_cfg, meta)
    if normalizers is None and train_data is not None:
        normalizers = (fit_normalizer(train_data, "a"), fit_normalizer(train_data, "u"))
    if normalizers is None:
        normalizers = (UnitGaussianNormalizer(meta["in_channels"], meta["n_space"]),
                       UnitGaussianNormalizer(meta["out_channels"], meta["n_space"]))
    return NormalizedOperator(model, *normalizers)


def optimizer_from_config(model: torch.nn.Module, cfg: DictConfig,
                          process_group: torch.distributed.ProcessGroup | None = None) -> torch.optim.Optimizer:
    """The configured optimizer as one object over the whole model (opspec.optim.build_optimizer with
    the section's keys that optimizer takes, as opspec/optim/options.py declares them); the spectral
    ones share their work across `process_group`'s ranks."""
    options = options_from_config(cfg.name, to_container(cfg))
    try:
        return build_optimizer(model, cfg.name, process_group=process_group, labels=model_labels, **options)
    except ValueError as err:  # an option out of range: one line naming it
        raise OpspecError(f"optimizer: {err}") from None


@dataclass
class Parts:
    """What a run trains: the normalized model, its optimizer and the per-step LR schedule."""

    net: NormalizedOperator
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int


def assemble(cfg: DictConfig, meta: dict[str, Any], train_data: OperatorDataset, device: torch.device | str = "cpu",
             process_group: torch.distributed.ProcessGroup | None = None,
             normalizers: tuple[torch.nn.Module, torch.nn.Module] | None = None) -> Parts:
    """Seed, build the model for `meta` (normalizers fitted on `train_data` unless given), move it to
    `device`, then the optimizer and the schedule of `cfg.train.epochs` epochs of `train_data`."""
    seed_everything(cfg.seed)  # the same seed on every rank: the same initial weights everywhere
    net = build_net(cfg.model, meta, train_data, normalizers)
    net.to(device)
    optimizer = optimizer_from_config(net.model, cfg.optimizer, process_group)
    steps_per_epoch = math.ceil(len(train_data) / batch_samples(cfg.train.batch_size, len(train_data)))
    scheduler = build_scheduler(optimizer, cfg.train, steps_per_epoch)  # stepped per step
    return Parts(net, optimizer, scheduler, steps_per_epoch)
