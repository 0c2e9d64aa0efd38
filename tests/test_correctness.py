"""Tests that catch wrong numbers (issue 13 §8), each against an independent reference:

- `evaluate`'s mean / median / per-sample relative L2 against numpy on the HDF5 file itself, at the
  training resolution and at held-out strided resolutions (the striding done here with numpy);
- a training run that must reach a stated error on a linear operator diagonal in Fourier space,
  which an FNO represents exactly;
- the RNG restore on resume: with a model that draws from torch's global RNG (dropout), a resumed run
  is bitwise equal to an uninterrupted one, and NOT equal when the restore is patched out;
- several steps of opspec's Muon against torch.optim.Muon with momentum and Nesterov on.
"""

from __future__ import annotations

import inspect
import json
import random
import shutil

import h5py
import numpy as np
import pytest
import torch

from opspec.training.checkpoint import load_checkpoint
from opspec.training.config import load_config
from opspec.data.canonical import CanonicalFile, CanonicalWriter
from opspec.training.evaluate import evaluate_model, main as evaluate_main
from opspec.optim import Muon
from opspec.training.trainer import Trainer
from conftest import StopAfter, stop_after, write_mat73


def numpy_rel_l2(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per-sample ‖pred − true‖₂ / ‖true‖₂ over every non-sample axis, in float64."""
    pred, true = pred.astype(np.float64), true.astype(np.float64)
    axes = tuple(range(1, true.ndim))
    return np.sqrt(((pred - true) ** 2).sum(axis=axes)) / np.sqrt((true**2).sum(axis=axes))


def predict(net: torch.nn.Module, a: np.ndarray) -> np.ndarray:
    """The model on (n, *space) inputs with one channel; returns (n, *space)."""
    net.eval()
    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(a[:, None], dtype=np.float32))).numpy()[:, 0]


# ------------------------------------------------------------------------------------------- evaluate


def test_evaluate_matches_numpy_at_training_and_held_out_resolutions(tiny_overrides, darcy_file, tmp_path):
    """The Darcy file is nodal with 17 points: 9 and 5 are every 2nd and 4th point of both axes."""
    cfg = load_config(overrides=tiny_overrides + ["train.epochs=2"])
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    trainer.fit()
    out = tmp_path / "eval.json"
    assert evaluate_main([str(tmp_path / "run" / "last.pt"), "--resolutions", "17", "9", "5", "--batch-size", "4",
                          "--json", str(out), "--plot", str(tmp_path / "eval.png")]) == 0
    reported = json.loads(out.read_text())
    with h5py.File(darcy_file, "r") as f:
        a_full, u_full = f["test/a"][()], f["test/u"][()]
    assert a_full.shape == (6, 17, 17)
    per_sample = evaluate_model(trainer.net, CanonicalFile(darcy_file), [17, 9, 5], batch_size=4)
    for resolution, stride in ((17, 1), (9, 2), (5, 4)):
        a, u = a_full[:, ::stride, ::stride], u_full[:, ::stride, ::stride]
        assert a.shape[1:] == (resolution, resolution)
        errors = numpy_rel_l2(predict(trainer.net, a), u)
        assert 0.01 < errors.mean() < 2  # a real error, so a dropped sqrt or a wrong axis cannot agree by accident
        r = reported[str(resolution)]
        assert r["n_samples"] == 6
        assert r["rel_l2_mean"] == pytest.approx(errors.mean(), rel=1e-5)
        assert r["rel_l2_median"] == pytest.approx(np.median(errors), rel=1e-5)
        np.testing.assert_allclose(per_sample[resolution]["per_sample"], errors, rtol=1e-5)
    # the training loop's test error is the same number at the training resolution
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    errors9 = numpy_rel_l2(predict(trainer.net, a_full[:, ::2, ::2]), u_full[:, ::2, ::2])
    assert last["test_rel_l2"] == pytest.approx(errors9.mean(), rel=1e-5)


def test_numpy_reference_is_not_fooled_by_a_median_mean_swap():
    """The reference's own sanity: skewed errors make mean and median differ by far more than the tolerance."""
    true = np.ones((4, 3, 3))
    pred = true + np.array([0.0, 0.1, 0.1, 2.0])[:, None, None]
    errors = numpy_rel_l2(pred, true)
    np.testing.assert_allclose(errors, [0.0, 0.1, 0.1, 2.0])
    assert abs(errors.mean() - np.median(errors)) > 0.4


# ------------------------------------------------------------------------------------------- exact operator

S, N_TRAIN, N_TEST = 32, 64, 32
K = np.fft.fftfreq(S, 1 / S)
# u = F⁻¹[h · F a], h complex (a shift and a smoothing), zero outside |k| ≤ 3: inside the FNO's 8 kept modes
H = np.where(np.abs(K) <= 3, (1 + 0.7j * K) / (1 + 0.5 * K**2), 0)


def _linear_samples(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    coefficients = (rng.standard_normal((n, S)) + 1j * rng.standard_normal((n, S))) * np.exp(-0.05 * K**2)
    a = np.fft.ifft(coefficients).real * np.sqrt(S)
    u = np.fft.ifft(H * np.fft.fft(a)).real
    return a.astype(np.float32), u.astype(np.float32)


EXACT_ERROR = 3e-2


def test_fno_learns_a_fourier_diagonal_operator_to_a_stated_error(tmp_path):
    """An FNO with 8 kept modes holds u = F⁻¹[h·F a] exactly (h lives on |k| ≤ 3): training must bring the
    test relative L2 from ~0.55 (untrained) to below 3e-2 (measured 1.5e-2 after 15 epochs on this
    machine; the margin covers other CPUs' rounding). A wrong metric in the loss (no sqrt, wrong
    axis), FFT over the wrong axis in the model, or inputs and outputs read from different samples or
    grids make the map unlearnable by a Fourier layer and end far above it. The reported error is
    checked against numpy on the file."""
    rng = np.random.default_rng(0)
    path = tmp_path / "linear.h5"
    x = np.arange(S) / S
    with CanonicalWriter(path, problem="burgers", coords={"x": x}, grid="periodic") as writer:
        writer.add_split("train", N_TRAIN)
        writer.add_split("test", N_TEST)
        writer.append("train", *_linear_samples(rng, N_TRAIN))
        writer.append("test", *_linear_samples(rng, N_TEST))
    cfg = load_config(overrides=[
        "data.problem=burgers", f"data.path={path}", "data.generate=false", f"data.train_resolution={S}",
        f"data.eval_resolutions=[{S}]", "model.n_modes=[8]", "model.hidden_channels=16", "model.n_layers=1",
        "optimizer.name=adamw", "optimizer.lr=2e-2", "train.batch_size=8", "train.epochs=15", "train.progress=false",
        f"out_dir={tmp_path}",
    ])
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    history = trainer.fit()
    with h5py.File(path, "r") as f:
        a, u = f["test/a"][()], f["test/u"][()]
    errors = numpy_rel_l2(predict(trainer.net, a), u)
    assert history[-1]["test_rel_l2"] == pytest.approx(errors.mean(), rel=1e-5)
    assert history[0]["test_rel_l2"] > 0.1  # it had to learn something
    assert errors.mean() < EXACT_ERROR, f"test rel L2 {errors.mean():.4f} after {len(history)} epochs"


# ------------------------------------------------------------------------------------------- RNG restore




def _with_dropout(trainer: Trainer) -> Trainer:
    """Dropout on the model's input: every training step draws from torch's global RNG (eval: identity)."""

    def hook(module, args):
        return (torch.nn.functional.dropout(args[0], 0.2, training=module.training), *args[1:])

    trainer.net.model.register_forward_pre_hook(hook)
    return trainer


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.net.state_dict().items() if isinstance(v, torch.Tensor)}


def test_resume_restores_every_rng_and_only_then_matches(tiny_overrides, tmp_path, monkeypatch):
    cfg = load_config(overrides=tiny_overrides + ["train.epochs=3"])
    full = _with_dropout(Trainer(cfg, run_dir=tmp_path / "full"))
    full.fit()
    stopped = _with_dropout(Trainer(cfg, run_dir=tmp_path / "stopped", callbacks=[stop_after(1)]))
    with pytest.raises(StopAfter):
        stopped.fit()
    shutil.copytree(tmp_path / "stopped", tmp_path / "stopped_copy")

    payload = load_checkpoint(tmp_path / "stopped")
    random.seed(123), np.random.seed(123), torch.manual_seed(123)  # states a missing restore would leave
    resumed = Trainer(load_config(base=payload["config"]), resume=payload)
    assert torch.equal(torch.get_rng_state(), payload["rng"]["torch"])
    assert np.array_equal(np.random.get_state()[1], payload["rng"]["numpy"][1].numpy().astype(np.uint32))
    assert random.getstate()[1] == tuple(payload["rng"]["python"][1])
    _with_dropout(resumed).fit()
    a, b = _weights(full), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)

    # the same resume with torch's RNG restore patched out diverges: the test above depends on it
    monkeypatch.setattr(torch, "set_rng_state", lambda state: None)
    payload = load_checkpoint(tmp_path / "stopped_copy")
    unrestored = _with_dropout(Trainer(load_config(base=payload["config"]), resume=payload))
    unrestored.fit()
    c = _weights(unrestored)
    assert any(not torch.equal(a[k], c[k]) for k in a)


