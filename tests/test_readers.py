"""Foreign layouts written by the test in their exact published layout, converted, and read back."""

from __future__ import annotations

import argparse

import h5py
import numpy as np
import pytest
import scipy.io
import torch

from opspec.data.canonical import CanonicalFile
from opspec.data.convert import add_convert_parser, convert, run_convert
from opspec.data.formats import detect_format, open_foreign
from opspec.core.errors import OpspecError
from conftest import write_mat73

RNG = np.random.default_rng(0)




def read_all(path):
    with CanonicalFile(path) as f:
        return f, {s: (f.read(s, "a"), f.read(s, "u")) for s in ("train", "test")}


def test_fno_darcy_mat_v5(tmp_path):
    coeff = np.where(RNG.random((10, 9, 9)) > 0.5, 12.0, 3.0)
    sol = RNG.random((10, 9, 9))
    scipy.io.savemat(tmp_path / "piececonst_r9_N10.mat", {"coeff": coeff, "sol": sol, "Kcoeff": coeff[0]})
    assert detect_format(tmp_path / "piececonst_r9_N10.mat") == "mat5"
    out = convert(tmp_path / "piececonst_r9_N10.mat", tmp_path / "d.h5", problem="darcy", split=8)
    f, data = read_all(out)
    assert f.grid == "nodal" and f.problem == "darcy" and f.attrs["source_format"] == "mat5"
    np.testing.assert_allclose(data["train"][0], coeff[:8].astype(np.float32))
    np.testing.assert_allclose(data["test"][1], sol[8:].astype(np.float32))
    np.testing.assert_allclose(f.coords()["x"], np.linspace(0, 1, 9))
    assert f.valid_resolutions() == [9, 5, 3, 2]


def test_fno_burgers_mat_v5_ratio_split(tmp_path):
    a, u = RNG.standard_normal((20, 16)), RNG.standard_normal((20, 16))
    scipy.io.savemat(tmp_path / "burgers_data_R10.mat", {"a": a, "u": u})
    out = convert(tmp_path / "burgers_data_R10.mat", tmp_path / "b.h5", problem="burgers", split=0.75, chunk_mb=1e-4)
    f, data = read_all(out)
    assert f.n_samples("train") == 15 and f.n_samples("test") == 5 and f.grid == "periodic"
    np.testing.assert_allclose(data["test"][0], a[15:].astype(np.float32))
    np.testing.assert_allclose(data["train"][1], u[:15].astype(np.float32))


