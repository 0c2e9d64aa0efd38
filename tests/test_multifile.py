"""A split over many canonical files (folder, split folders, glob), the test-only file, and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from opspec.data import CanonicalFile, CanonicalWriter, OperatorDataset
from opspec.data.__main__ import main as data_main
from opspec.data.batches import epoch_loader
from opspec.data.convert import convert
from opspec.data.multifile import open_data
from opspec.core.errors import OpspecError
from opspec.training.evaluate import main as evaluate_main
from opspec.training.trainer import main as train_main


def _write(path, parts, problem="darcy", s=17):
    """A canonical file holding the given splits: {split: (a, u)} on a nodal s×s grid."""
    x = np.linspace(0, 1, s)
    with CanonicalWriter(path, problem=problem, coords={"x": x, "y": x}, splits=tuple(parts)) as w:
        for split, (a, u) in parts.items():
            w.add_split(split, len(a))
        for split, (a, u) in parts.items():
            w.append(split, a, u)
    return path


def _shards(darcy_file, folder, k=3):
    """The fixture's samples cut into k files, each with a share of train and test."""
    f = CanonicalFile(darcy_file)
    data = {s: (f.read(s, "a"), f.read(s, "u")) for s in ("train", "test")}
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(k):
        _write(folder / f"part{i}.h5", {s: (a[i::k], u[i::k]) for s, (a, u) in data.items()})
    return {s: (np.concatenate([a[i::k] for i in range(k)]), np.concatenate([u[i::k] for i in range(k)]))
            for s, (a, u) in data.items()}


def test_folder_and_glob_read_as_one_split(darcy_file, tmp_path):
    expected = _shards(darcy_file, tmp_path / "parts")
    for source in (tmp_path / "parts", str(tmp_path / "parts" / "part*.h5")):
        data = open_data(source)
        assert data.n_samples("train") == 12 and data.n_samples("test") == 6
        mem = OperatorDataset(data, "train", 9)
        np.testing.assert_array_equal(mem[list(range(12))][0].numpy(), expected["train"][0][:, None, ::2, ::2])
        ooc = OperatorDataset(data, "test", in_memory=False)
        np.testing.assert_array_equal(ooc[[5, 0, 3]][1].numpy(), expected["test"][1][[5, 0, 3], None])
        # blocks never span files: each file's samples are one block here
        assert ooc.blocks() == [(0, 2), (2, 4), (4, 6)]
        seen = torch.cat([a for a, *_ in epoch_loader(OperatorDataset(data, "train", in_memory=False), 5, 0, 1)])
        assert seen.shape[0] == 12 and torch.equal(seen.sum(0), torch.from_numpy(expected["train"][0]).sum(0)[None])


def test_info_summarizes_a_folder(darcy_file, tmp_path, capsys):
    _shards(darcy_file, tmp_path / "parts")
    assert data_main(["info", str(tmp_path / "parts")]) == 0
    out = capsys.readouterr().out
    assert "3 canonical files" in out and "train: 12 samples in 3 files" in out


def test_split_folders_and_bad_folders_are_one_line(darcy_file, tmp_path):
    f = CanonicalFile(darcy_file)
    a, u = f.read("train", "a"), f.read("train", "u")
    root = tmp_path / "ds"
    (root / "train").mkdir(parents=True)
    _write(root / "train" / "t0.h5", {"train": (a[:7], u[:7])})
    _write(root / "train" / "t1.h5", {"train": (a[7:], u[7:])})
    with pytest.raises(OpspecError, match=r"has a train/ folder but no test/ folder"):
        open_data(root)
    (root / "test").mkdir()
    _write(root / "test" / "x.h5", {"test": (f.read("test", "a"), f.read("test", "u"))})
    data = open_data(root)
    assert data.splits == ("train", "test") and data.n_samples("train") == 12
    np.testing.assert_array_equal(data.read("train", "u", 9, slice(5, 9)), u[5:9, ::2, ::2])
    _write(tmp_path / "mixed" / "a.h5", {"train": (a, u), "test": (a[:2], u[:2])})
    _write(tmp_path / "mixed" / "b.h5", {"train": (a, u), "test": (a[:2], u[:2])}, problem="burgers")
    with pytest.raises(OpspecError, match=r"mixes problems: a.h5 is 'darcy', b.h5 is 'burgers'"):
        open_data(tmp_path / "mixed")
    (tmp_path / "mixed" / "b.h5").unlink()
    _write(tmp_path / "mixed" / "c.h5", {"train": (a[:, ::2, ::2], u[:, ::2, ::2]), "test": (a[:2, ::2, ::2], u[:2, ::2, ::2])}, s=9)
    with pytest.raises(OpspecError, match=r"mixes resolutions: a.h5 has a nodal grid 17x17, c.h5 a nodal grid 9x9") as err:
        open_data(tmp_path / "mixed")
    assert "\n" not in str(err.value)
    with pytest.raises(OpspecError, match="no file matches"):
        open_data(tmp_path / "nothing" / "*.h5")


def test_training_reads_a_folder_out_of_core(darcy_file, tmp_path, tiny_overrides, capsys):
    _shards(darcy_file, tmp_path / "parts")
    overrides = [o for o in tiny_overrides if not o.startswith("data.path=")]
    assert train_main([*overrides, f"data.path={tmp_path / 'parts'}", "data.in_memory=false", "train.num_workers=1",
                       "train.epochs=2"]) == 0
    out = capsys.readouterr().out
    assert "11 train / 6 test samples" in out and "9 (train)" in out  # 1 of 12 held out for validation


def test_a_test_only_file_evaluates_and_is_refused_for_training(darcy_file, tmp_path, tiny_overrides, capsys):
    f = CanonicalFile(darcy_file)
    # neuraloperator's test sets are one file per resolution: x (N, s, s), y (N, s, s)
    torch.save({"x": torch.from_numpy(f.read("test", "a", 9)), "y": torch.from_numpy(f.read("test", "u", 9))},
               tmp_path / "darcy_test_9.pt")
    out = convert(tmp_path / "darcy_test_9.pt", tmp_path / "test9.h5", problem="darcy", split="test")
    only = CanonicalFile(out)
    assert only.splits == ("test",) and only.n_samples("test") == 6
    with pytest.raises(OpspecError, match="test-only file has no train split"):
        only.n_samples("train")
    assert train_main([*tiny_overrides, f"data.path={out}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "test-only file has no train split" in err[0]
    assert train_main([*tiny_overrides, "train.epochs=1"]) == 0
    run = Path([o for o in tiny_overrides if o.startswith("out_dir=")][0].split("=", 1)[1]) / "darcy_fno"
    capsys.readouterr()
    assert evaluate_main([str(run), "--data", str(out), "--resolutions", "9", "/3", "--json", str(tmp_path / "e.json"),
                          "--plot", str(tmp_path / "e.png")]) == 0
    results = json.loads((tmp_path / "e.json").read_text())
    assert set(results) == {"9", "3"} and results["9"]["n_samples"] == 6  # the periodic .pt grid: 9 → 3
