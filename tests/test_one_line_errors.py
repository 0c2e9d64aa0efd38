"""The rest of issue 27's cases, each through its CLI: one line (exit 2) naming the value and what was
expected, no run folder, no temp file, nothing overwritten."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import numpy as np
import pytest

import opspec.data.outputs
import opspec.training.evaluate
from conftest import TINY_OVERRIDES, write_mat73
from opspec.data.__main__ import main as data_main
from opspec.data.download import download
from opspec.data.sources import SOURCES
from opspec.core.errors import OpspecError
from opspec.training.describe import main as describe_main
from opspec.training.evaluate import main as evaluate_main
from opspec.training.trainer import main as train_main


def _one_line(capsys, *expected: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


def _no_temps(folder: Path) -> None:
    assert [p.name for p in folder.rglob(".*.tmp")] == []


@pytest.mark.parametrize("treat, expected", [
    ('{"*.core": adamw', "the value is not valid YAML"),
    ("{", "the value is not valid YAML"),
    ('{"*.nothing": adamw}', "with optimizer.name=adamw"),
    ('{"*.weight": adamw}', "with optimizer.name=adamw"),
])
def test_optimizer_treat_malformed_or_ignored_by_adamw_is_one_line(treat, expected, tiny_overrides, tmp_path, capsys):
    assert train_main([*tiny_overrides, "optimizer.name=adamw", f"optimizer.treat={treat}"]) == 2
    _one_line(capsys, "optimizer.treat=", expected)
    assert not (tmp_path / "runs").exists()


def test_optimizer_treat_pattern_matching_nothing_is_an_error_for_a_spectral_optimizer(tiny_overrides, tmp_path, capsys):
    assert describe_main([*tiny_overrides, "optimizer.name=muon", 'optimizer.treat={"*.nothing": adamw}']) == 2
    _one_line(capsys, "pattern '*.nothing' matches no trainable parameter")


def test_a_data_folder_with_both_a_file_and_split_folders_is_refused(darcy_file, tmp_path, capsys):
    data = tmp_path / "mixed"
    for split in ("train", "test"):
        (data / split).mkdir(parents=True)
        shutil.copyfile(darcy_file, data / split / "part.h5")
    shutil.copyfile(darcy_file, data / "whole.h5")
    assert train_main([*TINY_OVERRIDES, f"data.path={data}", f"out_dir={tmp_path / 'ck'}"]) == 2
    _one_line(capsys, "holds both split folders", "whole.h5")
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("t_in, t_stride, expected", [
    (2, 4, "every 4-th of the 6 times leaves 1, and --t-in 2 needs at least 3; expected --t-stride at most 2"),
    (6, 1, "--t-in 6: expected 1 to 5"),
    (5, 2, "every 2-th of the 6 times leaves 3, and --t-in 5 needs at least 6; expected --t-stride at most 1"),
])
def test_t_in_with_a_t_stride_that_leaves_too_few_times_names_both(t_in, t_stride, expected, tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "ns_N4_T6.mat"
    write_mat73(path, {"a": rng.standard_normal((4, 8, 8)), "u": rng.standard_normal((4, 8, 8, 6)),
                       "t": np.arange(1.0, 7.0)[None, :]})
    out = tmp_path / "ns.h5"
    assert data_main(["convert", str(path), "--problem", "navier_stokes", "--split", "2", "--t-in", str(t_in),
                      "--t-stride", str(t_stride), "--out", str(out)]) == 2
    _one_line(capsys, expected)
    assert not out.exists()
    _no_temps(tmp_path)


def test_rechunk_onto_a_disk_without_room_stops_before_writing(darcy_file, tmp_path, monkeypatch, capsys):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(opspec.data.outputs.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    out = tmp_path / "new.h5"
    assert data_main(["rechunk", str(darcy_file), "--out", str(out)]) == 2
    _one_line(capsys, f"--out {out}: needs about", "but only 1000 B is free")
    assert not out.exists()
    _no_temps(tmp_path)


def test_evaluate_names_the_png_when_the_png_fails(tiny_overrides, tmp_path, monkeypatch, capsys):
    assert train_main([*tiny_overrides, "train.epochs=1", "optimizer.name=adamw"]) == 0
    capsys.readouterr()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(opspec.training.evaluate, "plot_samples", full)
    run = tmp_path / "runs" / "darcy_fno"
    assert evaluate_main([str(run), "--resolutions", "9", "--json", str(tmp_path / "e.json")]) == 2
    _one_line(capsys, f"{run / 'eval.png'}: cannot write the PNG (No space left on device)", "e.json is written")


@pytest.mark.parametrize("content, expected", [
    (b"not hdf5 at all", "already exists but is not a readable canonical file"),
    (None, "already exists but holds no download, expected dataset"),
])
def test_download_checks_a_file_already_under_the_canonical_name(content, expected, darcy_file, tmp_path):
    name = next(iter(SOURCES))
    target = tmp_path / f"{name}.h5"
    if content is None:
        shutil.copyfile(darcy_file, target)
    else:
        target.write_bytes(content)
    before = target.read_bytes()
    with pytest.raises(OpspecError, match=f"^{target}: {expected}"):
        download(name, tmp_path, progress=False)
    assert target.read_bytes() == before
