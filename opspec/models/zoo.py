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

import functools
import importlib
import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
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
SPECTRAL_CONV_MODELS = ("fno", "tfno", "uno", "codano")  # n_modes follow SpectralConv's rule (check_modes_fit)


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
        if isinstance(init, functools.partialmethod):  # SFNO: FNO.__init__ with some keywords preset
            init = init.func
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


# The elementwise activations of torch.nn.functional that `non_linearity` may name (F.linear, F.softmax … are not).
ACTIVATIONS = ("gelu", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "silu", "mish", "tanh", "sigmoid",
               "softplus", "softsign", "hardtanh", "hardswish", "hardsigmoid", "logsigmoid", "tanhshrink")


def _activation(key: str, value: Any) -> Any:
    """`non_linearity: gelu` in a YAML file → torch.nn.functional.gelu."""
    if key == "non_linearity":
        if not isinstance(value, str) or value not in ACTIVATIONS:
            raise OpspecError(f"model.options.non_linearity={value!r}: expected an elementwise activation of "
                              f"torch.nn.functional, one of {list(ACTIVATIONS)}")
        return getattr(F, value)
    return value


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _choice(*allowed: Any) -> tuple[Callable[[Any, Any], bool], str]:
    words = ", ".join("null" if a is None else str(a).lower() if isinstance(a, bool) else str(a) for a in allowed)
    return (lambda v, cfg: v in allowed), f"one of {words}"


def _int_at_least(low: int) -> tuple[Callable[[Any, Any], bool], str]:
    return (lambda v, cfg: _is_int(v) and v >= low), f"an integer >= {low}"


def _per_layer(ok: Callable[[Any], bool], what: str) -> tuple[Callable[[Any, Any], bool], str]:
    return (lambda v, cfg: isinstance(v, list) and len(v) == int(cfg.n_layers) and all(ok(x) for x in v)), \
        f"a list of model.n_layers {what}"


def _axes(v: Any, cfg: Any, ok: Callable[[Any], bool]) -> bool:
    """A list with one entry per axis of model.n_modes, each `ok`."""
    return isinstance(v, list) and len(v) == len(cfg.n_modes) and all(ok(x) for x in v)


def _scalings_keep_the_grid(v: Any, cfg: Any, per_layer: bool) -> bool:
    """Scale factors whose product over the layers is 1 on every axis (the output is on the input's grid)."""
    layers = v if per_layer else ([v] if not isinstance(v, list) else v)
    if per_layer and (not isinstance(v, list) or len(v) != int(cfg.n_layers)):
        return False
    product = [1.0] * len(cfg.n_modes)
    for layer in layers:
        factors = layer if isinstance(layer, list) else [layer] * len(product)
        if len(factors) != len(product) or not all(_is_number(f) and f > 0 for f in factors):
            return False
        product = [p * f for p, f in zip(product, factors)]
    return all(math.isclose(p, 1.0, rel_tol=1e-9) for p in product)


def _fraction(x: Any) -> bool:
    return _is_number(x) and 0 <= x <= 1