def test_fno_navier_stokes_mat_v73_reverses_axes(tmp_path):
    a, u = RNG.standard_normal((6, 8, 8)), RNG.standard_normal((6, 8, 8, 5))
    t = np.arange(1.0, 6.0)[None, :]
    path = tmp_path / "ns_V1e-3_N6_T5.mat"
    write_mat73(path, {"a": a, "u": u, "t": t})
    with h5py.File(path, "r") as h:
        assert h["u"].shape == (5, 8, 8, 6)
    assert detect_format(path) == "mat73"
    out = convert(path, tmp_path / "ns.h5", problem="navier_stokes", split=4, chunk_mb=1e-3)
    f, data = read_all(out)
    assert f.dims["train"]["u"] == ("sample", "t", "x", "y")
    np.testing.assert_allclose(data["train"][0], a[:4].astype(np.float32))
    np.testing.assert_allclose(data["test"][1], np.moveaxis(u[4:], -1, 1).astype(np.float32))
    with h5py.File(out, "r") as h:
        np.testing.assert_allclose(h["train/t"][()], [1, 2, 3, 4, 5])
    # the FNO paper's task: the first t_in snapshots in, the rest out (as opspec's generator writes)
    task = convert(path, tmp_path / "ns_task.h5", problem="navier_stokes", split=4, t_in=2)
    f, data = read_all(task)
    assert f.dims["train"]["a"] == ("sample", "t_in", "x", "y") and f.dims["train"]["u"] == ("sample", "t_out", "x", "y")
    trajectory = np.moveaxis(u, -1, 1).astype(np.float32)
    np.testing.assert_allclose(data["train"][0], trajectory[:4, :2])
    np.testing.assert_allclose(data["test"][1], trajectory[4:, 2:])
    with h5py.File(task, "r") as h:
        np.testing.assert_allclose(h["train/t_in"][()], [1, 2])
        np.testing.assert_allclose(h["train/t_out"][()], [3, 4, 5])
    with pytest.raises(OpspecError, match="--t-in 5: expected 1 to 4"):
        convert(path, tmp_path / "bad.h5", problem="navier_stokes", t_in=5)
    assert not (tmp_path / "bad.h5").exists()
    # a coarser time step: every 2nd snapshot (times 2 and 4), then the first of those in, the other out
    coarse = convert(path, tmp_path / "ns_coarse.h5", problem="navier_stokes", split=4, t_stride=2, t_in=1)
    f, data = read_all(coarse)
    np.testing.assert_allclose(data["train"][0], trajectory[:4, 1:2])
    np.testing.assert_allclose(data["test"][1], trajectory[4:, 3:4])
    with h5py.File(coarse, "r") as h:
        np.testing.assert_allclose(h["train/t_in"][()], [2])
        np.testing.assert_allclose(h["train/t_out"][()], [4])
    strided = convert(path, tmp_path / "ns_strided.h5", problem="navier_stokes", split=4, t_stride=3)
    f, data = read_all(strided)
    np.testing.assert_allclose(data["train"][1], trajectory[:4, 2:3])  # time 3 only (5 // 3 = 1 time)
    with pytest.raises(OpspecError, match="--t-stride 6: expected 1 to 5"):
        convert(path, tmp_path / "bad.h5", problem="navier_stokes", t_stride=6)
    scipy.io.savemat(tmp_path / "burgers.mat", {"a": a[:, 0], "u": a[:, 1]})  # (N, X): no time axis
    with pytest.raises(OpspecError, match="--t-stride needs an output with a leading time axis"):
        convert(tmp_path / "burgers.mat", tmp_path / "bad.h5", problem="burgers", t_stride=2)
    assert not (tmp_path / "bad.h5").exists()


def test_pdebench_burgers_1d(tmp_path):
    tensor = RNG.standard_normal((10, 6, 16)).astype(np.float32)
    x = (np.arange(16) + 0.5) / 16
    path = tmp_path / "1D_Burgers_Sols_Nu0.001.hdf5"
    with h5py.File(path, "w") as h:
        h["tensor"], h["x-coordinate"], h["t-coordinate"] = tensor, x, np.linspace(0, 2, 7)
    out = convert(path, tmp_path / "pb.h5", problem="burgers", split=0.8)
    f, data = read_all(out)
    assert f.dims["train"]["a"] == ("sample", "x") and f.dims["train"]["u"] == ("sample", "t", "x")
    np.testing.assert_allclose(data["train"][0], tensor[:8, 0])
    np.testing.assert_allclose(data["test"][1], tensor[8:, 1:])
    np.testing.assert_allclose(f.coords()["x"], x)
    with h5py.File(out, "r") as h:
        np.testing.assert_allclose(h["test/t"][()], np.linspace(0, 2, 7)[1:6])


def test_pdebench_darcy_2d(tmp_path):
    nu = RNG.random((10, 8, 8)).astype(np.float32)
    tensor = RNG.random((10, 1, 8, 8)).astype(np.float32)
    path = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    with h5py.File(path, "w") as h:
        h["nu"], h["tensor"] = nu, tensor
        h["x-coordinate"] = h["y-coordinate"] = (np.arange(8) + 0.5) / 8
        h.attrs["beta"] = 1.0
    out = convert(path, tmp_path / "pd.h5", problem="darcy")
    f, data = read_all(out)
    assert f.n_samples("train") == 9 and f.attrs["source_beta"] == 1.0
    np.testing.assert_allclose(data["train"][0], nu[:9])
    np.testing.assert_allclose(data["test"][1], tensor[9:, 0])
    assert f.valid_resolutions() == [8, 4, 2]


