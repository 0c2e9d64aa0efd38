"""SpecMuon in its paper's regime: full-batch DeepONet on 1-D Burgers against Adam, AdamW and Muon.

Usage: `python -m tools.exp_specmuon_regime [key=value ...] --iters 1000 --out <runs.json> --figure <png>`
(config `--config configs/burgers_deeponet_paper.yaml` by default; the stiffer setting:
`data.viscosity=0.01 data.path=datasets/burgers_s1024_n1200_nu0.01.h5`).

One setting per call. Every run is full batch and deterministic (one step = the whole training split,
constant LR), trained by opspec's Trainer: `train.batch_size=all` (one epoch = one iteration),
`train.scheduler=none`, `train.epochs=--iters`, `train.eval_every=--eval-every`, the optimizer built
from `optimizer.name` and the run's options over that optimizer's own defaults (Adam = AdamW without
weight decay); the other train keys are the config's. Each run's folder is a temporary one, removed
after it. The last `--val` training samples are held out as a validation split (the Trainer trains
on the first n − `--val` and fits the normalizers on those, and validates on the rest); selection
uses the final validation error only (every run records its test curve, which selection never reads).
A run whose loss, gradient or error turns non-finite ends there with validation error inf.
A curve's `seconds` are those inside the Trainer's step: zeroing the gradients, forward, loss,
backward, the finiteness check, the optimizer's update and the (constant) schedule's step; not the
batch gather, evaluation or checkpoints (the JSON files written before the Trainer ran these runs
timed `optimizer.step(closure)`: the same work without the finiteness check and the schedule's step).
A full batch comes in the file's order every epoch, as in the old loop: 1000 iterations amplify a
change of float summation order into visibly different final errors (docs/RESULTS.md, Claim 3,
"On the Trainer"); SpecMuon also reads the loss value, which the Trainer forms as Σ·(1/n).
Stages: (1) each optimizer's LR on a ×3 grid (extended while the best is at an edge);
(2) SpecMuon's constants C, k, ξ one at a time from the defaults at its best LR, then its LR again at
the best constants; (3) `--seeds` seeds at Muon's and SpecMuon's selections, `--baseline-seeds` at
Adam's and AdamW's; (4) an ablation at seed 0: SpecMuon's selection with C = 1e6, which switches
the step control off (Muon's map with SpecMuon's momentum). Figures: training loss and test error against iterations and against
wall-clock, mean over the seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from omegaconf import DictConfig

from opspec.data import OperatorDataset
from opspec.data.holdout import Validation
from opspec.optim.registry import optimizer_options
from opspec.training.callbacks import Callback, DivergedError, Step
from opspec.training.config import load_config, to_container
from opspec.training.trainer import Trainer, ensure_data

LR_GRIDS = {
    "adam": [3e-4, 1e-3, 3e-3, 1e-2],
    "adamw": [3e-4, 1e-3, 3e-3, 1e-2],
    "muon": [1e-3, 3e-3, 1e-2, 3e-2],
    "specmuon": [3e-5, 1e-4, 3e-4, 1e-3],
}
BASE_OPTIONS: dict[str, dict[str, Any]] = {
    "adam": {"weight_decay": 0.0},
    "adamw": {"weight_decay": 1e-2},
    "muon": {"adamw_lr": 3e-3, "adjust_lr": "match_rms_adamw", "weight_decay": 0.0},
    # full batch: E = √(L(θ) + C) at the current point, as the paper (loss_ema = 0)
    "specmuon": {"adamw_lr": 3e-3, "adjust_lr": "match_rms_adamw", "weight_decay": 0.0, "loss_ema": 0.0},
}
SPECMUON_CONSTANTS = {"energy_shift": [0.1, 0.01], "guided_modes": [16], "relaxation": [0.8]}
CONTROL_OFF_SHIFT = 1e6  # E² ≫ γσ: r̃ = r = E, so every guided mode steps by 1: SpecMuon without its step control
SPECMUON_DEFAULTS = {"guided_modes": 6, "energy_shift": 1.0, "relaxation": 0.2}


@dataclass(frozen=True)
class Splits:
    """The training part (the first n_train − n_val samples of the train split), the held-out
    validation samples (its last n_val) and the test split, at the training resolution."""

    train: OperatorDataset
    validation: Validation
    test: OperatorDataset


def load_splits(cfg: DictConfig, n_val: int) -> Splits:
    """The splits of the configured file with the last `n_val` training samples held out for validation."""
    file = ensure_data(cfg, progress=False)
    n = file.n_samples("train")
    if not 0 < n_val < n:
        raise SystemExit(f"--val {n_val}: expected between 1 and {n - 1} of the {n} training samples")
    cut = n - n_val
    resolution = cfg.data.train_resolution
    return Splits(OperatorDataset(file, "train", resolution, n=cut),
                  Validation("train", np.arange(cut, n), np.arange(cut)),
                  OperatorDataset(file, "test", resolution))


def optimizer_section(name: str, lr: float, options: dict[str, Any]) -> dict[str, Any]:
    """The `optimizer` config section of a run: `options` over the optimizer's own defaults, as
    `build_optimizer(model, name, lr=lr, **options)` has them (not the default experiment's, e.g. its
    weight decay 1e-4, nor the config file's); "adam" is AdamW with the options given (weight decay 0)."""
    name = "adamw" if name == "adam" else name
    # compute_dtype's own default (None) is spelled "auto" in a config, the schema's default
    own = {o.name: o.default for o in optimizer_options(name) if o.name != "compute_dtype"}
    return {"name": name, **own, "lr": lr, **options}


def run_config(cfg: DictConfig, name: str, lr: float, options: dict[str, Any], seed: int, iters: int,
               eval_every: int) -> DictConfig:
    """The Trainer's config of one run: full batch, constant LR, `iters` one-step epochs evaluated every
    `eval_every` and at the last, the model initialized by `seed`."""
    tree = {**to_container(cfg), "seed": seed, "optimizer": optimizer_section(name, lr, options)}
    return load_config(base=tree, overrides=[
        "train.batch_size=all", "train.scheduler=none", "train.warmup_epochs=0", "train.warmup_steps=0",
        f"train.epochs={iters}", f"train.eval_every={eval_every}", "train.progress=false"])


class Curve(Callback):
    """One run's curve: at each evaluated iteration, the seconds spent in the steps so far, the
    full-batch training loss of that iteration (before its update), the validation and test errors."""

    def __init__(self) -> None:
        self.curve: dict[str, list[float]] = {"iter": [], "seconds": [], "train_loss": [], "val": [], "test": []}
        self.seconds = 0.0
        self.tick = 0.0
        self.iteration = 0  # the step running now (1-based)

    def _now(self, trainer: Trainer) -> float:
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        return time.perf_counter()

    def on_step_start(self, trainer: Trainer, step: Step) -> None:
        self.iteration = step.global_step
        self.tick = self._now(trainer)

    def on_step_end(self, trainer: Trainer, step: Step) -> None:
        self.seconds += self._now(trainer) - self.tick

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        for key, value in (("iter", record["epoch"]), ("seconds", self.seconds), ("train_loss", record["train_loss"]),
                           ("val", record["val_rel_l2"]), ("test", record["test_rel_l2"])):
            self.curve[key].append(value)


def train_run(cfg: DictConfig, data: Splits, name: str, lr: float, options: dict[str, Any], seed: int,
              iters: int, eval_every: int) -> dict[str, Any]:
    """One full-batch run through the Trainer: curves of training loss, val and test error against
    iterations and seconds; a non-finite loss, gradient or error ends it (`diverged`, val = inf)."""
    recorder = Curve()
    with tempfile.TemporaryDirectory(prefix="exp_specmuon_regime-") as folder:
        trainer = Trainer(run_config(cfg, name, lr, options, seed, iters, eval_every), run_dir=Path(folder) / "run",
                          callbacks=[recorder], datasets=(data.train, data.test), validation=data.validation)
        try:
            trainer.fit()
        except DivergedError:
            recorder.curve["diverged"] = [recorder.iteration]
        finally:
            trainer.close()
    curve = recorder.curve
    final_val = curve["val"][-1] if curve["val"] and "diverged" not in curve else math.inf
    final_val = final_val if math.isfinite(final_val) else math.inf
    return {"name": name, "lr": lr, "options": options, "seed": seed, "val": final_val,
            "test": curve["test"][-1] if curve["test"] else math.inf, "curve": curve}


class Study:
    """The runs of one setting, cached by (name, lr, options, seed) in a JSON file."""

    def __init__(self, cfg: DictConfig, data: Splits, iters: int, eval_every: int, out: Path) -> None:
        self.cfg, self.data, self.iters, self.eval_every, self.out = cfg, data, iters, eval_every, out
        self.runs: list[dict[str, Any]] = json.loads(out.read_text())["runs"] if out.exists() else []

    def run(self, name: str, lr: float, options: dict[str, Any], seed: int = 0) -> dict[str, Any]:
        """The run's record, trained now unless the JSON holds it."""
        for r in self.runs:
            if r["name"] == name and r["lr"] == lr and r["options"] == options and r["seed"] == seed:
                return r
        record = train_run(self.cfg, self.data, name, lr, options, seed, self.iters, self.eval_every)
        self.runs.append(record)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps({"iters": self.iters, "runs": self.runs}, default=float))
        print(f"{name} lr={lr:g} {options} seed={seed}: val {record['val']:.4f} test {record['test']:.4f} "
              f"({record['curve']['seconds'][-1] if record['curve']['seconds'] else 0:.1f} s)", flush=True)
        return record

    def lr_sweep(self, name: str, options: dict[str, Any], grid: Sequence[float]) -> dict[str, Any]:
        """The best run over a ×3 LR grid, extended by ×3 while the best is at an edge (at most 2 steps)."""
        grid = sorted(grid)
        for _ in range(3):
            best = min((self.run(name, lr, options) for lr in grid), key=lambda r: r["val"])
            if best["lr"] == grid[0]:
                grid.insert(0, three_digits(grid[0] / 3))
            elif best["lr"] == grid[-1]:
                grid.append(three_digits(grid[-1] * 3))
            else:
                break
        best["grid"] = grid
        return best


