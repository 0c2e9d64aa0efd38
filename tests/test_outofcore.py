"""Out-of-core reading: chunk-aligned windows, their order, each rank's reads, old files, and rechunk."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import torch

import opspec.data.batches as batches
import opspec.data.canonical as canonical
from opspec.data import CanonicalFile, OperatorDataset
from opspec.data.batches import epoch_loader, epoch_windows
from opspec.data.rechunk import rechunk
from opspec.core.errors import OpspecError


def _write(path, n_train=50, n_test=7, s=17, rows=None, monkeypatch=None):
    """A nodal s×s file of random a, u; `rows` samples per chunk (via CHUNK_BYTES)."""
    rng = np.random.default_rng(1)
    data = {split: (rng.normal(size=(n, s, s)), rng.normal(size=(n, 2, s, s))) for split, n in (("train", n_train), ("test", n_test))}
    if rows is not None:
        monkeypatch.setattr(canonical, "CHUNK_BYTES", rows * 2 * s * s * 4)
    x = np.linspace(0, 1, s)
    with canonical.CanonicalWriter(path, problem="toy", coords={"x": x, "y": x}) as w:
        for split, (a, u) in data.items():
            w.add_split(split, len(a), extra_dims={"channel": 2}, u_dims=("sample", "channel", "x", "y"))
        for split, (a, u) in data.items():
            w.append(split, a, u)
    if monkeypatch is not None:
        monkeypatch.undo()
    return {k: (a.astype(np.float32), u.astype(np.float32)) for k, (a, u) in data.items()}


def _global_batches(dataset, batch_size, seed, epoch, window_samples):
    windows = epoch_windows(dataset.blocks(), batch_size, seed, epoch, window_samples)
    return list(torch.cat(windows).split(batch_size))


def test_chunks_are_blocks_of_whole_samples(tmp_path, monkeypatch):
    _write(tmp_path / "f.h5", rows=5, monkeypatch=monkeypatch)
    with h5py.File(tmp_path / "f.h5") as h5:
        assert h5["train/u"].chunks == (5, 2, 17, 17) and h5["train/a"].chunks == (5, 17, 17)
    f = CanonicalFile(tmp_path / "f.h5")
    assert f.blocks("train")[:2] == [(0, 5), (5, 10)] and f.blocks("train")[-1] == (45, 50)
    assert f.chunking_warning("train") is None or "rechunk" in f.chunking_warning("train")


def test_windows_permute_all_samples_by_seed_and_epoch(tmp_path, monkeypatch):
    _write(tmp_path / "f.h5", rows=5, monkeypatch=monkeypatch)
    ds = OperatorDataset(tmp_path / "f.h5", "train", in_memory=False)
    windows = epoch_windows(ds.blocks(), 4, seed=3, epoch=1, window_samples=12)
    order = torch.cat(windows)
    assert sorted(order.tolist()) == list(range(50))
    assert all(len(w) == 12 for w in windows[:-1]) and len(windows[-1]) == 50 - 12 * 4  # whole batches per window
    again = torch.cat(epoch_windows(ds.blocks(), 4, seed=3, epoch=1, window_samples=12))
    other = torch.cat(epoch_windows(ds.blocks(), 4, seed=3, epoch=2, window_samples=12))
    assert torch.equal(order, again) and not torch.equal(order, other)
    # a block's samples land in at most two consecutive windows (windows are cut from whole blocks in a row)
    where = {int(i): k for k, w in enumerate(windows) for i in w}
    for lo in range(0, 50, 5):
        spots = sorted({where[i] for i in range(lo, lo + 5)})
        assert spots[-1] - spots[0] <= 1
    # and the window's samples are shuffled among themselves, not left in file order
    assert any(w.tolist() != sorted(w.tolist()) for w in windows)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_out_of_core_batches_equal_in_memory_rows(tmp_path, monkeypatch, num_workers):
    data = _write(tmp_path / "f.h5", rows=5, monkeypatch=monkeypatch)
    ooc = OperatorDataset(tmp_path / "f.h5", "train", 9, in_memory=False)
    monkeypatch.setattr("opspec.data.batches.WINDOW_BYTES", 12 * ooc.file.sample_bytes("train"))
    expected = _global_batches(ooc, 4, 0, 2, 12)
    got = list(epoch_loader(ooc, 4, seed=0, epoch=2, num_workers=num_workers))
    assert len(got) == len(expected) == 13
    a_all, u_all = data["train"]
    for (a, u, n_global, weight), idx in zip(got, expected):
        assert n_global == len(idx) and weight == 1.0
        # independent reference: the written arrays, every other point of both axes
        np.testing.assert_array_equal(a.numpy(), a_all[idx.numpy()][:, None, ::2, ::2])
        np.testing.assert_array_equal(u.numpy(), u_all[idx.numpy()][:, :, ::2, ::2])


def test_in_memory_read_equals_hdf5_strided_selection(tmp_path, monkeypatch):
    _write(tmp_path / "f.h5", rows=5, monkeypatch=monkeypatch)
    ds = OperatorDataset(tmp_path / "f.h5", "test", 5)
    with h5py.File(tmp_path / "f.h5") as h5:
        np.testing.assert_array_equal(ds[list(range(7))][1].numpy(), h5["test/u"][:, :, ::4, ::4])
        np.testing.assert_array_equal(ds[list(range(7))][0].numpy(), h5["test/a"][:, ::4, ::4][:, None])


def test_each_rank_reads_only_its_shares(tmp_path, monkeypatch):
    _write(tmp_path / "f.h5", rows=5, monkeypatch=monkeypatch)
    single = OperatorDataset(tmp_path / "f.h5", "train", in_memory=False)
    monkeypatch.setattr("opspec.data.batches.WINDOW_BYTES", 12 * single.file.sample_bytes("train"))
    whole = [a for a, _, _, _ in epoch_loader(single, 4, seed=5, epoch=1)]
    read_counts, shares = [], []
    for rank in range(2):
        ds = OperatorDataset(tmp_path / "f.h5", "train", in_memory=False)
        count = [0]
        original = ds.read_sorted

        def counting(indices, original=original, count=count):
            count[0] += len(indices)
            return original(indices)

        ds.read_sorted = counting
        shares.append([a for a, _, _, _ in epoch_loader(ds, 4, seed=5, epoch=1, rank=rank, world_size=2)])
        read_counts.append(count[0])
    assert read_counts == [25, 25]  # 12 batches of 4 (2 + 2) and a last of 2 (1 + 1): every sample read once
    for a, a0, a1 in zip(whole, *shares):
        torch.testing.assert_close(torch.cat([a0, a1]), a, rtol=0, atol=0)


def test_old_one_sample_chunks_read_the_same_warn_and_rechunk(tmp_path, monkeypatch, capsys):
    data = _write(tmp_path / "old.h5", rows=1, monkeypatch=monkeypatch)
    with h5py.File(tmp_path / "old.h5") as h5:
        assert h5["train/a"].chunks == (1, 17, 17)
    ds = OperatorDataset(tmp_path / "old.h5", "train", 9, in_memory=False)
    batch = list(epoch_loader(ds, 8, seed=0, epoch=1))
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "python -m opspec.data rechunk" in warning[0] and "hold 1 sample(s)" in warning[0]
    list(epoch_loader(ds, 8, seed=0, epoch=2))
    assert capsys.readouterr().err == ""  # once per file and split
    assert sum(len(a) for a, *_ in batch) == 50
    np.testing.assert_array_equal(ds[[3, 1]][0].numpy(), data["train"][0][[3, 1]][:, None, ::2, ::2])
    new = rechunk(tmp_path / "old.h5", tmp_path / "new.h5")
    f = CanonicalFile(new)
    assert f.chunking_warning("train") is None and f.problem == "toy" and f.grid == "nodal"
    with h5py.File(new) as h5:
        assert h5["train/u"].chunks[0] == 50 and h5["train/u"].dims[1].keys() == ["channel"]
    for split in ("train", "test"):
        for var, k in (("a", 0), ("u", 1)):
            np.testing.assert_array_equal(f.read(split, var), data[split][k])


def test_corrupt_sample_read_in_a_worker_is_one_line(tmp_path, monkeypatch):
    _write(tmp_path / "f.h5", rows=5, monkeypatch=monkeypatch)
    with h5py.File(tmp_path / "f.h5", "r+") as h5:
        h5["train/u"][23, 1, 4, 4] = np.nan
    ds = OperatorDataset(tmp_path / "f.h5", "train", in_memory=False)
    with pytest.raises(OpspecError, match=r"train/u contains NaN or inf \(first at sample 23\)") as err:
        list(epoch_loader(ds, 4, seed=0, epoch=1, num_workers=1))
    assert "\n" not in str(err.value)


def _worker_niceness(loader) -> str:
    """The os.nice increment the loader's reading worker asks for (os.nice raises it back as an OpspecError)."""
    with pytest.raises(OpspecError, match=r"^nice -?\d+$") as err:
        list(loader)
    return str(err.value)


