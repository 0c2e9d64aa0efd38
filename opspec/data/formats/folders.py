"""A published dataset as a folder of files: one folder per split (The Well) or shards that name
their split (PDEArena). Each split's files are read as one foreign file, in sorted name order."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from opspec.data.formats.base import ForeignFile
from opspec.core.errors import OpspecError

DATA_SUFFIXES = (".h5", ".hdf5", ".hdf", ".mat", ".pt", ".pth")
SPLIT_ALIASES = {"train": "train", "test": "test", "valid": "valid", "val": "valid"}


class ConcatFile(ForeignFile):
    """Foreign files with one layout, read as one: their samples one after another."""

    def __init__(self, path: str | os.PathLike, readers: list[ForeignFile]) -> None:
        super().__init__(path)
        self.readers = readers
        first = readers[0]
        for r in readers[1:]:
            if r.layout.name != first.layout.name:
                raise OpspecError(f"{self.path}: mixes layouts: {first.path.name} is {first.layout.name}, {r.path.name} is {r.layout.name}")
            if not first.layout.same_grid_as(r.layout):
                raise OpspecError(
                    f"{self.path}: mixes resolutions: {first.path.name} has a{first.layout.a_shape}/u{first.layout.u_shape}, "
                    f"{r.path.name} a{r.layout.a_shape}/u{r.layout.u_shape} (one grid per dataset)"
                )
        self.format = first.format
        self.offsets = np.cumsum([0] + [r.layout.n for r in readers])
        self.layout = dataclasses.replace(first.layout, n=int(self.offsets[-1]),
                                          attrs={**first.layout.attrs, "source_files": len(readers)})

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        parts = []
        for r, offset in zip(self.readers, self.offsets[:-1]):
            lo, hi = max(start, int(offset)), min(stop, int(offset) + r.layout.n)
            if lo < hi:
                parts.append(r.read(lo - int(offset), hi - int(offset)))
        return np.concatenate([a for a, _ in parts]), np.concatenate([u for _, u in parts])

    def close(self) -> None:
        for r in self.readers:
            r.close()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)


def open_folder(src: str | os.PathLike, fmt: str | None = None) -> dict[str, ForeignFile]:
    """{'train': reader, 'test': reader} and 'valid' where there is one, for a dataset folder: split
    folders train/, test/ and valid/ (a `data/` folder holding them is looked into), or shards whose
    own split (PDEArena's group name) says where they go."""
    from opspec.data.formats import open_foreign

    folder = Path(src)
    if (folder / "data").is_dir() and not any((folder / s).is_dir() for s in SPLIT_ALIASES):
        folder = folder / "data"
    split_dirs = {SPLIT_ALIASES[p.name]: p for p in folder.iterdir() if p.is_dir() and p.name in SPLIT_ALIASES}
    readers: dict[str, list[ForeignFile]] = {}
    try:
        if split_dirs:
            for split in ("train", "test"):
                if split not in split_dirs:
                    raise OpspecError(
                        f"{folder}: no {split}/ folder beside {', '.join(sorted(p.name + '/' for p in split_dirs.values()))} "
                        "(a dataset in split folders needs train/ and test/)"
                    )
                files = _files(split_dirs[split])
                if not files:
                    raise OpspecError(f"{split_dirs[split]}: no data files in this split folder")
                readers[split] = [open_foreign(f, fmt) for f in files]
            if "valid" in split_dirs and _files(split_dirs["valid"]):
                readers["valid"] = [open_foreign(f, fmt) for f in _files(split_dirs["valid"])]
        else:
            files = _files(folder)
            if not files:
                raise OpspecError(f"{folder}: no data files and no train/, test/ folders")
            for f in files:
                reader = open_foreign(f, fmt)
                split = getattr(reader, "split", None)
                if split is None:
                    reader.close()
                    raise OpspecError(
                        f"{f}: does not say which split it belongs to; put the files in train/ and test/ folders"
                    )
                readers.setdefault(split, []).append(reader)
            for split in ("train", "test"):
                if split not in readers:
                    raise OpspecError(f"{folder}: no shard of the {split} split among {len(files)} files (a {split} group)")
        return {s: ConcatFile(folder / s, readers[s]) if len(readers[s]) > 1 else readers[s][0]
                for s in ("train", "test", "valid") if s in readers}
    except BaseException:
        for group in readers.values():
            for r in group:
                r.close()
        raise