def test_pdebench_navier_stokes_incompressible(tmp_path):
    n, t, s = 3, 4, 8
    velocity = RNG.standard_normal((n, t, s, s, 2)).astype(np.float32)
    particles = RNG.random((n, t, s, s, 1)).astype(np.float32)
    force = RNG.standard_normal((n, s, s, 2)).astype(np.float32)
    path = tmp_path / "ns_incom_inhom_2d_512-0.h5"
    with h5py.File(path, "w") as h:
        h["velocity"], h["particles"], h["force"] = velocity, particles, force
        h["t"] = np.tile(np.arange(t) * 0.05, (n, 1))
    out = convert(path, tmp_path / "pns.h5", problem="navier_stokes", split=2)
    f, data = read_all(out)
    assert f.dims["train"]["a"] == ("sample", "a_channel", "x", "y")
    assert f.dims["train"]["u"] == ("sample", "t", "channel", "x", "y")
    a0 = data["train"][0][1]
    np.testing.assert_allclose(a0[0], velocity[1, 0, ..., 0])
    np.testing.assert_allclose(a0[2], particles[1, 0, ..., 0])
    np.testing.assert_allclose(a0[4], force[1, ..., 1])
    u_test = data["test"][1][0]
    np.testing.assert_allclose(u_test[:, 1], velocity[2, 1:, ..., 1])
    np.testing.assert_allclose(u_test[:, 2], particles[2, 1:, ..., 0])


def test_neuralop_pt_pair_with_bool_inputs(tmp_path):
    x_train = torch.rand(6, 8, 8) > 0.5
    y_train = torch.rand(6, 8, 8)
    x_test, y_test = torch.rand(3, 8, 8) > 0.5, torch.rand(3, 8, 8)
    torch.save({"x": x_train, "y": y_train}, tmp_path / "darcy_train_8.pt")
    torch.save({"x": x_test, "y": y_test}, tmp_path / "darcy_test_8.pt")
    assert detect_format(tmp_path / "darcy_train_8.pt") == "pt"
    out = convert(tmp_path / "darcy_train_8.pt", tmp_path / "n.h5", problem="darcy", pair=tmp_path / "darcy_test_8.pt")
    f, data = read_all(out)
    assert f.n_samples("train") == 6 and f.n_samples("test") == 3
    np.testing.assert_array_equal(data["train"][0], x_train.float().numpy())
    np.testing.assert_allclose(data["test"][1], y_test.numpy())
    np.testing.assert_allclose(f.coords()["x"], np.arange(8) / 8)


def test_cli_functions_and_forced_format(tmp_path, capsys):
    scipy.io.savemat(tmp_path / "b.mat", {"a": RNG.random((4, 8)), "u": RNG.random((4, 8))})
    parser = argparse.ArgumentParser()
    add_convert_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["convert", str(tmp_path / "b.mat"), "--from", "mat5", "--problem", "burgers",
                              "--split", "3", "--out", str(tmp_path / "b.h5")])
    assert args.func(args) == 0 and run_convert is args.func
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(OpspecError, match="already exists"):
        run_convert(args)


def _bad_v5_shapes(p):
    scipy.io.savemat(p, {"coeff": np.ones((5, 4, 4)), "sol": np.ones((4, 4, 4))})


def _bad_missing_keys(p):
    scipy.io.savemat(p, {"input": np.ones((5, 4, 4)), "output": np.ones((5, 4, 4))})


def _bad_nan(p):
    sol = np.ones((5, 4, 4))
    sol[3, 1, 1] = np.nan
    scipy.io.savemat(p, {"coeff": np.ones((5, 4, 4)), "sol": sol})


def _bad_inf_v73(p):
    u = np.ones((6, 4, 4, 3))
    u[5, 0, 0, 2] = np.inf
    write_mat73(p, {"a": np.ones((6, 4, 4)), "u": u})


def _bad_mat_v4(p):
    scipy.io.savemat(p, {"a": np.ones((3, 4)), "u": np.ones((3, 4))}, format="4")


def _bad_truncated_hdf5(p):
    with h5py.File(p, "w") as h:
        h["tensor"] = np.ones((40, 5, 64), dtype=np.float32)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _bad_pdebench_shapes(p):
    with h5py.File(p, "w") as h:
        h["nu"] = np.ones((5, 8, 8))
        h["tensor"] = np.ones((5, 1, 4, 4))


def _bad_pt_keys(p):
    torch.save({"inputs": torch.ones(3, 4, 4), "y": torch.ones(3, 4, 4)}, p)


