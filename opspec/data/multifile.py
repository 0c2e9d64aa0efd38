"""A split spread over many canonical files: a folder, a folder of split folders, or a glob.

`open_data(path)` returns a CanonicalFile for a file and a CanonicalSet otherwise. A set reads like
one file whose samples are the files' samples in sorted file order; every file must hold the same
problem on the same grid (otherwise one line names the two files that differ).
"""

from __future__ import annotations

import glob
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from opspec.data.canonical import ALL_SPLITS, SPLITS, VARIABLES, CanonicalFile, Resolution
from opspec.core.errors import OpspecError

DATA_SUFFIXES = (".h5", ".hdf5", ".nc")
MAX_OPEN = 64  # HDF5 handles a set keeps open per process (a dataset may have thousands of files)


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)


def open_data(path: str | os.PathLike) -> "CanonicalFile | CanonicalSet":
    """A canonical file, or a set of them: a glob (`data/*.h5`), a folder of files, or a folder with
    `train/` and `test/` folders, and optionally `valid/` (each file there gives that split)."""
    text = str(path)
    if any(c in text for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
        if not files:
            raise OpspecError(f"{text}: no file matches this pattern")
        return CanonicalSet(text, {s: files for s in ALL_SPLITS})
    folder = Path(path)
    if not folder.is_dir():
        return CanonicalFile(folder)
    present = [s for s in SPLITS if (folder / s).is_dir()]
    if present:
        missing = [s for s in SPLITS if s not in present]
        if missing:
            raise OpspecError(
                f"{folder}: has a {present[0]}/ folder but no {missing[0]}/ folder (a dataset in split folders "
                f"needs {'/ and '.join(SPLITS)}/)"
            )
        loose = _data_files(folder)
        if loose:
            raise OpspecError(
                f"{folder}: holds both split folders ({'/, '.join(SPLITS)}/) and data files ({loose[0].name}"
                f"{', …' if len(loose) > 1 else ''}); expected one or the other: move the loose files out to train on the "
                f"split folders, or give a file itself (data.path={loose[0]})")
        per_split = {s: _data_files(folder / s) for s in ALL_SPLITS if (folder / s).is_dir()}
        for s, files in per_split.items():
            if not files:
                raise OpspecError(f"{folder / s}: no data files ({', '.join(DATA_SUFFIXES)}) in this split folder")
        return CanonicalSet(text, per_split, from_split_folders=True)
    files = _data_files(folder)
    if not files:
        raise OpspecError(f"{folder}: a folder with no data files ({', '.join(DATA_SUFFIXES)}) and no train/, test/ folders")
    return CanonicalSet(text, {s: files for s in ALL_SPLITS})


class CanonicalSet:
    """Several canonical files read as one: each split is the concatenation of the files that hold it.

    It answers what OperatorDataset and evaluation ask of a CanonicalFile (shapes, grid, strides,
    blocks, reads); the grid questions go to the first file, all files having been checked equal.
    """

    def __init__(self, name: str, files: dict[str, Sequence[Path]], from_split_folders: bool = False) -> None:
        self.path = Path(name)
        self._files: dict[Path, CanonicalFile] = {}
        self._open: OrderedDict[Path, None] = OrderedDict()
        self.parts: dict[str, list[tuple[CanonicalFile, int]]] = {}  # split -> [(file, first global index)]
        first: CanonicalFile | None = None
        for split, paths in files.items():
            self.parts[split] = []
            offset = 0
            for p in paths:
                f = self._files.get(p) or self._files.setdefault(p, CanonicalFile(p))
                f.close()
                first = first or f
                self._check_same(first, f)
                if split not in f.splits:
                    if from_split_folders:
                        raise OpspecError(f"{p}: in the {split}/ folder but holds no {split} split (it holds {'+'.join(f.splits)})")
                    continue
                self.parts[split].append((f, offset))
                offset += f.n_samples(split)
        assert first is not None
        self.first = first
        self.splits = tuple(s for s in ALL_SPLITS if self.parts.get(s))
        if not self.splits:
            raise OpspecError(f"{self.path}: no file holds a train or test split")
        self.attrs: dict[str, Any] = dict(first.attrs)
        self.grid, self.problem, self.space_dims, self.grid_shape = first.grid, first.problem, first.space_dims, first.grid_shape
        self.dims = {s: self.parts[s][0][0].dims[s] for s in self.splits}
        self.shapes = {
            s: {v: (self.n_samples(s), *self.parts[s][0][0].shapes[s][v][1:]) for v in VARIABLES} for s in self.splits
        }

    def _check_same(self, first: CanonicalFile, f: CanonicalFile) -> None:
        """One line naming two files that cannot be one dataset: problem, grid kind, grid, or sample shapes."""
        if f.problem != first.problem:
            raise OpspecError(f"{self.path}: mixes problems: {first.path.name} is {first.problem!r}, {f.path.name} is {f.problem!r}")
        if (f.grid, f.space_dims, f.grid_shape) != (first.grid, first.space_dims, first.grid_shape):
            raise OpspecError(
                f"{self.path}: mixes resolutions: {first.path.name} has a {first.grid} grid "
                f"{'x'.join(map(str, first.grid_shape))}, {f.path.name} a {f.grid} grid {'x'.join(map(str, f.grid_shape))}"
            )
        for split in set(f.splits) & set(first.splits):
            for var in VARIABLES:
                if f.shapes[split][var][1:] != first.shapes[split][var][1:]:
                    raise OpspecError(
                        f"{self.path}: mixes sample shapes: {split}/{var} is {first.shapes[split][var][1:]} in "
                        f"{first.path.name} but {f.shapes[split][var][1:]} in {f.path.name}"
                    )

    @property
    def files(self) -> list[CanonicalFile]:
        return list(self._files.values())

    @property
    def grid_size(self) -> int | None:
        return self.first.grid_size

    def _split(self, split: str) -> str:
        if split not in ALL_SPLITS:
            raise OpspecError(f"split {split!r}: expected one of {ALL_SPLITS}")
        if split not in self.splits:
            raise OpspecError(f"{self.path}: no file here holds a {split} split (they hold {'+'.join(self.splits)})")
        return split

    def n_samples(self, split: str) -> int:
        return sum(f.n_samples(split) for f, _ in self.parts[self._split(split)])

    def valid_resolutions(self) -> list:
        return self.first.valid_resolutions()

    def strides(self, resolution: Resolution) -> tuple[int, ...]:
        return self.first.strides(resolution)

    def stride(self, resolution: Resolution) -> int | tuple[int, ...]:
        return self.first.stride(resolution)

    def points(self, resolution: Resolution) -> tuple[int, ...]:
        return self.first.points(resolution)

    def label(self, resolution: Resolution) -> int | str:
        return self.first.label(resolution)

    def coords(self, resolution: Resolution = None) -> dict[str, np.ndarray]:
        return self.first.coords(resolution)

    def sample_bytes(self, split: str) -> int:
        return self.parts[self._split(split)][0][0].sample_bytes(split)

    def blocks(self, split: str) -> list[tuple[int, int]]:
        """Every file's chunk ranges, offset to the set's sample numbering (a block never spans files)."""
        out = []
        for f, offset in self.parts[self._split(split)]:
            out += [(lo + offset, hi + offset) for lo, hi in f.blocks(split)]
            if f.path not in self._open:
                f.close()
        return out

    def chunking_warning(self, split: str) -> str | None:
        for f, _ in self.parts[self._split(split)]:
            warning = f.chunking_warning(split)
            if warning:
                return warning
        return None

    def _touch(self, f: CanonicalFile) -> None:
        """Keep at most MAX_OPEN handles open: close the least recently read file past that."""
        self._open.pop(f.path, None)
        self._open[f.path] = None
        while len(self._open) > MAX_OPEN:
            old, _ = self._open.popitem(last=False)
            self._files[old].close()

    def read(self, split: str, var: str, resolution: Resolution = None, samples: slice | int = slice(None),
             check_finite: bool = True) -> np.ndarray:
        """`var` of samples [start, stop) of the set (or one sample), read file by file."""
        split = self._split(split)
        n = self.n_samples(split)
        single = isinstance(samples, (int, np.integer))
        start, stop = (int(samples), int(samples) + 1) if single else samples.indices(n)[:2]
        pieces = []
        for f, offset in self.parts[split]:
            lo, hi = max(start, offset), min(stop, offset + f.n_samples(split))
            if lo < hi:
                pieces.append(f.read(split, var, resolution, slice(lo - offset, hi - offset), check_finite))
                self._touch(f)
        if not pieces:
            shape = self.shapes[split][var][1 : len(self.shapes[split][var]) - len(self.grid_shape)]
            return np.empty((0, *shape, *self.points(resolution)), dtype=np.float32)
        out = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        return out[0] if single else out

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._open.clear()

    def __enter__(self) -> "CanonicalSet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> str:
        """The files, their sample counts per split, then the first file's summary."""
        lines = [f"{self.path}: {len(self._files)} canonical files"]
        for split in self.splits:
            lines.append(f"  {split}: {self.n_samples(split)} samples in {len(self.parts[split])} files")
        return "\n".join(lines + [self.first.describe()])
