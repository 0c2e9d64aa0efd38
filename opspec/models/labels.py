"""Each parameter's label from the model's structure: which module owns it and what that module does with it.

`model_labels(model)` gives the optimizer (`opspec.optim.build_optimizer(..., labels=...)`) one
`ParameterLabel` per trainable parameter, as optax's `partition` takes labels from its caller: a
matrix layout (the spectral optimizer orthogonalizes the parameter as those matrices) or None
(AdamW), decided by the module that owns the parameter, not by its shape:

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
- Any other parameter with ≥ 2 dimensions: AdamW, and the label carries a warning naming it, which
  the optimizer raises when it uses the label (not when `optimizer.treat` overrides it).

The optimizer applies `min_side` and the `optimizer.treat` overrides on top of these labels.
neuraloperator and tensorly-torch are imported lazily and only when installed: this module labels
any `nn.Module`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

__all__ = ["ParameterLabel", "model_labels"]


@dataclass(frozen=True)
class ParameterLabel:
    """One parameter's label: its matrix layout (None: AdamW), what it is, and a warning to raise when it is used."""

    layout: str | None
    what: str
    warning: str | None = None


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


def model_labels(model: nn.Module) -> dict[str, ParameterLabel]:
    """Parameter name → its label from the owning module's structure, for every trainable parameter of `model`."""
    kinds = _classes()
    owners = _owners(model)
    labels: dict[str, ParameterLabel] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decided = None
        for local, owner, parent in owners.get(id(p), []):
            decided = _structural(local, p, owner, parent, kinds)
            if decided is not None:
                break
        if decided is None:
            warning = (f"{name} (shape {tuple(p.shape)}, owned by {type(owners[id(p)][0][1]).__name__}): no known structure, "
                       "so AdamW takes it; set optimizer.treat to choose")
            labels[name] = ParameterLabel(None, "unrecognized", warning)
        else:
            labels[name] = ParameterLabel(*decided)
    return labels