# Every model.options key a zoo model takes, with its range: (ok(value, model config), what was expected).
# A key a constructor takes but the table does not name is refused (nothing unchecked reaches a model).
OPTION_RULES: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    **{key: ((lambda v, cfg: isinstance(v, bool)), "true or false") for key in (
        "use_channel_mlp", "fixed_rank_modes", "separable", "preactivation", "nonlinear_attention",
        "per_channel_attention", "use_horizontal_skip_connection", "enable_cls_token", "verbose",
        "use_positional_encoding")},
    "complex_data": _choice(False),  # opspec's data is real
    "positional_embedding": _choice("grid", None),
    "non_linearity": ((lambda v, cfg: callable(v)), f"one of {list(ACTIVATIONS)}"),
    "norm": _choice(None, "group_norm", "instance_norm", "batch_norm"),
    "channel_mlp_dropout": ((lambda v, cfg: _is_number(v) and 0 <= v < 1), "a probability in [0, 1)"),
    "channel_mlp_expansion": ((lambda v, cfg: _is_number(v) and v * int(cfg.hidden_channels) >= 1),
                              "a number > 0 with expansion × model.hidden_channels >= 1 (at least one channel)"),
    **{key: _choice("linear", "identity", "soft-gating", None) for key in ("channel_mlp_skip", "fno_skip", "horizontal_skip")},
    "resolution_scaling_factor": ((lambda v, cfg: v is None or _scalings_keep_the_grid(v, cfg, False)),
                                  "null or factors whose product is 1 (the output must be on the target's grid)"),
    "domain_padding": ((lambda v, cfg: v is None or _fraction(v) or _axes(v, cfg, _fraction)),
                       "null, a fraction in [0, 1], or one such fraction per axis"),
    "fno_block_precision": _choice("full", "half", "mixed"),
    "stabilizer": _choice(None, "tanh"),
    "max_n_modes": ((lambda v, cfg: v is None or (_axes(v, cfg, _is_int) and all(m >= n for m, n in zip(v, cfg.n_modes)))),
                    "null or one integer per axis, each >= model.n_modes"),
    "factorization": ((lambda v, cfg: v is None or (isinstance(v, str) and v.lower() in (
        "dense", "cp", "tucker", "tt", "complexdense", "complexcp", "complextucker", "complextt"))),
        "null or one of dense, cp, tucker, tt (or complex…)"),
    "rank": ((lambda v, cfg: _is_number(v) and v > 0), "a number > 0 (a fraction of the full rank, or an integer rank)"),
    "implementation": _choice("factorized", "reconstructed"),
    "decomposition_kwargs": ((lambda v, cfg: v is None or isinstance(v, dict)), "null or a mapping"),
    "lifting_channels": _int_at_least(1),
    "projection_channels": _int_at_least(1),
    "uno_out_channels": _per_layer(lambda x: _is_int(x) and x >= 1, "integers >= 1"),
    "uno_n_modes": ((lambda v, cfg: isinstance(v, list) and len(v) == int(cfg.n_layers)
                     and all(_axes(m, cfg, lambda x: _is_int(x) and x >= 1) for m in v)),
                    "a list of model.n_layers mode lists, one integer >= 1 per axis"),
    "uno_scalings": ((lambda v, cfg: _scalings_keep_the_grid(v, cfg, True)),
                     "a list of model.n_layers per-axis factors whose product is 1 (the output on the input's grid)"),
    "horizontal_skips_map": ((lambda v, cfg: v is None or (isinstance(v, dict) and all(
        _is_int(int(k)) and _is_int(x) and 0 <= int(k) < int(cfg.n_layers) and 0 <= x < int(cfg.n_layers)
        for k, x in v.items()))), "null or a mapping of layer indices to earlier layer indices"),
    "output_variable_codimension": _int_at_least(1),
    "hidden_variable_codimension": _int_at_least(1),
    "n_heads": _per_layer(lambda x: _is_int(x) and x >= 1, "integers >= 1"),
    "per_layer_scaling_factors": ((lambda v, cfg: _scalings_keep_the_grid(v, cfg, True)),
                                  "a list of model.n_layers per-axis factors whose product is 1"),
    "attention_scaling_factors": _per_layer(lambda x: _is_number(x) and x > 0, "numbers > 0"),
    "attention_token_dim": _int_at_least(1),
    "positional_encoding_dim": _int_at_least(1),
    "positional_encoding_modes": ((lambda v, cfg: v is None or _axes(v, cfg, lambda x: _is_int(x) and x >= 1)),
                                  "null or one integer >= 1 per axis"),
    "static_channel_dim": _choice(0),  # opspec feeds no static channels
    "variable_ids": ((lambda v, cfg: v is None or (isinstance(v, list) and v and all(isinstance(x, str) for x in v))),
                     "null or a list of variable names, one per input channel"),
    "layer_kwargs": ((lambda v, cfg: isinstance(v, dict)), "a mapping"),
}
CLASS_KEYWORDS = ("conv_module", "integral_operator", "operator_block")  # classes: not values a config can hold