def three_digits(x: float) -> float:
    """x rounded to three significant digits (so 3e-4 / 3 is the grid's 1e-4)."""
    return float(f"{x:.3g}")


def select(study: Study) -> dict[str, dict[str, Any]]:
    """Each optimizer's selected (lr, options) on validation; SpecMuon's constants swept too."""
    chosen = {}
    for name in ("adam", "adamw", "muon"):
        chosen[name] = study.lr_sweep(name, BASE_OPTIONS[name], LR_GRIDS[name])
    base = {**BASE_OPTIONS["specmuon"], **SPECMUON_DEFAULTS}
    best = study.lr_sweep("specmuon", base, LR_GRIDS["specmuon"])
    constants = dict(SPECMUON_DEFAULTS)
    for key, values in SPECMUON_CONSTANTS.items():
        trials = [best] + [study.run("specmuon", best["lr"], {**base, **constants, key: v}) for v in values]
        winner = min(trials, key=lambda r: r["val"])
        constants[key] = winner["options"][key]
        best = winner
    options = {**base, **constants}
    lr = best["lr"]
    chosen["specmuon"] = study.lr_sweep("specmuon", options, [three_digits(lr / 3), lr, three_digits(lr * 3)])
    return chosen


def mean_curve(runs: list[dict[str, Any]], key: str) -> tuple[list[float], list[float], list[float]]:
    """(iterations, mean seconds, mean of `key`) over runs of equal length."""
    n = min(len(r["curve"]["iter"]) for r in runs)
    mean = lambda k: [sum(r["curve"][k][i] for r in runs) / len(runs) for i in range(n)]  # noqa: E731
    return runs[0]["curve"]["iter"][:n], mean("seconds"), mean(key)


