"""tools/device_check.py: the dry run (tiny sizes on the CPU) writes every section of the Markdown file."""

from __future__ import annotations

import re

import pytest
import torch


def _tool():
    from tools import device_check

    return device_check


@pytest.mark.skipif(torch.cuda.is_available(), reason="the dry run is the CPU stand-in; a CUDA machine runs the real check")
def test_dry_run_writes_every_section(tmp_path, capsys):
    out = tmp_path / "check.md"
    assert _tool().main(["--dry-run", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Dry run" in text and "every section ran" in text
    for title in ("## 1. CUDA tests", "## 2. bench_optim on the device", "## 3. Newton–Schulz against the bf16 matmul peak",
                  "## 4. Throughput of the default experiment", "## 5. Two-GPU NCCL"):
        assert title in text
    assert re.search(r"exit 0: \*\*\d+ skipped, \d+ deselected", text)  # the CUDA tests are selected and skip on the CPU
    assert "### 1. Real 2-D parameters" in text and "torch.optim.Muon" in text and "failed:" not in text
    targets = text.split("## Targets")[1].split("\n## ")[0]
    assert re.search(r"\| Newton–Schulz, 8 × 16×16 complex, ≥ 50% of the bf16 matmul peak .*\| \d+% \(eager", targets)
    assert len(re.findall(r"\| Muon's step ≤ 10% of a training step of the default experiment \((fp32|bf16)\)\s*\| \d+\.\d%", targets)) == 2
    throughput = text.split("## 4.")[1].split("\n## ")[0]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in throughput.splitlines()
             if re.match(r"^\| (adamw|muon) ", line)]
    assert [(r[0], r[1]) for r in cells] == [("adamw", "fp32"), ("adamw", "bf16"), ("muon", "fp32"), ("muon", "bf16")]
    for r in cells:
        assert re.fullmatch(r"\d+", r[2]) and re.fullmatch(r"\d+–\d+", r[3]) and re.fullmatch(r"\d+\.\d%", r[4])
        assert re.fullmatch(r"\d+", r[5]) and re.fullmatch(r"\d+\.\d", r[6])
        assert int(r[2]) > 0 and 0 < float(r[4][:-1]) < 100 and int(r[5]) >= 1
    assert "Skipped: 0 CUDA device(s); needs 2." in text
    assert "## 6. train.compile on the default experiment (Muon, bf16)" in text


def test_without_cuda_the_real_check_refuses_in_one_line(tmp_path, capsys, monkeypatch):
    tool = _tool()
    monkeypatch.setattr(tool.torch.cuda, "is_available", lambda: False)
    assert tool.main(["--out", str(tmp_path / "x.md")]) == 2
    assert capsys.readouterr().err.strip() == "error: no CUDA device; use --dry-run to test the script on the CPU"
    assert not (tmp_path / "x.md").exists()
