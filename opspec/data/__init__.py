"""Data: the canonical HDF5 file, PDE generators, and the torch Dataset over it (knows nothing of optimizers)."""

from opspec.data.canonical import CanonicalFile, CanonicalWriter, write_canonical
from opspec.data.dataset import OperatorDataset, UnitGaussianNormalizer, fit_normalizer

__all__ = [
    "CanonicalFile",
    "CanonicalWriter",
    "OperatorDataset",
    "UnitGaussianNormalizer",
    "fit_normalizer",
    "write_canonical",
]
