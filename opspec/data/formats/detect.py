"""Tell a foreign file's format from its first bytes and its extension (MAT v5 / v7.3, HDF5, torch zip)."""

from __future__ import annotations

import os
from pathlib import Path

from opspec.core.errors import OpspecError

FORMATS = ("mat5", "mat73", "pdebench", "pt", "well", "pdearena")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# HDF5 looks for its superblock at 0, 512, 1024, 2048, … (a user block may come first; MATLAB v7.3 uses 512).
_HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)
_ZIP_SIGNATURE = b"PK\x03\x04"


def _mat_header_version(head: bytes) -> str | None:
    """'mat5' or 'mat73' from a 128-byte MAT-file header, None if the header is something else."""
    if len(head) < 128 or not head.startswith(b"MATLAB"):
        return None
    if b"MATLAB 7.3 MAT-file" in head[:116]:
        return "mat73"
    version, endian = head[124:126], head[126:128]
    if endian == b"IM":
        version = version[::-1]
    if endian in (b"IM", b"MI") and version == b"\x01\x00":
        return "mat5"
    if endian in (b"IM", b"MI") and version == b"\x02\x00":
        return "mat73"
    return None


def _hdf5_layout(path: Path) -> str:
    """Which HDF5 layout a non-.mat HDF5 file holds: The Well, a PDEArena shard, or PDEBench (the default)."""
    import h5py

    from opspec.data.formats.pdearena import pdearena_group
    from opspec.data.formats.well import is_well

    try:
        with h5py.File(path, "r") as h5:
            if is_well(h5):
                return "well"
            if pdearena_group(h5) is not None:
                return "pdearena"
    except OSError:
        pass  # unreadable HDF5: the PDEBench reader names the file and the reason
    return "pdebench"


def detect_format(path: str | os.PathLike) -> str:
    """One of FORMATS for `path`, judged by content first and extension second; OpspecError if unknown."""
    path = Path(path)
    if not path.exists():
        raise OpspecError(f"{path}: no such file")
    if path.is_dir():
        raise OpspecError(f"{path}: is a directory, expected a data file")
    with open(path, "rb") as fh:
        head = fh.read(max(_HDF5_OFFSETS) + 8)
    suffix = path.suffix.lower()
    if head.startswith(_ZIP_SIGNATURE):
        return "pt"
    mat = _mat_header_version(head)
    if mat is not None:
        return mat
    hdf5 = any(head[o:o + 8] == HDF5_SIGNATURE for o in _HDF5_OFFSETS)
    if suffix == ".mat":
        if hdf5:
            return "mat73"
        raise OpspecError(
            f"{path}: a .mat file that is neither MATLAB v5 nor v7.3 (no v5 header, no HDF5 signature); "
            "re-save it in MATLAB with save(..., '-v7') or '-v7.3'"
        )
    if hdf5:
        return _hdf5_layout(path)
    if suffix in (".pt", ".pth") and head[:1] == b"\x80":
        return "pt"
    if not head:
        raise OpspecError(f"{path}: empty file")
    raise OpspecError(
        f"{path}: cannot tell the format (not a MAT-file, HDF5 or torch file); pass --from one of {', '.join(FORMATS)}"
    )
