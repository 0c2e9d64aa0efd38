"""The experiment config: a typed schema (OmegaConf structured config), YAML files and dotted overrides.

The schema's defaults ARE the default experiment (`python -m opspec.train` with no arguments);
`configs/darcy_fno.yaml` spells the same values out. Unknown keys and values of the wrong type
are refused with a one-line error naming the key.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
import re
from typing import Any, Optional, Sequence

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from opspec.core.errors import OpspecError
from opspec.training.loggers import LOGGERS
from opspec.optim.registry import check_optimizer_options, config_choices, config_fields
from opspec.training.precision import PRECISIONS
from opspec.training.runfolder import default_run_name, run_name_error
from opspec.training.schedule import SCHEDULE_UNITS


@dataclass
class DataConfig:
    # darcy | burgers | navier_stokes (generated), or the name a file was converted under (shear_flow, …):
    # an open name; the data file gives the channels and the dimensions (docs/data.md "data.problem")
    problem: str = "darcy"
    path: str = "datasets/darcy_s129_n500.h5"
    generate: bool = True  # generate the file with the settings below when it is missing
    grid_resolution: int = 129  # the stored grid when generating
    n_train: int = 500
    n_test: int = 100
    seed: int = 0  # the generator's seed (independent of the training seed); also draws the validation samples
    # Train samples held out for validation (best.pt is chosen on them); their indices depend only on
    # data.seed and the train count (opspec/data/holdout.py). A file with its own `valid` split uses it
    # instead; 0: no validation, best.pt is chosen on the test error (the behaviour before).
    val_fraction: float = 0.1
    # Burgers / Navier–Stokes generation (None: the generator's default; docs/DESIGN.md §3.3):
    viscosity: Optional[float] = None  # burgers 0.1, navier_stokes 1e-3
    time_step: Optional[float] = None  # largest solver step
    t_in: Optional[int] = None  # navier_stokes: input snapshots t = 1..t_in (default 10)
    t_out: Optional[int] = None  # navier_stokes: output snapshots t = t_in+1..t_in+t_out (default 10)
    solve_resolution: Optional[int] = None  # navier_stokes: solver grid, a multiple of grid_resolution
    # points per axis (33), one count per axis ([256, 512]), or '/K' (every K-th stored point; docs/data.md)
    train_resolution: Any = 33
    eval_resolutions: list[Any] = field(default_factory=lambda: [33, 65, 129])
    in_memory: bool = True


@dataclass
class ModelConfig:
    name: str = "fno"
    n_modes: list[int] = field(default_factory=lambda: [12, 12])
    hidden_channels: int = 32
    n_layers: int = 4
    lifting_channel_ratio: int = 2
    projection_channel_ratio: int = 2
    # DeepONet (name=deeponet; the FNO keys above are then unused; docs/DESIGN.md §7.7):
    sensors: int = 33  # the branch sees the input resampled to this many points per axis
    branch_width: int = 128  # hidden width of the branch MLP (input: channels × sensors^d values)
    trunk_width: int = 128  # hidden width of the trunk MLP (input: the d query coordinates in [0, 1])
    depth: int = 3  # hidden layers in each of branch and trunk
    basis: int = 64  # p, basis functions per output channel
    # Any other constructor keyword of the neuraloperator model (domain_padding, positional_embedding,
    # factorization, rank, channel_mlp_expansion, fno_block_precision, …): docs/models.md
    options: dict[str, Any] = field(default_factory=dict)


# The optimizer section, generated from opspec/optim/registry.py, where every option is declared once
# (type, default, range, one-line doc): name is adamw | muon | specmuon | the U Σ^p Vᴴ family
# <base>_p<p> (base momentum|adam, p 0|0.25|0.5|1; momentum_p0 is muon). Muon won the default Darcy
# run on two seeds (docs/RESULTS.md); a null value means the optimizer's own default.
OptimizerConfig = make_dataclass("OptimizerConfig", config_fields())


@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: Any = 20  # the global batch (N ranks share it), or "all": full batch, one step per epoch
    scheduler: str = "cosine"  # cosine (to zero) | step | none
    schedule_unit: str = "step"  # step: the cosine moves every step, 0 after the last | epoch: once per epoch
    step_size: int = 100  # epochs between halvings for scheduler=step
    gamma: float = 0.5
    eval_batch_size: int = 50
    eval_every: int = 1  # test (and validate) and write last.pt / best.pt every N epochs and at the last; between: train only
    num_workers: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    progress: bool = True
    keep_freed_memory: bool = True  # glibc malloc keeps freed blocks mapped: fewer page faults per step
    # torchrun: a collective that waits this long for another rank fails (a dead or hung rank)
    dist_timeout_s: float = 600.0
    # How each step runs (opspec/precision.py, opspec/schedule.py, opspec/loggers.py; docs/DESIGN.md §7.3):
    precision: str = "fp32"  # fp32 | bf16 | fp16: autocast of the forward pass (fp16 with loss scaling)
    compile: bool = False  # torch.compile the model (on the CPU it needs a C++ compiler)
    grad_clip: Optional[float] = None  # clip the global gradient norm (complex: over re and im) to this; null: off
    warmup_epochs: int = 0  # the LR rises linearly, step by step, over these epochs before train.scheduler
    warmup_steps: int = 0  # and over these optimizer steps more (schedule_unit=step only)
    log: str = "none"  # none | tensorboard | wandb (offline unless WANDB_MODE is set) | mlflow; rank 0 logs
    mlflow_uri: str = ""  # train.log=mlflow's tracking URI; empty: MLFLOW_TRACKING_URI, else file store <out_dir>/mlruns
    mlflow_experiment: str = ""  # the MLflow experiment; empty: MLFLOW_EXPERIMENT_NAME, else "opspec"


@dataclass
class Config:
    seed: int = 0
    run_name: Optional[str] = None  # a folder name under out_dir; null: <data.problem>_<model.name>
    out_dir: str = "checkpoints"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


GENERATED_PROBLEMS = ("darcy", "burgers", "navier_stokes")  # what data.generate can make (opspec.data.generate)
PROBLEM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")  # a converted file's --problem, e.g. shear_flow

CHOICES = {
    "model.name": ("fno", "tfno", "uno", "codano", "sfno", "localno", "deeponet"),  # opspec.models.MODEL_NAMES
    **config_choices(),  # optimizer.name and the optimizer's choice options (opspec/optim/registry.py)
    "train.scheduler": ("cosine", "step", "none"),
    "train.schedule_unit": SCHEDULE_UNITS,
    "train.precision": PRECISIONS,
    "train.log": LOGGERS,
}


def _config_error(err: OmegaConfBaseException, where: str) -> OpspecError:
    key = getattr(err, "full_key", None)
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    name = type(err).__name__
    if name == "ConfigKeyError" or "not in struct" in first:
        return OpspecError(f"{where}: unknown config key {key!r}")
    return OpspecError(f"{where}: key {key!r}: {first}")


class _Invalid(Exception):
    """A value out of range: the keys involved (the error blames whichever was set last) and the message."""

    def __init__(self, keys: Sequence[str], message: str) -> None:
        super().__init__(message)
        self.keys = tuple(keys)


FNO_LIKE = ("fno", "tfno", "uno", "codano")  # models whose n_modes follow neuraloperator's SpectralConv rule


def _resolutions(value: Any, n: int) -> list[int]:
    """A training resolution as one size per axis (an int means the same size on every axis)."""
    if isinstance(value, int):
        return [value] * n
    return [int(v) for v in value]


def max_fno_modes(resolution: Sequence[int]) -> list[int]:
    """The most n_modes per axis that a training resolution fits (neuraloperator's SpectralConv):
    the first axes keep n_modes of the s Fourier modes, the last axis keeps n_modes // 2 + 1 of the
    s // 2 + 1 modes of the real FFT, so n_modes ≤ s there and n_modes // 2 ≤ s // 2 on the last.
    More would leave weights that training never touches but a finer evaluation grid uses."""
    sizes = list(resolution)
    return sizes[:-1] + [2 * (sizes[-1] // 2) + 1]


def _per_axis(value: Any) -> Any:
    """A resolution written as the CLI writes it, "64x128", as the list [64, 128]; any other value as it is."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\s*x\s*\d+)+\s*", value):
        return [int(v) for v in value.split("x")]
    return value
