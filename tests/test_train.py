"""Training end to end on a tiny file: run folder contents, exact resume, atomic checkpoints, evaluation."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import opspec.training.checkpoint
from opspec.training.checkpoint import load_checkpoint
from opspec.training.config import load_config
from opspec.training.evaluate import main as evaluate_main
from opspec.training.trainer import Trainer, main as train_main
from conftest import StopAfter, stop_after




def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.net.state_dict().items() if isinstance(v, torch.Tensor)}


def test_train_cli_writes_run_folder_and_table(tiny_overrides, capsys):
    assert train_main(tiny_overrides) == 0
    out = capsys.readouterr().out
    run = Path([o for o in tiny_overrides if o.startswith("out_dir=")][0].split("=", 1)[1]) / "darcy_fno"
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "metrics.jsonl", "last.pt", "best.pt", "eval.json"}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all(r["train_loss"] > 0 and r["test_rel_l2"] > 0 and r["samples_per_second"] > 0 for r in records)
    table = json.loads((run / "eval.json").read_text())
    assert set(table) == {"9", "17"} and all(0 < v["rel_l2_mean"] < 10 for v in table.values())
    assert "9 (train)" in out and "17" in out
    payload = load_checkpoint(run)
    assert payload["epoch"] == 3 and "_metadata" not in payload["model"]
    # a second run with the same name does not overwrite the first
    assert train_main(tiny_overrides + ["train.epochs=1"]) == 0
    assert (run.parent / "darcy_fno_2" / "last.pt").exists()
    assert load_checkpoint(run)["epoch"] == 3


SOAP = pytest.param("soap", marks=pytest.mark.skipif(importlib.util.find_spec("heavyball") is None, reason="needs heavyball"))


@pytest.mark.parametrize("optimizer", ["adamw", "muon", "specmuon", "adam_p0.5", SOAP])
def test_resume_after_interruption_matches_uninterrupted_run(tiny_overrides, tmp_path, optimizer):
    cfg = load_config(overrides=tiny_overrides + ["train.epochs=4", f"optimizer.name={optimizer}"])
    full = Trainer(cfg, run_dir=tmp_path / "full")
    full.fit()

    stopped = Trainer(cfg, run_dir=tmp_path / "stopped", callbacks=[stop_after(2)])
    with pytest.raises(StopAfter):
        stopped.fit()
    payload = load_checkpoint(tmp_path / "stopped")
    assert payload["epoch"] == 2
    resumed = Trainer(load_config(base=payload["config"]), resume=payload)
    resumed.fit()

    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    full_metrics = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    resumed_metrics = (tmp_path / "stopped" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["train_loss"] for x in full_metrics] == [json.loads(x)["train_loss"] for x in resumed_metrics]


def test_resume_cli_extends_a_run(tiny_overrides):
    assert train_main(tiny_overrides + ["train.epochs=1"]) == 0
    run = Path([o for o in tiny_overrides if o.startswith("out_dir=")][0].split("=", 1)[1]) / "darcy_fno"
    assert train_main(["--resume", str(run), "train.epochs=2"]) == 0
    assert load_checkpoint(run)["epoch"] == 2
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


def test_crash_while_saving_keeps_the_previous_checkpoint(tiny_overrides, tmp_path, monkeypatch):
    cfg = load_config(overrides=tiny_overrides + ["train.epochs=2"])
    trainer = Trainer(cfg, run_dir=tmp_path / "run", callbacks=[stop_after(1)])
    with pytest.raises(StopAfter):
        trainer.fit()
    before = (tmp_path / "run" / "last.pt").read_bytes()

    def broken_save(obj, fh, *args, **kwargs):
        fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(opspec.training.checkpoint.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        Trainer(cfg, resume=load_checkpoint(tmp_path / "run")).fit()
    assert (tmp_path / "run" / "last.pt").read_bytes() == before
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_evaluate_cli_writes_json_and_png(tiny_overrides, tmp_path, capsys):
    assert train_main(tiny_overrides + ["train.epochs=1"]) == 0
    run = Path([o for o in tiny_overrides if o.startswith("out_dir=")][0].split("=", 1)[1]) / "darcy_fno"
    out_json, out_png = tmp_path / "e.json", tmp_path / "e.png"
    assert evaluate_main([str(run / "best.pt"), "--resolutions", "5", "9", "17", "--json", str(out_json), "--plot", str(out_png)]) == 0
    result = json.loads(out_json.read_text())
    assert set(result) == {"5", "9", "17"}
    assert all(set(v) >= {"rel_l2_mean", "rel_l2_median"} for v in result.values())
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "rel L2 mean" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["-m", "opspec.train", "train.epoch=2"], "unknown config key 'train.epoch'"),
        (["-m", "opspec.train", "train.epochs=two"], "train.epochs"),
        (["-m", "opspec.train", "optimizer.name=adam_p0.3"], "optimizer.name='adam_p0.3', expected one of"),
        (["-m", "opspec.train", "optimizer.name=specmuon", "optimizer.relaxation=2", "@DATA",
          "data.train_resolution=9", "model.n_modes=[4,4]", "data.eval_resolutions=[9]", "data.generate=false"],
         "optimizer.relaxation=2.0: expected a number in [0, 1]"),
        (["-m", "opspec.train", "data.path=/nonexistent/file.h5", "data.generate=false"], "no such file"),
        (["-m", "opspec.train", "data.train_resolution=10", "model.n_modes=[4,4]", "@DATA"], "resolution 10 is not a strided subsample"),
        (["-m", "opspec.evaluate", "/nonexistent/run"], "no such checkpoint"),
        (["-m", "opspec.data", "info", "@TEXT"], "not an HDF5 file"),
    ],
)
def test_cli_errors_are_one_line(args, message, darcy_file, tmp_path):
    text = tmp_path / "not_hdf5.h5"
    text.write_text("plain text")
    args = [a.replace("@DATA", f"data.path={darcy_file}").replace("@TEXT", str(text)) for a in args]
    proc = subprocess.run([sys.executable, *args, f"out_dir={tmp_path}"] if "opspec.train" in args else [sys.executable, *args],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def test_resume_with_a_different_optimizer_is_a_clear_error(tiny_overrides, capsys):
    assert train_main(tiny_overrides + ["train.epochs=1"]) == 0
    run = Path([o for o in tiny_overrides if o.startswith("out_dir=")][0].split("=", 1)[1]) / "darcy_fno"
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert train_main(["--resume", str(run), "train.epochs=2", "optimizer.name=adamw"]) == 2
    err = capsys.readouterr().err
    assert "optimizer.name='adamw' would change the run (it has 'muon')" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # refused: nothing written
