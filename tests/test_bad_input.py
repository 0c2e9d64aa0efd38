"""Bad input, table-driven (issue 13 §9): every case must end in exactly one `error: …` line on stderr,
a non-zero exit, no traceback, and no file created or changed.

Most cases call the CLIs' `main(argv)` in this process (they are wrapped by `opspec.core.errors.cli_main`),
with stdout/stderr captured and Python warnings shown on stderr as a terminal would show them; a few
run in a subprocess where the process itself matters (a full disk, a second writer on one run folder).
Each case runs in its own copy of a small "world" folder (data files, a trained run, broken files), and
the folder's tree (names, sizes, mtimes) is compared before and after.
"""

from __future__ import annotations

import io
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import warnings
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from opspec.data.__main__ import main as data_main
from opspec.data.canonical import CanonicalWriter
from opspec.training.evaluate import main as evaluate_main
from opspec.training.trainer import main as train_main

MAINS: dict[str, Callable] = {"train": train_main, "evaluate": evaluate_main, "data": data_main}
MODULES = {"train": "opspec.train", "evaluate": "opspec.evaluate", "data": "opspec.data"}

TINY = [
    "model.n_modes=[4,4]", "model.hidden_channels=8", "model.n_layers=2", "train.batch_size=4",
    "train.eval_batch_size=8", "train.progress=false", "data.train_resolution=9", "data.eval_resolutions=[9,17]",
    "data.generate=false", "data.path=darcy.h5", "out_dir=runs", "train.epochs=1",
]


# ---------------------------------------------------------------------------------------------- the world


def write_plain(path: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], attrs: dict, dims=("sample", "x", "y")) -> Path:
    """A canonical-layout file written with plain h5py (dimension scales, no NetCDF bookkeeping)."""
    with h5py.File(path, "w") as f:
        for k, v in attrs.items():
            f.attrs[k] = v
        for split, (a, u) in splits.items():
            g = f.create_group(split)
            g.attrs["split"] = split
            n = len(a)
            scales = {}
            g["sample"] = np.arange(n, dtype=np.int64)
            scales["sample"] = g["sample"]
            for d in dims[1:]:
                g[d] = np.linspace(0, 1, a.shape[dims.index(d)])
                scales[d] = g[d]
            for s in scales.values():
                s.make_scale(s.name.rsplit("/", 1)[-1])
            for var, data in (("a", a), ("u", u)):
                ds = g.create_dataset(var, data=data)
                for i, d in enumerate(dims):
                    ds.dims[i].attach_scale(scales[d])
    return path