def figure(finals: dict[str, list[dict[str, Any]]], title: str, path: Path) -> None:
    """2 × 2 PNG: training loss and test error against iterations and against seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for name, runs in finals.items():
        label = f"{name} (lr {runs[0]['lr']:g})"
        for row, key in enumerate(("train_loss", "test")):
            iters, seconds, values = mean_curve(runs, key)
            axes[row, 0].semilogy(iters, values, label=label)
            axes[row, 1].semilogy(seconds, values, label=label)
    for row, key in enumerate(("training loss (rel. L2, full batch)", "test rel. L2")):
        axes[row, 0].set(xlabel="iteration", ylabel=key)
        axes[row, 1].set(xlabel="seconds in the Trainer's steps: forward, backward, update", ylabel=key)
    axes[0, 0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def summary(finals: dict[str, list[dict[str, Any]]], chosen: dict[str, dict[str, Any]], iters: int) -> str:
    """Markdown table: selection, test error mean ± std over seeds, at each quarter of the iterations."""
    checkpoints = [iters // 4, iters // 2, iters]
    lines = ["| optimizer | LR | constants | LR grid | val (seed 0) | " + " | ".join(f"test @ {c}" for c in checkpoints)
             + " | train loss @ end | s / 100 it |", "|---" * (7 + len(checkpoints)) + "|"]
    for name, runs in finals.items():
        cells = []
        for c in checkpoints:
            vals = [r["curve"]["test"][r["curve"]["iter"].index(c)] for r in runs if c in r["curve"]["iter"]]
            m = sum(vals) / len(vals) if vals else math.inf
            sd = (sum((v - m) ** 2 for v in vals) / max(len(vals) - 1, 1)) ** 0.5 if vals else 0.0
            cells.append(f"{m:.4f} ± {sd:.4f}")
        train = sum(r["curve"]["train_loss"][-1] for r in runs) / len(runs)
        speed = sum(100 * r["curve"]["seconds"][-1] / r["curve"]["iter"][-1] for r in runs) / len(runs)
        opts = chosen[name]["options"]
        const = ", ".join(f"{k}={opts[k]}" for k in SPECMUON_DEFAULTS if k in opts)
        grid = ",".join(f"{g:g}" for g in chosen[name].get("grid", []))
        lines.append(f"| {name} | {runs[0]['lr']:g} | {const} | {grid} | {chosen[name]['val']:.4f} | "
                     + " | ".join(cells) + f" | {train:.4f} | {speed:.2f} |")
    return "\n".join(lines)


def rerun(cfg: Any, args: argparse.Namespace, cached: Path) -> int:
    """Train the `--rerun NAME@LR` runs of a study JSON again (seed 0, its recorded options) and print both
    final (val, test): a check that a study's numbers still come out of the current code."""
    if not cached.is_file():
        raise SystemExit(f"error: --out {cached}: no such study JSON to rerun runs of")
    old_runs = json.loads(cached.read_text())["runs"]
    fresh = Study(cfg, load_splits(cfg, args.val), args.iters, args.eval_every, cached.with_suffix(".rerun.json"))
    for item in args.rerun:
        name, _, lr = item.partition("@")
        old = [r for r in old_runs if r["name"] == name and r["seed"] == 0 and lr and float(r["lr"]) == float(lr)]
        if not old:
            raise SystemExit(f"error: --rerun {item}: {cached} has no seed-0 run of {name} at that LR")
        new = fresh.run(name, old[0]["lr"], old[0]["options"], 0)
        print(f"{name} lr {float(lr):g} {old[0]['options']}: old val {old[0]['val']:.5f} test {old[0]['test']:.5f}; "
              f"now val {new['val']:.5f} test {new['test']:.5f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Sweep, select on validation, rerun the selections over seeds, write the figure and the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/burgers_deeponet_paper.yaml")
    parser.add_argument("overrides", nargs="*", help="config key=value overrides (e.g. data.viscosity=0.01)")
    parser.add_argument("--iters", type=int, default=1500)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--val", type=int, default=100, help="training samples held out for selection")
    parser.add_argument("--seeds", type=int, default=3, help="seeds at Muon's and SpecMuon's selections")
    parser.add_argument("--baseline-seeds", type=int, default=3, help="seeds at Adam's and AdamW's selections")
    parser.add_argument("--out", default="checkpoints/exp_specmuon_regime/study.json")
    parser.add_argument("--figure", default="docs/figures/specmuon_regime.png")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rerun", action="append", metavar="NAME@LR", help="only train these runs of the --out "
                        "JSON again (seed 0, the options it records), into a fresh study, and print old beside new")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    if args.rerun:
        return rerun(cfg, args, Path(args.out))
    study = Study(cfg, load_splits(cfg, args.val), args.iters, args.eval_every, Path(args.out))
    chosen = select(study)
    seeds = {"muon": args.seeds, "specmuon": args.seeds, "adam": args.baseline_seeds, "adamw": args.baseline_seeds}
    finals = {name: [study.run(name, chosen[name]["lr"], chosen[name]["options"], seed) for seed in range(seeds[name])]
              for name in ("specmuon", "muon", "adam", "adamw")}
    spec = chosen["specmuon"]
    off = study.run("specmuon", spec["lr"], {**spec["options"], "energy_shift": CONTROL_OFF_SHIFT})
    print(f"ablation, seed 0: SpecMuon at its selection with energy_shift={CONTROL_OFF_SHIFT:g} (step control off): "
          f"val {off['val']:.4f} test {off['test']:.4f}; with its selected constants: val {spec['val']:.4f} "
          f"test {spec['test']:.4f}")
    title = (f"DeepONet, Burgers ν={cfg.data.viscosity}, full batch ({len(study.data.train)} samples), "
             f"mean of {args.seeds} seeds ({args.baseline_seeds} for Adam, AdamW)")
    figure(finals, title, Path(args.figure))
    print(summary(finals, chosen, args.iters))
    print(f"runs: {len(study.runs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