def check_option_values(name: str, options: dict[str, Any], cfg: Any) -> None:
    """Refuse, in one line, a `model.options` value out of its range (OPTION_RULES) before anything is built."""
    for key, value in options.items():
        shown = value.__name__ if callable(value) and key == "non_linearity" else value
        if key in CLASS_KEYWORDS:
            raise OpspecError(f"model.options.{key}: {MODELS[name].cls} takes a class there, which a config cannot "
                              "hold; expected no such option")
        rule = OPTION_RULES.get(key)
        if rule is None:
            if name in ("sfno", "localno"):  # their own keywords are left to neuraloperator's checks
                continue
            raise OpspecError(f"model.options.{key}: opspec has no range for this {MODELS[name].cls} keyword; "
                              "expected one of the options docs/models.md lists")
        ok, expected = rule
        if not ok(value, cfg):
            raise OpspecError(f"model.options.{key}={shown!r}: expected {expected}")
    if options.get("use_positional_encoding") and not (options.get("variable_ids") and options.get("positional_encoding_modes")):
        raise OpspecError("model.options.use_positional_encoding=true: expected model.options.variable_ids (one name per "
                          "input channel) and model.options.positional_encoding_modes with it")


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
    check_option_values(name, options, cfg)
    if name == "codano" and n_space not in (2, 3):
        raise OpspecError(f"model.name='codano': the data has {n_space} spatial dimension(s), but CODANO's attention "
                          "takes 2-D or 3-D data; expected another model.name for this data")
    return {**spec.base(cfg, in_channels, out_channels, n_space), **options}


def build_neuralop(name: str, cfg: Any, in_channels: int, out_channels: int, n_space: int) -> nn.Module:
    """neuraloperator model `name` for these channel counts and spatial dimensions, with `cfg.options`."""
    keywords = model_keywords(name, cfg, in_channels, out_channels, n_space)
    cls = model_class(name)
    try:
        model = cls(**keywords)
    except (ValueError, TypeError, AssertionError, RuntimeError, ZeroDivisionError, KeyError, IndexError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OpspecError(f"model.name={name!r}: {cls.__name__} refused its keywords ({first[:200]})") from None
    empty = next((n for n, p in model.named_parameters() if p.numel() == 0), None)
    if empty is not None:
        raise OpspecError(f"model.name={name!r} with model.options {dict(_plain(cfg.get('options', None)) or {})}: "
                          f"{cls.__name__}'s {empty} has no elements; expected options that leave every weight non-empty")
    return model


def check_modes_fit(cfg: Any, sizes: Sequence[int]) -> None:
    """Refuse n_modes (or UNO's uno_n_modes) beyond what a training grid of `sizes` points per axis resolves:
    n_modes ≤ s on the first axes and n_modes // 2 ≤ s // 2 on the last (the real FFT's), for the
    SpectralConv models (fno, tfno, uno, codano)."""
    if cfg.name not in SPECTRAL_CONV_MODELS:
        return
    sizes = [int(s) for s in sizes]
    limit = sizes[:-1] + [2 * (sizes[-1] // 2) + 1]
    options = dict(_plain(cfg.get("options", None)) or {})
    layers = options.get("uno_n_modes") if cfg.name == "uno" and options.get("uno_n_modes") else [list(_modes(cfg))]
    for modes in layers:
        if len(modes) == len(limit) and any(int(m) > cap for m, cap in zip(modes, limit)):
            key = "model.options.uno_n_modes" if modes is not layers[0] or "uno_n_modes" in options else "model.n_modes"
            raise OpspecError(f"{key}={list(modes)} is more than the training grid {sizes} resolves: expected at most "
                              f"{limit} (the last axis's real FFT keeps n_modes // 2 + 1 modes)")


def probe_model(model: nn.Module, a: torch.Tensor, out_shape: Sequence[int], name: str) -> None:
    """Run the model once on one input sample (no gradients, RNG untouched): a model its options break, or
    whose output is not on the target's grid, is refused in one line before a run starts."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            out = model(a)
    except (RuntimeError, ValueError, TypeError, IndexError, ZeroDivisionError, AssertionError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OpspecError(f"model.name={name!r}: the model fails on the data's input of shape {list(a.shape[1:])} "
                          f"({first[:200]}); expected options that fit this data") from None
    finally:
        model.train(was_training)
    if list(out.shape[1:]) != list(out_shape):
        raise OpspecError(f"model.name={name!r}: the model's output has shape {list(out.shape[1:])}, the target "
                          f"{list(out_shape)}; expected options that keep the output on the target's grid")
