"""How an option is declared (`Option`: name, type, default, valid range or choices, one-line doc),
and the tables every spectral optimizer shares.

Every option is declared once: the skeleton's (`SPECTRAL`) and the AdamW part's (`ADAMW_PART`)
here, each optimizer's own next to it (`muon.MUON_OWN`, `specmuon.SPECMUON_OWN`, `adamw.ADAMW`).
The constructors check their keywords against their table (`check_constructor`); the registry
(`registry.py`) maps config keys to constructor keywords with them and generates the experiment
schema (`opspec.training.config.OptimizerConfig`) from them. Adding an option is one `Option(...)`
line in its optimizer's table plus the code that reads it.

Names: an option's `name` is its key under `optimizer.` in a config and its keyword to
`build_optimizer`; `kwarg` is the constructor's keyword when that differs (the AdamW part's `betas`
and `eps` are `adamw_betas`/`adamw_eps` of `Muon` and `SpecMuon`; the spectral map's ε is `eps`
there and `spectral_eps` in a config, since a config's `eps` is AdamW's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

import torch

from opspec.optim.apply import LR_RULES
from opspec.optim.layouts import LAYOUTS
from opspec.optim.polar import COEFFICIENT_SETS
from opspec.optim.treatment import TREATMENTS

LAYOUT_CHOICES = ("auto", *LAYOUTS)
COMPUTE_DTYPES = ("auto", "float32", "float64", "bfloat16")


def is_real(x: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def interval(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Callable[[Any], str | None]:
    """The check of a number in [lo, hi], each end open or closed."""
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    text = f"a number in {left}{lo:g}, {'∞' if hi == math.inf else f'{hi:g}'}{right}"

    def check(x: Any) -> str | None:
        ok = is_real(x) and (x > lo if lo_open else x >= lo) and (x < hi if hi_open else x <= hi)
        return None if ok else text
    return check


def integer_at_least(lo: int) -> Callable[[Any], str | None]:
    """The check of an integer ≥ lo."""
    def check(x: Any) -> str | None:
        return None if isinstance(x, int) and not isinstance(x, bool) and x >= lo else f"an integer >= {lo}"
    return check


def _sequence(x: Any) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, str)


def betas_pair(x: Any) -> str | None:
    """The check of Adam's (β₁, β₂)."""
    ok = _sequence(x) and len(x) == 2 and all(is_real(b) and 0 <= b < 1 for b in x)
    return None if ok else "two numbers, each in [0, 1)"


def boolean(x: Any) -> str | None:
    """The check of true or false."""
    return None if isinstance(x, bool) else "true or false"


def _coefficients(x: Any) -> str | None:
    if isinstance(x, str):
        return None if x in COEFFICIENT_SETS else f"one of {list(COEFFICIENT_SETS)} or a list of (a, b, c)"
    ok = _sequence(x) and len(x) > 0 and all(
        _sequence(t) and len(t) == 3 and all(is_real(v) for v in t) for t in x)
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
    ok = hasattr(x, "items") and all(isinstance(k, str) and v in TREATMENTS for k, v in x.items())
    return None if ok else f"a mapping of parameter-name patterns to one of {list(TREATMENTS)}"


POSITIVE = interval(0.0, math.inf, lo_open=True, hi_open=True)
NON_NEGATIVE = interval(0.0, math.inf, hi_open=True)
FRACTION = interval(0.0, 1.0, hi_open=True)  # [0, 1): momenta and EMA factors


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


def choice(name: str, default: str, doc: str, values: tuple[str, ...], **kw: Any) -> Option:
    """An option that is one of `values`."""
    return Option(name, str, default, doc, _choices(values), choices=values, **kw)


# The skeleton's options (opspec/optim/step.py): every spectral optimizer has them.
SPECTRAL = (
    Option("lr", float, 0.02, "step size γ₀ before the shape rule", POSITIVE),
    Option("weight_decay", float, 0.0, "decoupled weight decay λ: θ ← (1 − γ₀λ)θ", NON_NEGATIVE),
    Option("momentum", float, 0.95, "μ of the optimizer's momentum", FRACTION),
    choice("adjust_lr", "original", "shape rule: √max(1, out/in) | 0.2·√max(out, in) | 1", LR_RULES),
    choice("layout", "auto", "matrices of a parameter: auto (by rule) or one layout for all", LAYOUT_CHOICES),
    Option("ns_steps", int, 5, "Newton–Schulz steps of the polar factor", integer_at_least(1)),
    Option("coefficients", str, "quintic", "Newton–Schulz (a, b, c): quintic | polar_express (a config names a set)",
           _coefficients, choices=COEFFICIENT_SETS),
    Option("compute_dtype", str, None, "dtype of the Newton–Schulz matmuls: auto (bf16 on CUDA and bf16 CPUs, else float32)",
           _compute_dtype, convert=_to_dtype, choices=COMPUTE_DTYPES),
    Option("spectral_eps", float, 1e-7, "ε of the spectral map's Frobenius normalizations", POSITIVE, kwarg="eps"),
)

# The AdamW part of a spectral optimizer (parameters without a matrix layout), set in `build_optimizer`.
ADAMW_PART = (
    Option("betas", list[float], (0.9, 0.999), "AdamW's (β₁, β₂): `adamw`, and the AdamW part", betas_pair, kwarg="adamw_betas",
           convert=tuple),
    Option("eps", float, 1e-8, "AdamW's ε: `adamw`, and the AdamW part", POSITIVE, kwarg="adamw_eps"),
    Option("adamw_lr", Optional[float], None, "lr of the AdamW part; None: lr", POSITIVE),
    Option("adamw_weight_decay", Optional[float], None, "weight decay of the AdamW part; None: weight_decay", NON_NEGATIVE),
    Option("min_side", int, 2, "a matrix with a shorter side goes to the AdamW part", integer_at_least(1)),
    Option("treat", Optional[dict[str, str]], None, "treatment by parameter-name pattern (fnmatch), first match wins: "
           "adamw | shape (the rule by shape) | a layout; e.g. {'*.core': adamw} (optim/treatment.py)", _treat),
)

ADAMW_GROUP = ADAMW_PART[:2]  # betas, eps: what a constructor takes for its use_spectral=False groups


def with_defaults(options: tuple[Option, ...], **defaults: Any) -> tuple[Option, ...]:
    """The table with some defaults replaced (SpecMuon's momentum and ε)."""
    return tuple(replace(o, default=defaults[o.name]) if o.name in defaults else o for o in options)


def check_constructor(owner: str, options: tuple[Option, ...], values: dict[str, Any]) -> None:
    """A constructor's check of its keywords against its table, "<owner>: <kwarg> must be …, got <value>"."""
    for option in options:
        value = values[option.keyword]
        if value is None and option.default is None:
            continue
        problem = option.check(value)
        if problem is not None:
            raise ValueError(f"{owner}: {option.keyword} must be {problem}, got {value!r}")
