"""Readers for foreign layouts (FNO .mat v5 / v7.3, PDEBench HDF5, neuraloperator .pt, The Well, PDEArena), streamed by sample chunks."""

from __future__ import annotations

import os

from opspec.data.formats.base import ForeignFile, Layout
from opspec.data.formats.detect import FORMATS, detect_format
from opspec.core.errors import OpspecError


def open_foreign(path: str | os.PathLike, fmt: str | None = None) -> ForeignFile:
    """Open a foreign file for streaming; `fmt` forces one of FORMATS, None detects it from the content."""
    from opspec.data.formats.mat import MatV5File, MatV73File
    from opspec.data.formats.pdebench import PDEBenchFile
    from opspec.data.formats.pdearena import PDEArenaFile
    from opspec.data.formats.torch_pt import TorchPtFile
    from opspec.data.formats.well import WellFile

    readers = {"mat5": MatV5File, "mat73": MatV73File, "pdebench": PDEBenchFile, "pt": TorchPtFile,
               "well": WellFile, "pdearena": PDEArenaFile}
    if fmt is None:
        fmt = detect_format(path)
    elif fmt not in readers:
        raise OpspecError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    elif not os.path.isfile(path):
        raise OpspecError(f"{path}: no such file")
    return readers[fmt](path)


__all__ = ["FORMATS", "ForeignFile", "Layout", "detect_format", "open_foreign"]