def _bad_pt_samples(p):
    torch.save({"x": torch.ones(3, 4, 4), "y": torch.ones(2, 4, 4)}, p)


def _bad_complex_v5(p):
    scipy.io.savemat(p, {"coeff": np.ones((5, 4, 4)) + 1j, "sol": np.ones((5, 4, 4))})


def _bad_complex_v73(p):
    """MATLAB v7.3 stores a complex array as an HDF5 compound of (real, imag)."""
    u = np.ones((6, 4, 4, 3))
    compound = np.zeros(u.transpose().shape, dtype=[("real", "<f8"), ("imag", "<f8")])
    write_mat73(p, {"a": np.ones((6, 4, 4))})
    with h5py.File(p, "a") as h:
        h["u"] = compound


def _bad_complex_pdebench(p):
    with h5py.File(p, "w") as h:
        h["tensor"] = np.ones((5, 3, 8), dtype=np.complex64)


def _bad_complex_pt(p):
    torch.save({"x": torch.ones(3, 4, 4), "y": torch.ones(3, 4, 4, dtype=torch.complex64)}, p)


def _bad_strings_v5(p):
    scipy.io.savemat(p, {"a": np.array([["0.125"] * 4] * 5), "u": np.ones((5, 4))})


def _bad_problem(p):
    scipy.io.savemat(p, {"coeff": np.ones((5, 4, 4)), "sol": np.ones((5, 4, 4))})


@pytest.mark.parametrize(
    "name, make, problem, message",
    [
        ("shapes.mat", _bad_v5_shapes, "darcy", "inconsistent shapes"),
        ("keys.mat", _bad_missing_keys, "darcy", "missing keys"),
        ("nan.mat", _bad_nan, "darcy", "NaN or inf .first at sample 3"),
        ("inf.mat", _bad_inf_v73, "navier_stokes", "NaN or inf .first at sample 5"),
        ("v4.mat", _bad_mat_v4, "burgers", "neither MATLAB v5 nor v7.3"),
        ("truncated.h5", _bad_truncated_hdf5, "burgers", "cannot open as HDF5"),
        ("grid.hdf5", _bad_pdebench_shapes, "darcy", "inconsistent shapes"),
        ("keys.pt", _bad_pt_keys, "darcy", "missing keys"),
        ("samples.pt", _bad_pt_samples, "darcy", "inconsistent shapes"),
        ("complex.mat", _bad_complex_v5, "darcy", "'coeff' holds complex numbers"),
        ("complex73.mat", _bad_complex_v73, "navier_stokes", "'u' holds complex numbers"),
        ("complex.hdf5", _bad_complex_pdebench, "burgers", "'tensor' holds complex numbers"),
        ("complex.pt", _bad_complex_pt, "darcy", "'y' holds complex numbers"),
        ("strings.mat", _bad_strings_v5, "burgers", "'a' holds <U5 values"),
        ("problem.mat", _bad_problem, "burgers", "--problem burgers: .* holds darcy data"),
    ],
)
def test_bad_files_give_one_clear_error_and_no_output(tmp_path, name, make, problem, message):
    src = tmp_path / name
    make(src)
    out = tmp_path / "out" / "x.h5"
    with pytest.raises(OpspecError, match=message) as err:
        convert(src, out, problem=problem, split=2)
    assert str(src) in str(err.value)
    assert not out.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_streaming_reads_bounded_chunks(tmp_path):
    path = tmp_path / "ns.mat"
    write_mat73(path, {"a": RNG.random((9, 4, 4)), "u": RNG.random((9, 4, 4, 2))})
    with open_foreign(path) as reader:
        sizes = [len(a) for _, a, _ in reader.chunks(4)]
    assert sizes == [4, 4, 1]


# ------------------------------------------------------------------------------------------------------------------
# Every reader path with asymmetric shapes: N, X, Y and T all differ, so reading any two axes in the wrong order
# either changes a shape or puts a value in the wrong place. The expected arrays are built by explicit index maps
# from the published layout, not by the readers' own transposes.

N, X, Y, T = 5, 7, 4, 3


def _mat5(path, arrays):
    scipy.io.savemat(path, arrays)


