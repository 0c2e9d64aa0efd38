"""The Well (PolymathicAI): one HDF5 file holds trajectories of fields on a uniform grid.

Layout (their docs/data_format.md): root attributes `n_spatial_dims`, `n_trajectories`; group
`dimensions` (attribute `spatial_dims`, datasets `time` and one per spatial axis); groups
`t0_fields` (scalars), `t1_fields` (vectors, a trailing axis of D) and `t2_fields` (tensors, D×D),
each listing its datasets in attribute `field_names`, shaped (trajectory, time, *space, *tensor);
`boundary_conditions` (one group per boundary with `bc_type`) and `scalars`. One folder of such
files per split (train/, valid/, test/).

Read here with h5py alone: a sample is one trajectory, its fields stacked as channels (a vector
field gives D channels, a tensor field D²), so a = the fields at the first step and u = the whole
trajectory (time, field, *space); `convert --t-in K --t-out M` then gives the task "the first K
steps in, the next M out". Fields that do not vary per trajectory and in time are skipped (listed
in the attribute `source_skipped_fields`).
"""

from __future__ import annotations


import h5py
import numpy as np

from opspec.data.formats.base import HDF5File, Layout
from opspec.core.errors import OpspecError

FIELD_GROUPS = ("t0_fields", "t1_fields", "t2_fields")
SPACE = ("x", "y", "z")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _names(attr) -> list[str]:
    """An HDF5 list-of-strings attribute as Python strings."""
    return [_text(v) for v in np.atleast_1d(attr)] if attr is not None else []


def is_well(h5: h5py.File) -> bool:
    """True when an open HDF5 file has The Well's groups."""
    return "dimensions" in h5 and any(g in h5 for g in FIELD_GROUPS)


class WellFile(HDF5File):
    """One HDF5 file of The Well: trajectories → samples, fields (and their components) → channels."""

    format = "well"

    def _layout(self) -> Layout:
        h5, path = self._h5, self.path
        if not is_well(h5):
            raise OpspecError(f"{path}: missing keys: The Well needs a 'dimensions' group and t0/t1/t2_fields groups; found {sorted(h5)}")
        dims = h5["dimensions"]
        spatial = _names(dims.attrs.get("spatial_dims"))
        d = int(h5.attrs.get("n_spatial_dims", len(spatial)))
        if not spatial or len(spatial) != d or d > 3 or any(s not in dims for s in spatial) or "time" not in dims:
            raise OpspecError(
                f"{path}: dimensions/spatial_dims={spatial} with n_spatial_dims={d}: expected 1 to 3 axes, each a dataset "
                "in 'dimensions' beside 'time'"
            )
        grid = tuple(int(dims[s].shape[0]) for s in spatial)
        times = np.asarray(dims["time"][()], dtype=np.float64).ravel()
        n_traj = int(h5.attrs.get("n_trajectories", -1))
        self._fields: list[tuple[str, int]] = []  # (dataset path, channels)
        channel_names: list[str] = []
        skipped: list[str] = []
        for order, group_name in enumerate(FIELD_GROUPS):
            if group_name not in h5:
                continue
            group = h5[group_name]
            for name in _names(group.attrs.get("field_names")) or sorted(group):
                if name not in group or not isinstance(group[name], h5py.Dataset):
                    raise OpspecError(f"{path}: {group_name}/field_names lists {name!r} but there is no such dataset")
                ds = group[name]
                sample_varying = bool(ds.attrs.get("sample_varying", True))
                time_varying = bool(ds.attrs.get("time_varying", True))
                if not (sample_varying and time_varying) or not all(np.atleast_1d(ds.attrs.get("dim_varying", True))):
                    skipped.append(f"{group_name}/{name}")
                    continue
                expected = (ds.shape[0], len(times), *grid)
                tensor_axes = ds.ndim - 2 - d  # a scalar has none, a vector one (D), a tensor D×D or D²
                if tuple(ds.shape[: 2 + d]) != expected or not (tensor_axes == 0 if order == 0 else 1 <= tensor_axes <= order):
                    raise OpspecError(
                        f"{path}: inconsistent shapes: {group_name}/{name} is {ds.shape}, expected "
                        f"(trajectory, time={len(times)}, {', '.join(f'{s}={n}' for s, n in zip(spatial, grid))}"
                        f"{', ' + ', '.join(['D'] * order) if order else ''})"
                    )
                if n_traj < 0:
                    n_traj = ds.shape[0]
                if ds.shape[0] != n_traj:
                    raise OpspecError(f"{path}: inconsistent shapes: {group_name}/{name} has {ds.shape[0]} trajectories, expected {n_traj}")
                channels = int(np.prod(ds.shape[2 + d:]))
                self._fields.append((f"{group_name}/{name}", channels))
                channel_names += [name] if channels == 1 else [f"{name}_{k}" for k in range(channels)]
        if not self._fields:
            raise OpspecError(f"{path}: no field varies per trajectory and in time (skipped: {skipped}); nothing to learn")
        if len(times) < 2:
            raise OpspecError(f"{path}: {len(times)} time step(s); a trajectory task needs at least 2")
        self._d = d
        space = SPACE[:d]
        coords = {s: np.asarray(dims[name][()], dtype=np.float64).ravel() for s, name in zip(space, spatial)}
        n_ch = len(channel_names)
        layout = Layout(
            "well", n_traj, ("field", *space), (n_ch, *grid), ("t", "field", *space), (len(times), n_ch, *grid),
            coords, "periodic", extra_coords={"t": times},
        )
        bcs = {}
        if "boundary_conditions" in h5:
            for name, bc in h5["boundary_conditions"].items():
                bcs[name] = _text(bc.attrs.get("bc_type", "?"))
        layout.attrs.update({
            "source_dataset_name": _text(h5.attrs.get("dataset_name", "")),
            "source_spatial_dims": " ".join(spatial),
            "source_boundary_conditions": ", ".join(f"{k}: {v}" for k, v in sorted(bcs.items())),
            "fields": ", ".join(channel_names),
            "source_task": "trajectory",
            **({"source_skipped_fields": ", ".join(skipped)} if skipped else {}),
        })
        for key in _names(h5.attrs.get("simulation_parameters")):
            value = np.asarray(h5.attrs.get(key, np.nan))
            if value.size == 1 and value.dtype.kind in "iuf":
                layout.attrs[f"source_{key}"] = value.item()
        return layout

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        parts = []
        for name, channels in self._fields:
            block = np.asarray(self._h5[name][start:stop], dtype=np.float32)  # (k, T, *space, *tensor)
            k, t = block.shape[:2]
            block = block.reshape(k, t, *block.shape[2 : 2 + self._d], channels)
            parts.append(np.moveaxis(block, -1, 2))  # (k, T, channels, *space)
        u = np.concatenate(parts, axis=2)
        return u[:, 0], u