def test_reading_workers_take_the_niceness_given(tmp_path, monkeypatch):
    _write(tmp_path / "f.h5", rows=5, monkeypatch=monkeypatch)
    ds = OperatorDataset(tmp_path / "f.h5", "train", in_memory=False)

    def report(increment: int) -> int:
        raise OpspecError(f"nice {increment}")

    monkeypatch.setattr(os, "nice", report)  # the forked worker inherits it
    assert _worker_niceness(epoch_loader(ds, 4, seed=0, epoch=1, num_workers=1)) == f"nice {batches.WORKER_NICENESS}"
    assert _worker_niceness(epoch_loader(ds, 4, seed=0, epoch=1, num_workers=1, worker_niceness=3)) == "nice 3"
    assert len(list(epoch_loader(ds, 4, seed=0, epoch=1, worker_niceness=3))) == 13  # no worker: os.nice is not called


@pytest.mark.parametrize("num_workers", [0, 1])
def test_window_shares_are_disjoint_views_each_with_its_own_rows(tmp_path, monkeypatch, num_workers):
    """A window crosses over as one (a, u) pair and each batch is a slice of it: no two batches may share rows
    (a buffer handed out twice, or a slice start not advanced, would let one batch overwrite another)."""
    data = _write(tmp_path / "f.h5", rows=5, monkeypatch=monkeypatch)
    ds = OperatorDataset(tmp_path / "f.h5", "train", 9, in_memory=False)
    monkeypatch.setattr("opspec.data.batches.WINDOW_BYTES", 12 * ds.file.sample_bytes("train"))
    expected = _global_batches(ds, 4, 0, 1, 12)
    got = list(epoch_loader(ds, 4, seed=0, epoch=1, num_workers=num_workers))
    assert [len(a) for a, *_ in got] == [len(idx) for idx in expected]
    for (a, u, _, _), idx in zip(got, expected):
        assert a.is_contiguous() and u.is_contiguous()
        np.testing.assert_array_equal(u.numpy(), data["train"][1][idx.numpy()][:, :, ::2, ::2])
    for k, (a, u, _, _) in enumerate(got):  # mark every batch with its own number, one after another
        a.fill_(k)
        u.fill_(-k)
    for k, (a, u, _, _) in enumerate(got):
        assert torch.all(a == k) and torch.all(u == -k), f"batch {k} was overwritten by a later batch"


def test_read_sorted_places_each_run_in_order(tmp_path, monkeypatch):
    data = _write(tmp_path / "f.h5", rows=5, monkeypatch=monkeypatch)
    ds = OperatorDataset(tmp_path / "f.h5", "train", 9, in_memory=False)
    indices = np.array([0, 1, 2, 7, 8, 20, 33, 34, 35, 36, 49])  # runs of 3, 2, 1, 4 and 1 samples
    a, u = ds.read_sorted(indices)
    np.testing.assert_array_equal(a, data["train"][0][indices][:, None, ::2, ::2])
    np.testing.assert_array_equal(u, data["train"][1][indices][:, :, ::2, ::2])
    a0, u0 = ds.read_sorted(np.array([], dtype=np.int64))
    assert a0.shape == (0, 1, 9, 9) and u0.shape == (0, 2, 9, 9)
