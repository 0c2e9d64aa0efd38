"""`python -m opspec.evaluate CHECKPOINT`: relative L2 of a trained model at any resolution of a data file.

Prints mean and median relative L2 per resolution, writes them as JSON (keyed by resolution) and
saves a PNG of input / truth / prediction / error for a few test samples.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from opspec.training.assemble import data_meta
from opspec.training.checkpoint import load_checkpoint, model_from_checkpoint
from opspec.training.config import load_config
from opspec.data import CanonicalFile, OperatorDataset
from opspec.data.canonical import parse_resolution
from opspec.data.multifile import open_data
from opspec.training.distributed import Ranks, all_gather_lists, shard_range
from opspec.core.errors import OpspecError, cli_main
from opspec.core.fileio import atomic_write_json, unwritable
from opspec.training.metrics import relative_l2
from opspec.training.plots import save_png

__all__ = ["check_finite", "evaluate_model", "format_table", "main", "model_from_checkpoint", "plot_samples", "summary_json"]


EVAL_POINTS = 1 << 16  # grid points per evaluation batch: 50 samples at 33², 15 at 65², 3 at 129²


def eval_batch(batch_size: int, points: int, max_points: int = EVAL_POINTS) -> int:
    """Samples per evaluation batch: at most `batch_size`, and at most `max_points` grid points in all (at least 1).

    A model's activations grow with the grid, so a fixed sample count that suits the training grid
    holds (129/33)² ≈ 15× the memory at 129²; the errors are per sample, so the cut changes no result.
    """
    return max(1, min(batch_size, max_points // max(points, 1)))


@torch.no_grad()
def evaluate_model(
    net: torch.nn.Module,
    file: CanonicalFile,
    resolutions: Sequence[int],
    batch_size: int = 50,
    device: torch.device | str = "cpu",
    split: str = "test",
    ranks: Ranks = Ranks(),
    max_points: int = EVAL_POINTS,
    indices: Sequence[int] | None = None,
) -> dict[int, dict[str, Any]]:
    """Per-sample relative L2 on a split (those of its samples at `indices`, sorted; None: all) at each
    resolution: mean, median and the per-sample values.

    A batch holds at most `batch_size` samples and at most `max_points` grid points in all (`eval_batch`),
    so memory stays near the training resolution's when a finer grid is evaluated.

    Under data parallelism each rank evaluates its contiguous share of the samples and every rank
    gets all per-sample errors, in sample order.
    """
    net.eval()
    results: dict[int, dict[str, Any]] = {}
    for resolution in resolutions:
        data = OperatorDataset(file, split, resolution, in_memory=False, indices=indices)  # batch by batch: memory bounded
        share = shard_range(len(data), ranks)
        errors: list[float] = []
        step = eval_batch(batch_size, math.prod(data.points), max_points)
        for start in range(share.start, share.stop, step):
            a, u = data[torch.arange(start, min(start + step, share.stop))]
            pred = net(a.to(device))
            errors += relative_l2(pred.float(), u.to(device)).cpu().tolist()
        errors = all_gather_lists(ranks, errors)
        results[file.label(resolution)] = {
            "rel_l2_mean": statistics.fmean(errors),
            "rel_l2_median": statistics.median(errors),
            "n_samples": len(errors),
            "per_sample": errors,
        }
    return results


def check_finite(results: dict[int, dict[str, Any]], file: CanonicalFile, split: str = "test") -> None:
    """Refuse results with a non-finite error, naming the first such sample and why (one OpspecError)."""
    for resolution, r in results.items():
        bad = [i for i, e in enumerate(r["per_sample"]) if not math.isfinite(e)]
        if not bad:
            continue
        i = bad[0]
        a, u = OperatorDataset(file, split, resolution, in_memory=False)[[i]]
        if not (torch.isfinite(a).all() and torch.isfinite(u).all()):
            why = "it holds NaN or Inf in the data"
        elif float(u.flatten().norm()) == 0:
            why = "its target u is all zero, so its relative L2 (0/0) is undefined"
        else:
            why = "the model's prediction is not finite (diverged weights?)"
        raise OpspecError(f"{file.path}: {split} sample {i} at resolution {resolution} has relative L2 "
                          f"{r['per_sample'][i]} ({len(bad)} such sample(s)): {why}")


def format_table(results: dict[int, dict[str, Any]], train_resolution: int | None = None) -> str:
    """A plain-text table: resolution, mean and median relative L2."""
    lines = [f"{'resolution':>12}  {'rel L2 mean':>12}  {'rel L2 median':>13}  {'samples':>7}"]
    for resolution, r in results.items():
        tag = f"{resolution} (train)" if resolution == train_resolution else str(resolution)
        lines.append(f"{tag:>12}  {r['rel_l2_mean']:>12.5f}  {r['rel_l2_median']:>13.5f}  {r['n_samples']:>7}")
    return "\n".join(lines)


def summary_json(results: dict[int, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The JSON written to disk: {resolution: {rel_l2_mean, rel_l2_median, n_samples}}."""
    return {str(k): {key: v[key] for key in ("rel_l2_mean", "rel_l2_median", "n_samples")} for k, v in results.items()}


