"""PDE data generators that write canonical files (so nothing needs the internet)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from opspec.data.canonical import CanonicalWriter

PROBLEMS = ("darcy",)


def generate_dataset(
    problem: str,
    out: str | os.PathLike,
    *,
    resolution: int,
    n_train: int,
    n_test: int,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = True,
) -> Path:
    """Generate `n_train + n_test` samples of `problem` as one seeded stream and write the canonical file.

    The first n_train samples form `train` and the rest `test`, so the file is fixed by
    (problem, resolution, n_train, n_test, seed).
    """
    if problem not in PROBLEMS:
        raise ValueError(f"problem {problem!r}: expected one of {PROBLEMS}")
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be at least 1, got {n_train} and {n_test}")
    from opspec.data.generate.darcy import generate_darcy

    grid = np.linspace(0.0, 1.0, resolution)
    attrs: dict[str, Any] = {
        "equation": "-div(a grad u) = f on (0,1)^2, u = 0 on the boundary",
        "forcing": 1.0,
        "coefficient_values": [3.0, 12.0],
        "grf_alpha": 2.0,
        "grf_tau": 3.0,
        "discretization": "second-order 5-point finite differences, nodal grid",
        "generator": "opspec.data.generate.darcy",
        "seed": seed,
        "n_train": n_train,
        "n_test": n_test,
    }
    batches = generate_darcy(n_train + n_test, resolution, seed, batch_size=batch_size, progress=progress)
    with CanonicalWriter(out, problem=problem, coords={"x": grid, "y": grid}, grid="nodal", attrs=attrs) as writer:
        writer.add_split("train", n_train)
        writer.add_split("test", n_test)
        written = 0
        for a, u in batches:
            n_to_train = max(0, min(len(a), n_train - written))
            if n_to_train:
                writer.append("train", a[:n_to_train], u[:n_to_train])
            if n_to_train < len(a):
                writer.append("test", a[n_to_train:], u[n_to_train:])
            written += len(a)
    return Path(out)
