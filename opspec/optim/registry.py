"""Optimizers by name, one registry line each, and what derives from the registry: the names, each
optimizer's options, config keys as constructor keywords, and the config section's schema and checks.

A registry line is an `Entry`: how to make the optimizer (its class, or a function of the same
shape), its options table (declared with `options.Option` next to the optimizer), whether it is
spectral (labelled groups, the AdamW part, a process group: `build.build_optimizer`) and the
constructor keywords its name fixes (the family's base and p). A new optimizer is its own module
plus one line in `REGISTRY` (docs/optim.md, "A new optimizer").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import torch

from opspec.optim.adamw import ADAMW
from opspec.optim.muon import FAMILY, MUON, Muon
from opspec.optim.options import ADAMW_PART, Option
from opspec.optim.soap import SOAP, build_soap
from opspec.optim.specmuon import SPECMUON, SpecMuon

__all__ = ["EXPERIMENT_DEFAULTS", "Entry", "OPTIMIZERS", "REGISTRY", "check_optimizer_options", "config_choices",
           "config_fields", "optimizer_entry", "optimizer_options", "options_from_config", "to_keywords"]


@dataclass(frozen=True)
class Entry:
    """One optimizer: `make(params, **keywords)` builds it; `options` are its own (options.py's Option)."""

    make: Callable[..., torch.optim.Optimizer]
    options: tuple[Option, ...]
    spectral: bool = False  # True: the labelled spectral groups plus the AdamW part (ADAMW_PART), and a process group
    fixed: Mapping[str, Any] = field(default_factory=dict)  # constructor keywords set by the name


REGISTRY: dict[str, Entry] = {
    "adamw": Entry(torch.optim.AdamW, ADAMW),
    "muon": Entry(Muon, MUON, spectral=True),
    "specmuon": Entry(SpecMuon, SPECMUON, spectral=True),
    "soap": Entry(build_soap, SOAP),
    **{name: Entry(Muon, MUON, spectral=True, fixed={"base": base, "power": p}) for name, (base, p) in FAMILY.items()},
}
OPTIMIZERS = tuple(REGISTRY)  # the names, in registry order (the config's `optimizer.name` choices)


def optimizer_entry(name: str) -> Entry:
    """The registry line of optimizer `name`; a ValueError naming the known ones."""
    if name not in REGISTRY:
        raise ValueError(f"optimizer name {name!r}: expected one of {tuple(REGISTRY)}")
    return REGISTRY[name]


def optimizer_options(name: str) -> tuple[Option, ...]:
    """The options `build_optimizer(model, name, **options)` and a config take for optimizer `name`."""
    entry = optimizer_entry(name)
    return tuple(o for o in entry.options if o.in_config) + (ADAMW_PART if entry.spectral else ())


def _all_options() -> dict[str, list[Option]]:
    """Config key → every distinct declaration of it, over all optimizers (their checks all apply)."""
    table: dict[str, list[Option]] = {}
    for name in REGISTRY:
        for o in optimizer_options(name):
            if o not in table.setdefault(o.name, []):
                table[o.name].append(o)
    return table


def check_optimizer_options(name: str, options: dict[str, Any]) -> None:
    """Refuse an unknown optimizer name, an unknown option, or an option out of range, with one line
    "optimizer.<key>=<value>: expected …". `options` may hold every key of a config's optimizer
    section (`name` included); None means "the optimizer's default" and is always accepted."""
    if name not in REGISTRY:
        raise ValueError(f"optimizer.name={name!r}: expected one of {list(REGISTRY)}")
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
    table = {"optimizer.name": tuple(REGISTRY)}
    table.update({f"optimizer.{key}": options[0].choices for key, options in _all_options().items() if options[0].choices})
    return table
