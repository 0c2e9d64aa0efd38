"""The canonical file: round trip, NetCDF compatibility, strided reads, atomic writes, clear errors."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import torch
import xarray as xr

from opspec.data import CanonicalFile, CanonicalWriter, OperatorDataset, fit_normalizer, write_canonical
from opspec.data.__main__ import main as data_main
from opspec.errors import OpspecError


def _write(path, n_train=5, n_test=3, s=9, grid="nodal", fill=None):
    rng = np.random.default_rng(0)
    data = {split: (rng.normal(size=(n, s, s)), rng.normal(size=(n, s, s))) for split, n in (("train", n_train), ("test", n_test))}
    if fill is not None:
        fill(data)
    x = np.linspace(0, 1, s) if grid == "nodal" else np.arange(s) / s
    write_canonical(
        path,
        {split: [d] for split, d in data.items()},
        {"train": n_train, "test": n_test},
        problem="toy",
        coords={"x": x, "y": x},
        grid=grid,
        attrs={"seed": 7, "viscosity": 0.1},
    )
    return data


def test_round_trip_through_h5py_and_xarray(tmp_path):
    path = tmp_path / "toy.h5"
    data = _write(path)
    f = CanonicalFile(path)
    assert f.problem == "toy" and f.grid_size == 9 and f.attrs["seed"] == 7
    np.testing.assert_allclose(f.read("train", "a"), data["train"][0].astype(np.float32))
    np.testing.assert_allclose(f.read("test", "u"), data["test"][1].astype(np.float32))
    with xr.open_dataset(path, engine="h5netcdf", group="train") as ds:
        assert ds["u"].dims == ("sample", "x", "y")
        np.testing.assert_allclose(ds["x"].values, np.linspace(0, 1, 9))
        np.testing.assert_allclose(ds["a"].values, data["train"][0], rtol=1e-6)
    with h5py.File(path) as h5:
        assert h5["train/a"].chunks == (5, 9, 9)  # blocks of whole samples (all 5: under CHUNK_BYTES)
        assert h5.attrs["format_version"] == 1


def test_strided_resolutions_nodal_and_periodic(tmp_path):
    data = _write(tmp_path / "nodal.h5", s=9)
    f = CanonicalFile(tmp_path / "nodal.h5")
    assert f.valid_resolutions() == [9, 5, 3, 2]
    np.testing.assert_allclose(f.read("train", "u", 5), data["train"][1][:, ::2, ::2].astype(np.float32))
    np.testing.assert_allclose(f.coords(3)["x"], [0.0, 0.5, 1.0])
    with pytest.raises(OpspecError, match=r"resolution 4 is not a strided subsample.*valid resolutions: \[9, 5, 3, 2\]"):
        f.read("train", "u", 4)
    _write(tmp_path / "periodic.h5", s=8, grid="periodic")
    p = CanonicalFile(tmp_path / "periodic.h5")
    assert p.valid_resolutions() == [8, 4, 2]
    assert p.stride(4) == 2


def test_dataset_lazy_equals_in_memory_and_adds_channel(tmp_path):
    data = _write(tmp_path / "toy.h5")
    eager = OperatorDataset(tmp_path / "toy.h5", "train", 5)
    lazy = OperatorDataset(tmp_path / "toy.h5", "train", 5, in_memory=False)
    assert len(eager) == len(lazy) == 5
    a, u = eager[2]
    assert a.shape == (1, 5, 5)
    torch.testing.assert_close(a, lazy[2][0])
    batch_a, batch_u = eager[[0, 3]]
    torch.testing.assert_close(batch_u, lazy[[0, 3]][1])
    torch.testing.assert_close(batch_u[1, 0], torch.from_numpy(data["train"][1][3, ::2, ::2]).float())


def test_normalizer_is_per_channel_and_inverts(tmp_path):
    _write(tmp_path / "toy.h5")
    ds = OperatorDataset(tmp_path / "toy.h5", "train")
    norm = fit_normalizer(ds, "u")
    u = ds[list(range(len(ds)))][1].double()
    assert norm.mean.item() == pytest.approx(u.mean().item(), abs=1e-6)
    assert norm.std.item() == pytest.approx(u.std(unbiased=False).item(), rel=1e-5)
    x = torch.randn(2, 1, 9, 9)
    torch.testing.assert_close(norm.decode(norm.encode(x)), x)
    encoded = norm.encode(u.float())
    assert encoded.mean().abs() < 1e-5 and (encoded.std(unbiased=False) - 1).abs() < 1e-4


def test_writer_is_atomic_on_failure(tmp_path):
    path = tmp_path / "partial.h5"

    def batches():
        yield np.zeros((2, 5, 5)), np.zeros((2, 5, 5))
        raise RuntimeError("solver crashed")

    with pytest.raises(RuntimeError, match="solver crashed"):
        write_canonical(path, {"train": batches()}, {"train": 4, "test": 1}, problem="toy",
                        coords={"x": np.linspace(0, 1, 5), "y": np.linspace(0, 1, 5)})
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temp file is left


def test_writer_refuses_short_splits(tmp_path):
    with pytest.raises(ValueError, match="not fully written"):
        with CanonicalWriter(tmp_path / "short.h5", problem="toy", coords={"x": np.linspace(0, 1, 5)}) as w:
            w.add_split("train", 3)
            w.add_split("test", 1)
            w.append("train", np.zeros((2, 5)), np.zeros((2, 5)))
    assert not (tmp_path / "short.h5").exists()


def test_clear_errors_for_bad_files(tmp_path):
    with pytest.raises(OpspecError, match="no such file"):
        CanonicalFile(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(OpspecError, match="not an HDF5 file"):
        CanonicalFile(tmp_path / "text.h5")
    with h5py.File(tmp_path / "foreign.h5", "w") as h5:
        h5["coeff"] = np.zeros((2, 3, 3))
    with pytest.raises(OpspecError, match="not an opspec canonical file"):
        CanonicalFile(tmp_path / "foreign.h5")
    _write(tmp_path / "nogroup.h5")
    with h5py.File(tmp_path / "nogroup.h5", "a") as h5:
        del h5["test"]
    with pytest.raises(OpspecError, match="no group 'test'"):
        CanonicalFile(tmp_path / "nogroup.h5")
    _write(tmp_path / "novar.h5")
    with h5py.File(tmp_path / "novar.h5", "a") as h5:
        del h5["train/u"]
    with pytest.raises(OpspecError, match="group 'train' has no variable 'u'"):
        CanonicalFile(tmp_path / "novar.h5")


def test_nan_in_data_is_reported_with_its_place(tmp_path):
    def poison(data):
        data["train"][1][3, 4, 4] = np.nan

    _write(tmp_path / "nan.h5", fill=poison)
    f = CanonicalFile(tmp_path / "nan.h5")
    f.read("train", "a")  # the inputs are fine
    with pytest.raises(OpspecError, match=r"train/u contains NaN or inf \(first at sample 3\)"):
        OperatorDataset(f, "train")


def test_finished_file_has_ordinary_permissions(tmp_path):
    _write(tmp_path / "toy.h5")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "toy.h5").stat().st_mode & 0o777 == 0o666 & ~mask


def test_data_cli_generate_and_info(tmp_path, capsys):
    out = tmp_path / "d.h5"
    args = ["generate", "darcy", "--resolution", "9", "--n-train", "3", "--n-test", "2", "--seed", "1", "--out", str(out)]
    assert data_main(args) == 0
    assert data_main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "(sample: 3, x: 9, y: 9)" in text and "problem: darcy" in text and "valid resolutions: [9, 5, 3, 2]" in text
    assert data_main(args) == 2  # refuses to overwrite without --force
    assert "already exists" in capsys.readouterr().err
    first = CanonicalFile(out).read("train", "a")
    assert data_main(args + ["--force"]) == 0
    np.testing.assert_array_equal(CanonicalFile(out).read("train", "a"), first)  # same seed, same file
