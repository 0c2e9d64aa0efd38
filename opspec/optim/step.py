"""The one step skeleton of every spectral optimizer (Muon, the U Σ^p Vᴴ family, SpecMuon).

A subclass chooses its pieces; the step below is the same for all (optax's chain of transforms,
with param groups as its partition, behind torch.optim's `Optimizer` API):

    loss, ctx = begin(closure)                                 step control's input (SpecMuon: E)
    for each param group:
        use_spectral False → AdamW on the group                (adamw.py: vectors, norms, tiny tensors)
        D = direction(G)                                       directions.py: G | momentum/Nesterov | Adam m̂/(√v̂+ε)
        M = to_matrices(D, resolve_layout(p))                  layouts.py: (B, rows, cols) per parameter
    buckets: matrices of one (rows, cols, dtype, device, orientation, map options), stacked
    O = map(M) [with step control], per bucket               Muon: Ψ_p; SpecMuon: polar + relaxed SAV
        each rank maps its share, all get all                 sharding.run_sharded
    U = after_map(O)                                           SpecMuon: heavy ball B ← μB + O
    θ ← (1 − lr·λ)θ − lr·scale(fan_out, fan_in)·U              apply.py

Options: each subclass names its table of options (`OPTIONS`, declared in options.py); a group
may override any of them, as in torch.optim.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable

import torch
import torch.distributed as dist
from torch import Tensor
from torch.optim import Optimizer

from opspec.optim.adamw import adamw_group_step
from opspec.optim.apply import decoupled_update, lr_scale
from opspec.optim.layouts import ROWS_ARE_INPUTS, fans, from_matrices, resolve_layout, to_matrices
from opspec.optim.options import Option, check_constructor
from opspec.optim.sharding import Work, run_sharded

# One parameter's entry in a bucket: (parameter, its group, its layout, its matrices (B, rows, cols)).
Item = tuple[Tensor, dict[str, Any], str, Tensor]


def hashable(value: Any) -> Any:
    """A group option as part of a bucket key (an explicit coefficient list becomes a tuple of tuples)."""
    return tuple(map(tuple, value)) if isinstance(value, list) else value


class SpectralOptimizer(Optimizer):
    """The skeleton; subclasses set `OPTIONS`, `MAP_OPTIONS` and the pieces `direction` and `map_work`
    (and, when they have them, `begin`, `finish`, `after_map`)."""

    OPTIONS: tuple[Option, ...] = ()  # the constructor's keywords with defaults and ranges (options.py)
    MAP_OPTIONS: tuple[str, ...] = ()  # group options the map reads: matrices are batched only when they agree

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float | None = None, *,
                 process_group: dist.ProcessGroup | None = None, **options: Any) -> None:
        if lr is not None:
            options["lr"] = lr
        owner = type(self).__name__
        defaults = {o.keyword: o.default for o in self.OPTIONS}
        unknown = set(options) - set(defaults)
        if unknown:
            raise TypeError(f"{owner}: unknown options {sorted(unknown)} (known: {sorted(defaults)})")
        defaults.update(options)
        check_constructor(owner, self.OPTIONS, defaults)
        defaults["use_spectral"] = True
        super().__init__(params, defaults)
        self.process_group = process_group
        for group in self.param_groups:  # refuse, now, a spectral parameter without a matrix layout
            if group["use_spectral"]:
                for p in group["params"]:
                    self.layout_of(p, group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("process_group", None)  # not pickled: a group belongs to one job

    def layout_of(self, p: Tensor, group: dict[str, Any]) -> str:
        try:
            return resolve_layout(p, group["layout"])
        except ValueError as err:
            raise ValueError(f"{type(self).__name__}: {err}") from None

    # --- the pieces a subclass chooses -------------------------------------------------------------

    def begin(self, closure: Callable[[], Tensor] | None) -> tuple[Tensor | None, Any]:
        """(loss, context of this step for the map); without step control the closure is optional."""
        if closure is None:
            return None, None
        with torch.enable_grad():
            return closure(), None

    def direction(self, grads: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any]) -> list[Tensor]:
        raise NotImplementedError

    def map_work(self, M: Tensor, items: list[Item], context: Any) -> Work:
        """The map of one bucket's stacked matrices M as a `Work` (inputs, fn, output shapes, cost per matrix)."""
        raise NotImplementedError

    def finish(self, items: list[Item], outputs: tuple[Tensor, ...]) -> Tensor:
        """The stacked O from a bucket's outputs (step control also stores its state here)."""
        return outputs[0]

    def after_map(self, p: Tensor, update: Tensor, group: dict[str, Any]) -> Tensor:
        """U from O for one parameter (identity unless the optimizer has momentum after the map)."""
        return update

    # --- the step ----------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss, context = self.begin(closure)
        buckets: dict[tuple, list[Item]] = defaultdict(list)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            states = [self.state[p] for p in params]
            if not group["use_spectral"]:
                adamw_group_step(params, states, group)
                continue
            if not params:
                continue
            D = self.direction([p.grad for p in params], states, group)
            map_key = tuple(hashable(group[name]) for name in self.MAP_OPTIONS)
            for p, d in zip(params, D):
                layout = self.layout_of(p, group)
                M = to_matrices(d, layout)
                key = (tuple(M.shape[-2:]), M.dtype, M.device, layout in ROWS_ARE_INPUTS, map_key)
                buckets[key].append((p, group, layout, M))
        works = [self.map_work(torch.cat([M for *_, M in items]) if len(items) > 1 else items[0][3], items, context)
                 for items in buckets.values()]
        for items, outputs in zip(buckets.values(), run_sharded(works, self.process_group)):
            O = self.finish(items, outputs)
            for (p, group, layout, M), o in zip(items, O.split([M.shape[0] for *_, M in items])):
                U = self.after_map(p, from_matrices(o, layout, tuple(p.shape)), group)
                decoupled_update(p, U, group["lr"], group["weight_decay"], lr_scale(*fans(*M.shape[-2:], layout), group["adjust_lr"]))
        return loss
