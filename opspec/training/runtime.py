"""Process-level settings for training speed on CPU, and what benchmarks record about the machine."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Any

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3


def keep_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Tell glibc malloc to reuse freed blocks instead of returning them to the OS after every step.

    By default glibc serves large blocks (a training step's activations) with fresh mmap calls and
    unmaps them on free, so every step pays page faults and zero-filling for ~100 MB of memory; on
    a 2-core CPU that is about a tenth of an FNO step. Raising the mmap and trim thresholds keeps
    the memory mapped (the process stays at its peak size). Returns False where glibc is absent.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(M_MMAP_THRESHOLD, threshold_bytes) == 1
    ok &= mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    ok &= mallopt(M_TOP_PAD, 64 << 20) == 1
    return bool(ok)


def device_name(device: Any = None) -> str:
    """The GPU's name, or the CPU's model and core count: what benchmark tables say they ran on."""
    import platform

    import torch

    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        model = ""
    return f"CPU {model or platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def load_average() -> str:
    """The 1/5/15-minute load averages, so a benchmark records whether the machine was busy."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"

