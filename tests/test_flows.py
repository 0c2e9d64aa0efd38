"""Every documented flow, run as a user would (the CLIs' own `main` with the README's and docs/'s arguments,
small sizes): make or convert the data → train → evaluate → describe, for every layout docs/data.md names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from opspec.data.__main__ import main as data_main
from opspec.training.checkpoint import read_metrics
from opspec.training.describe import main as describe_main
from opspec.training.evaluate import main as evaluate_main
from opspec.training.trainer import main as train_main
from test_well import write_pdearena, write_well

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.hidden_channels=8", "model.n_layers=2", "train.batch_size=4", "train.eval_batch_size=8",
        "train.progress=false", "data.generate=false", "train.epochs=1", "optimizer.name=adamw"]


def _ok(rc: int, capsys) -> str:
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def _train_evaluate_describe(tmp_path: Path, data: str, overrides: list[str], run: str, resolutions: list[str],
                             capsys, config: str | None = None, resume: bool = False) -> dict:
    """train (a new run; with `resume`, then --resume to one more epoch) → evaluate → describe; returns eval's JSON."""
    out_dir = tmp_path / "checkpoints"
    args = ([f"--config={ROOT / config}"] if config else []) + [*TINY, *overrides, f"data.path={data}", f"out_dir={out_dir}"]
    text = _ok(train_main(args), capsys)
    folder = out_dir / run
    assert f"run folder: {folder}" in text
    if resume:
        _ok(train_main(["--resume", str(folder), "train.epochs=2"]), capsys)
    assert [r["epoch"] for r in read_metrics(folder / "metrics.jsonl")] == ([1, 2] if resume else [1])
    evaluated = tmp_path / "eval.json"
    text = _ok(evaluate_main([str(folder), "--resolutions", *resolutions, "--json", str(evaluated), "--samples", "1"]),
               capsys)
    results = json.loads(evaluated.read_text())
    assert sorted(results) == sorted(resolutions) and all(0 < v["rel_l2_mean"] < 10 for v in results.values())
    assert (folder / "eval.png").stat().st_size > 0
    text = _ok(describe_main(([f"--config={ROOT / config}"] if config else [])
                             + [*TINY, *overrides, f"data.path={data}"]), capsys)
    assert text.startswith("model ") and "total:" in text
    return results


def test_readme_darcy_generate_info_train_resume_evaluate_describe(tmp_path, capsys):
    data = tmp_path / "datasets" / "darcy.h5"
    _ok(data_main(["generate", "darcy", "--resolution", "17", "--n-train", "8", "--n-test", "4", "--seed", "0",
                   "--out", str(data)]), capsys)
    assert "valid" in _ok(data_main(["info", str(data)]), capsys).lower()
    _train_evaluate_describe(tmp_path, str(data), ["model.n_modes=[4,4]", "data.train_resolution=9",
                             "data.eval_resolutions=[9,17]"], "darcy_fno", ["9", "17"], capsys,
                             config="configs/darcy_fno.yaml", resume=True)


def test_readme_burgers_generate_train_evaluate_describe_in_one_dimension(tmp_path, capsys):
    data = tmp_path / "burgers.h5"
    _ok(data_main(["generate", "burgers", "--resolution", "32", "--n-train", "4", "--n-test", "2", "--time", "0.1",
                   "--out", str(data)]),
        capsys)
    results = _train_evaluate_describe(tmp_path, str(data), ["model.n_modes=[4]", "data.train_resolution=16",
                                       "data.eval_resolutions=[16,32]"], "burgers_fno", ["16", "32"], capsys,
                                       config="configs/burgers_fno.yaml")
    assert "32" in results


def test_readme_navier_stokes_generate_train_evaluate_describe_with_time_as_channels(tmp_path, capsys):
    data = tmp_path / "ns.h5"
    _ok(data_main(["generate", "navier_stokes", "--resolution", "16", "--n-train", "4", "--n-test", "2", "--t-in", "2",
                   "--t-out", "3", "--out", str(data)]), capsys)
    results = _train_evaluate_describe(tmp_path, str(data), ["model.n_modes=[4,4]", "data.train_resolution=8",
                                       "data.eval_resolutions=[8,16]", "data.t_in=2", "data.t_out=3"],
                                       "navier_stokes_fno", ["8", "16"], capsys, config="configs/navier_stokes_fno.yaml")
    assert "16" in results


def test_readme_fno_paper_mat_convert_train_evaluate(tmp_path, capsys):
    rng = np.random.default_rng(0)
    mat = tmp_path / "piececonst_r9_N12.mat"
    scipy.io.savemat(mat, {"coeff": np.where(rng.random((12, 9, 9)) > 0.5, 12.0, 3.0), "sol": rng.random((12, 9, 9))})
    data = tmp_path / "darcy_mat.h5"
    _ok(data_main(["convert", str(mat), "--problem", "darcy", "--split", "8", "--out", str(data)]), capsys)
    _train_evaluate_describe(tmp_path, str(data), ["model.n_modes=[4,4]", "data.train_resolution=9",
                             "data.eval_resolutions=[9,5]"], "darcy_fno", ["9", "5"], capsys)