def _fno_darcy(write):
    def make(path):
        coeff, sol = RNG.standard_normal((N, X, Y)), RNG.standard_normal((N, X, Y))
        write(path, {"coeff": coeff, "sol": sol})
        return coeff, sol, {"x": np.linspace(0, 1, X), "y": np.linspace(0, 1, Y)}, "nodal", ("x", "y"), ("x", "y")
    return make


def _fno_burgers(write):
    def make(path):
        a, u = RNG.standard_normal((N, X)), RNG.standard_normal((N, X))
        write(path, {"a": a, "u": u})
        return a, u, {"x": np.arange(X) / X}, "periodic", ("x",), ("x",)
    return make


def _fno_navier_stokes(write):
    def make(path):
        a, u = RNG.standard_normal((N, X, Y)), RNG.standard_normal((N, X, Y, T))  # u[n, i, j, t]: time last
        write(path, {"a": a, "u": u})
        expected_u = np.empty((N, T, X, Y))
        for t in range(T):
            expected_u[:, t] = u[:, :, :, t]
        coords = {"x": np.arange(X) / X, "y": np.arange(Y) / Y}
        return a, expected_u, coords, "periodic", ("x", "y"), ("t", "x", "y")
    return make


def _pdebench_burgers(path):
    tensor = RNG.standard_normal((N, T + 1, X)).astype(np.float32)  # (sample, t, x)
    x = (np.arange(X) + 0.5) / X
    with h5py.File(path, "w") as h:
        h["tensor"], h["x-coordinate"], h["t-coordinate"] = tensor, x, np.linspace(0, 1, T + 2)
    return tensor[:, 0], tensor[:, 1:], {"x": x}, "periodic", ("x",), ("t", "x")


def _pdebench_darcy(path):
    nu, out = RNG.random((N, X, Y)).astype(np.float32), RNG.random((N, 1, X, Y)).astype(np.float32)
    x, y = (np.arange(X) + 0.5) / X, (np.arange(Y) + 0.5) / Y
    with h5py.File(path, "w") as h:
        h["nu"], h["tensor"], h["x-coordinate"], h["y-coordinate"] = nu, out, x, y
    return nu, out[:, 0], {"x": x, "y": y}, "periodic", ("x", "y"), ("x", "y")


def _pdebench_navier_stokes(path):
    velocity = RNG.standard_normal((N, T + 1, X, Y, 2)).astype(np.float32)
    particles = RNG.random((N, T + 1, X, Y, 1)).astype(np.float32)
    force = RNG.standard_normal((N, X, Y, 2)).astype(np.float32)
    with h5py.File(path, "w") as h:
        h["velocity"], h["particles"], h["force"] = velocity, particles, force
    a = np.empty((N, 5, X, Y), dtype=np.float32)
    a[:, 0], a[:, 1], a[:, 2] = velocity[:, 0, ..., 0], velocity[:, 0, ..., 1], particles[:, 0, ..., 0]
    a[:, 3], a[:, 4] = force[..., 0], force[..., 1]
    u = np.empty((N, T, 3, X, Y), dtype=np.float32)
    for t in range(T):
        u[:, t, 0], u[:, t, 1], u[:, t, 2] = velocity[:, t + 1, ..., 0], velocity[:, t + 1, ..., 1], particles[:, t + 1, ..., 0]
    coords = {"x": (np.arange(X) + 0.5) / X, "y": (np.arange(Y) + 0.5) / Y}
    return a, u, coords, "periodic", ("a_channel", "x", "y"), ("t", "channel", "x", "y")


def _neuralop_pt(path):
    x, y = torch.rand(N, 1, X, Y), torch.rand(N, X, Y)  # x with neuraloperator's channel axis of size 1
    torch.save({"x": x, "y": y}, path)
    coords = {"x": np.arange(X) / X, "y": np.arange(Y) / Y}
    return x[:, 0].numpy(), y.numpy(), coords, "periodic", ("x", "y"), ("x", "y")


def _neuralop_pt_trajectory(path):
    x, y = torch.rand(N, X, Y), torch.rand(N, T, X, Y)  # y: a trajectory, time first
    torch.save({"x": x, "y": y}, path)
    coords = {"x": np.arange(X) / X, "y": np.arange(Y) / Y}
    return x.numpy(), y.numpy(), coords, "periodic", ("x", "y"), ("t", "x", "y")


