"""The Well and PDEArena layouts: small files written here in their layouts, detected, converted to
"the first --t-in steps in, the next --t-out out", vector fields as channels, non-square grids."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from opspec.data import CanonicalFile, OperatorDataset
from opspec.data.convert import convert
from opspec.data.formats import detect_format
from opspec.core.errors import OpspecError

NX, NY, T = 8, 16, 6


def write_well(path, n_traj=3, seed=0, nx=NX, ny=NY):
    """A 2-D Well file: a scalar `density` (t0), a vector `velocity` (t1), a constant field, and metadata."""
    rng = np.random.default_rng(seed)
    density = rng.normal(size=(n_traj, T, nx, ny)).astype(np.float32)
    velocity = rng.normal(size=(n_traj, T, nx, ny, 2)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.attrs.update({"dataset_name": "toy_well", "grid_type": "cartesian", "n_spatial_dims": 2,
                        "n_trajectories": n_traj, "simulation_parameters": ["Re"], "Re": 100.0})
        dims = f.create_group("dimensions")
        dims.attrs["spatial_dims"] = ["x", "y"]
        dims.create_dataset("time", data=np.arange(T, dtype=np.float32) * 0.5)
        dims.create_dataset("x", data=(np.arange(nx) + 0.5) / nx)
        dims.create_dataset("y", data=(np.arange(ny) + 0.5) / ny * 2)
        bc = f.create_group("boundary_conditions")
        for axis, kind in (("x_periodic", "periodic"), ("y_wall", "wall")):
            bc.create_group(axis).attrs["bc_type"] = kind
        f.create_group("scalars").attrs["field_names"] = ["Re"]
        t0 = f.create_group("t0_fields")
        t0.attrs["field_names"] = ["density", "mask"]
        t0.create_dataset("density", data=density).attrs.update(sample_varying=True, time_varying=True)
        t0.create_dataset("mask", data=np.ones((nx, ny), np.float32)).attrs.update(sample_varying=False, time_varying=False)
        t1 = f.create_group("t1_fields")
        t1.attrs["field_names"] = ["velocity"]
        t1.create_dataset("velocity", data=velocity).attrs.update(sample_varying=True, time_varying=True)
        f.create_group("t2_fields").attrs["field_names"] = []
    # channels in order: density, velocity_0, velocity_1 → (n, T, 3, x, y)
    return np.concatenate([density[:, :, None], np.moveaxis(velocity, -1, 2)], axis=2)


def write_pdearena(path, split, n=2, seed=0, nx=NX, ny=NY):
    rng = np.random.default_rng(seed)
    fields = {k: rng.normal(size=(n, T, nx, ny)) for k in ("u", "vx", "vy")}
    with h5py.File(path, "w") as f:
        g = f.create_group(split)
        for k, v in fields.items():
            g.create_dataset(k, data=v)
        g.create_dataset("t", data=np.tile(np.linspace(18, 102, T), (n, 1)))
        g.create_dataset("x", data=np.tile(np.linspace(0, 32, nx), (n, 1)))
        g.create_dataset("y", data=np.tile(np.linspace(0, 32, ny), (n, 1)))
        g.create_dataset("buo_y", data=np.full(n, 0.5))
    return np.stack([fields[k] for k in ("u", "vx", "vy")], axis=2).astype(np.float32)


def test_well_file_converts_to_first_t_in_steps_in_next_t_out_out(tmp_path):
    traj = write_well(tmp_path / "w.hdf5", n_traj=5)
    assert detect_format(tmp_path / "w.hdf5") == "well"
    out = convert(tmp_path / "w.hdf5", tmp_path / "w.h5", problem="toy_well", split=3, t_in=2, t_out=3)
    f = CanonicalFile(out)
    assert f.grid_shape == (NX, NY) and f.grid_size is None and f.grid == "periodic"
    assert f.attrs["fields"] == "density, velocity_0, velocity_1" and "mask" in f.attrs["source_skipped_fields"]
    assert f.attrs["source_Re"] == 100.0 and "y_wall: wall" in f.attrs["source_boundary_conditions"]
    # a = steps 0, 1 of all three channels; u = steps 2, 3, 4 (step 5 left out by --t-out 3)
    np.testing.assert_array_equal(f.read("train", "a"), traj[:3, :2])
    np.testing.assert_array_equal(f.read("test", "u"), traj[3:, 2:5])
    h5 = h5py.File(out)
    np.testing.assert_allclose(h5["train/t_out"][()], [1.0, 1.5, 2.0])
    # the Dataset makes time × field the channels: 2·3 in, 3·3 out, on the 8×16 grid
    a, u = OperatorDataset(f, "train", [4, 8])[[0, 2]]
    assert a.shape == (2, 6, 4, 8) and u.shape == (2, 9, 4, 8)
    np.testing.assert_array_equal(u.numpy(), traj[[0, 2], 2:5, :, ::2, ::2].reshape(2, 9, 4, 8))


def test_well_split_folders_and_their_errors(tmp_path):
    root = tmp_path / "toy_well" / "data"
    parts = {}
    for split, seeds in (("train", (0, 1)), ("valid", (2,)), ("test", (3,))):
        (root / split).mkdir(parents=True)
        parts[split] = [write_well(root / split / f"{split}_{s}.hdf5", seed=s) for s in seeds]
    out = convert(tmp_path / "toy_well", tmp_path / "w.h5", problem="toy_well", t_in=1, t_out=2)
    f = CanonicalFile(out)
    assert f.n_samples("train") == 6 and f.n_samples("test") == 3  # two files of 3 trajectories
    assert f.splits == ("train", "valid", "test") and f.n_samples("valid") == 3  # valid/ is the file's valid split
    np.testing.assert_array_equal(f.read("valid", "u"), parts["valid"][0][:, 1:3])
    np.testing.assert_array_equal(f.read("train", "u"), np.concatenate(parts["train"])[:, 1:3])
    np.testing.assert_array_equal(f.read("test", "a"), parts["test"][0][:, :1])
    with pytest.raises(OpspecError, match="give --t-in"):
        convert(tmp_path / "toy_well", tmp_path / "x.h5", problem="toy_well")
    write_well(root / "train" / "train_9.hdf5", seed=9, nx=4)
    with pytest.raises(OpspecError, match=r"mixes resolutions: train_0.hdf5 .* train_9.hdf5") as err:
        convert(tmp_path / "toy_well", tmp_path / "x.h5", problem="toy_well", t_in=1)
    assert "\n" not in str(err.value)
    (root / "train" / "train_9.hdf5").unlink()
    for p in (root / "test").iterdir():
        p.unlink()
    (root / "test").rmdir()
    with pytest.raises(OpspecError, match=r"no test/ folder"):
        convert(tmp_path / "toy_well", tmp_path / "x.h5", problem="toy_well", t_in=1)
    assert not (tmp_path / "x.h5").exists()


def test_pdearena_shards_convert_by_their_split_groups(tmp_path):
    shards = tmp_path / "ns"
    shards.mkdir()
    train = [write_pdearena(shards / f"NavierStokes2D_train_{s}_0.5_2.h5", "train", seed=s) for s in (1, 2)]
    test = write_pdearena(shards / "NavierStokes2D_test_3_0.5_2.h5", "test", seed=3)
    write_pdearena(shards / "NavierStokes2D_valid_4_0.5_2.h5", "valid", seed=4)
    assert detect_format(shards / "NavierStokes2D_test_3_0.5_2.h5") == "pdearena"
    out = convert(shards, tmp_path / "ns.h5", problem="navier_stokes", t_in=3, t_out=2)
    f = CanonicalFile(out)
    assert f.n_samples("train") == 4 and f.n_samples("test") == 2 and f.grid_shape == (NX, NY)
    assert f.n_samples("valid") == 2 and f.splits == ("train", "valid", "test")
    np.testing.assert_array_equal(f.read("train", "a"), np.concatenate(train)[:, :3])
    np.testing.assert_array_equal(f.read("test", "u"), test[:, 3:5])
    assert f.attrs["fields"] == "u, vx, vy" and f.attrs["source_buo_y_max"] == 0.5
    np.testing.assert_allclose(h5py.File(out)["test/t_in"][()], np.linspace(18, 102, T)[:3])
