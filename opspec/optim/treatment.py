"""Each parameter's treatment from the caller's labels: a matrix layout (the spectral map) or AdamW.

As optax's `partition` takes its labels from the caller, optim does not decide what a parameter
is: the caller hands `labels`, parameter name → a label, where a label is a string (`"adamw"`,
`"shape"` or a layout, `layouts.LAYOUTS`) or any object with `layout` (None: AdamW) and `what`
attributes and, optionally, a `warning` to raise when the label is used (`opspec.models.model_labels`
gives one such label per parameter from the model's structure). `labels` may also be a function of
the model that returns that mapping. On top of the labels:

- a parameter without a label gets the shape rule (`layouts.infer_layout`: real 2-D → matrix,
  real ≥ 3-D → conv, complex ≥ 3-D → per_mode, vectors → AdamW), which is the structural answer
  for plain `nn.Linear` and `nn.Conv*` weights; without any labels every parameter gets it;
- a matrix with a side shorter than `min_side` goes to AdamW;
- `overrides` maps fnmatch patterns of parameter names to a treatment ("adamw", "shape" or a
  layout), the first matching pattern winning; a pattern that matches no parameter is an error (a typo).
"""

from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Union

from torch import Tensor, nn

from opspec.optim.layouts import LAYOUTS, infer_layout, matrix_shape

TREATMENTS = ("adamw", "shape", *LAYOUTS)

# Parameter name → label (a TREATMENTS string, or an object with .layout, .what and optionally .warning),
# or a function of the model that returns that mapping.
Labels = Union[Mapping[str, Any], Callable[[nn.Module], Mapping[str, Any]]]

BY_SHAPE = "by shape and dtype"


@dataclass(frozen=True)
class Treatment:
    """How one parameter is optimized: `layout` (None: AdamW), what it is, and what decided it."""

    name: str
    layout: str | None
    what: str
    by: str  # "label", "shape", "override <pattern>", "min_side (r×c)"


def _check_value(where: str, value: Any) -> None:
    if value not in TREATMENTS:
        raise ValueError(f"{where}={value!r}: expected one of {list(TREATMENTS)}")


def _layout_fits(shape: tuple[int, ...], layout: str) -> bool:
    try:
        matrix_shape(shape, layout)
    except ValueError:
        return False
    return True


def _from_value(name: str, p: Tensor, value: str, min_side: int, where: str) -> tuple[str | None, str]:
    """(layout, what) of a treatment string: "adamw", "shape" (the rule) or a layout that must fit `p`."""
    if value == "adamw":
        return None, "set by the user"
    layout = infer_layout(p, min_side) if value == "shape" else value
    if layout is not None and not _layout_fits(tuple(p.shape), layout):
        raise ValueError(f"{where}={value!r}: parameter {name} of shape {tuple(p.shape)} has no {value!r} layout")
    return layout, BY_SHAPE if value == "shape" else "set by the user"


def _from_label(name: str, p: Tensor, label: Any, min_side: int, warn: bool) -> tuple[str | None, str]:
    """(layout, what) of a caller's label; its warning, if any, is raised here (the label is being used)."""
    where = f"labels[{name!r}]"
    if isinstance(label, str):
        _check_value(where, label)
        return _from_value(name, p, label, min_side, where)
    layout, what = label.layout, label.what
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"{where}.layout={layout!r}: expected None (AdamW) or one of {list(LAYOUTS)}")
    if layout is not None and not _layout_fits(tuple(p.shape), layout):
        raise ValueError(f"{where}.layout={layout!r}: parameter {name} of shape {tuple(p.shape)} has no {layout!r} layout")
    warning = getattr(label, "warning", None)
    if warn and warning:
        warnings.warn(warning, stacklevel=3)  # at treat_parameters' caller
    return layout, what


def treat_parameters(
    model: nn.Module, min_side: int = 2, overrides: Mapping[str, str] | None = None, labels: Labels | None = None,
    warn: bool = True,
) -> Iterator[tuple[nn.Parameter, Treatment]]:
    """(parameter, treatment) for every trainable parameter of `model`, in `named_parameters` order.

    `labels`: the caller's labels (module docstring); None: the shape rule for every parameter.
    `warn`: raise the warnings the used labels carry.
    """
    overrides = dict(overrides or {})
    for pattern, value in overrides.items():
        _check_value(f"treat[{pattern!r}]", value)
    given = (labels(model) if callable(labels) else labels) or {}
    used: set[str] = set()
    results = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        pattern = next((pat for pat in overrides if fnmatch.fnmatchcase(name, pat)), None)
        if pattern is not None:
            used.add(pattern)
            layout, what = _from_value(name, p, overrides[pattern], min_side, f"treat[{pattern!r}]")
            by = f"override {pattern}"
        elif name in given:
            layout, what = _from_label(name, p, given[name], min_side, warn)
            by = "label"
        else:
            layout, what, by = infer_layout(p, min_side), BY_SHAPE, "shape"
        results.append((p, _thin(Treatment(name, layout, what, by), p, min_side)))
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
