"""neuraloperator 2.0's regular-grid models by name, with any constructor keyword from `model.options`.

`model.name` picks the class; the config's common keys (n_modes, hidden_channels, n_layers, the
lifting/projection ratios) give each model its base keywords, and `model.options` adds or replaces
any other keyword of that constructor (domain_padding, positional_embedding, channel-MLP settings,
fno_block_precision, factorization and rank, …). A keyword the constructor does not take is refused
with one line naming it, checked against the constructor's signature. Models whose package is not
installed (SFNO and LocalNO need torch_harmonics) are refused with one line naming the package.
FNOGNO, GINO (point clouds) and UQNO (a wrapper around a trained model) are not regular-grid models
built from a config, so they are not offered.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn
from torch.nn import functional as F

from opspec.core.errors import OpspecError

# Keys that the config sets itself: `model.options` may not set them.
COMMON_KEYS = ("n_modes", "hidden_channels", "n_layers", "lifting_channel_ratio", "projection_channel_ratio")
DATA_KEYS = ("in_channels", "out_channels")


@dataclass(frozen=True)
class ModelSpec:
    """Where a model class lives, the package it needs, and its base keywords from the config."""

    module: str
    cls: str
    package: str  # the import that must succeed (optional extras)
    base: Callable[[Any, int, int, int], dict[str, Any]]  # (cfg, in_channels, out_channels, n_space) → keywords
    owns: tuple[str, ...] = ()  # keywords of `base` that options may replace (per-layer defaults)


def _modes(cfg: Any) -> tuple[int, ...]:
    return tuple(int(m) for m in cfg.n_modes)


def _fno_base(cfg: Any, in_channels: int, out_channels: int, n_space: int) -> dict[str, Any]:
    """FNO's keywords, in the order (and with the values) opspec has always passed them."""
    return dict(
        n_modes=_modes(cfg), in_channels=in_channels, out_channels=out_channels,
        hidden_channels=int(cfg.hidden_channels), n_layers=int(cfg.n_layers),
        lifting_channel_ratio=int(cfg.lifting_channel_ratio), projection_channel_ratio=int(cfg.projection_channel_ratio),
    )


def _uno_base(cfg: Any, in_channels: int, out_channels: int, n_space: int) -> dict[str, Any]:
    """UNO at one resolution throughout: every layer hidden_channels wide with n_modes, scaling 1.

    The channel-MLP skip is "linear" (soft-gating cannot join UNO's concatenated horizontal skips).
    Give uno_out_channels / uno_n_modes / uno_scalings in model.options for an encoder–decoder.
    """
    hidden, layers = int(cfg.hidden_channels), int(cfg.n_layers)
    return dict(
        in_channels=in_channels, out_channels=out_channels, hidden_channels=hidden, n_layers=layers,
        lifting_channels=int(cfg.lifting_channel_ratio) * hidden, projection_channels=int(cfg.projection_channel_ratio) * hidden,
        uno_out_channels=[hidden] * layers, uno_n_modes=[list(_modes(cfg))] * layers,
        uno_scalings=[[1.0] * n_space] * layers, channel_mlp_skip="linear",
    )


def _codano_base(cfg: Any, in_channels: int, out_channels: int, n_space: int) -> dict[str, Any]:
    """CODANO: each input channel is one variable token of hidden_channels; one attention head per layer."""
    if out_channels % in_channels:
        raise OpspecError(
            f"model.name='codano': out_channels={out_channels} is not a multiple of in_channels={in_channels} "
            "(CODANO maps each input variable to out_channels/in_channels output channels)"
        )
    hidden, layers = int(cfg.hidden_channels), int(cfg.n_layers)
    return dict(
        output_variable_codimension=out_channels // in_channels, hidden_variable_codimension=hidden,
        lifting_channels=int(cfg.lifting_channel_ratio) * hidden, projection_channels=int(cfg.projection_channel_ratio) * hidden,
        n_layers=layers, n_modes=[list(_modes(cfg))] * layers, n_heads=[1] * layers,
        per_layer_scaling_factors=[[1] * n_space] * layers, attention_scaling_factors=[1] * layers,
    )


