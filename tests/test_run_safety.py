"""One writer per run folder, runs that diverge stop with one line, temp files do not outlive their writer,
and a config that cannot run creates nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch

from opspec.training.checkpoint import load_checkpoint
from opspec.training.config import load_config
from opspec.core.errors import OpspecError
from opspec.core.fileio import atomic_path, remove_stale_temps, temp_prefix
from opspec.training.trainer import DivergedError, Trainer, main as train_main

FAST = ["optimizer.name=adamw"]
ROOT = Path(__file__).resolve().parent.parent


def _strict(path: Path) -> list[dict]:
    """Every line of a JSON-lines file, parsed strictly (NaN / Infinity fail the test)."""
    return [json.loads(line, parse_constant=lambda c: pytest.fail(f"{path}: non-JSON constant {c}"))
            for line in path.read_text().splitlines()]


def _python(code: str) -> subprocess.Popen:
    """A child Python process (opspec importable), its stdout piped so it can say when it is ready."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")


def test_a_second_writer_on_a_run_folder_is_refused_naming_the_holders_pid(tiny_overrides, tmp_path, capsys):
    cfg = load_config(overrides=tiny_overrides + FAST + ["train.epochs=1"])
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    trainer.fit()
    trainer.close()
    run = tmp_path / "run"
    holder = _python(f"from opspec.core.fileio import FolderLock\nlock = FolderLock({str(run)!r})\nassert lock.acquire()\n"
                     "print('ready', flush=True)\nimport time\ntime.sleep(120)")
    try:
        _wait_ready(holder)
        before = {p.name: p.read_bytes() for p in run.iterdir()}
        assert train_main(["--resume", str(run), "train.epochs=2"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"pid {holder.pid}" in err[0] and "one writer per run folder" in err[0], err
        assert {p.name: p.read_bytes() for p in run.iterdir()} == before
        with pytest.raises(OpspecError, match=f"pid {holder.pid}"):
            Trainer(cfg, run_dir=run)
        # a new run that would take the locked (empty) folder's name takes the next one
        (tmp_path / "runs").mkdir()
        locked = tmp_path / "runs" / "darcy_fno"
        locked.mkdir()
        holder2 = _python(f"from opspec.core.fileio import FolderLock\nlock = FolderLock({str(locked)!r})\nassert lock.acquire()\n"
                          "print('ready', flush=True)\nimport time\ntime.sleep(120)")
        try:
            _wait_ready(holder2)
            fresh = Trainer(cfg)
            assert fresh.run_dir == tmp_path / "runs" / "darcy_fno_2"
            fresh.close()
        finally:
            holder2.kill()
            holder2.wait()
    finally:
        holder.kill()
        holder.wait()
    assert train_main(["--resume", str(run), "train.epochs=2"]) == 0  # the OS released the dead holder's lock
    assert load_checkpoint(run)["epoch"] == 2


def test_weights_that_diverge_stop_the_run_keeping_the_last_good_checkpoint(tiny_overrides, tmp_path):
    """After epoch 1 a weight turns NaN (as a too-large LR does): epoch 2's first step stops the run,
    naming epoch, step and cause; last.pt and best.pt stay at epoch 1 and metrics.jsonl is strict JSON."""
    cfg = load_config(overrides=tiny_overrides + FAST + ["train.epochs=3", "optimizer.lr=1e-3"])

    def poison(trainer: Trainer, record: dict) -> None:
        if record["epoch"] == 1:
            with torch.no_grad():
                next(trainer.net.model.parameters()).fill_(float("nan"))

    with pytest.raises(DivergedError, match=r"epoch 2, step 1: the training loss is nan \(the weights diverged: "
                                            r"optimizer.lr=0.001 is likely too large \(the LR of this step was 0.00075\)\)"
                                            r".*last good checkpoint \(epoch 1\)"):
        Trainer(cfg, run_dir=tmp_path / "run", callbacks=[poison]).fit()
    run = tmp_path / "run"
    assert [r["epoch"] for r in _strict(run / "metrics.jsonl")] == [1]
    assert load_checkpoint(run / "last.pt")["epoch"] == 1 and load_checkpoint(run / "best.pt")["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in load_checkpoint(run / "last.pt")["model"].values())


def test_an_all_zero_target_ends_the_cli_with_one_line_and_leaves_no_run_folder(darcy_file, tiny_overrides, tmp_path, capsys):
    zero = tmp_path / "zero.h5"
    shutil.copy(darcy_file, zero)
    with h5py.File(zero, "r+") as f:
        f["train"]["u"][...] = 0.0
    overrides = [o for o in tiny_overrides if not o.startswith("data.path=")] + [f"data.path={zero}", "train.epochs=1"]
    assert train_main(overrides) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epoch 1, step 1" in err[0] and "all-zero target u" in err[0], err
    assert "run folder is removed" in err[0]
    out = Path(next(o for o in overrides if o.startswith("out_dir=")).split("=", 1)[1])
    assert not out.exists()  # no epoch finished: nothing worth keeping, and out_dir was made for this run


def test_a_nan_lr_and_other_bad_values_create_no_run_folder(tiny_overrides, tmp_path, capsys):
    out = Path(next(o for o in tiny_overrides if o.startswith("out_dir=")).split("=", 1)[1])
    for bad, key in [("optimizer.lr=nan", "optimizer.lr=nan"), ("optimizer.lr=inf", "optimizer.lr=inf"),
                     ("optimizer.betas=[0.9]", "optimizer.betas"), ("train.num_workers=-1", "train.num_workers"),
                     ("data.problem=burgers", "data.problem='burgers', but")]:
        assert train_main(tiny_overrides + [bad, "train.epochs=2"]) == 2, bad
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and key in err[0], (bad, err)
        assert not out.exists(), bad


SLEEPER = """
import sys, time
from pathlib import Path
from opspec.core.errors import cli_main
from opspec.core.fileio import atomic_path

@cli_main
def main():
    with atomic_path(Path(sys.argv[1])) as tmp:
        tmp.write_text("half")
        print("ready", flush=True)
        for _ in range(1200):  # short sleeps, as a run returns to Python often: a signal the kernel hands to
            time.sleep(0.1)    # another thread (torch's) runs its handler at the next bytecode, not after 120 s
    return 0

sys.exit(main())
"""


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_remove_the_temp_file_being_written(sig, code, tmp_path):
    target = tmp_path / "out.bin"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER, str(target)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    _wait_ready(proc)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the temp exists while writing
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode == code
    assert "Traceback" not in proc.stderr.read()
    assert list(tmp_path.iterdir()) == []


def test_stale_temps_of_dead_writers_are_removed_before_writing(tmp_path):
    target = tmp_path / "out.bin"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER, str(target)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    _wait_ready(proc)
    proc.kill()  # SIGKILL: no handler runs, the temp stays
    proc.wait()
    stale = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(stale) == 1 and f".{proc.pid}@" in stale[0].name
    live = tmp_path / f"{temp_prefix(target).replace(str(os.getpid()), str(os.getppid()))}x.tmp"
    live.write_text("a live writer's")  # pid of a live process (this one's parent): kept
    folder = tmp_path / f"{temp_prefix(target).replace(str(os.getpid()), str(proc.pid))}dir.tmp"
    folder.mkdir()  # a dead writer's temp folder (an extraction): removed
    other = tmp_path / ".other.bin.1@host.x.tmp"
    other.write_text("another file's temp")
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "out.bin"])
    assert remove_stale_temps(target) == []
