"""Each parameter's treatment from its structure: which module owns it and what that module does with it.

The treatment of a parameter is a matrix layout (the spectral optimizer orthogonalizes it as those
matrices, `layouts.py`) or AdamW. It is decided by the module that owns the parameter, not by shape:

- `nn.Linear` weight: one matrix (out × in). `nn.Conv*` weight (neuraloperator's channel MLPs and
  linear skips are 1×1 convolutions): one matrix (out × in·k…).
- A dense spectral weight of a (non-separable) spectral convolution (in, out, m1, m2, …): per
  Fourier mode, one (in × out) matrix per mode. A separable one (C, m1, …) scales each channel of
  each mode: no matrix, AdamW.
- A Tucker-factorized spectral weight W = core ×₁ U_in ×₂ U_out ×₃ U_m1 ×₄ U_m2: each factor U_k
  (n_k × r_k, a basis of its axis) is one matrix, and the core (r_in, r_out, r_m1, r_m2) is one
  r_in × r_out matrix per pair of rank modes: W's map at Fourier mode k is
  U_in [Σ_ab U_m1[k1, a] U_m2[k2, b] core[:, :, a, b]] U_outᵀ, so each core slice is a channel map
  in the bases the factors span, and its per-slice step is the per-mode rule in those bases. On the
  default Darcy TFNO (rank 0.42, LR swept per treatment, three seeds) this beat AdamW on the core and
  factors by 0.83× error at 33² and 0.92× at 129², and each half of it alone (docs/models.md,
  "Factorized spectral weights").
- A CP weight (a sum of R rank-1 terms): each factor (n_k × R) one matrix, the R weights AdamW.
  A TT weight: core k (r_{k-1}, n_k, r_k) one r_{k-1} × n_k matrix per outgoing rank. Both measured
  against AdamW on the same parts on the default Darcy TFNO (docs/models.md).
- Vectors and scalars (biases, norm scales, gates), learned tokens and embeddings: AdamW.
- Any other parameter with ≥ 2 dimensions: AdamW, with a warning naming it.

A matrix with a side shorter than `min_side` goes to AdamW. `overrides` maps fnmatch patterns of
parameter names to a treatment ("adamw", "shape" — the old rule by shape and dtype — or a layout),
the first matching pattern winning; a pattern that matches no parameter is an error (a typo).
neuraloperator and tensorly-torch are imported lazily and only when installed: this module works
for any `nn.Module`.
"""

from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass
from typing import Iterator, Mapping

from torch import Tensor, nn

from opspec.optim.layouts import LAYOUTS, infer_layout, matrix_shape

TREATMENTS = ("adamw", "shape", *LAYOUTS)


@dataclass(frozen=True)
class Treatment:
    """How one parameter is optimized: `layout` (None: AdamW), what it is, and what decided it."""

    name: str
    layout: str | None
    what: str
    by: str  # "structure", "shape", "override <pattern>", "unrecognized", "min_side"


def _classes() -> dict[str, tuple[type, ...]]:
    """The optional classes recognized by isinstance, imported lazily (empty tuples when not installed)."""
    found: dict[str, tuple[type, ...]] = {"dense": (), "tucker": (), "cp": (), "tt": (), "spectral": (), "gating": ()}
    try:
        from tltorch.factorized_tensors.factorized_tensors import CPTensor, DenseTensor, TTTensor, TuckerTensor

        found.update(dense=(DenseTensor,), tucker=(TuckerTensor,), cp=(CPTensor,), tt=(TTTensor,))
    except ImportError:
        pass
    try:
        from neuralop.layers.base_spectral_conv import BaseSpectralConv
        from neuralop.layers.skip_connections import SoftGating

        found.update(spectral=(BaseSpectralConv,), gating=(SoftGating,))
    except ImportError:
        pass
    return found


def _mro_names(module: nn.Module) -> set[str]:
    return {k.__name__ for k in type(module).__mro__}


