"""Which treatment suits each part of a factorized spectral weight: a short Darcy TFNO measurement.

    python -m tools.exp_factorized_treatment --data datasets/darcy_s65_n200.h5 --seeds 0,1

Trains the same small TFNO (width 16, 8×8 modes, 4 layers) on the same Darcy samples at resolution 17
with Muon (lr 1e-2, match_rms_adamw; AdamW part 3e-3) under each treatment of the factorized weight
(`optimizer.treat` overrides; "shape" is the old rule by shape and dtype), and AdamW alone (3e-3) as
the reference, and prints the test relative L2 at 17 and 33 (zero-shot) per seed and its mean.
Everything runs in one process on one thread, each run by opspec's Trainer (batch 20, cosine
schedule, the seed fixing the initial weights and the batch order), so every variant of a seed starts
from the same weights. The numbers are in docs/models.md (measured with an earlier loop of this
tool: the same model, data and optimizers, a per-step cosine over whole batches only); this small run,
with one Muon LR for every treatment, did not decide the default: the LR-swept run at the default size there did.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from opspec.training.config import load_config, to_container
from opspec.training.evaluate import evaluate_model
from opspec.training.trainer import Trainer
from tools.harness import markdown_table

# (factorization, variant name, optimizer, treat overrides)
VARIANTS = [
    ("tucker", "adamw (reference)", "adamw", None),
    ("tucker", "by shape: core per mode, factors Muon", "muon", {"*": "shape"}),
    ("tucker", "factors Muon, core AdamW", "muon", {"*.weight.factors.*": "matrix"}),
    ("tucker", "factors Muon, core flattened", "muon", {"*.weight.core": "flatten", "*.weight.factors.*": "matrix"}),
    ("tucker", "factors and core AdamW", "muon", {"*.weight.core": "adamw", "*.weight.factors.*": "adamw"}),
    ("cp", "adamw (reference)", "adamw", None),
    ("cp", "by shape: factors Muon", "muon", {"*": "shape"}),
    ("cp", "factors AdamW", "muon", {"*.weight.factors.*": "adamw"}),
    ("tt", "adamw (reference)", "adamw", None),
    ("tt", "by shape: cores per 'mode' (last axis)", "muon", {"*": "shape"}),
    ("tt", "cores AdamW", "muon", {"*.weight.factors.*": "adamw"}),
    ("tt", "cores Muon (r_{k-1} × n_k·r_k)", "muon", {"*.weight.factors.*": "conv"}),
]


def run(data: Path, factorization: str, optimizer: str, treat: dict | None, seed: int, epochs: int) -> tuple[float, float]:
    """Test relative L2 at 17 and at 33 after `epochs` epochs of one variant (one Trainer run)."""
    optimizer_keys = ["optimizer.lr=3e-3"] if optimizer == "adamw" else [
        "optimizer.lr=1e-2", "optimizer.adamw_lr=3e-3", "optimizer.adjust_lr=match_rms_adamw", "optimizer.compute_dtype=float32"]
    cfg = load_config(overrides=[
        "model.name=tfno", "model.hidden_channels=16", "model.n_modes=[8,8]", "model.n_layers=4",
        f"model.options.factorization={factorization}", "model.options.rank=0.42", f"data.path={data}",
        "data.generate=false", "data.train_resolution=17", "data.eval_resolutions=[17,33]", f"seed={seed}",
        f"train.epochs={epochs}", "train.batch_size=20", "train.progress=false", "train.device=cpu",
        f"optimizer.name={optimizer}", "optimizer.weight_decay=1e-4", *optimizer_keys,
    ])
    if treat:  # name patterns hold dots and stars: set as a mapping, not as dotted overrides
        cfg = load_config(base={**to_container(cfg), "optimizer": {**to_container(cfg.optimizer), "treat": treat}})
    with tempfile.TemporaryDirectory(prefix="exp_factorized_treatment_") as run_dir:
        trainer = Trainer(cfg, run_dir=run_dir)
        try:
            with contextlib.redirect_stdout(sys.stderr):  # the epoch lines: stdout holds the table alone
                trainer.fit()
            results = evaluate_model(trainer.net, trainer.file, [17, 33], cfg.train.eval_batch_size)
        finally:
            trainer.close()
    return results[trainer.file.label(17)]["rel_l2_mean"], results[trainer.file.label(33)]["rel_l2_mean"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="datasets/darcy_s65_n200.h5",
                        help="a Darcy file on a 65 grid (python -m opspec.data generate darcy --resolution 65 --n-train 200 --n-test 50 --out …)")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated factorizations to run (tucker, cp, tt)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    only = set(args.only.split(",")) - {""}
    header = ["factorization", "treatment", *(f"seed {s} @17 / @33" for s in seeds), "mean @17", "mean @33", "s"]
    rows = []
    for factorization, name, optimizer, treat in VARIANTS:
        if only and factorization not in only:
            continue
        start = time.perf_counter()
        results = [run(Path(args.data), factorization, optimizer, treat, seed, args.epochs) for seed in seeds]
        rows.append([factorization, name, *(f"{a:.4f} / {b:.4f}" for a, b in results),
                     f"{statistics.mean(a for a, _ in results):.4f}", f"{statistics.mean(b for _, b in results):.4f}",
                     f"{time.perf_counter() - start:.0f}"])
        print(f"{factorization}, {name}: done in {rows[-1][-1]} s", file=sys.stderr, flush=True)
    print(markdown_table(header, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
