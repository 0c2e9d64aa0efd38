"""The one step skeleton of every spectral optimizer (Muon, the U Σ^p Vᴴ family, SpecMuon).

A subclass chooses its pieces; the step below is the same for all (optax's chain of transforms,
with param groups as its partition, behind torch.optim's `Optimizer` API):

    loss = closure()                                           (optional unless there is a step control)
    c = control.begin(loss)                                    the step-control slot (SpecMuon: the loss energy E)
    for each param group:
        use_spectral False → AdamW on the group                (adamw.py: vectors, norms, tiny tensors)
        D = direction(G)                                       directions.py: G | momentum/Nesterov | Adam m̂/(√v̂+ε)
        M = to_matrices(D, layout of p)                        layouts.py: (B, rows, cols) per parameter; its layout
                                                               and LR scale resolved once (Plan, plan_of)
    buckets: matrices of one (rows, cols, dtype, device, orientation, map options), stacked
    O = map(M), per bucket                                     Muon: Ψ_p; SpecMuon: polar, guided modes scaled by
        each rank maps its share, all get all                    control.scale (sharding.run_sharded)
    U = after_map(O)                                           SpecMuon, placement after: heavy ball B ← μB + O
    θ ← (1 − lr·λ)θ − lr·scale(fan_out, fan_in)·U              apply.py

The step control (`StepControl`, None for Muon) is its own slot: once per step it turns the loss
into its input c; per matrix, inside the map, it gives the scale of the matrix's guided modes and
its new per-matrix state; its state lives in the optimizer's `state` (so `state_dict` carries it).
Options: each subclass names its table of options (`OPTIONS`, declared with `options.Option`); a
group may override any of them, as in torch.optim.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

import torch
import torch.distributed as dist
from torch import Tensor
from torch.optim import Optimizer

from opspec.optim.adamw import adamw_group_step
from opspec.optim.apply import decoupled_update, lr_scale
from opspec.optim.layouts import ROWS_ARE_INPUTS, fans, from_matrices, matrix_shape, resolve_layout, to_matrices
from opspec.optim.options import Option, check_constructor
from opspec.optim.sharding import Work, run_sharded

# One parameter's entry in a bucket: (parameter, its group, its layout, its matrices (B, rows, cols)).
Item = tuple[Tensor, dict[str, Any], str, Tensor]


class StepControl(Protocol):
    """The step-control slot: the step's loss in, per matrix a scale of its guided modes out, state in the
    optimizer's state: `state[key]` optimizer-wide, `state[p][matrix_key]` per parameter (rsav.py)."""

    key: str
    matrix_key: str

    def begin(self, loss: Any, state: dict[Any, Any], group: dict[str, Any]) -> Any:
        """The step's control input from the closure's loss (None: no closure); `state` is the optimizer's."""

    def initial(self, context: Any, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        """The per-matrix state of matrices seen for the first time (`shape`: (matrices, guided modes))."""

    def scale(self, state: Tensor, sigma: Tensor, live: Tensor, gamma: float, context: Any,
              group: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """(scale of each guided mode, new per-matrix state) of a batch of matrices from their state, the
        guided modes' singular values `sigma` (live: not numerically zero) and each matrix's step size γ."""


@dataclass(frozen=True)
class Plan:
    """A spectral parameter's layout, bucket orientation and LR scale, resolved once for the group options
    and shape in `stamp` (group["layout"], group["adjust_lr"], the parameter's shape)."""

    stamp: tuple[Any, ...]
    layout: str
    rows_are_inputs: bool
    scale: float


def hashable(value: Any) -> Any:
    """A group option as part of a bucket key (an explicit coefficient list becomes a tuple of tuples)."""
    return tuple(map(tuple, value)) if isinstance(value, list) else value


class SpectralOptimizer(Optimizer):
    """The skeleton; subclasses set `OPTIONS`, `MAP_OPTIONS` and the pieces `direction` and `map_work`
    (and, when they have them, `control`, `finish`, `after_map`)."""

    OPTIONS: tuple[Option, ...] = ()  # the constructor's keywords with defaults and ranges (options.py)
    MAP_OPTIONS: tuple[str, ...] = ()  # group options the map reads: matrices are batched only when they agree
    control: StepControl | None = None  # the step-control slot (SpecMuon: rsav.RelaxedSAV)

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
        self._plans: dict[Tensor, Plan] = {}
        for group in self.param_groups:  # refuse, now, a spectral parameter without a matrix layout
            if group["use_spectral"]:
                for p in group["params"]:
                    self.plan_of(p, group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("process_group", None)  # not pickled: a group belongs to one job
        self.__dict__.setdefault("_plans", {})

    def layout_of(self, p: Tensor, group: dict[str, Any]) -> str:
        try:
            return resolve_layout(p, group["layout"])
        except ValueError as err:
            raise ValueError(f"{type(self).__name__}: {err}") from None

    def plan_of(self, p: Tensor, group: dict[str, Any]) -> Plan:
        """`p`'s Plan, kept from its last step while its group's layout and adjust_lr and its shape are unchanged."""
        stamp = (group["layout"], group["adjust_lr"], p.shape)
        plan = self._plans.get(p)
        if plan is None or plan.stamp != stamp:
            layout = self.layout_of(p, group)
            _, rows, cols = matrix_shape(tuple(p.shape), layout)
            plan = Plan(stamp, layout, layout in ROWS_ARE_INPUTS, lr_scale(*fans(rows, cols, layout), group["adjust_lr"]))
            self._plans[p] = plan
        return plan

    # --- the pieces a subclass chooses -------------------------------------------------------------

    def direction(self, grads: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any]) -> list[Tensor]:
        raise NotImplementedError

    def map_work(self, M: Tensor, items: list[Item], context: Any) -> Work:
        """The map of one bucket's stacked matrices M as a `Work` (inputs, fn, output shapes, cost per matrix)."""
        raise NotImplementedError

    def finish(self, items: list[Item], outputs: tuple[Tensor, ...]) -> Tensor:
        """The stacked O from a bucket's outputs (a map with state stores it here: `store_stacked`)."""
        return outputs[0]

    def stacked(self, items: list[Item], key: str, initial: Callable[[int], Tensor] | None = None) -> Tensor | None:
        """The bucket's per-parameter state `key` stacked in bucket order; a missing entry is first set to
        `initial(its matrix count)`, or, without `initial`, the result is None."""
        states = [self.state[p] for p, *_ in items]
        if initial is not None:
            for st, (*_, M) in zip(states, items):
                st.setdefault(key, initial(M.shape[0]))
        elif not all(key in st for st in states):
            return None
        return torch.cat([st[key] for st in states])  # a fresh row-major tensor, even of one (QR's Q is column-major)

    def store_stacked(self, items: list[Item], key: str, stacked: Tensor) -> None:
        """Store a bucket's stacked per-matrix state back under `key` of each parameter's state (fresh tensors)."""
        for (p, *_, M), piece in zip(items, stacked.split([M.shape[0] for *_, M in items])):
            self.state[p][key] = piece.clone()

    def after_map(self, p: Tensor, update: Tensor, group: dict[str, Any]) -> Tensor:
        """U from O for one parameter (identity unless the optimizer has momentum after the map)."""
        return update

    # --- the step ----------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        context = None if self.control is None else self.control.begin(loss, self.state, self.param_groups[0])
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
                plan = self.plan_of(p, group)
                M = to_matrices(d, plan.layout)
                key = (tuple(M.shape[-2:]), M.dtype, M.device, plan.rows_are_inputs, map_key)
                buckets[key].append((p, group, plan.layout, M))
        works = [self.map_work(torch.cat([M for *_, M in items]) if len(items) > 1 else items[0][3], items, context)
                 for items in buckets.values()]
        for items, outputs in zip(buckets.values(), run_sharded(works, self.process_group)):
            O = self.finish(items, outputs)
            for (p, group, layout, M), o in zip(items, O.split([M.shape[0] for *_, M in items])):
                U = self.after_map(p, from_matrices(o, layout, tuple(p.shape)), group)
                decoupled_update(p, U, group["lr"], group["weight_decay"], self._plans[p].scale)
        return loss