FULL_BATCH = "all"  # train.batch_size for full-batch training


def batch_samples(batch_size: int | str, n_train: int) -> int:
    """Samples per step: `batch_size`, or the whole training set for train.batch_size=all."""
    return n_train if batch_size == FULL_BATCH else int(batch_size)


def _check_number(cfg: DictConfig, key: str, ok: Any, expected: str) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise _Invalid([key], f"{key}={value}, expected {expected}")


def _validate(cfg: DictConfig) -> None:
    problem = cfg.data.problem
    if not isinstance(problem, str) or not PROBLEM_NAME.fullmatch(problem):
        raise _Invalid(["data.problem"], f"data.problem={problem!r}: expected one of {list(GENERATED_PROBLEMS)} or the "
                       "name a data file was converted under (letters, digits, '.', '_', '-')")
    bad_name = run_name_error(cfg.run_name)
    if bad_name is not None:
        raise _Invalid(["run_name"], bad_name)
    if not str(cfg.out_dir).strip():
        raise _Invalid(["out_dir"], "out_dir='': expected the folder that run folders go in, e.g. checkpoints")
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise _Invalid([key], f"{key}={value!r}, expected one of {list(allowed)}")
    if cfg.train.batch_size != FULL_BATCH:
        _check_number(cfg, "train.batch_size", lambda x: x >= 1 and x == int(x), f"an integer >= 1 or {FULL_BATCH!r}")
    positive = ["train.epochs", "train.eval_batch_size", "train.eval_every", "train.step_size", "data.n_train",
                "data.n_test", "data.grid_resolution", "model.hidden_channels", "model.n_layers",
                "model.lifting_channel_ratio", "model.projection_channel_ratio",
                "model.branch_width", "model.trunk_width", "model.depth", "model.basis"]
    for key in positive:
        _check_number(cfg, key, lambda x: x >= 1, "an integer >= 1")
    _check_number(cfg, "train.num_workers", lambda x: x >= 0, "an integer >= 0")
    for key in ("seed", "data.seed"):
        _check_number(cfg, key, lambda x: 0 <= x < 2**32, "an integer in [0, 2**32) (numpy's seed range)")
    _check_number(cfg, "train.gamma", lambda x: x > 0, "a finite number > 0 (the factor of each step of scheduler=step)")
    _check_number(cfg, "train.dist_timeout_s", lambda x: x > 0, "seconds > 0")
    _check_number(cfg, "train.grad_clip", lambda x: x > 0, "a gradient norm > 0 (or null: no clipping)")
    _check_number(cfg, "train.warmup_epochs", lambda x: x >= 0, "an integer >= 0")
    _check_number(cfg, "data.val_fraction", lambda x: 0 <= x < 1, "a fraction in [0, 1) of the train samples")
    _check_number(cfg, "train.warmup_steps", lambda x: x >= 0, "an integer >= 0")
    if cfg.train.warmup_steps and cfg.train.schedule_unit == "epoch":
        raise _Invalid(["train.warmup_steps", "train.schedule_unit"], f"train.warmup_steps={cfg.train.warmup_steps} with "
                       "train.schedule_unit=epoch: expected schedule_unit=step (the per-epoch cosine counts whole epochs)")
    if cfg.train.warmup_epochs >= cfg.train.epochs:
        raise _Invalid(["train.warmup_epochs", "train.epochs"], f"train.warmup_epochs={cfg.train.warmup_epochs} with "
                       f"train.epochs={cfg.train.epochs}: expected fewer warm-up epochs than epochs")
    for key in ("data.viscosity", "data.time_step", "data.t_in", "data.t_out", "data.solve_resolution"):
        _check_number(cfg, key, lambda x: x > 0, "a positive number (or null for the default)")
    _check_number(cfg, "model.sensors", lambda x: x >= 2, "at least 2 points per axis")
    train_res = OmegaConf.select(cfg, "data.train_resolution")
    train_res = OmegaConf.to_object(train_res) if isinstance(train_res, ListConfig) else train_res
    for key, value in [("data.train_resolution", train_res), *(("data.eval_resolutions", r) for r in cfg.data.eval_resolutions)]:
        if isinstance(value, str) and not re.fullmatch(r"\s*/\s*[1-9]\d*\s*", value):
            raise _Invalid([key], f"{key}={value!r}: expected a point count, one per axis, or '/K' (every K-th stored point)")
    if isinstance(train_res, list):
        if not train_res or any(not isinstance(r, int) or r < 2 for r in train_res):
            raise _Invalid(["data.train_resolution"], f"data.train_resolution={train_res}, expected sizes >= 2")
    elif not isinstance(train_res, str):
        _check_number(cfg, "data.train_resolution", lambda x: x >= 2, "an integer >= 2")
    if not cfg.data.eval_resolutions:
        raise _Invalid(["data.eval_resolutions"], "data.eval_resolutions is empty, expected at least one resolution")
    for r in cfg.data.eval_resolutions:
        if isinstance(r, int) and r < 2:
            raise _Invalid(["data.eval_resolutions"], f"data.eval_resolutions={list(cfg.data.eval_resolutions)}, "
                           "expected resolutions >= 2")
    if cfg.model.name in FNO_LIKE:
        modes = list(cfg.model.n_modes)
        if not modes or any(m < 1 for m in modes):
            raise _Invalid(["model.n_modes"], f"model.n_modes={modes}, expected one integer >= 1 per spatial axis")
        # a stride's sizes depend on the data file: the model checks them when it is built
        limit = [] if isinstance(train_res, str) else max_fno_modes(_resolutions(train_res, len(modes)))
        if len(limit) == len(modes) and any(m > cap for m, cap in zip(modes, limit)):
            raise _Invalid(["model.n_modes", "data.train_resolution"],
                           f"model.n_modes={modes} is more than data.train_resolution={train_res} resolves: "
                           f"expected at most {limit} (the last axis's real FFT keeps n_modes // 2 + 1 modes)")
    if cfg.optimizer.name == "adamw" and cfg.optimizer.get("treat"):
        raise _Invalid(["optimizer.treat", "optimizer.name"],
                       f"optimizer.treat={to_container(cfg.optimizer)['treat']} with optimizer.name=adamw: AdamW "
                       "treats every parameter alike, so treat would do nothing; expected a spectral optimizer "
                       "(e.g. optimizer.name=muon) or no treat")
    if cfg.optimizer.name == "soap" and cfg.train.precision == "fp16":  # GradScaler unscales only SOAP's real views
        raise _Invalid(["train.precision", "optimizer.name"], "train.precision=fp16 with optimizer.name=soap: the loss "
                       "scaler would not unscale the complex weights' gradients; expected fp32 or bf16")
    options = {k: v for k, v in to_container(cfg.optimizer).items() if k != "name"}
    try:
        check_optimizer_options(cfg.optimizer.name, options)
    except ValueError as err:
        text = str(err).strip().splitlines()[0]
        key = text.split("=", 1)[0].split(":", 1)[0].strip()
        raise _Invalid([key if key.startswith("optimizer.") else "optimizer.name"], text) from None


