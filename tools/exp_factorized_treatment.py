"""Which treatment suits each part of a factorized spectral weight: a short Darcy TFNO measurement.

    python tools/exp_factorized_treatment.py --data datasets/darcy_s65_n200.h5 --seeds 0,1

Trains the same small TFNO (width 16, 8×8 modes, 4 layers) on the same Darcy samples at resolution 17
with Muon (lr 1e-2, match_rms_adamw; AdamW part 3e-3) under each treatment of the factorized weight
(`optimizer.treat` overrides; "shape" is the old rule by shape and dtype), and AdamW alone (3e-3) as
the reference, and prints the test relative L2 at 17 and 33 (zero-shot) per seed and its mean.
Everything runs in one process on one thread; data, normalizers and the model's initial weights are
shared by every variant of a seed. The numbers are in docs/models.md; this small run, with one Muon
LR for every treatment, did not decide the default: the LR-swept run at the default size there did.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from opspec.training.config import load_config
from opspec.data.dataset import OperatorDataset, fit_normalizer
from opspec.data.multifile import open_data
from opspec.training.metrics import relative_l2
from opspec.models import NormalizedOperator, build_model, model_labels
from opspec.optim import build_optimizer

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
    """Test relative L2 at 17 and at 33 after `epochs` epochs of one variant."""
    cfg = load_config(overrides=[
        "model.name=tfno", "model.hidden_channels=16", "model.n_modes=[8,8]", "model.n_layers=4",
        f"model.options.factorization={factorization}", "model.options.rank=0.42",
    ])
    file = open_data(data)
    train, test17, test33 = (OperatorDataset(file, s, r) for s, r in (("train", 17), ("test", 17), ("test", 33)))
    torch.manual_seed(seed)
    net = NormalizedOperator(build_model(cfg.model, 1, 1, 2), fit_normalizer(train, "a"), fit_normalizer(train, "u"))
    options = dict(lr=3e-3, weight_decay=1e-4) if optimizer == "adamw" else dict(
        lr=1e-2, adamw_lr=3e-3, weight_decay=1e-4, adjust_lr="match_rms_adamw", compute_dtype="float32", treat=treat or None)
    opt = build_optimizer(net.model, optimizer, labels=model_labels, **options)
    steps_per_epoch = len(train) // 20
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=g)
        for k in range(steps_per_epoch):
            a, u = train[order[k * 20:(k + 1) * 20].tolist()]
            opt.zero_grad()
            loss = relative_l2(net(a), u).mean()
            loss.backward()
            opt.step()
            schedule.step()
    with torch.no_grad():
        errors = []
        for test in (test17, test33):
            a, u = test[list(range(len(test)))]
            errors.append(float(relative_l2(net(a), u).mean()))
    return errors[0], errors[1]


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
    print("| factorization | treatment | " + " | ".join(f"seed {s} @17 / @33" for s in seeds) + " | mean @17 | mean @33 | s |")
    print("|---|---|" + "---|" * len(seeds) + "---|---|---|")
    for factorization, name, optimizer, treat in VARIANTS:
        if only and factorization not in only:
            continue
        start = time.perf_counter()
        results = [run(Path(args.data), factorization, optimizer, treat, seed, args.epochs) for seed in seeds]
        cells = " | ".join(f"{a:.4f} / {b:.4f}" for a, b in results)
        print(f"| {factorization} | {name} | {cells} | {statistics.mean(a for a, _ in results):.4f} | "
              f"{statistics.mean(b for _, b in results):.4f} | {time.perf_counter() - start:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
