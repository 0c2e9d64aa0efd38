"""The run folder's rules (opspec/training/runfolder.py): every resume target kind × epochs below, at and above
those done; run names; the environment checked before a run folder is made."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import TINY_OVERRIDES
from opspec.core.errors import OpspecError
from opspec.training import runfolder
from opspec.training.checkpoint import load_checkpoint, read_metrics
from opspec.training.config import load_config
from opspec.training.trainer import Trainer, main

FAST = ["optimizer.name=adamw", "train.epochs=3"]


@pytest.fixture(scope="module")
def finished(darcy_file, tmp_path_factory) -> dict[str, Path]:
    """Two finished 3-epoch runs A and B (other seeds), and A's epoch-2 checkpoint kept aside."""
    root = tmp_path_factory.mktemp("runs")
    aside = root / "a_epoch2.pt"

    def keep(trainer: Trainer, record: dict) -> None:
        if record["epoch"] == 2:
            shutil.copyfile(trainer.run_dir / "last.pt", aside)

    runs = {}
    for name, seed in (("A", 0), ("B", 1)):
        cfg = load_config(overrides=[*TINY_OVERRIDES, f"data.path={darcy_file}", *FAST, f"seed={seed}"])
        trainer = Trainer(cfg, run_dir=root / name, callbacks=[keep] if name == "A" else [])
        trainer.fit()
        trainer.close()
        runs[name] = root / name
    return {**runs, "aside": aside}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != ".lock"}


def _layout(kind: str, finished: dict[str, Path], tmp: Path) -> tuple[Path, Path]:
    """(the --resume target, the folder that must stay unchanged when it is refused) for a target kind."""
    run = tmp / "run"
    shutil.copytree(finished["A"], run)
    if kind == "folder":
        return run, run
    if kind == "last.pt":
        return run / "last.pt", run
    if kind == "best.pt at last":  # the best epoch is the last one: best.pt holds last.pt's state
        shutil.copyfile(run / "last.pt", run / "best.pt")
        return run / "best.pt", run
    if kind == "best.pt behind last":  # best epoch 2, last.pt at 3: resuming it would rewind the run
        shutil.copyfile(finished["aside"], run / "best.pt")
        return run / "best.pt", run
    if kind == "another run's .pt beside its files":  # keep/runA.pt where keep/ holds run B
        other = tmp / "keep"
        shutil.copytree(finished["B"], other)
        shutil.copyfile(run / "last.pt", other / "runA.pt")
        return other / "runA.pt", other
    if kind == "a lone .pt":
        lone = tmp / "lone"
        lone.mkdir()
        shutil.copyfile(run / "last.pt", lone / "a.pt")
        return lone / "a.pt", lone
    if kind == "last.pt with another run's metrics":  # run A's last.pt spliced into run B's folder
        other = tmp / "spliced"
        shutil.copytree(finished["B"], other)
        shutil.copyfile(run / "last.pt", other / "last.pt")
        return other / "last.pt", other
    raise AssertionError(kind)


REFUSED = {"best.pt behind last": "would discard epochs 3..3",
           "another run's .pt beside its files": "expected a run folder, its last.pt or its best.pt",
           "a lone .pt": "expected a run folder, its last.pt or its best.pt",
           "last.pt with another run's metrics": "records another run's epoch 3"}
KINDS = ["folder", "last.pt", "best.pt at last", *REFUSED]


@pytest.mark.parametrize("epochs", [2, 3, 4], ids=["below", "at", "above"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_resume_target_kind_against_epochs_below_at_and_above_those_done(kind, epochs, finished, tmp_path):
    """3 epochs are done. A target that is the folder's own state resumes (at: nothing to train, nothing
    changes; above: epoch 4 is added); below, or a target that is not the folder's own, is refused with one
    line and every byte of the folder stays."""
    target, folder = _layout(kind, finished, tmp_path)
    before = _snapshot(folder)
    payload = load_checkpoint(target)
    cfg = load_config(overrides=[f"train.epochs={epochs}"], base=payload["config"])
    if kind in REFUSED or epochs < 3:
        expected = REFUSED.get(kind) if kind in REFUSED else "train.epochs=2, but the run has finished epoch 3; expected at least 3"
        with pytest.raises(OpspecError, match=f"^--resume .*{expected}".replace("(", r"\(").replace(")", r"\)")):
            Trainer(cfg, resume=payload)
        assert _snapshot(folder) == before
        return
    trainer = Trainer(cfg, resume=payload)
    trainer.fit()
    trainer.close()
    records = read_metrics(folder / "metrics.jsonl")
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))
    assert load_checkpoint(folder / "last.pt")["epoch"] == epochs
    assert records[:3] == read_metrics(finished["A"] / "metrics.jsonl")  # the done epochs' lines are kept, bitwise
    if epochs == 3:
        assert _snapshot(folder)["last.pt"] == before["last.pt"]