# ------------------------------------------------------------------------------------------- Muon parity


@pytest.fixture()
def float32_torch_muon(monkeypatch):
    """torch.optim.Muon's own Newton–Schulz with its bf16 cast replaced by float32, so the comparison
    is about the algorithm (momentum, Nesterov, scaling, decay), not bf16 rounding."""
    import torch.optim._muon as torch_muon

    source = inspect.getsource(torch_muon._zeropower_via_newtonschulz)
    patched = source.replace("grad.bfloat16()", "grad.float()")
    assert patched != source, "torch.optim.Muon's Newton–Schulz changed: update this fixture"
    namespace = dict(vars(torch_muon))
    exec(patched, namespace)  # noqa: S102 - torch's own function, recompiled with one dtype changed
    monkeypatch.setattr(torch_muon, "_zeropower_via_newtonschulz", namespace["_zeropower_via_newtonschulz"])


SHAPES = [(16, 8), (8, 8), (5, 12)]


def _trajectory(make, steps: int = 6) -> list[torch.Tensor]:
    """`steps` steps on Σ ‖W X − Y‖² (gradients depend on the iterates, so differences compound)."""
    gen = torch.Generator().manual_seed(7)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES]
    targets = [(torch.randn(s[1], 10, generator=gen), torch.randn(s[0], 10, generator=gen)) for s in SHAPES]
    optimizer = make(params)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = sum(((w @ x - y) ** 2).sum() for w, (x, y) in zip(params, targets))
        loss.backward()
        optimizer.step()
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("rule", ["original", "match_rms_adamw"])
def test_muon_matches_torch_muon_over_several_steps_with_nesterov(rule, float32_torch_muon):
    """The option mapping: lr, weight_decay (θ ← (1 − lr·λ)θ), momentum, nesterov are the same names;
    torch's adjust_lr_fn is opspec's adjust_lr; torch's (3.4445, −4.775, 2.0315) with 5 steps is opspec's
    "quintic"; torch's eps 1e-7 (norm clamp) is opspec's eps 1e-7 (added to the norm)."""
    common = dict(lr=0.02, weight_decay=0.1, momentum=0.9, nesterov=True)
    ours = _trajectory(lambda p: Muon(p, **common, adjust_lr=rule, ns_steps=5, coefficients="quintic", eps=1e-7,
                                      compute_dtype=torch.float32))
    theirs = _trajectory(lambda p: torch.optim.Muon(p, **common, adjust_lr_fn=rule, ns_steps=5, eps=1e-7,
                                                    ns_coefficients=(3.4445, -4.775, 2.0315)))
    start = _trajectory(lambda p: torch.optim.SGD(p, lr=0.0))
    for a, b, w0 in zip(ours, theirs, start):
        moved = (b - w0).norm()
        assert moved > 0.1  # the steps did something
        assert (a - b).norm() / moved < 1e-5
    # the comparison can tell Nesterov from plain momentum
    plain = _trajectory(lambda p: torch.optim.Muon(p, **{**common, "nesterov": False}, adjust_lr_fn=rule, ns_steps=5,
                                                   eps=1e-7, ns_coefficients=(3.4445, -4.775, 2.0315)))
    assert max(((a - b).norm() / (b - w0).norm()).item() for a, b, w0 in zip(plain, theirs, start)) > 1e-3


