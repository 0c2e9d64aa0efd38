"""The validation split: which training samples are held out, and where validation comes from.

`holdout(n, fraction, seed)` holds out round(fraction · n) of n training samples (at least 1 when
fraction > 0). Which ones depends only on (n, fraction, seed): the samples are ordered by PCG64(seed)'s
raw 64-bit outputs (numpy keeps a bit generator's raw stream fixed across versions, unlike its
sampling methods) and the first round(fraction · n) of that order are held out, so a larger
fraction holds out a superset. The trainer passes `data.seed`, not the training `seed`: every
training seed of one data file sees the same validation samples.

A canonical file with its own `valid` split (converted from The Well or PDEArena) is validated on
that split instead, and trains on its whole `train` split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opspec.core.errors import OpspecError


def holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices into a split of n samples, each sorted: round(fraction · n) held out."""
    if not 0 <= fraction < 1:
        raise OpspecError(f"data.val_fraction={fraction}: expected a fraction in [0, 1) of the train samples")
    n_val = max(1, round(fraction * n)) if fraction > 0 else 0
    if n - n_val < 1:
        raise OpspecError(f"data.val_fraction={fraction} holds out {n_val} of {n} train samples, leaving none to "
                          "train on; expected a smaller fraction or more samples")
    order = np.argsort(np.random.PCG64(seed).random_raw(n), kind="stable")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@dataclass(frozen=True)
class Validation:
    """Where a run validates: `split` of the file at `indices` (None: all of it), training on `train_indices`."""

    split: str
    indices: np.ndarray | None
    train_indices: np.ndarray | None

    def describe(self, n_valid: int) -> str:
        """What the run validates on, for its first lines (`n_valid`: the file's valid samples)."""
        if self.indices is None:
            return f"the file's own valid split, {n_valid} samples"
        return f"{len(self.indices)} held-out train samples"


def validation_of(splits: tuple[str, ...], n_train: int, fraction: float, seed: int) -> Validation | None:
    """The validation of a file with these splits: its `valid` split, else `fraction` of train held
    out by `seed`; None when fraction is 0 (no validation: best.pt is chosen on test)."""
    if fraction == 0:
        return None
    if "valid" in splits:
        return Validation("valid", None, None)
    train, val = holdout(n_train, fraction, seed)
    return Validation("train", val, train)
