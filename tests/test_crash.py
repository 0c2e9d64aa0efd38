"""Crash safety (issue 13 §10, §6): SIGKILL at random moments and inside checkpoint writes, resume,
and compare with an uninterrupted run bitwise; SIGTERM during a write leaves no temp file.

The short version of tools/crash_test.py (`python -m tools.crash_test --kills 20` is the long one).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def crash_test():
    from tools import crash_test as module

    return module


def test_kills_then_resume_end_bitwise_equal_with_best_last_and_metrics_agreeing(crash_test, tmp_path):
    lines: list[str] = []
    report = crash_test.run_crash_test(tmp_path, kills=3, epochs=3, seed=0, say=lines.append)
    assert len(report.kills) >= 1, lines
    assert not report.problems, "\n".join(lines)


def test_sigterm_inside_a_checkpoint_write_leaves_no_temp_file(crash_test, darcy_file, tmp_path):
    """SIGTERM (what timeout, Slurm and docker send) while a checkpoint temp file exists: the process
    ends non-zero and removes its own temp file; the checkpoints left load."""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "opspec.train", *crash_test.OVERRIDES, f"data.path={darcy_file}",
                             f"out_dir={tmp_path}", "run_name=run", "train.epochs=50"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        while proc.poll() is None:
            if run.exists() and any(n.endswith(".tmp") for n in os.listdir(run)):
                proc.send_signal(signal.SIGTERM)
                break
    finally:
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode != 0, "the run ended before a checkpoint write was seen"
    assert crash_test.temp_files(run) == [], f"[H2] SIGTERM left temp files: {crash_test.temp_files(run)}"
    assert crash_test.check_after_kill(run) == []
    assert b"Traceback" not in err, err.decode()[-500:]
