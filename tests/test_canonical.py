"""The canonical file: round trip, NetCDF compatibility, strided reads, atomic writes, clear errors."""

from __future__ import annotations

import os
import re

import h5py
import numpy as np
import pytest
import scipy.io
import torch
import xarray as xr

from opspec.data import CanonicalFile, CanonicalWriter, OperatorDataset, fit_normalizer, write_canonical
from opspec.data.__main__ import main as data_main
from opspec.core.errors import OpspecError


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


# ------------------------------------------------------------------------------------------------------------------
# Bad files and bad places to write: one OpspecError line naming the file, exit 2 from the CLI, nothing written.

ROOT = {"format": "opspec-canonical", "format_version": 1, "problem": "toy", "grid": "nodal"}


def _plain(path, splits, attrs=ROOT):
    """A canonical-layout file written with plain h5py (dimension scales, none of NetCDF's bookkeeping)."""
    with h5py.File(path, "w") as f:
        f.attrs.update(attrs)
        for split, (a, u) in splits.items():
            g = f.create_group(split)
            g.attrs["split"] = split
            g["sample"] = np.arange(len(a))
            g["x"], g["y"] = np.linspace(0, 1, a.shape[1]), np.linspace(0, 1, a.shape[2])
            for d in ("sample", "x", "y"):
                g[d].make_scale(d)
            for var, data in (("a", a), ("u", u)):
                g[var] = data
                for i, d in enumerate(("sample", "x", "y")):
                    g[var].dims[i].attach_scale(g[d])
    return path


def _arrays(n_train=4, n_test=3, sx=5, sy=3):
    rng = np.random.default_rng(1)
    return {s: (rng.random((n, sx, sy)), rng.random((n, sx, sy))) for s, n in (("train", n_train), ("test", n_test))}


def _cli_error(capsys, argv) -> str:
    """Run the data CLI, expect exit 2 and exactly one `error:` line on stderr; return that line."""
    assert data_main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in lines[0], lines
    return lines[0]


@pytest.mark.parametrize(
    "name, splits, attrs, message",
    [
        ("version.h5", _arrays(), {**ROOT, "format_version": "abc"}, r"format_version='abc' is not an integer"),
        ("version_float.h5", _arrays(), {**ROOT, "format_version": 1.5}, r"format_version=1.5 is not an integer"),
        ("version_2.h5", _arrays(), {**ROOT, "format_version": 2}, r"format_version 2 is not supported"),
        ("strings.h5", {s: (a.astype("S8"), u) for s, (a, u) in _arrays().items()}, ROOT, r"train/a holds \|S8 values"),
        ("complex.h5", {s: (a, u + 0.5j * u) for s, (a, u) in _arrays().items()}, ROOT, r"train/u holds complex numbers"),
        ("zero_test.h5", {**_arrays(), "test": (np.zeros((0, 5, 3)), np.zeros((0, 5, 3)))}, ROOT,
         r"split 'test' has 0 samples"),
        ("zero_train.h5", {**_arrays(), "train": (np.zeros((0, 5, 3)), np.zeros((0, 5, 3)))}, ROOT,
         r"split 'train' has 0 samples"),
    ],
)
def test_bad_canonical_files_are_refused_in_one_line(tmp_path, capsys, name, splits, attrs, message):
    path = _plain(tmp_path / name, splits, attrs)
    with pytest.raises(OpspecError, match=message) as err:
        CanonicalFile(path)
    assert str(path) in str(err.value)
    line = _cli_error(capsys, ["info", str(path)])
    assert str(path) in line and re.search(message, line)


def test_info_describes_every_file_train_reads(tmp_path, capsys):
    """A plain h5py file in the canonical layout (non-square grid) opens for training, so `info` describes it."""
    path = _plain(tmp_path / "plain.h5", _arrays())
    f = CanonicalFile(path)
    data = OperatorDataset(f, "train")
    assert len(data) == 4 and data[0][0].shape == (1, 5, 3)
    assert data_main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "(sample: 4, x: 5, y: 3)" in text and "(sample: 3, x: 5, y: 3)" in text and "problem: toy" in text
    assert "coordinate x: 5 values, 0 .. 1" in text


def test_writer_refuses_an_empty_split(tmp_path):
    with pytest.raises(ValueError, match="split 'test' needs at least 1 sample, got 0"):
        with CanonicalWriter(tmp_path / "e.h5", problem="toy", coords={"x": np.linspace(0, 1, 5)}) as w:
            w.add_split("train", 2)
            w.add_split("test", 0)
    assert list(tmp_path.iterdir()) == []


GENERATE = ["generate", "darcy", "--resolution", "9", "--n-train", "3", "--n-test", "2"]


def _h5py_close_fails(self):
    """h5py's message for a flush that hits a full disk: several lines, errno buried in the text."""
    raise OSError("Can't close file (file write failed: time = Thu Dec  3 10:19:31 2026\n, filename = 'x.tmp', "
                  "file descriptor = 3, errno = 28, error message = 'No space left on device', buf = 0x1)")


