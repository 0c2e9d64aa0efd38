"""How a training step runs numerically: `train.precision` (autocast, with loss scaling for fp16),
global gradient clipping that is safe for complex gradients, and `train.compile`.

Under bf16/fp16 only the forward pass is autocast; the loss, the FFTs of the FNO's spectral blocks,
the weights, the gradients and the optimizer's state stay fp32/complex64. neuraloperator's own
`fno_block_precision` (model.options) is kept: "full" (its default, used with every precision here)
runs the block in complex64; "mixed" (FFT in fp32, contraction and inverse FFT in complex32) and
"half" are fp16-only, need power-of-two grids on CUDA (cuFFT half) and have no CPU FFT, so they fit
train.precision=fp16 on CUDA at power-of-two resolutions only, and are never set implicitly.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from typing import Any, Iterable

import torch
from torch import Tensor, nn

from opspec.core.errors import OpspecError

PRECISIONS = ("fp32", "bf16", "fp16")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse, in one line, a precision this torch cannot autocast to on `device` (probed with a
    matmul: torch disables an unsupported CPU autocast dtype with only a warning)."""
    if precision not in PRECISIONS:
        raise OpspecError(f"train.precision={precision!r}: expected one of {list(PRECISIONS)}")
    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return
    ok = torch.amp.is_autocast_available(device.type)
    if ok:
        a = torch.ones(2, 2, device=device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.autocast(device.type, dtype=dtype):
                ok = torch.mm(a, a).dtype == dtype
    if not ok:
        raise OpspecError(f"train.precision={precision}: torch {torch.__version__} cannot autocast to {dtype} on "
                          f"{device.type}; use train.precision=fp32" + (" or bf16" if precision == "fp16" else ""))


class GradScaler(torch.amp.GradScaler):
    """torch's GradScaler whose unscale and inf/NaN check also take complex gradients, through their
    real view (torch's kernel has no complex case; the FNO's spectral weights are complex)."""

    def _unscale_grads_(self, optimizer: torch.optim.Optimizer, inv_scale: Tensor, found_inf: Tensor,
                        allow_fp16: bool) -> dict[torch.device, Tensor]:
        grads: dict[torch.device, dict[torch.dtype, list[Tensor]]] = {}
        with torch.no_grad():
            for group in optimizer.param_groups:
                for param in group["params"]:
                    g = param.grad
                    if g is None:
                        continue
                    if not allow_fp16 and g.dtype == torch.float16:
                        raise ValueError("Attempting to unscale FP16 gradients.")
                    if g.is_sparse:
                        raise ValueError("GradScaler: sparse gradients are not supported")
                    g = torch.view_as_real(g) if g.is_complex() else g
                    grads.setdefault(g.device, {}).setdefault(g.dtype, []).append(g)
            found = {}
            for device, by_dtype in grads.items():
                found[device], scale = found_inf.to(device), inv_scale.to(device)
                for group_grads in by_dtype.values():
                    torch._amp_foreach_non_finite_check_and_unscale_(group_grads, found[device], scale)
        return found


class Precision:
    """`train.precision` for one device: `autocast()` around the forward pass; `backward`, `unscale_`
    and `step` route through a GradScaler that is enabled for fp16 only (a pass-through otherwise)."""

    def __init__(self, precision: str, device: torch.device) -> None:
        check_precision(precision, device)
        self.name = precision
        self.device = device
        self.dtype = AUTOCAST_DTYPES.get(precision)
        self.scaler = GradScaler(device.type, enabled=precision == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the loss scale in place (before clipping them); fp16 only."""
        if self.scaler.is_enabled():
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer, loss: Tensor) -> bool:
        """`optimizer.step` with a closure returning the (already computed) loss, which SpecMuon reads;
        under fp16 skipped when a gradient is not finite, and the scale updated. True if it stepped."""
        closure = lambda: loss  # noqa: E731  (the gradients exist already: nothing to recompute)
        if not self.scaler.is_enabled():
            optimizer.step(closure)
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer, closure)  # positional: the closure only hands over the loss
        self.scaler.update()
        return self.scaler.get_scale() >= scale  # the scale shrinks exactly when the step was skipped

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.scaler.load_state_dict(state)


def keep_spectral_fp32(module: nn.Module) -> int:
    """Make every neuraloperator SpectralConv in `module` take its FFT in fp32 under autocast: its input
    is cast to float32 (CUDA has no bf16 FFT; CPU autocast casts for the FFT alone). The per-mode
    contraction is complex, which autocast never lowers. A block configured with
    fno_block_precision="half" (model.options) is left to neuraloperator's own fp16 path. Returns
    the number of blocks."""
    from neuralop.layers.spectral_convolution import SpectralConv

    def to_fp32(block: nn.Module, args: tuple) -> tuple | None:
        x = args[0]
        if block.fno_block_precision != "half" and x.is_floating_point() and x.dtype in (torch.bfloat16, torch.float16):
            return (x.float(), *args[1:])
        return None

    count = 0
    for sub in module.modules():
        if isinstance(sub, SpectralConv):
            sub.register_forward_pre_hook(to_fp32)
            count += 1
    return count


def clip_grad_norm_(parameters: Iterable[Tensor], max_norm: float) -> Tensor:
    """Scale all gradients together so their global 2-norm is at most `max_norm`; returns the norm
    before clipping. A complex gradient's norm is over its real and imaginary parts, √Σ(re² + im²)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norms = [torch.linalg.vector_norm(torch.view_as_real(g) if g.is_complex() else g) for g in grads]
    device = norms[0].device
    total = torch.linalg.vector_norm(torch.stack([n.to(device=device, dtype=torch.float32) for n in norms]))
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.to(g.device))
    return total


def check_compile(device: torch.device) -> None:
    """Refuse train.compile=true in one line where torch.compile cannot work: the CPU backend needs a C++ compiler."""
    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise OpspecError("train.compile=true on the CPU needs a C++ compiler (g++ or clang++), none is on PATH")


COMPILE_BACKEND = "inductor"  # torch.compile's default; tests use "aot_eager" (the same graph capture, no codegen)


def compile_module(module: nn.Module, device: torch.device) -> nn.Module:
    """`torch.compile(module)` after `check_compile`; the module's parameters and state_dict keys stay its own."""
    check_compile(device)
    return torch.compile(module, backend=COMPILE_BACKEND)  # type: ignore[return-value]