@torch.no_grad()
def plot_samples(
    net: torch.nn.Module, file: CanonicalFile, resolution: int, out: str | os.PathLike, n_samples: int = 3
) -> Path:
    """PNG grid: one row per test sample, columns input a / true u / predicted u / |error| (first channel each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    net.eval()
    data = OperatorDataset(file, "test", resolution, in_memory=False)
    n = min(n_samples, len(data))
    a, u = data[list(range(n))]
    pred = net(a)
    fig, axes = plt.subplots(n, 4, figsize=(13, 3.1 * n), squeeze=False)
    for i in range(n):
        err = relative_l2(pred[i : i + 1], u[i : i + 1]).item()
        panels = [(a[i, 0], "input a"), (u[i, 0], "truth u"), (pred[i, 0], "prediction"), ((pred[i, 0] - u[i, 0]).abs(), f"|error| (rel L2 {err:.4f})")]
        for ax, (img, title) in zip(axes[i], panels):
            img = img.numpy()
            ax.set_title(f"sample {i}: {title}", fontsize=9)
            if img.ndim == 1:  # a 1-D problem (Burgers): a line over the periodic or nodal grid
                ax.plot(file.coords(resolution)[file.space_dims[0]], img, lw=1)
                continue
            shown = ax.imshow(img.T, origin="lower", cmap="viridis", extent=(0, 1, 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.suptitle(f"{file.path.name}, test split, resolution {resolution}")
    return save_png(fig, out)


def _resolution_arg(text: str):
    """argparse type for --resolutions: a bad value is argparse's one-line usage error."""
    try:
        return parse_resolution(text)
    except OpspecError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _label(file: CanonicalFile, resolution: Any) -> int | str | None:
    """How results name `resolution` on this file; None when the file has no such resolution."""
    try:
        return file.label(resolution)
    except OpspecError:
        return None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m opspec.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a checkpoint file, or a run folder (its last.pt)")
    parser.add_argument("--data", help="canonical data file (default: the one the run trained on)")
    parser.add_argument("--resolutions", type=_resolution_arg, nargs="+",
                        help="resolutions: points per axis (64), one per axis (64x128) or a stride (/2) "
                        "(default: the run's eval_resolutions)")
    parser.add_argument("--json", help="where to write the results (default: eval.json beside the checkpoint)")
    parser.add_argument("--plot", help="where to save the sample PNG (default: eval.png beside the checkpoint)")
    parser.add_argument("--samples", type=int, default=3, help="test samples in the PNG")
    parser.add_argument("--batch-size", type=int, default=50)
    return parser.parse_args(argv)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for name, value in (("--batch-size", args.batch_size), ("--samples", args.samples)):
        if value < 1:
            raise OpspecError(f"{name} {value}: expected an integer >= 1")
    payload = load_checkpoint(args.checkpoint)
    folder = Path(payload["path"]).parent
    json_path = Path(args.json) if args.json else folder / "eval.json"
    plot_path = Path(args.plot) if args.plot else folder / "eval.png"
    for path in (json_path, plot_path):  # before any work, so that nothing is half written
        problem = unwritable(path)
        if problem:
            raise OpspecError(problem)
    net = model_from_checkpoint(payload)
    cfg = load_config(base=payload["config"])
    file = open_data(args.data or cfg.data.path)
    if file.problem and file.problem != cfg.data.problem:
        raise OpspecError(f"{file.path}: holds {file.problem!r} data, but {payload['path']} was trained on "
                          f"{cfg.data.problem!r}; expected a {cfg.data.problem} file")
    resolutions = args.resolutions or list(cfg.data.eval_resolutions)
    for r in resolutions:
        file.stride(r)
    probe = OperatorDataset(file, "test", resolutions[0], in_memory=False)
    if len(probe) == 0:
        raise OpspecError(f"{file.path}: the test split has no samples; expected at least one")
    meta, found = payload["meta"], data_meta(file, "test")
    shape, expected = ((found["n_space"], found["in_channels"], found["out_channels"]),
                       (meta["n_space"], meta["in_channels"], meta["out_channels"]))
    if shape != expected:
        raise OpspecError(f"{file.path}: {shape[0]}-D data with {shape[1]} input and {shape[2]} output channel(s), but "
                          f"{payload['path']} takes {expected[0]}-D data with {expected[1]} and {expected[2]}")
    results = evaluate_model(net, file, resolutions, batch_size=args.batch_size)
    check_finite(results, file)
    print(f"{payload['path']} (epoch {payload.get('epoch')}) on {file.path}, test split")
    print(format_table(results, _label(file, cfg.data.train_resolution)))
    try:
        atomic_write_json(json_path, summary_json(results))
    except OSError as err:
        raise OpspecError(f"{json_path}: cannot write ({err.strerror or err})") from None
    try:
        finest = max(resolutions, key=lambda r: math.prod(file.points(r)))
        plot = plot_samples(net, file, finest, plot_path, args.samples)
    except OSError as err:
        raise OpspecError(f"{plot_path}: cannot write the PNG ({err.strerror or err}); {json_path} is written") from None
    print(f"wrote {json_path} and {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