def _well_folder(root: Path) -> Path:
    """The Well's layout: <dataset>/data/{train,valid,test}/*.hdf5."""
    for split, seed in (("train", 0), ("valid", 1), ("test", 2)):
        (root / "data" / split).mkdir(parents=True)
        write_well(root / "data" / split / f"shear_flow_{split}.hdf5", n_traj=6 if split == "train" else 3, seed=seed)
    return root


@pytest.mark.parametrize("layout", ["the_well", "pdearena"])
def test_data_md_converted_under_its_own_problem_name_trains_evaluates_and_describes(layout, tmp_path, capsys):
    """docs/data.md's The Well example (`--problem shear_flow`) and a PDEArena folder: data.problem is the
    name the file was converted under, the run is named after it, the grid is 8 × 16 (non-square, '8x16')."""
    if layout == "the_well":
        src, problem = _well_folder(tmp_path / "the_well" / "datasets" / "shear_flow"), "shear_flow"
    else:
        src, problem = tmp_path / "pdearena", "pdearena_ns"
        src.mkdir()
        for split, seed in (("train", 1), ("train", 2), ("test", 3)):
            write_pdearena(src / f"NavierStokes2D_{split}_{seed}_0.5_3.h5", split, n=3, seed=seed)
    data = tmp_path / f"{problem}.h5"
    _ok(data_main(["convert", str(src), "--problem", problem, "--t-in", "4", "--t-out", "1", "--out", str(data)]), capsys)
    _train_evaluate_describe(tmp_path, str(data), [f"data.problem={problem}", "model.n_modes=[4,4]",
                             "data.train_resolution=8x16", "data.eval_resolutions=[8x16,4x8]"], f"{problem}_fno",
                             ["8x16", "4x8"], capsys)


def test_a_converted_problem_name_without_its_file_is_one_line(tmp_path, capsys):
    assert train_main([*TINY, "data.problem=shear_flow", "data.generate=true", f"data.path={tmp_path / 'no.h5'}",
                       f"out_dir={tmp_path / 'ck'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not one opspec generates" in err
    assert describe_main(["data.problem=shear_flow", f"data.path={tmp_path / 'no.h5'}"]) == 2
    assert "come from its file" in capsys.readouterr().err
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("layout", ["glob", "split folders"])
def test_data_md_many_files_train_evaluate_describe(layout, darcy_file, tmp_path, capsys):
    """docs/data.md "Many files": a glob (a folder of files reads the same, tests/test_multifile.py), a folder
    with train/ and test/ folders."""
    if layout == "split folders":
        for split in ("train", "test"):
            (tmp_path / "set" / split).mkdir(parents=True)
            shutil.copyfile(darcy_file, tmp_path / "set" / split / "part.h5")
        data = str(tmp_path / "set")
    else:
        (tmp_path / "set").mkdir()
        for i in range(2):
            shutil.copyfile(darcy_file, tmp_path / "set" / f"shard_{i}.h5")
        data = str(tmp_path / "set") if layout == "folder" else str(tmp_path / "set" / "shard_*.h5")
    _train_evaluate_describe(tmp_path, data, ["model.n_modes=[4,4]", "data.train_resolution=9",
                             "data.eval_resolutions=[9,17]"], "darcy_fno", ["9", "17"], capsys)


def test_data_md_test_only_file_evaluates_and_refuses_training(darcy_file, tmp_path, capsys):
    """neuraloperator's darcy_test_32.pt, converted with --split test: evaluate --data reads it, train refuses it."""
    rng = np.random.default_rng(1)
    pt = tmp_path / "darcy_test_9.pt"
    torch.save({"x": torch.from_numpy(rng.random((4, 9, 9)).astype(np.float32)),
                "y": torch.from_numpy(rng.random((4, 9, 9)).astype(np.float32))}, pt)
    test_only = tmp_path / "darcy_test_9.h5"
    _ok(data_main(["convert", str(pt), "--problem", "darcy", "--split", "test", "--out", str(test_only)]), capsys)
    out_dir = tmp_path / "ck"
    _ok(train_main([*TINY, "model.n_modes=[4,4]", "data.train_resolution=9", "data.eval_resolutions=[9]",
                    f"data.path={darcy_file}", f"out_dir={out_dir}"]), capsys)
    text = _ok(evaluate_main([str(out_dir / "darcy_fno"), "--data", str(test_only), "--resolutions", "9",
                              "--json", str(tmp_path / "e.json"), "--samples", "1"]), capsys)
    assert "darcy_test_9.h5" in text
    assert train_main([*TINY, "model.n_modes=[4,4]", "data.train_resolution=9", "data.eval_resolutions=[9]",
                       f"data.path={test_only}", f"out_dir={tmp_path / 'ck2'}"]) == 2
    assert "test-only file" in capsys.readouterr().err
    assert not (tmp_path / "ck2").exists()
