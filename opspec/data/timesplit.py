"""The FNO papers' trajectory task, written once for `generate` and `convert` alike.

A trajectory u (sample, time, *space) at times t_1 < … < t_T becomes the pair a = u at the first t_in
times, u = u at the other T − t_in: dimensions (sample, t_in, *space) and (sample, t_out, *space), with
coordinate variables `t_in` and `t_out` holding the times. The Dataset reads the time axis as channels,
so an FNO maps t_in input channels to t_out output channels in one shot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TimeSplit:
    """Split the trajectories at `times` (one per stored snapshot) after the first `t_in` of them."""

    t_in: int
    times: np.ndarray

    def __post_init__(self) -> None:
        if not 1 <= self.t_in < len(self.times):
            raise ValueError(f"t_in {self.t_in}: expected 1 to {len(self.times) - 1} ({len(self.times)} snapshot times)")

    @property
    def coords(self) -> dict[str, np.ndarray]:
        """The coordinate variables of the two time axes: {'t_in': first t_in times, 't_out': the rest}."""
        times = np.asarray(self.times, dtype=np.float64)
        return {"t_in": times[: self.t_in], "t_out": times[self.t_in:]}

    def dims(self, space: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Per-sample dimension names of a and u (sample axis excluded)."""
        return ("t_in", *space), ("t_out", *space)

    def shapes(self, space_shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Per-sample shapes of a and u (sample axis excluded) for a grid of `space_shape`."""
        return (self.t_in, *space_shape), (len(self.times) - self.t_in, *space_shape)

    def __call__(self, trajectory: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(a, u) of a batch of trajectories (sample, time, *space)."""
        return trajectory[:, : self.t_in], trajectory[:, self.t_in:]