def _structural(local: str, p: Tensor, owner: nn.Module, parent: nn.Module | None, kinds: dict[str, tuple[type, ...]]) -> tuple[str | None, str] | None:
    """(layout or None for AdamW, what it is) from the owning module, or None when the owner is not recognized."""
    if sum(size > 1 for size in p.shape) <= 1:
        return None, "vector (bias, scale or gate; singleton axes broadcast)"
    if isinstance(owner, nn.Linear) and local == "weight":
        return "matrix", "linear weight (out × in)"
    if isinstance(owner, nn.modules.conv._ConvNd) and local == "weight":
        return "conv", "convolution weight (out × in·kernel)"
    if isinstance(owner, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)):
        return None, "normalization scale"
    if isinstance(owner, nn.Embedding):
        return None, "embedding table (rows are looked up, not a linear map)"
    if kinds["gating"] and isinstance(owner, kinds["gating"]):
        return None, "soft-gating skip (a per-channel scale)"
    separable = bool(getattr(parent, "separable", False))
    in_spectral = parent is not None and (
        (kinds["spectral"] and isinstance(parent, kinds["spectral"])) or "SphericalConv" in _mro_names(parent)
    )
    if kinds["dense"] and isinstance(owner, kinds["dense"]):
        if separable:
            return None, "separable spectral weight (a scale per channel and mode)"
        if in_spectral or p.is_complex():
            return "per_mode", "dense spectral weight (in × out per Fourier mode)"
        return None, "dense factorized tensor outside a spectral convolution"
    if kinds["tucker"] and isinstance(owner, kinds["tucker"]) and local == "core":
        if in_spectral and not separable:
            return "per_mode", "Tucker core (r_in × r_out per pair of rank modes)"
        return None, "Tucker core outside a dense spectral weight"
    if kinds["tucker"] and isinstance(parent, kinds["tucker"]):
        return "matrix", "Tucker factor (n_k × r_k basis)"
    if kinds["cp"] and isinstance(parent, kinds["cp"]):
        return "matrix", "CP factor (n_k × R)"
    if kinds["tt"] and isinstance(parent, kinds["tt"]):
        return "per_mode", "TT core (one r_{k-1} × n_k matrix per outgoing rank r_k)"
    names = _mro_names(owner) | (_mro_names(parent) if parent is not None else set())
    if "CODANO" in names and (local == "cls_token" or isinstance(owner, nn.ParameterDict)):
        return None, "learned token or positional encoding"
    if "DiscreteContinuousConv" in _mro_names(owner) and local == "weight":
        return "conv", "DISCO convolution weight (out × in·basis)"
    if "DifferentialConv" in _mro_names(owner) and local == "weight":
        return "conv", "finite-difference convolution weight (out × in·kernel)"
    return None


def _owners(model: nn.Module) -> dict[int, list[tuple[str, nn.Module, nn.Module | None]]]:
    """id(parameter) → every (local name, owning module, the owner's parent) that registers it."""
    modules = dict(model.named_modules(remove_duplicate=False))
    owners: dict[int, list[tuple[str, nn.Module, nn.Module | None]]] = {}
    for path, module in modules.items():
        parent = modules.get(path.rpartition(".")[0]) if path else None
        for local, p in module.named_parameters(recurse=False):
            owners.setdefault(id(p), []).append((local, module, parent))
    return owners


def _check_overrides(overrides: Mapping[str, str]) -> None:
    for pattern, value in overrides.items():
        if value not in TREATMENTS:
            raise ValueError(f"treat[{pattern!r}]={value!r}: expected one of {list(TREATMENTS)}")


def _layout_fits(shape: tuple[int, ...], layout: str) -> bool:
    try:
        matrix_shape(shape, layout)
    except ValueError:
        return False
    return True


def treat_parameters(
    model: nn.Module, min_side: int = 2, overrides: Mapping[str, str] | None = None, warn: bool = True
) -> Iterator[tuple[nn.Parameter, Treatment]]:
    """(parameter, treatment) for every trainable parameter of `model`, in `named_parameters` order."""
    overrides = dict(overrides or {})
    _check_overrides(overrides)
    kinds = _classes()
    owners = _owners(model)
    used: set[str] = set()
    results = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        pattern = next((pat for pat in overrides if fnmatch.fnmatchcase(name, pat)), None)
        if pattern is not None:
            used.add(pattern)
            value = overrides[pattern]
            if value == "adamw":
                results.append((p, Treatment(name, None, "set by the user", f"override {pattern}")))
                continue
            layout = infer_layout(p, min_side) if value == "shape" else value
            if layout is not None and not _layout_fits(tuple(p.shape), layout):
                raise ValueError(f"treat[{pattern!r}]={value!r}: parameter {name} of shape {tuple(p.shape)} has no {value!r} layout")
            what = "by shape and dtype" if value == "shape" else "set by the user"
            results.append((p, _thin(Treatment(name, layout, what, f"override {pattern}"), p, min_side)))
            continue
        decided = None
        for local, owner, parent in owners.get(id(p), []):
            decided = _structural(local, p, owner, parent, kinds)
            if decided is not None:
                break
        if decided is None:
            if warn:
                warnings.warn(
                    f"{name} (shape {tuple(p.shape)}, owned by {type(owners[id(p)][0][1]).__name__}): no known structure, "
                    "so AdamW takes it; set optimizer.treat to choose", stacklevel=2,
                )
            results.append((p, Treatment(name, None, "unrecognized", "unrecognized")))
            continue
        layout, what = decided
        results.append((p, _thin(Treatment(name, layout, what, "structure"), p, min_side)))
    unused = [pat for pat in overrides if pat not in used]
    if unused:
        raise ValueError(f"treat: pattern {unused[0]!r} matches no trainable parameter of {type(model).__name__}")
    return iter(results)


def _thin(t: Treatment, p: Tensor, min_side: int) -> Treatment:
    """AdamW for a matrix with a side shorter than `min_side` (a vector in disguise)."""
    if t.layout is None:
        return t
    _, rows, cols = matrix_shape(tuple(p.shape), t.layout)
    if min(rows, cols) < min_side:
        return Treatment(t.name, None, t.what, f"min_side ({rows}×{cols})")
    return t
