"""Every optimizer option, declared once: name, type, default, valid range or choices, one-line doc.

The optimizers' constructors check their keywords against these declarations, `build_optimizer`
maps config keys to constructor keywords with them, and the experiment schema
(`opspec.training.config.OptimizerConfig`) is generated from them (`config_fields`). Adding an option is one
`Option(...)` line in the right table below plus the code that reads it.

Names: an option's `name` is its key under `optimizer.` in a config and its keyword to
`build_optimizer`; `kwarg` is the constructor's keyword when that differs (the AdamW part's `betas`
and `eps` are `adamw_betas`/`adamw_eps` of `Muon` and `SpecMuon`; the spectral map's ε is `eps`
there and `spectral_eps` in a config, since a config's `eps` is AdamW's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

import torch

from opspec.optim.directions import BASES as BASE_DIRECTIONS

LR_RULES = ("original", "match_rms_adamw", "none")
BASES = tuple(BASE_DIRECTIONS)  # ("momentum", "adam"): directions.BASES
POWERS = (0.0, 0.25, 0.5, 1.0)
COEFFICIENT_SETS = ("quintic", "polar_express")
LAYOUT_CHOICES = ("auto", "matrix", "conv", "per_mode", "flatten")
TOPK_METHODS = ("subspace", "svd")
COMPUTE_DTYPES = ("auto", "float32", "float64", "bfloat16")


def _real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _interval(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Callable[[Any], str | None]:
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    text = f"a number in {left}{lo:g}, {'∞' if hi == math.inf else f'{hi:g}'}{right}"

    def check(x: Any) -> str | None:
        ok = _real(x) and (x > lo if lo_open else x >= lo) and (x < hi if hi_open else x <= hi)
        return None if ok else text
    return check


def _integer(lo: int) -> Callable[[Any], str | None]:
    def check(x: Any) -> str | None:
        return None if isinstance(x, int) and not isinstance(x, bool) and x >= lo else f"an integer >= {lo}"
    return check


def _sequence(x: Any) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, str)


def _betas(x: Any) -> str | None:
    ok = _sequence(x) and len(x) == 2 and all(_real(b) and 0 <= b < 1 for b in x)
    return None if ok else "two numbers, each in [0, 1)"


def _boolean(x: Any) -> str | None:
    return None if isinstance(x, bool) else "true or false"


def _coefficients(x: Any) -> str | None:
    if isinstance(x, str):
        return None if x in COEFFICIENT_SETS else f"one of {list(COEFFICIENT_SETS)} or a list of (a, b, c)"
    ok = _sequence(x) and len(x) > 0 and all(
        _sequence(t) and len(t) == 3 and all(_real(v) for v in t) for t in x)
    return None if ok else f"one of {list(COEFFICIENT_SETS)} or a non-empty list of (a, b, c)"


def _compute_dtype(x: Any) -> str | None:
    if x is None or x in COMPUTE_DTYPES:
        return None
    return None if isinstance(x, torch.dtype) and x in (torch.float32, torch.float64, torch.bfloat16, torch.float16) \
        else f"one of {list(COMPUTE_DTYPES)}"


def _to_dtype(x: Any) -> Any:
    """A config's compute dtype name as the constructor's: "auto" → None, "float32" → torch.float32."""
    if isinstance(x, str):
        return None if x == "auto" else getattr(torch, x)
    return x


def _treat(x: Any) -> str | None:
    """{pattern: treatment}: the overrides of `treatment.treat_parameters`."""
    allowed = ("adamw", "shape", *LAYOUT_CHOICES[1:])
    ok = hasattr(x, "items") and all(isinstance(k, str) and v in allowed for k, v in x.items())
    return None if ok else f"a mapping of parameter-name patterns to one of {list(allowed)}"


POSITIVE = _interval(0.0, math.inf, lo_open=True, hi_open=True)
NON_NEGATIVE = _interval(0.0, math.inf, hi_open=True)
FRACTION = _interval(0.0, 1.0, hi_open=True)  # [0, 1): momenta and EMA factors


@dataclass(frozen=True)
class Option:
    """One option: `check(value)` says what was expected when `value` is out of range (else None)."""

    name: str
    kind: Any  # the config schema's type
    default: Any
    doc: str
    check: Callable[[Any], str | None]
    kwarg: str | None = None  # the constructor's keyword, when not `name`
    convert: Callable[[Any], Any] | None = None  # config value → constructor value
    in_config: bool = True  # False: set another way (e.g. by the optimizer's name)
    choices: tuple[Any, ...] | None = None  # the allowed values, for options that are a choice

    @property
    def keyword(self) -> str:
        return self.kwarg or self.name


def _choices(values: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda x: None if x in values else f"one of {list(values)}"


def _choice(name: str, default: str, doc: str, values: tuple[str, ...], **kw: Any) -> Option:
    """An option that is one of `values`."""
    return Option(name, str, default, doc, _choices(values), choices=values, **kw)


# The skeleton's options (opspec/optim/step.py): every spectral optimizer has them.
SPECTRAL = (
    Option("lr", float, 0.02, "step size γ₀ before the shape rule", POSITIVE),
    Option("weight_decay", float, 0.0, "decoupled weight decay λ: θ ← (1 − γ₀λ)θ", NON_NEGATIVE),
    Option("momentum", float, 0.95, "μ of the optimizer's momentum", FRACTION),
    _choice("adjust_lr", "original", "shape rule: √max(1, out/in) | 0.2·√max(out, in) | 1", LR_RULES),
    _choice("layout", "auto", "matrices of a parameter: auto (by rule) or one layout for all", LAYOUT_CHOICES),
    Option("ns_steps", int, 5, "Newton–Schulz steps of the polar factor", _integer(1)),
    Option("coefficients", str, "quintic", "Newton–Schulz (a, b, c): quintic | polar_express (a config names a set)",
           _coefficients, choices=COEFFICIENT_SETS),
    Option("compute_dtype", str, None, "dtype of the Newton–Schulz matmuls: auto (bf16 on CUDA and bf16 CPUs, else float32)",
           _compute_dtype, convert=_to_dtype, choices=COMPUTE_DTYPES),
    Option("spectral_eps", float, 1e-7, "ε of the spectral map's Frobenius normalizations", POSITIVE, kwarg="eps"),
)

# The AdamW part of a spectral optimizer (parameters without a matrix layout), set in `build_optimizer`.
ADAMW_PART = (
    Option("betas", list[float], (0.9, 0.999), "AdamW's (β₁, β₂): `adamw`, and the AdamW part", _betas, kwarg="adamw_betas",
           convert=tuple),
    Option("eps", float, 1e-8, "AdamW's ε: `adamw`, and the AdamW part", POSITIVE, kwarg="adamw_eps"),
    Option("adamw_lr", Optional[float], None, "lr of the AdamW part; None: lr", POSITIVE),
    Option("adamw_weight_decay", Optional[float], None, "weight decay of the AdamW part; None: weight_decay", NON_NEGATIVE),
    Option("min_side", int, 2, "a matrix with a shorter side goes to the AdamW part", _integer(1)),
    Option("treat", Optional[dict[str, str]], None, "treatment by parameter-name pattern (fnmatch), first match wins: "
           "adamw | shape (the rule by shape) | a layout; e.g. {'*.core': adamw} (optim/treatment.py)", _treat),
)

MUON_OWN = (
    _choice("base", "momentum", "direction before the map: momentum | adam (set by the name <base>_p<p>)", BASES,
            in_config=False),
    Option("power", float, 0.0, "p of U Σ^p Vᴴ: 0 | 0.25 | 0.5 | 1 (set by the name <base>_p<p>)",
           lambda x: None if _real(x) and float(x) in POWERS else f"one of {list(POWERS)}", in_config=False),
    Option("nesterov", bool, True, "Nesterov look-ahead of the momentum base", _boolean),
    Option("adam_betas", list[float], (0.9, 0.999), "(β₁, β₂) of the adam base", _betas, convert=tuple),
    Option("adam_eps", float, 1e-8, "ε of the adam base m̂/(√v̂ + ε)", POSITIVE),
)

SPECMUON_OWN = (
    Option("guided_modes", int, 6, "k: top singular modes per matrix under step control", _integer(1)),
    Option("relaxation", float, 0.2, "ξ: r² may relax up to (1 − ξ)r̃² + ξr²; 0 keeps r ≤ r̃, 1 allows r ≤ r_prev",
           _interval(0.0, 1.0)),
    Option("energy_shift", float, 1.0, "C in E = √(ℓ + C)", NON_NEGATIVE),
    Option("loss_ema", float, 0.9, "β of the loss EMA ℓ; 0: the batch loss", FRACTION),
    Option("energy_window", int, 0, "ℓ = the plain mean of the last n batch losses (n = steps per epoch: a "
           "whole-data loss minibatch noise does not drive; 1 at full batch: the paper's E); 0: the EMA loss_ema",
           _integer(0)),
    _choice("topk", "subspace", "top-k triplets by warm-started subspace iteration | batched svd", TOPK_METHODS),
    Option("subspace_iters", int, 1, "subspace iterations per step (4 at a cold start)", _integer(1)),
)

ADAMW = (
    Option("lr", float, 1e-3, "AdamW's learning rate", POSITIVE),
    Option("weight_decay", float, 1e-2, "AdamW's decoupled weight decay", NON_NEGATIVE),
    ADAMW_PART[0], ADAMW_PART[1],
)


def _with_defaults(options: tuple[Option, ...], **defaults: Any) -> tuple[Option, ...]:
    return tuple(replace(o, default=defaults[o.name]) if o.name in defaults else o for o in options)


MUON = SPECTRAL + MUON_OWN
SPECMUON = _with_defaults(SPECTRAL, momentum=0.9, spectral_eps=1e-8) + SPECMUON_OWN
FAMILY: dict[str, tuple[str, float]] = {f"{base}_p{p:g}": (base, p) for base in BASES for p in POWERS}
OPTIMIZERS = ("adamw", "muon", "specmuon", *FAMILY)


ADAMW_GROUP = ADAMW_PART[:2]  # betas, eps: what a constructor takes for its use_spectral=False groups


def optimizer_options(name: str) -> tuple[Option, ...]:
    """The options `build_optimizer(model, name, **options)` and a config take for optimizer `name`."""
    if name == "adamw":
        return ADAMW
    if name == "specmuon":
        return SPECMUON + ADAMW_PART
    if name == "muon" or name in FAMILY:
        return tuple(o for o in MUON if o.in_config) + ADAMW_PART
    raise ValueError(f"optimizer name {name!r}: expected one of {OPTIMIZERS}")


def _all_options() -> dict[str, list[Option]]:
    table: dict[str, list[Option]] = {}
    for options in (ADAMW, SPECTRAL, SPECMUON, ADAMW_PART, MUON_OWN, SPECMUON_OWN):
        for o in options:
            if o.in_config and o not in table.setdefault(o.name, []):
                table[o.name].append(o)
    return table


def check_optimizer_options(name: str, options: dict[str, Any]) -> None:
    """Refuse an unknown optimizer name, an unknown option, or an option out of range, with one line
    "optimizer.<key>=<value>: expected …". `options` may hold every key of a config's optimizer
    section (`name` included); None means "the optimizer's default" and is always accepted."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name={name!r}: expected one of {list(OPTIMIZERS)}")
    table = _all_options()
    for key, value in options.items():
        if key == "name" or value is None:
            continue
        if key not in table:
            raise ValueError(f"optimizer.{key}: unknown option, expected one of {sorted(table)}")
        for option in table[key]:
            problem = option.check(value)
            if problem is not None:
                raise ValueError(f"optimizer.{key}={value!r}: expected {problem}")


