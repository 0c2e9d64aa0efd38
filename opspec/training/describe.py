"""What the optimizer does with each parameter: one row per parameter, and the totals.

    python -m opspec.describe [--config FILE] [key=value ...]

builds the configured model (as `python -m opspec.train` would, without its data) and the configured
optimizer, and prints, per parameter: name, shape, dtype, treatment (a matrix layout, or AdamW),
matrices per step, matrix shape, LR scale (the shape rule's factor), the step's learning rate, and
what the parameter is (its label, `opspec.models.model_labels`). `describe(model, name, **options)`
does the same for any `nn.Module`: the rows are read off the optimizer that `build_optimizer`
returns with the model's labels, so they are what the optimizer will do, not a second guess of it.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from opspec.optim.apply import lr_scale
from opspec.optim.build import build_optimizer
from opspec.optim.layouts import fans, matrix_shape, resolve_layout
from opspec.optim.treatment import Labels, treat_parameters
from opspec.models.labels import model_labels


@dataclass(frozen=True)
class Row:
    """One parameter's treatment; `layout` None is `whole` (AdamW, or SOAP over every parameter; matrices 0, scale 1)."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    layout: str | None
    matrices: int
    rows: int
    cols: int
    scale: float
    lr: float
    what: str
    whole: str = "adamw"

    @property
    def treatment(self) -> str:
        return self.layout or self.whole


def describe(model: nn.Module, name: str = "muon", labels: Labels | None = None, **options: Any) -> list[Row]:
    """One `Row` per trainable parameter of `model` under `build_optimizer(model, name, labels=labels, **options)`;
    `labels` None: the model's own (`model_labels`), as the trainer gives them."""
    labels = model_labels(model) if labels is None else labels
    optimizer = build_optimizer(model, name, labels=labels, **options)
    what = {id(p): t.what for p, t in treat_parameters(model, options.get("min_side") or 2, options.get("treat"), labels,
                                                          warn=False)}
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    rows = []
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        shape = tuple(p.shape)
        if name == "soap":  # complex weights are stepped on their real-pair view (optim/soap.py)
            view = " (SOAP on its real-pair view)" if p.is_complex() else ""
            rows.append(Row(pname, shape, p.dtype, None, 0, 0, 0, 1.0, optimizer.param_groups[0]["lr"],
                            what.get(id(p), "") + view, whole="soap"))
            continue
        group = group_of[id(p)]
        if name == "adamw" or not group.get("use_spectral", False):
            rows.append(Row(pname, shape, p.dtype, None, 0, 0, 0, 1.0, group["lr"], what.get(id(p), "")))
            continue
        layout = resolve_layout(p, group["layout"])
        batch, r, c = matrix_shape(shape, layout)
        scale = lr_scale(*fans(r, c, layout), group["adjust_lr"])
        rows.append(Row(pname, shape, p.dtype, layout, batch, r, c, scale, group["lr"] * scale, what.get(id(p), "")))
    return rows


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def format_rows(rows: Sequence[Row]) -> str:
    """The rows as an aligned text table, then the totals (parameters, elements, matrices per step by treatment)."""
    header = ("parameter", "shape", "dtype", "treatment", "matrices", "matrix", "lr scale", "lr", "what")
    table = [header]
    for r in rows:
        matrix = f"{r.rows}×{r.cols}" if r.layout else "-"
        table.append((r.name, "×".join(map(str, r.shape)) or "scalar", _dtype(r.dtype), r.treatment,
                      str(r.matrices) if r.layout else "-", matrix, f"{r.scale:.3g}" if r.layout else "-",
                      f"{r.lr:.3g}", r.what))
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    by_treatment: Counter[str] = Counter()
    elements: Counter[str] = Counter()
    for r in rows:
        by_treatment[r.treatment] += 1
        elements[r.treatment] += math.prod(r.shape)
    spectral = [r for r in rows if r.layout]
    shapes = {(r.rows, r.cols, r.dtype) for r in spectral}
    lines.append("")
    lines.append(
        f"total: {len(rows)} parameters, {sum(elements.values()):,} elements; "
        f"{sum(r.matrices for r in spectral):,} matrices per step in {len(shapes)} shape groups"
    )
    for treatment in sorted(by_treatment):
        lines.append(f"  {treatment}: {by_treatment[treatment]} parameters, {elements[treatment]:,} elements")
    return "\n".join(lines)


def data_meta_of(cfg: Any) -> dict[str, Any]:
    """The meta of the configured data: from its file when present, else the problem's generated shapes."""
    from pathlib import Path

    from opspec.training.assemble import data_meta, problem_meta

    if Path(cfg.data.path).is_file():
        from opspec.data.canonical import CanonicalFile  # the CLI's edge: this module's functions never reach data

        with CanonicalFile(cfg.data.path) as file:
            return data_meta(file)
    return problem_meta(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m opspec.describe",
        description="One row per parameter of the configured model: shape, dtype, the optimizer's treatment "
                    "(layout, matrices per step, matrix shape, LR scale) and totals.",
    )
    parser.add_argument("--config", help="YAML config (default: the schema's defaults, i.e. configs/darcy_fno.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.name=tfno model.options.rank=0.42")
    args = parser.parse_args(argv)
    # The CLI builds the configured model: it alone reaches up to config and models (imported here, not
    # at the top), so `import opspec.optim` never loads them.
    from opspec.training.assemble import build_bare_model
    from opspec.training.config import load_config, to_container
    from opspec.core.errors import OpspecError
    from opspec.optim import options_from_config

    try:
        cfg = load_config(args.config, args.overrides)
        meta = data_meta_of(cfg)
        c_in, c_out, n_space = meta["in_channels"], meta["out_channels"], meta["n_space"]
        model = build_bare_model(cfg.model, meta)
        rows = describe(model, cfg.optimizer.name, **options_from_config(cfg.optimizer.name, to_container(cfg.optimizer)))
    except OpspecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # an optimizer option out of range, a treat pattern that matches nothing
        err = OpspecError(f"optimizer: {err}")
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"model {cfg.model.name} ({c_in} → {c_out} channels, {n_space}-D), optimizer {cfg.optimizer.name}")
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