@pytest.mark.parametrize("where", ["append", "close"])
def test_a_disk_that_fills_up_while_writing_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, where):
    import h5netcdf

    import opspec.data.canonical as canonical

    if where == "append":
        def full(self, split, a, u):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(canonical.CanonicalWriter, "append", full)
    else:
        monkeypatch.setattr(h5netcdf.File, "close", _h5py_close_fails)
    out = tmp_path / "out" / "g.h5"
    line = _cli_error(capsys, [*GENERATE, "--out", str(out)])
    assert str(out) in line and "cannot write (No space left on device)" in line
    monkeypatch.undo()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.fixture()
def read_only_folder(tmp_path, monkeypatch):
    """A folder nobody may write in: chmod 555 for a normal user; root ignores modes, so there the
    access check is told the folder sits on a read-only file system."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    import opspec.data.outputs as outputs

    real_access, real_statvfs = os.access, os.statvfs
    is_ro = lambda p: os.path.abspath(p) == str(folder)  # noqa: E731
    monkeypatch.setattr(outputs.os, "access", lambda p, mode: False if is_ro(p) else real_access(p, mode))
    monkeypatch.setattr(outputs.os, "statvfs", lambda p: type("V", (), {"f_flag": os.ST_RDONLY})() if is_ro(p) else real_statvfs(p))
    yield folder


def test_read_only_or_misplaced_outputs_are_refused_before_any_work(tmp_path, capsys, read_only_folder):
    src = tmp_path / "d.mat"
    scipy.io.savemat(src, {"coeff": np.ones((4, 5, 5)), "sol": np.ones((4, 5, 5))})
    (tmp_path / "a_file").write_text("not a folder")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    cases = [
        ([*GENERATE, "--out", str(read_only_folder / "g.h5")], "cannot write in"),
        (["convert", str(src), "--problem", "darcy", "--out", str(read_only_folder / "c.h5")], "cannot write in"),
        (["download", "pdebench-darcy2d-beta1.0", "--dest", str(read_only_folder / "dl")], "cannot write in"),
        ([*GENERATE, "--out", str(tmp_path / "a_file" / "g.h5")], "a_file is a file, not a folder"),
        (["convert", str(src), "--problem", "darcy", "--out", str(tmp_path / "a_file" / "c.h5")], "is a file, not a folder"),
        (["download", "pdebench-darcy2d-beta1.0", "--dest", str(tmp_path / "a_file" / "dl")], "is a file, not a folder"),
        ([*GENERATE, "--out", str(tmp_path)], "is a folder; expected the name of the file"),
    ]
    for argv, message in cases:
        line = _cli_error(capsys, argv)
        assert message in line, (argv, line)
    if os.geteuid() == 0:
        assert "read-only file system" in _cli_error(capsys, [*GENERATE, "--out", str(read_only_folder / "g.h5")])
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_too_little_space_is_refused_before_generating(tmp_path, capsys, monkeypatch):
    import shutil

    import opspec.data.outputs as outputs

    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    line = _cli_error(capsys, [*GENERATE, "--out", str(tmp_path / "g.h5")])
    # 5 samples of a and u on 9 x 9 float32 points: 3240 bytes
    assert "needs about 3.2 KiB (and 8.0 MiB of room while writing), but only 1000 B is free" in line
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_files_of_the_output_are_removed_before_writing(tmp_path):
    """A writer killed with SIGKILL leaves its temp file; the next generate of that output removes it."""
    import subprocess
    import sys

    out = tmp_path / "g.h5"
    killed = subprocess.run(
        [sys.executable, "-c", "import os, signal, sys\nfrom opspec.core.fileio import atomic_path\n"
         "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_bytes(b'x' * 1000)\n    os.kill(os.getpid(), signal.SIGKILL)",
         str(out)], capture_output=True)
    assert killed.returncode == -9
    stale = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(stale) == 1 and not out.exists()
    assert data_main([*GENERATE, "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.h5"]


def test_a_disk_filled_by_someone_else_stops_the_writer_before_hdf5_fails(tmp_path, capsys, monkeypatch):
    """Room for the whole file at the start; then another process fills the disk: the writer stops at the
    next batch (HDF5 itself cannot close cleanly after a failed write), with one line and no temp file."""
    import shutil

    calls = []

    def disk_usage(path):
        calls.append(path)
        free = 10**9 if len(calls) == 1 else 2**20  # the start-up check, then a nearly full disk
        return shutil._ntuple_diskusage(10**10, 10**10 - free, free)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    line = _cli_error(capsys, [*GENERATE, "--batch-size", "2", "--out", str(tmp_path / "g.h5")])
    assert "g.h5: cannot write (no space left on device: 1.0 MiB of room left" in line and len(calls) >= 2
    assert list(tmp_path.iterdir()) == []


def test_sigterm_during_generate_leaves_no_temp_file(tmp_path):
    """`timeout`, Slurm and docker stop a job with SIGTERM: the temp file being written goes with it."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "opspec.data", "generate", "darcy", "--resolution", "33",
                             "--n-train", "5000", "--n-test", "1", "--batch-size", "1", "--out", str(tmp_path / "g.h5")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".g.h5.*.tmp")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-500:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