def _darcy_arrays(src: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with h5py.File(src, "r") as f:
        return {s: (f[s]["a"][()], f[s]["u"][()]) for s in ("train", "test")}


@contextmanager
def chdir(path: Path) -> Iterator[None]:
    """contextlib.chdir for Python 3.10."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


ROOT = {"format": "opspec-canonical", "format_version": 1, "problem": "darcy", "grid": "nodal"}


@pytest.fixture(scope="module")
def world(darcy_file, tmp_path_factory) -> Path:
    """Data files, a trained run and broken inputs, all addressed relative to the folder."""
    w = tmp_path_factory.mktemp("world")
    shutil.copy(darcy_file, w / "darcy.h5")
    x16 = np.arange(16) / 16
    with CanonicalWriter(w / "burgers.h5", problem="burgers", coords={"x": x16}, grid="periodic") as writer:
        for split, n in (("train", 4), ("test", 2)):
            writer.add_split(split, n)
            writer.append(split, np.sin(2 * np.pi * x16) * np.ones((n, 1)), np.cos(2 * np.pi * x16) * np.ones((n, 1)))
    arrays = _darcy_arrays(w / "darcy.h5")
    write_plain(w / "plain.h5", arrays, ROOT)
    write_plain(w / "version_abc.h5", arrays, {**ROOT, "format_version": "abc"})
    write_plain(w / "zero_test.h5", {"train": arrays["train"], "test": (arrays["test"][0][:0], arrays["test"][1][:0])}, ROOT)
    write_plain(w / "zero_train.h5", {"train": (arrays["train"][0][:0], arrays["train"][1][:0]), "test": arrays["test"]}, ROOT)
    write_plain(w / "complex.h5", {s: (a + 1j * a, u + 0.5j * u) for s, (a, u) in arrays.items()}, ROOT)
    write_plain(w / "zero_u.h5", {s: (a, np.zeros_like(u)) for s, (a, u) in arrays.items()}, ROOT)
    write_plain(w / "strings.h5", {s: (np.full(a.shape, b"abc"), np.full(u.shape, b"abc")) for s, (a, u) in arrays.items()},
                ROOT)
    write_plain(w / "ints_problem.h5", arrays, {**ROOT, "problem": "burgers"})
    (w / "text.h5").write_text("plain text, not HDF5\n")
    (w / "empty.h5").write_bytes(b"")
    (w / "a_file").write_text("a file where a folder is expected\n")
    (w / "bad.yaml").write_text("train: {epochs: [1, 2\n")
    (w / "list.yaml").write_text("- 1\n- 2\n")
    (w / "typo.yaml").write_text("train:\n  epoch: 3\n")
    (w / "folder").mkdir()
    # foreign files for convert
    rng = np.random.default_rng(0)
    coeff = np.where(rng.random((10, 9, 9)) > 0.5, 12.0, 3.0)
    sol = rng.random((10, 9, 9))
    scipy.io.savemat(w / "darcy_r9.mat", {"coeff": coeff, "sol": sol})
    scipy.io.savemat(w / "nan_r9.mat", {"coeff": coeff, "sol": np.where(sol > 0.9, np.nan, sol)})
    scipy.io.savemat(w / "complex_r9.mat", {"coeff": coeff + 1j, "sol": sol})
    scipy.io.savemat(w / "mismatch_r9.mat", {"coeff": coeff, "sol": sol[:7]})
    scipy.io.savemat(w / "nokeys.mat", {"foo": sol})
    full = (w / "plain.h5").read_bytes()
    (w / "truncated.h5").write_bytes(full[: len(full) // 2])
    (w / "text.mat").write_text("not a MAT file\n")
    (w / "raw" / "raw").mkdir(parents=True)
    (w / "raw" / "raw" / "1D_Burgers_Sols_Nu0.1.hdf5").write_bytes(full)  # right name, wrong bytes
    # a trained run (relative data path, so copies of the world are self-contained)
    with chdir(w):
        assert train_main([*TINY, "out_dir=.", "run_name=run"]) == 0
    last = torch.load(w / "run" / "last.pt", weights_only=True)
    (w / "ckpt").mkdir()
    torch.save({k: v for k, v in last.items() if k != "meta"}, w / "ckpt" / "nometa.pt")
    misfit = dict(last, config={**last["config"], "model": {**last["config"]["model"], "hidden_channels": 16}})
    torch.save(misfit, w / "ckpt" / "misfit.pt")
    torch.save(dict(last, version=99), w / "ckpt" / "v99.pt")
    torch.save([1, 2, 3], w / "ckpt" / "list.pt")
    torch.save({"model": last["model"]}, w / "ckpt" / "noconfig.pt")
    (w / "ckpt" / "garbage.pt").write_bytes(os.urandom(2048))
    (w / "ckpt" / "empty").mkdir()
    return w


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under `folder` with (size, mtime_ns) for files and 'dir' for folders."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), folder)] = ("dir",)
        for name in files:
            p = os.path.join(root, name)
            st_ = os.lstat(p)
            out[os.path.relpath(p, folder)] = (st_.st_size, st_.st_mtime_ns)
    return out


def diff(before: dict, after: dict) -> list[str]:
    changed = [f"+{k}" for k in after.keys() - before.keys()] + [f"-{k}" for k in before.keys() - after.keys()]
    changed += [f"~{k}" for k in before.keys() & after.keys() if before[k] != after[k]]
    return sorted(changed)


@dataclass
class Outcome:
    code: int | str
    stderr: str
    stdout: str
    changed: list[str]

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def run_in_process(cli: str, argv: list[str], cwd: Path) -> Outcome:
    """Call a CLI's main(argv) in `cwd`; an escaping exception is reported as a traceback."""
    out, err = io.StringIO(), io.StringIO()
    before = snapshot(cwd)

    def show(message, category, filename, lineno, file=None, line=None):
        err.write(warnings.formatwarning(message, category, filename, lineno, line))

    with chdir(cwd), redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        try:
            code = MAINS[cli](list(argv))
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # noqa: BLE001 - anything else would be a traceback for the user
            code = "traceback"
            err.write(f"Traceback (most recent call last): {type(exc).__name__}: {exc}\n")
    return Outcome(code, err.getvalue(), out.getvalue(), diff(before, snapshot(cwd)))


def check_refused(outcome: Outcome, expect: str | None) -> list[str]:
    """The issue's contract for bad input; returns what is wrong (empty: all good)."""
    problems = []
    if outcome.code == 0:
        problems.append("exit 0")
    if "Traceback" in outcome.stderr:
        problems.append("traceback: " + outcome.stderr.strip().splitlines()[-1][:300])
    elif len(outcome.lines) != 1:
        problems.append(f"{len(outcome.lines)} lines on stderr: {outcome.lines[:3]}")
    elif not outcome.lines[0].startswith("error: "):
        problems.append(f"stderr line is not an 'error: ' line: {outcome.lines[0][:200]}")
    elif expect and not re.search(expect, outcome.lines[0]):
        problems.append(f"message does not name /{expect}/: {outcome.lines[0][:200]}")
    if outcome.changed:
        problems.append(f"files changed: {outcome.changed[:6]}")
    return problems


# ---------------------------------------------------------------------------------------------- the table


@dataclass
class Case:
    id: str
    cli: str
    argv: list[str]
    expect: str | None  # a regex the error line must match (the key, file or value it is about)
    owner: str  # who fixes it: H2 train/evaluate/config/checkpoint, H3 data commands and readers
    shown: list[str] | None = None  # the argv as reported (train cases: without the shared tiny overrides)

    @property
    def command(self) -> str:
        return f"python -m {MODULES[self.cli]} " + " ".join(self.argv if self.shown is None else self.shown)


def T(id: str, overrides: list[str], expect: str | None, owner: str = "H2", base: list[str] | None = None) -> Case:
    shown = overrides if base is not None else ["<tiny>", *overrides]
    return Case(id, "train", [*(TINY if base is None else base), *overrides], expect, owner, shown)


def E(id: str, argv: list[str], expect: str | None, owner: str = "H2") -> Case:
    return Case(id, "evaluate", argv, expect, owner)


def D(id: str, argv: list[str], expect: str | None, owner: str = "H3") -> Case:
    return Case(id, "data", argv, expect, owner)


GEN = ["--n-train", "2", "--n-test", "1", "--out", "new.h5"]
CASES: list[Case] = [
    # --- optimizer ranges (issue §7)
    T("momentum=2", ["optimizer.momentum=2"], r"optimizer\.momentum"),
    T("momentum=1", ["optimizer.momentum=1"], r"optimizer\.momentum"),
    T("momentum=-0.1", ["optimizer.momentum=-0.1"], r"optimizer\.momentum"),
    T("momentum=1.5 specmuon", ["optimizer.name=specmuon", "optimizer.momentum=1.5"], r"optimizer\.momentum"),
    T("eps=-1", ["optimizer.eps=-1"], r"optimizer\.eps"),
    T("eps=0", ["optimizer.eps=0"], r"optimizer\.eps"),
    T("eps=-1 adamw", ["optimizer.name=adamw", "optimizer.eps=-1"], r"optimizer\.eps"),
    T("betas=[0.9]", ["optimizer.betas=[0.9]"], r"optimizer\.betas"),
    T("betas=[0.9]adamw", ["optimizer.name=adamw", "optimizer.betas=[0.9]"], r"optimizer\.betas"),
    T("betas=[0.9,1.5]", ["optimizer.betas=[0.9,1.5]"], r"optimizer\.betas"),
    T("betas=[-0.1,0.9]", ["optimizer.betas=[-0.1,0.9]"], r"optimizer\.betas"),
    T("betas=3 values", ["optimizer.betas=[0.9,0.99,0.5]"], r"optimizer\.betas"),
    T("ns_steps=0", ["optimizer.ns_steps=0"], r"optimizer\.ns_steps"),
    T("ns_steps=-2", ["optimizer.ns_steps=-2"], r"optimizer\.ns_steps"),
    T("lr=nan", ["optimizer.lr=nan"], r"optimizer\.lr"),
    T("lr=inf", ["optimizer.lr=inf"], r"optimizer\.lr"),
    T("lr=-1", ["optimizer.lr=-1"], r"optimizer\.lr"),
    T("lr=0", ["optimizer.lr=0"], r"optimizer\.lr"),
    T("lr=nan adamw", ["optimizer.name=adamw", "optimizer.lr=nan"], r"optimizer\.lr"),
    T("weight_decay=-1", ["optimizer.weight_decay=-1"], r"optimizer\.weight_decay"),
    T("weight_decay=nan", ["optimizer.weight_decay=nan"], r"optimizer\.weight_decay"),
    T("adamw_lr=-1", ["optimizer.adamw_lr=-1"], r"optimizer\.adamw_lr"),
    T("adamw_lr=inf", ["optimizer.adamw_lr=inf"], r"optimizer\.adamw_lr"),
    T("relaxation=2", ["optimizer.name=specmuon", "optimizer.relaxation=2"], r"relaxation"),
    T("guided_modes=0", ["optimizer.name=specmuon", "optimizer.guided_modes=0"], r"guided_modes"),
    T("loss_ema=1.5", ["optimizer.name=specmuon", "optimizer.loss_ema=1.5"], r"loss_ema"),
    T("name=bogus", ["optimizer.name=bogus"], r"optimizer\.name"),
    T("coefficients=bogus", ["optimizer.coefficients=cubic"], r"optimizer\.coefficients"),
    # --- schedule and loop
    T("step_size=0", ["train.scheduler=step", "train.step_size=0"], r"train\.step_size"),
    T("step_size=-1", ["train.scheduler=step", "train.step_size=-1"], r"train\.step_size"),
    T("gamma=-1", ["train.scheduler=step", "train.gamma=-1"], r"train\.gamma"),
    T("gamma=nan", ["train.scheduler=step", "train.gamma=nan"], r"train\.gamma"),
    T("num_workers=-1", ["train.num_workers=-1"], r"train\.num_workers"),
    T("epochs=0", ["train.epochs=0"], r"train\.epochs"),
    T("epochs=two", ["train.epochs=two"], r"train\.epochs"),
    T("batch_size=0", ["train.batch_size=0"], r"train\.batch_size"),
    T("eval_batch_size=-5", ["train.eval_batch_size=-5"], r"train\.eval_batch_size"),
    T("dist_timeout_s=0", ["train.dist_timeout_s=0"], r"train\.dist_timeout_s"),
    T("device=tpu", ["train.device=tpu"], r"train\.device"),
    T("device=cuda", ["train.device=cuda"], r"train\.device"),
    T("seed=-1", ["seed=-1"], r"seed"),
    # --- model
    T("n_modes=[0,0]", ["model.n_modes=[0,0]"], r"model\.n_modes"),
    T("n_modes=[-1,4]", ["model.n_modes=[-1,4]"], r"model\.n_modes"),
    T("n_modes=[4] on 2-D", ["model.n_modes=[4]"], r"model\.n_modes"),
    T("n_modes=[100,100] > res", ["model.n_modes=[100,100]"], r"model\.n_modes"),
    T("hidden_channels=0", ["model.hidden_channels=0"], r"model\.hidden_channels"),
    T("n_layers=0", ["model.n_layers=0"], r"model\.n_layers"),
    T("name=unet", ["model.name=unet"], r"model\.name"),
    T("deeponet sensors=1", ["model.name=deeponet", "model.sensors=1"], r"model\.sensors"),
    # --- config plumbing
    T("unknown key", ["train.epoch=2"], r"train\.epoch"),
    T("no '='", ["train.epochs"], r"train\.epochs"),
    T("blames the bad override", ["optimizer.momentum=2", "train.epochs=1"], r"optimizer\.momentum"),
    T("--config missing", ["--config", "missing.yaml"], r"missing\.yaml", base=[]),
    T("--config bad yaml", ["--config", "bad.yaml"], r"bad\.yaml", base=[]),
    T("--config a list", ["--config", "list.yaml"], r"list\.yaml", base=[]),
    T("--config typo key", ["--config", "typo.yaml", *TINY], r"train\.epoch", base=[]),
    T("out_dir is a file", ["out_dir=a_file"], r"a_file"),
    T("out_dir under a file", ["out_dir=a_file/runs"], r"a_file"),
    # --- data given to train
    T("data.path missing", ["data.path=nope.h5"], r"nope\.h5"),
    T("data.path text", ["data.path=text.h5"], r"text\.h5"),
    T("data.path empty", ["data.path=empty.h5"], r"empty\.h5"),
    T("data.path folder", ["data.path=folder"], r"folder"),
    T("train_resolution=10", ["data.train_resolution=10"], r"10"),
    T("eval_resolutions=[10]", ["data.eval_resolutions=[10]"], r"10"),
    T("eval_resolutions=[]", ["data.eval_resolutions=[]"], r"data\.eval_resolutions"),
    T("problem=burgers on darcy", ["data.problem=burgers"], r"problem"),
    T("problem=ns on darcy", ["data.problem=navier_stokes"], r"problem"),
    T("file says burgers", ["data.path=ints_problem.h5"], r"problem"),
    T("1-D file, 2-D modes", ["data.path=burgers.h5", "data.problem=burgers", "data.train_resolution=16",
                              "data.eval_resolutions=[16]"], r"model\.n_modes"),
    T("zero test samples", ["data.path=zero_test.h5"], r"zero_test\.h5|test", owner="H3"),
    T("zero train samples", ["data.path=zero_train.h5"], r"zero_train\.h5|train", owner="H3"),
    T("format_version=abc", ["data.path=version_abc.h5"], r"format_version", owner="H3"),
    T("complex data", ["data.path=complex.h5"], r"complex", owner="H3"),
    T("string data", ["data.path=strings.h5"], r"strings\.h5", owner="H3"),
    T("truncated hdf5", ["data.path=truncated.h5"], r"truncated\.h5", owner="H3"),
    # --- resume
    T("resume missing", ["--resume", "nope"], r"nope", base=[]),
    T("resume empty folder", ["--resume", "ckpt/empty"], r"empty", base=[]),
    T("resume garbage", ["--resume", "ckpt/garbage.pt"], r"garbage\.pt", base=[]),
    T("resume list", ["--resume", "ckpt/list.pt"], r"list\.pt", base=[]),
    T("resume v99", ["--resume", "ckpt/v99.pt"], r"v99\.pt", base=[]),
    T("resume model change", ["--resume", "run", "model.hidden_channels=16"], r"model", base=[]),
    T("resume optimizer change", ["--resume", "run", "optimizer.name=adamw"], r"optimizer", base=[]),
    T("resume bad value", ["--resume", "run", "optimizer.momentum=2"], r"optimizer\.momentum", base=[]),
    T("resume other data", ["--resume", "run", "data.path=burgers.h5"], r"data", base=[]),
    # --- evaluate
    E("eval missing", ["nope"], r"nope"),
    E("eval garbage", ["ckpt/garbage.pt"], r"garbage\.pt"),
    E("eval list", ["ckpt/list.pt"], r"list\.pt"),
    E("eval no config", ["ckpt/noconfig.pt"], r"noconfig\.pt"),
    E("eval v99", ["ckpt/v99.pt"], r"v99\.pt"),
    E("eval no meta", ["ckpt/nometa.pt", "--json", "e.json", "--plot", "e.png"], r"nometa\.pt|meta"),
    E("eval misfit weights", ["ckpt/misfit.pt", "--json", "e.json", "--plot", "e.png"], r"misfit\.pt"),
    E("eval other problem", ["run", "--data", "burgers.h5"], r"burgers\.h5|problem"),
    E("eval batch-size 0", ["run", "--batch-size", "0"], r"--batch-size|batch"),
    E("eval batch-size -1", ["run", "--batch-size", "-1"], r"--batch-size|batch"),
    E("eval samples 0", ["run", "--samples", "0"], r"--samples|samples"),
    E("eval samples -2", ["run", "--samples", "-2"], r"--samples|samples"),
    E("eval resolution 10", ["run", "--resolutions", "10"], r"10"),
    E("eval resolution 0", ["run", "--resolutions", "0"], r"0"),
    E("eval data missing", ["run", "--data", "nope.h5"], r"nope\.h5"),
    E("eval data text", ["run", "--data", "text.h5"], r"text\.h5"),
    E("eval data complex", ["run", "--data", "complex.h5"], r"complex", owner="H3"),
    E("eval --json under a file", ["run", "--json", "a_file/e.json"], r"a_file"),
    E("eval --json is a folder", ["run", "--json", "folder"], r"folder"),
    E("eval --plot under a file", ["run", "--json", "e.json", "--plot", "a_file/e.png"], r"a_file"),
    # --- data generate
    D("gen resolution 2", ["generate", "darcy", "--resolution", "2", *GEN], r"--resolution"),
    D("gen n-train 0", ["generate", "darcy", "--resolution", "5", "--n-train", "0", "--n-test", "1", "--out", "new.h5"], r"--n-train"),
    D("gen batch-size 0", ["generate", "darcy", "--resolution", "5", "--batch-size", "0", *GEN], r"--batch-size"),
    D("gen exists", ["generate", "darcy", "--resolution", "5", "--n-train", "2", "--n-test", "1", "--out", "darcy.h5"], r"darcy\.h5"),
    D("gen out under a file", ["generate", "darcy", "--resolution", "5", "--n-train", "2", "--n-test", "1",
                               "--out", "a_file/new.h5"], r"a_file"),
    D("gen out is a folder", ["generate", "darcy", "--resolution", "5", "--n-train", "2", "--n-test", "1",
                              "--out", "folder", "--force"], r"folder"),
    D("gen foreign option", ["generate", "darcy", "--resolution", "5", "--viscosity", "0.1", *GEN], r"--viscosity"),
    D("gen viscosity -1", ["generate", "burgers", "--resolution", "8", "--viscosity", "-1", *GEN], r"viscosity"),
    D("gen viscosity nan", ["generate", "burgers", "--resolution", "8", "--viscosity", "nan", *GEN], r"viscosity"),
    D("gen time 0", ["generate", "burgers", "--resolution", "8", "--time", "0", *GEN], r"time"),
    D("gen time-step -1", ["generate", "burgers", "--resolution", "8", "--time-step", "-1", *GEN], r"time.step"),
    D("gen t-in 0", ["generate", "navier_stokes", "--resolution", "8", "--t-in", "0", *GEN], r"t.in"),
    D("gen solve-res not multiple", ["generate", "navier_stokes", "--resolution", "8", "--solve-resolution", "12", *GEN],
      r"solve.resolution"),
    # --- data info
    D("info missing", ["info", "nope.h5"], r"nope\.h5"),
    D("info text", ["info", "text.h5"], r"text\.h5"),
    D("info empty", ["info", "empty.h5"], r"empty\.h5"),
    D("info folder", ["info", "folder"], r"folder"),
    D("info format_version abc", ["info", "version_abc.h5"], r"format_version"),
    D("info truncated", ["info", "truncated.h5"], r"truncated\.h5"),
    # --- data convert
    D("convert missing", ["convert", "nope.mat", "--problem", "darcy", "--out", "c.h5"], r"nope\.mat"),
    D("convert text .mat", ["convert", "text.mat", "--problem", "darcy", "--out", "c.h5"], r"text\.mat"),
    D("convert empty", ["convert", "empty.h5", "--problem", "darcy", "--out", "c.h5"], r"empty\.h5"),
    D("convert truncated", ["convert", "truncated.h5", "--problem", "darcy", "--out", "c.h5"], r"truncated\.h5"),
    D("convert nan", ["convert", "nan_r9.mat", "--problem", "darcy", "--out", "c.h5"], r"nan_r9\.mat|NaN"),
    D("convert complex", ["convert", "complex_r9.mat", "--problem", "darcy", "--out", "c.h5"], r"complex"),
    D("convert sample mismatch", ["convert", "mismatch_r9.mat", "--problem", "darcy", "--out", "c.h5"], r"mismatch_r9\.mat"),
    D("convert unknown keys", ["convert", "nokeys.mat", "--problem", "darcy", "--out", "c.h5"], r"nokeys\.mat"),
    D("convert exists", ["convert", "darcy_r9.mat", "--problem", "darcy", "--out", "darcy.h5"], r"darcy\.h5"),
    D("convert out under a file", ["convert", "darcy_r9.mat", "--problem", "darcy", "--out", "a_file/c.h5"], r"a_file"),
    D("convert split 1.5", ["convert", "darcy_r9.mat", "--problem", "darcy", "--split", "1.5", "--out", "c.h5"], r"split"),
    D("convert split 0", ["convert", "darcy_r9.mat", "--problem", "darcy", "--split", "0", "--out", "c.h5"], r"split"),
    D("convert split 50", ["convert", "darcy_r9.mat", "--problem", "darcy", "--split", "50", "--out", "c.h5"], r"split"),
    D("convert problem mismatch", ["convert", "darcy_r9.mat", "--problem", "burgers", "--out", "c.h5"], r"problem|burgers"),
    D("convert problem unknown", ["convert", "darcy_r9.mat", "--problem", "heat", "--out", "c.h5"], r"problem|heat"),
    D("convert chunk-mb 0", ["convert", "darcy_r9.mat", "--problem", "darcy", "--chunk-mb", "0", "--out", "c.h5"], r"chunk"),
    D("convert t-in 0", ["convert", "darcy_r9.mat", "--problem", "darcy", "--t-in", "0", "--out", "c.h5"], r"t.in"),
    D("convert t-stride 0", ["convert", "darcy_r9.mat", "--problem", "darcy", "--t-stride", "0", "--out", "c.h5"], r"t.stride"),
    D("convert pair missing", ["convert", "darcy_r9.mat", "--problem", "darcy", "--split", "train", "--pair", "nope.mat",
                               "--out", "c.h5"], r"nope\.mat"),
    # --- data download
    D("download unknown", ["download", "no-such-dataset", "--dest", "dl"], r"no-such-dataset"),
    D("download dest under a file", ["download", "pdebench-burgers1d-nu0.1", "--dest", "a_file/dl"], r"a_file"),
    D("download raw fails checksum", ["download", "pdebench-burgers1d-nu0.1", "--dest", "raw"], r"md5|checksum"),
]


def _ids(cases):
    return [c.id for c in cases]


@pytest.fixture()
def case_dir(world, tmp_path) -> Path:
    """A private copy of the world for one case (mtimes kept, so the snapshot sees only this case)."""
    dest = tmp_path / "w"
    shutil.copytree(world, dest, symlinks=True)
    return dest


def test_the_table_is_big_enough():
    assert len(CASES) >= 60 and len(set(_ids(CASES))) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_bad_input_is_one_line_and_touches_nothing(case: Case, case_dir: Path):
    outcome = run_in_process(case.cli, case.argv, case_dir)
    problems = check_refused(outcome, case.expect)
    assert not problems, f"[{case.owner}] {case.command}: " + "; ".join(problems)


# ---------------------------------------------------------------------------------------------- hypothesis

# Out-of-range values for every numeric option the issue names (§7), drawn by hypothesis.
BAD_VALUES = {
    "optimizer.momentum": st.one_of(st.floats(min_value=1.0, max_value=1e6), st.floats(max_value=-1e-6, min_value=-1e6)),
    "optimizer.eps": st.floats(max_value=0.0, min_value=-1e3),
    "optimizer.lr": st.one_of(st.floats(max_value=0.0, min_value=-1e3), st.sampled_from([float("nan"), float("inf")])),
    "optimizer.ns_steps": st.integers(max_value=0, min_value=-100),
    "train.step_size": st.integers(max_value=0, min_value=-100),
    "train.num_workers": st.integers(max_value=-1, min_value=-100),
    "optimizer.weight_decay": st.one_of(st.floats(max_value=-1e-6, min_value=-1e3), st.just(float("nan"))),
}


def _fmt(value) -> str:
    return repr(value) if not isinstance(value, float) or np.isfinite(value) else str(value)


@settings(max_examples=20, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_hypothesis_out_of_range_options_are_refused(world, tmp_path_factory, data):
    key = data.draw(st.sampled_from(sorted(BAD_VALUES)), label="key")
    value = data.draw(BAD_VALUES[key], label="value")
    extra = ["train.scheduler=step"] if key == "train.step_size" else []
    cwd = tmp_path_factory.mktemp("hyp")
    for name in ("darcy.h5",):
        shutil.copy(world / name, cwd / name)
    outcome = run_in_process("train", [*TINY, *extra, f"{key}={_fmt(value)}"], cwd)
    problems = check_refused(outcome, re.escape(key))
    assert not problems, f"[H2] train {key}={_fmt(value)}: " + "; ".join(problems)


# ---------------------------------------------------------------------------------------------- must end well

def test_torn_metrics_line_does_not_block_resume(world, case_dir):
    """A kill while appending leaves a torn last line in metrics.jsonl; resume must still work."""
    with (case_dir / "run" / "metrics.jsonl").open("a") as fh:
        fh.write('{"epoch": 2, "train_lo')
    outcome = run_in_process("train", ["--resume", "run", "train.epochs=2"], case_dir)
    assert outcome.code == 0 and "Traceback" not in outcome.stderr, outcome.stderr[-500:]
    records = [json.loads(line) for line in (case_dir / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]


def test_data_info_reads_a_plain_hdf5_file_that_train_accepts(world, case_dir):
    train = run_in_process("train", [*TINY, "data.path=plain.h5"], case_dir)
    assert train.code == 0, train.stderr[-500:]
    info = run_in_process("data", ["info", "plain.h5"], case_dir)
    assert "Traceback" not in info.stderr, "[H3] data info plain.h5: " + info.stderr.strip().splitlines()[-1][:300]
    assert info.code == 0 or len(info.lines) == 1, info.stderr


def _strict_json(text: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_diverging_run_stops_with_one_line_and_strict_json(world, case_dir):
    """An all-zero target makes the relative L2 0/0: the run must stop (exit ≠ 0), not write NaN as JSON."""
    outcome = run_in_process("train", [*TINY, "data.path=zero_u.h5", "train.epochs=2"], case_dir)
    assert outcome.code != 0 and "Traceback" not in outcome.stderr and len(outcome.lines) == 1, \
        f"[H2] zero target: exit {outcome.code}, stderr {outcome.stderr[-300:]!r}"
    for path in (case_dir / "runs").rglob("*.json*"):
        for line in path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]:
            if line.strip():
                _strict_json(line)


def test_resume_with_a_new_lr_uses_it_and_records_it(world, case_dir):
    outcome = run_in_process("train", ["--resume", "run", "train.epochs=3", "optimizer.lr=1e-5"], case_dir)
    assert outcome.code == 0, outcome.stderr[-500:]
    records = [json.loads(line) for line in (case_dir / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all(0 < r["lr"] <= 1e-5 * (1 + 1e-9) for r in records[1:]), [r["lr"] for r in records]
    assert "lr: 1.0e-05" in (case_dir / "run" / "config.yaml").read_text()


def test_resume_with_more_epochs_never_raises_the_lr(world, case_dir, tmp_path):
    """A finished 1-epoch cosine run resumed to 5 epochs: from the resume on the LR follows the 5-epoch
    cosine and never climbs (issue §2). The 1-epoch run's per-step cosine went to 0, so epoch 2 starts
    above epoch 1's last LR: the extension lifts it onto the longer cosine (README "Resume")."""
    outcome = run_in_process("train", ["--resume", "run", "train.epochs=5"], case_dir)
    assert outcome.code == 0, outcome.stderr[-500:]
    lrs = [json.loads(line)["lr"] for line in (case_dir / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(lrs) == 5 and all(b <= a * (1 + 1e-12) for a, b in zip(lrs[1:], lrs[2:])), lrs
    assert "epochs: 5" in (case_dir / "run" / "config.yaml").read_text()


def test_download_failure_names_only_a_part_file_that_exists(world, case_dir, monkeypatch):
    import urllib.error

    import opspec.data.download as dl

    def refused(*args, **kwargs):
        raise urllib.error.URLError("connection refused (test)")

    monkeypatch.setattr(dl, "_request", refused)
    monkeypatch.setattr(dl.time, "sleep", lambda s: None)
    outcome = run_in_process("data", ["download", "pdebench-burgers1d-nu0.01", "--dest", "dl"], case_dir)
    assert outcome.code != 0 and "Traceback" not in outcome.stderr, outcome.stderr
    assert len(outcome.lines) == 1, f"[H3] download with no network: {len(outcome.lines)} lines on stderr: {outcome.lines}"
    line = outcome.lines[0]
    for part in re.findall(r"(\S+\.part)\b", line):
        assert Path(case_dir, part).exists() or Path(part).exists(), f"[H3] error names a missing part file: {line}"


# ---------------------------------------------------------------------------------------------- subprocesses


def _limit_file_size(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG: a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def _subprocess(cli: str, argv: list[str], cwd: Path, preexec=None, timeout: float = 180) -> Outcome:
    before = snapshot(cwd)
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    proc = subprocess.run([sys.executable, "-m", MODULES[cli], *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=preexec, env=env)
    return Outcome(proc.returncode, proc.stderr, proc.stdout, diff(before, snapshot(cwd)))


FULL_DISK = [
    ("train", [*TINY]),
    ("data", ["generate", "darcy", "--resolution", "9", "--n-train", "40", "--n-test", "8", "--out", "g.h5"]),
    ("data", ["convert", "darcy_r9.mat", "--problem", "darcy", "--out", "c.h5"]),
    ("evaluate", ["run", "--json", "e.json", "--plot", "e.png"]),
]


@pytest.mark.parametrize("cli, argv", FULL_DISK, ids=[" ".join(a[:1]) + f" ({c})" for c, a in FULL_DISK])
def test_a_full_disk_is_one_line_and_leaves_no_temp_files(cli, argv, case_dir):
    """RLIMIT_FSIZE makes every write past 3 kB fail as a full disk would (EFBIG)."""
    outcome = _subprocess(cli, argv, case_dir, preexec=_limit_file_size(3000))
    owner = "H3" if cli == "data" else "H2"
    assert outcome.code != 0, f"[{owner}] full disk: {cli} {argv[0]} exit 0"
    assert "Traceback" not in outcome.stderr and len(outcome.lines) == 1, \
        f"[{owner}] full disk: {cli} {argv[0]}: {outcome.stderr.strip().splitlines()[-1:]} ({len(outcome.lines)} lines)"
    leftovers = [c for c in outcome.changed if c.endswith(".tmp") or ".tmp" in c or c.endswith(".part")]
    assert not leftovers, f"[{owner}] full disk: temp files left: {leftovers}"
    if cli == "data":  # train may have started its run and evaluate written its JSON; data commands leave nothing
        assert not outcome.changed, f"[{owner}] full disk: {cli} {argv[0]} changed {outcome.changed}"


def test_a_second_writer_on_one_run_folder_is_refused(world, case_dir):
    """Two `--resume` on one folder: the second must be refused with one line naming the holder's pid."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen([sys.executable, "-m", "opspec.train", "--resume", "run", "train.epochs=400"],
                             cwd=case_dir, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        for line in first.stdout:  # "run folder: …" is printed once the trainer holds the folder
            if line.startswith("run folder:"):
                break
        assert first.poll() is None, "the first trainer ended before the second started"
        second = _subprocess("train", ["--resume", "run", "train.epochs=400"], case_dir, timeout=120)
    finally:
        first.send_signal(signal.SIGINT)
        try:
            first.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            first.kill()
            first.communicate()
    assert second.code != 0 and len(second.lines) == 1 and "Traceback" not in second.stderr, \
        f"[H2] second --resume on one folder: exit {second.code}, stderr {second.stderr[-300:]!r}"
    assert str(first.pid) in second.lines[0], f"[H2] the refusal does not name the holder's pid: {second.lines[0]}"
