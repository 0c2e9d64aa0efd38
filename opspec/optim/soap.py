"""SOAP (Vyas et al. 2024: Adam in the eigenbasis of Shampoo's Kronecker factors) through heavyball.

`optimizer.name=soap` steps every parameter of the model with `heavyball.SOAP` (an optional
dependency: `pip install 'opspec[soap]'`). heavyball merges a tensor's trailing axes up to
`max_precond_dim` and keeps one Kronecker factor per merged axis; its math assumes real tensors.

Complex parameters (the FNO's per-mode spectral weights) are stepped on their real-pair view,
`torch.view_as_real` (a trailing axis of 2: re, im), as torch's AdamW steps them: SOAP sees a real
tensor sharing the weight's storage, so its update is the weight's. An FNO weight (in, out, m₁, m₂)
becomes (in, out, m₁, m₂, 2), merged to (in, out, m₁·m₂·2) when that fits max_precond_dim: one
Kronecker factor on the input channels, one on the output channels, one on the modes and their
two parts. heavyball's own torch.compile of its step is turned off (`heavyball.utils.compile_mode
= None` when opspec builds SOAP): it needs a C++ toolchain on the CPU and minutes of compiling, and
eager steps are what opspec times and resumes bitwise.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import replace
from typing import Any, Iterable

import torch
from torch import nn

from opspec.optim.options import ADAMW_PART, FRACTION, NON_NEGATIVE, POSITIVE, Option, check_constructor, integer_at_least

# SOAP's options (the registry's line: registry.py): betas and eps are the config's AdamW keys, same defaults.
SOAP = (
    Option("lr", float, 3e-3, "SOAP's learning rate", POSITIVE),
    Option("weight_decay", float, 1e-2, "SOAP's decoupled weight decay", NON_NEGATIVE),
    replace(ADAMW_PART[0], kwarg=None, doc="(β₁, β₂) of the Adam inside SOAP's eigenbasis"),
    replace(ADAMW_PART[1], kwarg=None, doc="ε of the Adam inside SOAP's eigenbasis"),
    Option("shampoo_beta", float, 0.95, "SOAP: EMA factor of the Kronecker factors G Gᵀ", FRACTION),
    Option("precondition_frequency", int, 2, "SOAP: steps between updates of the eigenbasis", integer_at_least(1)),
    Option("max_precond_dim", int, 2048, "SOAP: a (merged) axis longer than this keeps a diagonal preconditioner",
           integer_at_least(1)),
)


def _heavyball() -> Any:
    """The heavyball module, or one line saying how to install it."""
    try:
        import heavyball
        import heavyball.utils
    except ImportError:
        raise ValueError("optimizer.name=soap needs the heavyball package: pip install 'opspec[soap]'") from None
    return heavyball


@functools.cache
def _real_view_soap() -> type:
    """heavyball.SOAP over real tensors: each complex parameter is replaced by its real-pair view."""
    heavyball = _heavyball()

    class RealViewSOAP(heavyball.SOAP):
        """heavyball.SOAP whose complex parameters are stepped as `torch.view_as_real` views (shared storage)."""

        def __init__(self, params: list[nn.Parameter], **kwargs: Any) -> None:
            self.complex_views: list[tuple[nn.Parameter, nn.Parameter]] = []
            stepped = []
            for p in params:
                if p.is_complex():
                    view = nn.Parameter(torch.view_as_real(p.detach()))
                    self.complex_views.append((p, view))
                    p = view
                stepped.append(p)
            super().__init__(stepped, **kwargs)

        def step(self, closure: Any = None) -> Any:
            """Hand each complex gradient to its real view, then one heavyball SOAP step."""
            for p, view in self.complex_views:
                view.grad = None if p.grad is None else torch.view_as_real(p.grad)
            with warnings.catch_warnings():  # a per-step schedule changes the LR: supported with multi_tensor
                warnings.filterwarnings("ignore", "Learning rate changed between steps", UserWarning)
                return super().step(closure)

        def zero_grad(self, set_to_none: bool = True) -> None:
            """Clear the real views' gradients and the complex parameters' own."""
            super().zero_grad(set_to_none)
            for p, _ in self.complex_views:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    return RealViewSOAP


def build_soap(
    params: nn.Module | Iterable[nn.Parameter],
    lr: float = 3e-3,
    weight_decay: float = 1e-2,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    shampoo_beta: float = 0.95,
    precondition_frequency: int = 2,
    max_precond_dim: int = 2048,
) -> torch.optim.Optimizer:
    """heavyball's SOAP over the trainable ones of `params` (a model's parameters), complex ones on their real-pair view."""
    values = dict(lr=lr, weight_decay=weight_decay, betas=betas, eps=eps, shampoo_beta=shampoo_beta,
                  precondition_frequency=precondition_frequency, max_precond_dim=max_precond_dim)
    check_constructor("SOAP", SOAP, values)
    heavyball = _heavyball()
    heavyball.utils.compile_mode = None
    stepped = [p for p in (params.parameters() if isinstance(params, nn.Module) else params) if p.requires_grad]
    return _real_view_soap()(stepped, multi_tensor=True, **{**values, "betas": tuple(betas)})