READER_PATHS = {
    "mat5-darcy": ("d.mat", _fno_darcy(_mat5), "mat5", "darcy"),
    "mat73-darcy": ("d.mat", _fno_darcy(write_mat73), "mat73", "darcy"),
    "mat5-burgers": ("b.mat", _fno_burgers(_mat5), "mat5", "burgers"),
    "mat73-burgers": ("b.mat", _fno_burgers(write_mat73), "mat73", "burgers"),
    "mat5-navier-stokes": ("ns.mat", _fno_navier_stokes(_mat5), "mat5", "navier_stokes"),
    "mat73-navier-stokes": ("ns.mat", _fno_navier_stokes(write_mat73), "mat73", "navier_stokes"),
    "pdebench-burgers": ("b.hdf5", _pdebench_burgers, "pdebench", "burgers"),
    "pdebench-darcy": ("d.hdf5", _pdebench_darcy, "pdebench", "darcy"),
    "pdebench-navier-stokes": ("ns.h5", _pdebench_navier_stokes, "pdebench", "navier_stokes"),
    "pt": ("d.pt", _neuralop_pt, "pt", "darcy"),
    "pt-trajectory": ("ns.pt", _neuralop_pt_trajectory, "pt", "navier_stokes"),
}


@pytest.mark.parametrize("case", list(READER_PATHS))
def test_every_reader_path_keeps_every_axis_in_place(tmp_path, case):
    """N, X, Y, T all differ: a reader that swaps x and y, or time and space, or samples, fails here."""
    name, make, fmt, problem = READER_PATHS[case]
    path = tmp_path / name
    a, u, coords, grid, a_dims, u_dims = make(path)
    assert detect_format(path) == fmt
    with open_foreign(path) as reader:
        layout = reader.layout
        assert (layout.n, layout.a_dims, layout.u_dims, layout.grid) == (N, a_dims, u_dims, grid)
        assert (layout.a_shape, layout.u_shape) == (a.shape[1:], u.shape[1:])
        assert layout.coords.keys() == coords.keys()
        for d in coords:
            np.testing.assert_allclose(layout.coords[d], coords[d], rtol=0, atol=1e-15)
        got_a, got_u = reader.read(1, 4)
        np.testing.assert_array_equal(got_a, a[1:4].astype(np.float32))
        np.testing.assert_array_equal(got_u, u[1:4].astype(np.float32))
    # and through convert into the canonical file, read back per split
    out = convert(path, tmp_path / "c.h5", problem=problem, split=3, chunk_mb=1e-5)
    f, data = read_all(out)
    assert f.grid == grid and f.dims["train"]["a"][1:] == a_dims and f.dims["test"]["u"][1:] == u_dims
    np.testing.assert_array_equal(data["train"][0], a[:3].astype(np.float32))
    np.testing.assert_array_equal(data["train"][1], u[:3].astype(np.float32))
    np.testing.assert_array_equal(data["test"][0], a[3:].astype(np.float32))
    np.testing.assert_array_equal(data["test"][1], u[3:].astype(np.float32))
    with h5py.File(out, "r") as h:
        for d in coords:
            np.testing.assert_allclose(h[f"train/{d}"][()], coords[d], rtol=0, atol=1e-15)


@pytest.mark.parametrize("fmt", ["mat5", "mat73"])
def test_navier_stokes_task_split_keeps_axes(tmp_path, fmt):
    """--t-in on an asymmetric FNO NS file: a = w at the first t_in times, u = the rest, each (N, t, X, Y)."""
    path = tmp_path / "ns.mat"
    _, trajectory, _, _, _, _ = _fno_navier_stokes(_mat5 if fmt == "mat5" else write_mat73)(path)
    out = convert(path, tmp_path / "task.h5", problem="navier_stokes", split=2, t_in=1)
    f, data = read_all(out)
    assert f.dims["train"]["a"] == ("sample", "t_in", "x", "y") and f.shapes["test"]["u"] == (N - 2, T - 1, X, Y)
    np.testing.assert_array_equal(data["train"][0], trajectory[:2, :1].astype(np.float32))
    np.testing.assert_array_equal(data["test"][1], trajectory[2:, 1:].astype(np.float32))