def test_the_cli_refuses_best_pt_behind_last_and_changes_nothing(finished, tmp_path, capsys):
    """The reported data loss: `--resume RUN/best.pt train.epochs=2` on a run whose best.pt is behind last.pt."""
    target, folder = _layout("best.pt behind last", finished, tmp_path)
    before = _snapshot(folder)
    assert main(["--resume", str(target), "train.epochs=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "best.pt holds epoch 2" in err and "last.pt holds epoch 3" in err
    assert _snapshot(folder) == before


def test_a_resume_that_diverges_before_an_epoch_leaves_config_yaml_as_last_pt_has_it(finished, tmp_path, capsys):
    """optimizer.lr=1e30 makes the first resumed step diverge: config.yaml still describes the run in last.pt."""
    target, folder = _layout("folder", finished, tmp_path)
    before = _snapshot(folder)
    assert main(["--resume", str(target), "train.epochs=5", "optimizer.lr=1e30"]) == 2
    assert "the training loss is nan" in capsys.readouterr().err
    assert load_config(folder / "config.yaml").optimizer.lr == load_checkpoint(folder / "last.pt")["config"]["optimizer"]["lr"]
    assert {k: v for k, v in _snapshot(folder).items() if k != "config.yaml"} == {
        k: v for k, v in before.items() if k != "config.yaml"}


def test_a_refused_resume_override_names_the_option_it_sets(finished):
    payload = load_checkpoint(finished["A"])
    with pytest.raises(OpspecError, match=r"model\.options\.domain_padding=0\.25 would change the run \(it has None\)"):
        Trainer(load_config(overrides=["model.options.domain_padding=0.25"], base=payload["config"]), resume=payload)


# -- run names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../escape", "../x", "a/b", "/abs", ".", "..", "a\\b", "x" * 201, "tab\there"])
def test_a_run_name_is_a_name_not_a_path(name, tmp_path):
    with pytest.raises(OpspecError, match=r"^override 'run_name=.*': run_name=.*expected a folder name"):
        load_config(overrides=[f"run_name={name}", f"out_dir={tmp_path / 'ck'}"])
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("problem, model, expected", [
    ("darcy", "fno", "darcy_fno"), ("burgers", "tfno", "burgers_tfno"), ("shear_flow", "uno", "shear_flow_uno"),
    ("navier_stokes", "deeponet", "navier_stokes_deeponet")])
def test_the_default_run_name_is_problem_and_model(problem, model, expected):
    assert load_config(overrides=[f"data.problem={problem}", f"model.name={model}"]).run_name == expected
    assert load_config(overrides=[f"data.problem={problem}", f"model.name={model}", "run_name=mine"]).run_name == "mine"


def test_a_new_run_without_run_name_goes_to_its_problem_and_model_folder(tiny_overrides, tmp_path):
    cfg = load_config(overrides=[*tiny_overrides, "model.name=tfno", "train.epochs=1"])
    trainer = Trainer(cfg)
    trainer.close()
    assert trainer.run_dir == tmp_path / "runs" / "darcy_tfno"
    assert load_config(trainer.run_dir / "config.yaml").run_name == "darcy_tfno"


# -- the environment, before the run folder ----------------------------------------------------------------


def _no_folder_left(tiny_overrides: list[str], tmp_path: Path, extra: list[str], match: str, capsys) -> None:
    assert main([*tiny_overrides, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert not (tmp_path / "runs").exists()


def test_compile_with_a_broken_cpp_compiler_is_refused_before_the_run_folder(tiny_overrides, tmp_path, monkeypatch, capsys):
    fake = tmp_path / "bin" / "g++"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'fatal error: Python.h: No such file or directory' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", str(fake))
    runfolder._compiler_failure.cache_clear()
    _no_folder_left(tiny_overrides, tmp_path, ["train.compile=true", "train.device=cpu"],
                    "needs a working C++ compiler", capsys)
    runfolder._compiler_failure.cache_clear()


@pytest.mark.parametrize("mode, key, match", [
    ("online", None, "no wandb API key"), ("shared", None, "no wandb API key"), ("bogus", "k", "WANDB_MODE='bogus'")])
def test_wandb_online_without_a_key_is_refused_before_the_run_folder(mode, key, match, tiny_overrides, tmp_path,
                                                                     monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", mode)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    if key:
        monkeypatch.setenv("WANDB_API_KEY", key)
    _no_folder_left(tiny_overrides, tmp_path, ["train.log=wandb"], match, capsys)


def test_a_full_disk_at_the_first_checkpoint_leaves_no_folder_and_promises_no_resume(tiny_overrides, tmp_path,
                                                                                      monkeypatch, capsys):
    import errno

    import opspec.training.trainer as trainer_module

    def full(payload, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(trainer_module, "atomic_save", full)
    assert main([*tiny_overrides, "train.epochs=1"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "--resume" not in err and "no checkpoint" in err
    assert not (tmp_path / "runs").exists()
