"""The spectral optimizer engine: knows tensors and matrices, nothing about PDEs or models."""

from opspec.optim.build import FAMILY, OPTIMIZERS, build_optimizer, split_parameters
from opspec.optim.layouts import LAYOUTS, from_matrices, infer_layout, matrix_shape, to_matrices
from opspec.optim.muon import Muon, lr_scale
from opspec.optim.polar import COEFFICIENT_SETS, POLAR_EXPRESS, QUINTIC, coefficient_schedule, polar
from opspec.optim.specmuon import SpecMuon
from opspec.optim.spectral_power import spectral_power

__all__ = [
    "COEFFICIENT_SETS", "FAMILY", "LAYOUTS", "OPTIMIZERS", "POLAR_EXPRESS", "QUINTIC", "Muon", "SpecMuon", "build_optimizer",
    "coefficient_schedule", "from_matrices", "infer_layout", "lr_scale", "matrix_shape", "polar",
    "spectral_power", "split_parameters", "to_matrices",
]