def _blame(keys: Sequence[str], sources: Sequence[tuple[str, str]]) -> str:
    """Where the last value of any of `keys` came from: an override, the YAML file, or the config."""
    for prefix, where in reversed(sources):
        for key in keys:
            if prefix == "" or key == prefix or key.startswith(prefix + ".") or prefix.startswith(key + "."):
                return where
    return "config"


def _dotted_keys(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        out = []
        for k, v in node.items():
            out += _dotted_keys(v, f"{prefix}{k}.") or [f"{prefix}{k}"]
        return out
    return []


# Keys added after runs were written, with the behaviour those runs had: a base config (a checkpoint's)
# without them resumes and evaluates as it ran (per-epoch cosine, no validation split).
BEFORE_KEYS: dict[str, dict[str, Any]] = {"train": {"schedule_unit": "epoch"}, "data": {"val_fraction": 0.0}}


def _with_old_behaviour(base: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """`base` with each key of BEFORE_KEYS it lacks (in a section it has) set to the old behaviour."""
    tree = OmegaConf.to_container(base) if isinstance(base, DictConfig) else dict(base)
    for section, keys in BEFORE_KEYS.items():
        if isinstance(tree.get(section), dict):
            tree[section] = {**keys, **tree[section]}
    return tree


def load_config(
    path: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    base: DictConfig | dict[str, Any] | None = None,
) -> DictConfig:
    """Schema defaults ← `base` (e.g. a checkpoint's config) ← YAML file ← dotted `key=value` overrides.

    A `base` written before a key of BEFORE_KEYS existed gets that key's old behaviour, not its default.

    Every value is checked (types, choices, ranges) before anything uses the config; an error names
    the key and the override or file that set it.
    """
    cfg = OmegaConf.structured(Config)
    where = "config"
    sources: list[tuple[str, str]] = []  # (dotted key set, where it came from), in merge order
    try:
        if base is not None:
            cfg = OmegaConf.merge(cfg, _with_old_behaviour(base))
        if path is not None:
            where = str(path)
            if not Path(path).is_file():
                raise OpspecError(f"{path}: no such config file")
            try:
                loaded = OmegaConf.load(path)
            except Exception as err:  # YAML syntax errors come from the YAML library
                raise OpspecError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
            if not isinstance(loaded, DictConfig):
                raise OpspecError(f"{path}: expected a mapping of config sections, got a list")
            cfg = OmegaConf.merge(cfg, loaded)
            sources += [(key, str(path)) for key in _dotted_keys(OmegaConf.to_container(loaded))]
        for item in overrides:
            where = f"override {item!r}"
            if "=" not in item:
                raise OpspecError(f"override {item!r}: expected key=value, e.g. train.epochs=10")
            try:
                parsed = OmegaConf.from_dotlist([item])
            except yaml.YAMLError as err:  # a malformed value: the YAML library's multi-line message
                reason = str(getattr(err, "problem", None) or str(err).splitlines()[0])
                raise OpspecError(f"override {item!r}: the value is not valid YAML ({reason}); expected e.g. "
                                  "key=1, key=[1,2] or 'key={\"*.core\": adamw}'") from None
            cfg = OmegaConf.merge(cfg, parsed)
            sources.append((item.split("=", 1)[0].strip(), where))
        OmegaConf.set_readonly(cfg, False)  # a read-only base (a loaded config) makes the merge read-only
        if cfg.run_name is None:
            cfg.run_name = default_run_name(str(cfg.data.problem), str(cfg.model.name))
        if _per_axis(cfg.data.train_resolution) != cfg.data.train_resolution:
            cfg.data.train_resolution = _per_axis(cfg.data.train_resolution)
        if any(_per_axis(r) != r for r in cfg.data.eval_resolutions):
            cfg.data.eval_resolutions = [_per_axis(r) for r in cfg.data.eval_resolutions]
    except OmegaConfBaseException as err:
        raise _config_error(err, where) from None
    try:
        _validate(cfg)
    except _Invalid as err:
        raise OpspecError(f"{_blame(err.keys, sources)}: {err}") from None
    OmegaConf.set_readonly(cfg, True)
    return cfg


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """A plain dict of the config (for checkpoints and JSON)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)

