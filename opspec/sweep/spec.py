"""The sweep spec: base config and overrides, optimizers, LR grid per optimizer, seeds, budgets, resources.

A YAML file gives any of the keys below; command-line flags override it. Every value is checked here,
with a one-line error naming the key, before Ray or any trial starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from yaml import YAMLError

from opspec.core.errors import OpspecError
from opspec.optim import OPTIMIZERS

# The centre of an LR grid when the spec names none: AdamW's tuned Darcy LR; the spectral optimizers
# all use match_rms_adamw scaling, so one centre fits them all.
BASE_LR = {"adamw": 3e-3}
DEFAULT_BASE_LR = 1e-2


@dataclass
class SweepSpec:
    """One sweep: what to train (a config plus overrides) and the protocol's grids."""

    name: str = "sweep"
    config: str | None = None  # the base YAML config; None: opspec's default experiment
    overrides: list[str] = field(default_factory=list)  # dotted overrides for every trial
    optimizers: list[str] = field(default_factory=lambda: ["adamw", "muon"])
    # named optimizer settings usable in `optimizers`: NAME → config overrides, optimizer.name=BASE among them
    # (a tuned baseline's β₂, warm-up or weight decay, each swept as an optimizer of its own)
    variants: dict[str, list[str]] = field(default_factory=dict)
    lrs: dict[str, list[float]] = field(default_factory=dict)  # an explicit grid per optimizer
    base_lr: dict[str, float] = field(default_factory=dict)  # else a grid of lr_factors around this
    lr_factors: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    extend_edges: int = 3  # times a grid may grow past the edge that holds the best LR
    epochs: int = 15  # the full budget
    budgets: list[float] = field(default_factory=lambda: [1.0])  # fractions of `epochs`
    budget_lr_factors: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    seeds: list[int] = field(default_factory=lambda: [0])  # the seeds every LR of a grid trains
    confirm_seeds: list[int] = field(default_factory=list)  # further seeds at each selected LR only
    target: str = "adamw"  # the baseline whose full-budget error the others must match
    confirm_budget: bool = True  # train the matched budget's nearest realizable epoch count
    epoch_cost: dict[str, float] = field(default_factory=dict)  # s/epoch vs the target, measured elsewhere
    log: str = "mlflow"  # train.log of every trial (none to log nothing)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    threads_per_trial: int = 1  # torch threads inside a trial
    max_concurrent: int = 0  # 0: as many as the resources allow

    def lr_grid(self, optimizer: str) -> list[float]:
        """The first grid of `optimizer` at the full budget."""
        if optimizer in self.lrs:
            return sorted(round_lr(lr) for lr in self.lrs[optimizer])
        centre = self.base_lr.get(optimizer, BASE_LR.get(self.base_of(optimizer), DEFAULT_BASE_LR))
        return sorted(round_lr(centre * f) for f in self.lr_factors)

    def base_of(self, optimizer: str) -> str:
        """The opspec optimizer a name trains: a variant's optimizer.name, else the name itself."""
        return _base(self.variants[optimizer]) if optimizer in self.variants else optimizer

    def optimizer_overrides(self, optimizer: str) -> list[str]:
        """The config overrides that make a trial train `optimizer` (a variant's list, or optimizer.name=NAME)."""
        return list(self.variants.get(optimizer, [f"optimizer.name={optimizer}"]))

    def budget_epochs(self, budget: float) -> int:
        """Epochs of a schedule at `budget` times the full length (at least one)."""
        return max(1, round(self.epochs * budget))

    def all_seeds(self) -> list[int]:
        """The sweep seeds, then the confirm seeds not among them."""
        return [*self.seeds, *(s for s in self.confirm_seeds if s not in self.seeds)]


SET_BY_THE_SWEEP = ("optimizer.lr", "seed", "train.epochs", "out_dir", "run_name")  # a variant may not set these


def _base(overrides: list[str]) -> str:
    """The value of the last optimizer.name=… among `overrides` ('' when none)."""
    names = [o.partition("=")[2].strip() for o in overrides if o.partition("=")[0].strip() == "optimizer.name"]
    return names[-1] if names else ""


def round_lr(lr: float) -> float:
    """LRs to six significant digits, so a rerun's trial keys match the stored ones."""
    return float(f"{lr:.6g}")


