"""python -m opspec.sweep: the spec's one-line errors, validation-first selection, a trial that resumes its
run folder, and a real sweep on local Ray killed midway: it resumes, trains no finished trial again, and
its table is the one the old compare_optimizers makes from the same runs (tests/compare_oracle.py)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from opspec.core.errors import OpspecError
from opspec.sweep.executors import InlineExecutor
from opspec.sweep.records import TrialSpec
from opspec.sweep.runner import records, run_sweep
from opspec.sweep.spec import build_spec
from opspec.sweep.trial import TrialContext, run_trial, trial_starts


@pytest.mark.parametrize("values, message", [
    ({"optimizers": "adamw,nope"}, r"optimizers=\['adamw', 'nope'\]: unknown \['nope'\]"),
    ({"budgets": [0.5, 0.25]}, r"budgets=\[0.5, 0.25\]: expected fractions in \(0, 1\] of epochs, including 1"),
    ({"lrs": {"muon": [0.01, -1]}, "optimizers": ["muon"]}, r"lrs.muon=\[0.01, -1.0\]: expected learning rates > 0"),
    ({"seeds": "a,b"}, r"seeds=\['a', 'b'\]: expected a list of ints"),
    ({"learning_rate": 1}, r"sweep spec key 'learning_rate' is unknown"),
    ({"base_lr": ["muon=0.01"], "optimizers": ["adamw"]}, r"base_lr.muon: 'muon' is not among optimizers"),
    ({"config": "/nonexistent.yaml"}, r"config=/nonexistent.yaml: no such file"),
    ({"variants": {"adamw_b95": ["optimizer.betas=[0.9,0.95]"]}, "optimizers": ["adamw_b95"]},
     r"variants.adamw_b95=.*: expected optimizer.name=<one of"),
    ({"variants": {"adamw_b95": ["optimizer.name=adamw", "optimizer.lr=0.1"]}, "optimizers": ["adamw_b95"]},
     r"variants.adamw_b95: 'optimizer.lr=0.1' is not a key=value override the sweep leaves"),
    ({"variants": {"muon": ["optimizer.name=adamw"]}, "optimizers": ["muon"]}, r"variants.muon: expected a new name"),
    ({"variants": {"adamw_b95": ["optimizer.name=adamw"]}, "optimizers": ["adamw"]},
     r"variants.adamw_b95: 'adamw_b95' is not among optimizers"),
])
def test_spec_refuses_bad_input_naming_the_key(values, message):
    with pytest.raises(OpspecError, match=message):
        build_spec(values)


def test_the_cli_refuses_a_bad_override_before_any_trial(tmp_path, capsys):
    from opspec.sweep.__main__ import main

    assert main(["--inline", "--out", str(tmp_path / "s"), "train.epochz=3"]) == 2
    assert "train.epochz" in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_a_variant_trains_its_own_overrides(darcy_file, tmp_path):
    """A variant (AdamW at β₂ = 0.95, from the command line's NAME=override;override) is an optimizer of its
    own: its trials' configs carry its overrides, its LR grid centres on its base's, and its errors differ
    from plain AdamW's at the same LR and seed."""
    from opspec.sweep.__main__ import parse_args, spec_from_args
    from conftest import TINY_OVERRIDES
    from opspec.training.config import load_config

    spec = spec_from_args(parse_args(["--optimizers", "adamw,adamw_b95", "--variant",
                                      "adamw_b95=optimizer.name=adamw;optimizer.betas=[0.9,0.95]", "--epochs", "2",
                                      "--log", "none", *TINY_OVERRIDES, f"data.path={darcy_file}"]))
    assert spec.variants == {"adamw_b95": ["optimizer.name=adamw", "optimizer.betas=[0.9,0.95]"]}
    assert spec.lr_grid("adamw_b95") == spec.lr_grid("adamw")
    ctx = TrialContext(sweep_dir=str(tmp_path), config=None, overrides=list(spec.overrides), variants=spec.variants)
    plain, tuned = (run_trial(ctx, TrialSpec(name, 0.003, 0, 2)) for name in ("adamw", "adamw_b95"))
    cfg = load_config(str(tmp_path / "runs" / "adamw_b95_lr0.003_s0_e2" / "config.yaml"))
    assert cfg.optimizer.name == "adamw" and list(cfg.optimizer.betas) == [0.9, 0.95] and cfg.optimizer.lr == 0.003
    assert tuned["optimizer"] == "adamw_b95" and tuned["curve"] != plain["curve"]


def test_validation_selects_and_test_is_reported(tmp_path):
    """Validation's best LR (0.01) wins over test's (0.03); the tables say which split chose."""

    def train(ctx, trial):
        val = abs(math.log(trial.lr / 0.01)) + 0.1
        test = abs(math.log(trial.lr / 0.03)) + 0.1
        return {**trial.as_dict(), "train_resolution": 9, "curve": [test], "val_curve": [val], "train_loss": [0.5],
                "final": {"9": test}, "seconds_per_epoch": 0.1, "wall_seconds": 0.1}

    spec = build_spec({"optimizers": ["adamw", "muon"], "lrs": {"adamw": [0.003, 0.01, 0.03], "muon": [0.01, 0.03, 0.1]},
                       "epochs": 1, "extend_edges": 2, "log": "none"})
    ctx = TrialContext(sweep_dir=str(tmp_path), config=None)
    text = run_sweep(spec, tmp_path, InlineExecutor(ctx, train), "test")
    rows = {line.split(" | ")[0].strip("| "): line for line in text.split("LR sweep")[0].splitlines() if line.startswith("| ")}
    assert rows["adamw"].startswith("| adamw | 0.01 |") and rows["adamw"].endswith("| validation |")
    # Muon's grid starts at 0.01, its edge: one extension down (0.003) puts the best inside.
    assert rows["muon"].startswith("| muon | 0.01 |") and "lr 0.003" in (tmp_path / "sweep.md").read_text()
    assert "validation split" in (tmp_path / "sweep.md").read_text()


def test_a_trial_resumes_its_run_folder_and_logs_to_mlflow(darcy_file, tmp_path, monkeypatch):
    """An attempt killed after epoch 1 of 2 left last.pt: the trial continues it with --resume, and its
    MLflow run (in the sweep's experiment, the config as parameters) is continued, not duplicated."""
    from mlflow import MlflowClient

    from conftest import StopAfter, stop_after

    from opspec.training.config import load_config
    from opspec.training.trainer import Trainer
    from conftest import TINY_OVERRIDES

    overrides = [*TINY_OVERRIDES, f"data.path={darcy_file}"]
    trial = TrialSpec("muon", 0.01, 0, 2)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ctx = TrialContext(sweep_dir=str(tmp_path), config=None, overrides=overrides, experiment="tiny_sweep", log="mlflow")
    cfg = load_config(None, [*overrides, "optimizer.name=muon", "optimizer.lr=0.01", "seed=0", "train.epochs=2",
                             f"out_dir={tmp_path / 'runs'}", f"run_name={trial.key}", "train.log=mlflow",
                             "train.mlflow_experiment=tiny_sweep"])
    trainer = Trainer(cfg, callbacks=[stop_after(1)])
    with pytest.raises(StopAfter):
        trainer.fit()
    trainer.close()
    record = run_trial(ctx, trial)
    assert [s["resume"] for s in trial_starts(tmp_path)] == [True]
    assert len(record["curve"]) == 2 and record["run_dir"] == str(tmp_path / "runs" / trial.key)
    assert run_trial(ctx, trial) == record and len(trial_starts(tmp_path)) == 1  # finished: never trained again
    client = MlflowClient((tmp_path / "runs" / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("tiny_sweep").experiment_id])
    assert run.info.run_name == trial.key and run.info.status == "FINISHED"
    assert run.data.params["optimizer.lr"] == "0.01" and run.data.params["optimizer.name"] == "muon"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "epoch/test_rel_l2")] == [3, 6]


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), so the test ends exactly the processes its sweep started."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_tree(proc: subprocess.Popen) -> None:
    pids = [proc.pid, *_descendants(proc.pid)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(Path(f"/proc/{p}").exists() and "Z" not in _state(p) for p in pids):
        time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _table(path: Path, marker: str = "LR sweep") -> dict[str, list[str]]:
    text = path.read_text().split(marker)[0]
    return {cells[0]: cells for cells in ([c.strip() for c in line.strip().strip("|").split("|")]
                                          for line in text.splitlines() if line.startswith("| ") and "---" not in line)}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to end the killed sweep's processes")
def test_sweep_on_local_ray_killed_midway_resumes_and_matches_compare(darcy_file, tmp_path):
    import compare_oracle
    from conftest import TINY_OVERRIDES

    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "opspec.sweep", "--num-cpus", "2", "--out", str(out), "--optimizers", "adamw,muon",
           "--lrs", "adamw=0.001,0.003,0.009", "--lrs", "muon=0.003,0.01,0.03", "--extend-edges", "0", "--epochs", "1",
           "--log", "none", *TINY_OVERRIDES, f"data.path={darcy_file}",
           "data.val_fraction=0"]  # the old tool selected on test: without a validation split both must agree
    with (tmp_path / "first.log").open("w") as log:
        first = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            while len(list((out / "results").glob("*.json"))) < 2 and first.poll() is None:
                time.sleep(0.1)
        finally:
            _kill_tree(first)
    finished = {p.stem for p in (out / "results").glob("*.json")}
    started = {s["key"] for s in trial_starts(out)}
    assert 2 <= len(finished) < 6, (tmp_path / "first.log").read_text()[-3000:]

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    starts = [s["key"] for s in trial_starts(out)]
    assert len(records(out)) == 6 and set(starts) == {p.stem for p in (out / "results").glob("*.json")}
    assert all(starts.count(key) == 1 for key in finished)  # no finished trial trained again
    assert len(starts) == 6 + len(started - finished)  # only the ones killed mid-run started twice

    oracle = tmp_path / "oracle"
    oracle.mkdir()
    compare_oracle.summarize(records(out), ["adamw", "muon"], [0], oracle, "oracle")
    old, new = _table(oracle / "summary.md"), _table(out / "summary.md")
    assert old.keys() == new.keys() == {"optimizer", "adamw", "muon"}
    assert all(new[k][:len(old[k])] == old[k] for k in old)  # the old columns, cell for cell; then the new ones
    assert new["optimizer"][len(old["optimizer"]):] == ["final train loss", "selected on"]
    old_grid = (oracle / "sweep.md").read_text().split("\n\n", 1)[1]
    assert old_grid == (out / "sweep.md").read_text().split("\n\n", 1)[1]