MODELS: dict[str, ModelSpec] = {
    "fno": ModelSpec("neuralop.models", "FNO", "neuralop", _fno_base),
    "tfno": ModelSpec("neuralop.models", "TFNO", "neuralop", _fno_base),
    "uno": ModelSpec("neuralop.models", "UNO", "neuralop", _uno_base,
                     owns=("uno_out_channels", "uno_n_modes", "uno_scalings", "channel_mlp_skip", "lifting_channels",
                           "projection_channels")),
    "codano": ModelSpec("neuralop.models", "CODANO", "neuralop", _codano_base,
                        owns=("n_heads", "per_layer_scaling_factors", "attention_scaling_factors", "lifting_channels",
                              "projection_channels", "output_variable_codimension")),
    "sfno": ModelSpec("neuralop.models.sfno", "SFNO", "torch_harmonics", _fno_base),
    "localno": ModelSpec("neuralop.models.local_no", "LocalNO", "torch_harmonics", _fno_base),
}
NEURALOP_MODELS = tuple(MODELS)


def model_class(name: str) -> type[nn.Module]:
    """The class of model `name`; a one-line error when its optional package is not installed."""
    spec = MODELS[name]
    try:
        importlib.import_module(spec.package)
    except ImportError:
        raise OpspecError(
            f"model.name={name!r} needs the optional package {spec.package!r}, which is not installed"
        ) from None
    return getattr(importlib.import_module(spec.module), spec.cls)


def constructor_keywords(cls: type) -> set[str] | None:
    """The keywords `cls(...)` takes, from the first `__init__` in its MRO without **kwargs (TFNO → FNO's);
    None when every one takes **kwargs (nothing can be checked)."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        return {n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_POSITIONAL}
    return None


def _plain(value: Any) -> Any:
    """An OmegaConf container as plain lists and dicts (neuraloperator checks isinstance(list))."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        return value
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _activation(key: str, value: Any) -> Any:
    """`non_linearity: gelu` in a YAML file → torch.nn.functional.gelu."""
    if key == "non_linearity" and isinstance(value, str):
        fn = getattr(F, value, None)
        if not callable(fn):
            raise OpspecError(f"model.options.non_linearity={value!r}: expected a torch.nn.functional name, e.g. 'gelu'")
        return fn
    return value


def model_keywords(name: str, cfg: Any, in_channels: int, out_channels: int, n_space: int) -> dict[str, Any]:
    """The keywords `build_neuralop` passes to model `name`: base keywords, then `cfg.options` checked and merged."""
    spec = MODELS[name]
    options = {str(k): _activation(str(k), _plain(v)) for k, v in dict(_plain(cfg.get("options", None)) or {}).items()}
    cls = model_class(name)
    accepted = constructor_keywords(cls)
    for key in options:
        if key in DATA_KEYS:
            raise OpspecError(f"model.options.{key}: set by the data's channels, not by the config")
        if key in COMMON_KEYS and key not in spec.owns:
            raise OpspecError(f"model.options.{key}: set model.{key} instead")
        if accepted is not None and key not in accepted:
            raise OpspecError(f"model.options.{key}: {spec.cls} takes no keyword {key!r}")
    return {**spec.base(cfg, in_channels, out_channels, n_space), **options}


def build_neuralop(name: str, cfg: Any, in_channels: int, out_channels: int, n_space: int) -> nn.Module:
    """neuraloperator model `name` for these channel counts and spatial dimensions, with `cfg.options`."""
    keywords = model_keywords(name, cfg, in_channels, out_channels, n_space)
    cls = model_class(name)
    try:
        return cls(**keywords)
    except (ValueError, TypeError, AssertionError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OpspecError(f"model.name={name!r}: {cls.__name__} refused its keywords ({first})") from None
