"""train.precision (opspec/precision.py): the precision check, loss scaling with complex gradients,
the FNO's spectral blocks in fp32 under autocast, and short training runs; CUDA cases marked `cuda`."""

from __future__ import annotations

import pytest
import torch
from neuralop.layers.spectral_convolution import SpectralConv
from neuralop.models import FNO

from opspec.core.errors import OpspecError
from opspec.training.precision import GradScaler, Precision, check_precision, keep_spectral_fp32

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _fno(device="cpu") -> FNO:
    torch.manual_seed(0)
    return FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2).to(device)


def test_check_precision_refuses_in_one_line(monkeypatch):
    check_precision("fp32", torch.device("cpu"))
    check_precision("bf16", torch.device("cpu"))
    with pytest.raises(OpspecError, match=r"train.precision='fp8': expected one of"):
        check_precision("fp8", torch.device("cpu"))
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
    with pytest.raises(OpspecError, match=r"^train.precision=fp16: torch .* cannot autocast to torch.float16 on cpu; use"):
        check_precision("fp16", torch.device("cpu"))


def test_grad_scaler_unscales_complex_gradients_and_skips_on_an_imaginary_inf():
    w = torch.nn.Parameter(torch.ones(2, 2, dtype=torch.complex64))
    b = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w, b], lr=0.1)
    scaler = GradScaler("cpu", init_scale=1024.0)
    scaler.scale(torch.ones(()))  # the scale tensor is created on first use
    w.grad = torch.full((2, 2), 1024 * (1 - 2j), dtype=torch.complex64)
    b.grad = torch.full((3,), 2048.0)
    scaler.unscale_(opt)
    assert torch.equal(w.grad, torch.full((2, 2), 1 - 2j, dtype=torch.complex64)) and torch.equal(b.grad, torch.full((3,), 2.0))
    scaler.step(opt)
    scaler.update()
    assert torch.equal(b.detach(), torch.full((3,), 0.8))

    before = w.detach().clone()
    w.grad = torch.tensor([[1 + float("inf") * 1j, 0], [0, 0]], dtype=torch.complex64)  # inf in the imaginary part only
    b.grad = torch.zeros(3)
    scaler.scale(torch.ones(()))
    scaler.step(opt)
    scaler.update()
    assert torch.equal(w.detach(), before) and scaler.get_scale() == 1024.0 * 2.0 ** -1  # skipped, scale halved