def test_relative_l2_adds_eps_to_the_reference_norm():
    """Killed mutant (mutmut): `diff / (ref - eps)`; eps guards an all-zero target, so it must be added."""
    from opspec.training.metrics import relative_l2

    true = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    pred = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    torch.testing.assert_close(relative_l2(pred, true, eps=1.0), torch.tensor([5 / 6, 1.0]))


# ------------------------------------------------------------------------------------------- readers (mutmut)




@pytest.mark.parametrize("version", ["v5", "v73"])
def test_navier_stokes_mat_keeps_the_files_own_snapshot_times(version, tmp_path):
    """Killed mutants (mutmut): the reader ignoring the file's `t` and writing 1..T instead. The times here
    are not 1..T, and a file without `t` gets exactly 1..T."""
    import scipy.io

    from opspec.data.convert import convert

    rng = np.random.default_rng(1)
    a, u = rng.standard_normal((5, 6, 6)), rng.standard_normal((5, 6, 6, 3))
    times = np.array([[0.5, 1.0, 1.5]])
    for name, arrays, expected in (("with_t", {"a": a, "u": u, "t": times}, [0.5, 1.0, 1.5]),
                                   ("without_t", {"a": a, "u": u}, [1.0, 2.0, 3.0])):
        src = tmp_path / f"ns_{name}.mat"
        if version == "v5":
            scipy.io.savemat(src, arrays)
        else:
            write_mat73(src, arrays)
        out = convert(src, tmp_path / f"{name}_{version}.h5", problem="navier_stokes", split=4)
        with h5py.File(out, "r") as f:
            np.testing.assert_allclose(f["train/t"][()], expected)
            np.testing.assert_allclose(f["test/u"][()], np.moveaxis(u[4:], -1, 1).astype(np.float32))