def check_constructor(owner: str, options: tuple[Option, ...], values: dict[str, Any]) -> None:
    """A constructor's check of its keywords against its table, "<owner>: <kwarg> must be …, got <value>"."""
    for option in options:
        value = values[option.keyword]
        if value is None and option.default is None:
            continue
        problem = option.check(value)
        if problem is not None:
            raise ValueError(f"{owner}: {option.keyword} must be {problem}, got {value!r}")


def to_keywords(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """`build_optimizer`'s options for `name` as constructor keywords (converted); None values dropped."""
    known = {o.name: o for o in optimizer_options(name)}
    unknown = set(options) - set(known)
    if unknown:
        raise ValueError(f"{name}: unknown options {sorted(unknown)} (known: {sorted(known)})")
    out = {}
    for key, value in options.items():
        if value is None:
            continue
        option = known[key]
        out[option.keyword] = option.convert(value) if option.convert else value
    return out


def options_from_config(name: str, section: dict[str, Any]) -> dict[str, Any]:
    """The keys of a config's optimizer section (all optimizers' keys) that optimizer `name` takes."""
    keys = {o.name for o in optimizer_options(name)}
    return {key: value for key, value in section.items() if key in keys}


# The default experiment's values where they are not the optimizer's own (configs/darcy_fno.yaml;
# Muon with the AdamW-matching shape rule won the default Darcy run on two seeds: docs/RESULTS.md).
EXPERIMENT_DEFAULTS: dict[str, Any] = {
    "name": "muon", "lr": 1e-2, "weight_decay": 1e-4, "adjust_lr": "match_rms_adamw", "adamw_lr": 3e-3,
    "compute_dtype": "auto",
}


def config_fields() -> list[tuple[str, Any, Any]]:
    """(name, type, dataclasses.field) of every config key, for `dataclasses.make_dataclass`.

    A key's default is the experiment's (`EXPERIMENT_DEFAULTS`), else the optimizer default when all
    optimizers having the option agree on it, else None ("the optimizer's own": momentum, spectral_eps).
    """
    fields: list[tuple[str, Any, Any]] = [("name", str, field(default=EXPERIMENT_DEFAULTS["name"]))]
    for key, options in _all_options().items():
        defaults = {repr(o.default) for o in options}
        if key in EXPERIMENT_DEFAULTS:
            default = EXPERIMENT_DEFAULTS[key]
        elif len(defaults) == 1:
            default = options[0].default
        else:
            default = None
        kind = options[0].kind
        if default is None and not str(kind).startswith("typing.Optional"):
            kind = Optional[kind]
        if isinstance(default, tuple):
            fields.append((key, kind, field(default_factory=lambda d=default: list(d))))
        else:
            fields.append((key, kind, field(default=default)))
    return fields


def config_choices() -> dict[str, tuple[Any, ...]]:
    """"optimizer.<key>" → allowed values, for the config keys that are a choice (the name included)."""
    table = {"optimizer.name": OPTIMIZERS}
    table.update({f"optimizer.{key}": options[0].choices for key, options in _all_options().items() if options[0].choices})
    return table