def test_spectral_blocks_run_fp32_under_autocast_and_agree_with_fp32():
    model = _fno()
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    reference = model(x)
    seen: list[tuple[torch.dtype, torch.dtype]] = []
    assert keep_spectral_fp32(model) == 2
    for m in model.modules():
        if isinstance(m, SpectralConv):
            m.register_forward_hook(lambda mod, args, out: seen.append((args[0].dtype, out.dtype)))
    with Precision("bf16", torch.device("cpu")).autocast():
        out = model(x)
    assert seen == [(torch.float32, torch.float32)] * 2  # the hook's cast precedes the recording hook's view
    assert 1e-4 < ((out.float() - reference).norm() / reference.norm()).item() < 3e-2  # bf16: 8 mantissa bits (1e-2 here)
    out.float().square().mean().backward()
    assert all(p.grad.dtype == p.dtype for p in model.parameters())
    assert {p.dtype for p in model.parameters()} == {torch.float32, torch.complex64}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_training_runs_in_reduced_precision(tiny_overrides, tmp_path, precision):
    from opspec.training.checkpoint import load_checkpoint
    from opspec.training.config import load_config
    from opspec.training.trainer import Trainer

    cfg = load_config(overrides=tiny_overrides + ["train.epochs=2", f"train.precision={precision}"])
    trainer = Trainer(cfg, run_dir=tmp_path / precision)
    history = trainer.fit()
    assert all(0 < r["train_loss"] < 10 and 0 < r["test_rel_l2"] < 10 for r in history)
    assert {p.dtype for p in trainer.net.parameters()} <= {torch.float32, torch.complex64}
    for state in trainer.optimizer.state.values():
        assert all(v.dtype in (torch.float32, torch.complex64) for v in state.values() if torch.is_tensor(v) and v.ndim)
    payload = load_checkpoint(tmp_path / precision)
    assert bool(payload.get("grad_scaler")) == (precision == "fp16")
    if precision == "fp16":  # the loss scale and its growth count come back on resume
        payload["grad_scaler"]["scale"] *= 0.25  # a value the fresh scaler (65536) would not have
        resumed = Trainer(load_config(base=payload["config"], overrides=["train.epochs=3"]), resume=payload)
        assert resumed.precision.state_dict() == payload["grad_scaler"]


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("precision, tol", [("bf16", 3e-2), ("fp16", 5e-3)])
def test_cuda_autocast_forward_backward_agrees_with_fp32(precision, tol):
    device = torch.device("cuda")
    model = _fno(device)
    x = torch.randn(4, 1, 33, 33, device=device, generator=torch.Generator(device).manual_seed(2))
    reference = model(x)
    keep_spectral_fp32(model)
    prec = Precision(precision, device)
    with prec.autocast():
        out = model(x)
    assert ((out.float() - reference).norm() / reference.norm()).item() < tol
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    prec.backward(out.float().square().mean())
    prec.unscale_(opt)
    assert all(torch.isfinite(torch.view_as_real(p.grad) if p.is_complex() else p.grad).all() for p in model.parameters())
    assert prec.step(opt, torch.zeros((), device=device))


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_training_in_reduced_precision(tiny_overrides, tmp_path, precision):
    from opspec.training.config import load_config
    from opspec.training.trainer import Trainer

    cfg = load_config(overrides=tiny_overrides + ["train.epochs=2", "train.device=cuda", f"train.precision={precision}"])
    history = Trainer(cfg, run_dir=tmp_path / precision).fit()
    assert all(0 < r["test_rel_l2"] < 10 for r in history)


def test_compile_trains_on_cpu_like_eager(tiny_overrides, tmp_path, monkeypatch):
    import opspec.training.precision
    from opspec.training.checkpoint import load_checkpoint
    from opspec.training.config import load_config
    from opspec.training.trainer import Trainer

    # the graph capture and AOT autograd of torch.compile without inductor's C++ build (minutes on this CPU)
    monkeypatch.setattr(opspec.training.precision, "COMPILE_BACKEND", "aot_eager")
    cfg = load_config(overrides=tiny_overrides + ["train.epochs=1"])
    compiled = Trainer(load_config(base=cfg, overrides=["train.compile=true"]), run_dir=tmp_path / "compiled")
    assert isinstance(compiled.train_net, torch._dynamo.eval_frame.OptimizedModule)
    compiled.fit()
    eager = Trainer(cfg, run_dir=tmp_path / "eager")
    eager.fit()
    weights = load_checkpoint(tmp_path / "compiled")["model"]
    assert weights.keys() == load_checkpoint(tmp_path / "eager")["model"].keys()  # no "_orig_mod." prefixes
    for key, value in eager.net.state_dict().items():
        if torch.is_tensor(value):
            torch.testing.assert_close(compiled.net.state_dict()[key], value, rtol=1e-4, atol=1e-5)


def test_compile_without_a_cpp_compiler_is_refused_before_the_run_folder(tiny_overrides, tmp_path, monkeypatch):
    import opspec.training.precision
    from opspec.training.config import load_config
    from opspec.training.trainer import Trainer

    monkeypatch.setattr(opspec.training.precision.shutil, "which", lambda name: None)
    with pytest.raises(OpspecError, match=r"^train.compile=true on the CPU needs a C\+\+ compiler"):
        Trainer(load_config(overrides=tiny_overrides + ["train.compile=true"]), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