def test_neuralop_pt_is_unpickled_weights_only(tmp_path):
    """Killed mutant (mutmut): `weights_only=False` would run a foreign file's pickled code; a file holding
    anything but tensors and plain containers must be refused in one OpspecError."""
    from fractions import Fraction

    from opspec.data.convert import convert
    from opspec.core.errors import OpspecError

    x = torch.rand(4, 8, 8)
    torch.save({"x": x, "y": x.clone(), "extra": Fraction(1, 3)}, tmp_path / "darcy_train_8.pt")
    with pytest.raises(OpspecError, match="darcy_train_8.pt"):
        convert(tmp_path / "darcy_train_8.pt", tmp_path / "out.h5", problem="darcy", split=3)
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize("space", [(8,), (8, 8)])
def test_neuralop_pt_drops_a_size_one_channel_axis_of_x_and_y(space, tmp_path):
    """Surviving mutants (mutmut) showed no test fed `y` with a channel axis: (N, 1, *space) must become
    (N, *space) for both x and y, in 1-D and 2-D, with the values in place."""
    from opspec.data.convert import convert

    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(5, 1, *space, generator=gen), torch.rand(5, 1, *space, generator=gen)
    torch.save({"x": x, "y": y}, tmp_path / "data.pt")
    out = convert(tmp_path / "data.pt", tmp_path / "out.h5", problem="darcy" if len(space) == 2 else "burgers", split=4)
    with h5py.File(out, "r") as f:
        assert f["train/a"].shape == (4, *space) and f["test/u"].shape == (1, *space)
        np.testing.assert_array_equal(f["train/a"][()], x[:4, 0].numpy())
        np.testing.assert_array_equal(f["test/u"][()], y[4:, 0].numpy())


def test_evaluation_batches_are_cut_by_grid_points_and_the_errors_do_not_change(tiny_overrides, darcy_file, tmp_path):
    """A fine grid gets fewer samples per batch (memory near the training grid's); per-sample errors agree."""
    from opspec.training.evaluate import EVAL_POINTS, eval_batch

    assert [eval_batch(50, s * s) for s in (33, 65, 129)] == [50, 15, 3]
    assert eval_batch(50, EVAL_POINTS * 4) == 1 and eval_batch(7, 10) == 7
    cfg = load_config(overrides=tiny_overrides + ["train.epochs=1"])
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    trainer.fit()
    file = CanonicalFile(darcy_file)
    whole = evaluate_model(trainer.net, file, [17, 9], batch_size=6)
    cut = evaluate_model(trainer.net, file, [17, 9], batch_size=6, max_points=2 * 17 * 17)  # 2 samples at 17², 3 at 9²
    with h5py.File(darcy_file, "r") as f:
        a_full, u_full = f["test/a"][()], f["test/u"][()]
    for resolution, stride in ((17, 1), (9, 2)):
        errors = numpy_rel_l2(predict(trainer.net, a_full[:, ::stride, ::stride]), u_full[:, ::stride, ::stride])
        np.testing.assert_allclose(cut[resolution]["per_sample"], errors, rtol=1e-5)
        np.testing.assert_allclose(cut[resolution]["per_sample"], whole[resolution]["per_sample"], rtol=1e-5)