def _numbers(key: str, value: Any, kind: type) -> list:
    """A list of `kind` from a list, a scalar or comma-separated text; one line naming `key` if not."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        value = [value]
    try:
        out = [kind(v) for v in value]
    except (TypeError, ValueError):
        raise OpspecError(f"{key}={value!r}: expected a list of {kind.__name__}s") from None
    return out


def _mapping(key: str, value: Any) -> dict[str, Any]:
    """NAME=VALUE items (command line) or a YAML mapping."""
    if isinstance(value, Mapping):
        return dict(value)
    out: dict[str, Any] = {}
    for item in value or []:
        name, sep, rest = str(item).partition("=")
        if not sep:
            raise OpspecError(f"{key}: {item!r} is not NAME=VALUE")
        out[name] = rest
    return out


def build_spec(values: Mapping[str, Any]) -> SweepSpec:
    """A checked SweepSpec from a mapping (a YAML file's, updated by the command line)."""
    known = {f.name for f in dataclasses.fields(SweepSpec)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise OpspecError(f"sweep spec key {unknown[0]!r} is unknown; expected one of {sorted(known)}")
    spec = SweepSpec()
    for key, value in values.items():
        if value is None:
            continue
        if key in ("lr_factors", "budgets", "budget_lr_factors"):
            value = _numbers(key, value, float)
        elif key in ("seeds", "confirm_seeds"):
            value = _numbers(key, value, int)
        elif key == "optimizers":
            value = [str(v).strip() for v in (value.split(",") if isinstance(value, str) else value)]
        elif key == "overrides":
            value = [str(v) for v in value]
        elif key == "variants":  # YAML: NAME: [override, ...]; command line: NAME=override;override
            value = {k: [str(o).strip() for o in (v.split(";") if isinstance(v, str) else v) if str(o).strip()]
                     for k, v in _mapping(key, value).items()}
        elif key == "lrs":
            value = {k: _numbers(f"lrs.{k}", v, float) for k, v in _mapping(key, value).items()}
        elif key in ("base_lr", "epoch_cost"):
            value = {k: _numbers(f"{key}.{k}", v, float)[0] for k, v in _mapping(key, value).items()}
        elif key in ("epochs", "extend_edges", "threads_per_trial", "max_concurrent"):
            value = _numbers(key, value, int)[0]
        elif key in ("cpus_per_trial", "gpus_per_trial"):
            value = _numbers(key, value, float)[0]
        elif key == "confirm_budget" and not isinstance(value, bool):
            raise OpspecError(f"confirm_budget={value!r}: expected true or false")
        setattr(spec, key, value)
    check_spec(spec)
    return spec


def check_spec(spec: SweepSpec) -> None:
    """Refuse a spec that cannot run, naming the key."""
    for name, overrides in spec.variants.items():
        if name in OPTIMIZERS or not name or "/" in name:
            raise OpspecError(f"variants.{name}: expected a new name without '/', not one of opspec's optimizers")
        if _base(overrides) not in OPTIMIZERS:
            raise OpspecError(f"variants.{name}={overrides}: expected optimizer.name=<one of {list(OPTIMIZERS)}> "
                              "among its overrides")
        bad = [o for o in overrides if "=" not in o or o.partition("=")[0].strip() in SET_BY_THE_SWEEP]
        if bad:
            raise OpspecError(f"variants.{name}: {bad[0]!r} is not a key=value override the sweep leaves to "
                              f"the variant (it sets {', '.join(SET_BY_THE_SWEEP)} itself)")
    unknown = [o for o in spec.optimizers if o not in OPTIMIZERS and o not in spec.variants]
    if not spec.optimizers or unknown:
        raise OpspecError(f"optimizers={spec.optimizers}: unknown {unknown}; expected names from {list(OPTIMIZERS)} "
                          "or variants")
    for key in ("lrs", "base_lr", "epoch_cost", "variants"):
        strays = [o for o in getattr(spec, key) if o not in spec.optimizers]
        if strays:
            raise OpspecError(f"{key}.{strays[0]}: {strays[0]!r} is not among optimizers={spec.optimizers}")
    for name, grid in spec.lrs.items():
        if not grid or any(not lr > 0 for lr in grid):
            raise OpspecError(f"lrs.{name}={grid}: expected learning rates > 0")
    for key in ("lr_factors", "budget_lr_factors"):
        if not getattr(spec, key) or any(not f > 0 for f in getattr(spec, key)):
            raise OpspecError(f"{key}={getattr(spec, key)}: expected factors > 0")
    if spec.epochs < 1:
        raise OpspecError(f"epochs={spec.epochs}: expected an integer >= 1")
    if spec.extend_edges < 0:
        raise OpspecError(f"extend_edges={spec.extend_edges}: expected an integer >= 0")
    spec.budgets = sorted(set(spec.budgets), reverse=True)
    if not spec.budgets or any(not 0 < b <= 1 for b in spec.budgets) or spec.budgets[0] != 1:
        raise OpspecError(f"budgets={spec.budgets}: expected fractions in (0, 1] of epochs, including 1")
    if len(spec.budgets) > 1 and spec.target not in spec.optimizers:
        raise OpspecError(f"target={spec.target!r}: a budget study needs the target among optimizers={spec.optimizers}")
    if not spec.seeds:
        raise OpspecError("seeds=[]: expected at least one seed")
    if any(s < 0 for s in spec.all_seeds()):
        raise OpspecError(f"seeds={spec.all_seeds()}: expected seeds >= 0")
    if spec.cpus_per_trial <= 0 or spec.gpus_per_trial < 0 or spec.threads_per_trial < 1 or spec.max_concurrent < 0:
        raise OpspecError(f"cpus_per_trial={spec.cpus_per_trial}, gpus_per_trial={spec.gpus_per_trial}, "
                          f"threads_per_trial={spec.threads_per_trial}, max_concurrent={spec.max_concurrent}: expected "
                          "CPUs > 0, GPUs >= 0, threads >= 1, max_concurrent >= 0")
    if spec.config is not None and not Path(spec.config).is_file():
        raise OpspecError(f"config={spec.config}: no such file")
    if not spec.name or "/" in spec.name:
        raise OpspecError(f"name={spec.name!r}: expected a non-empty name without '/'")


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """The mapping of a YAML sweep spec."""
    try:
        loaded = OmegaConf.load(path)
    except OSError as err:
        raise OpspecError(f"{path}: cannot read the sweep spec ({err.strerror or err})") from None
    except (YAMLError, OmegaConfBaseException) as err:
        raise OpspecError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    values = OmegaConf.to_container(loaded, resolve=True)
    if not isinstance(values, dict):
        raise OpspecError(f"{path}: expected a mapping of sweep keys at the top level")
    return values


def spec_dict(spec: SweepSpec) -> dict[str, Any]:
    """The spec as plain data (what the sweep folder records in spec.yaml)."""
    return dataclasses.asdict(spec)
