"""The spectral optimizer engine: knows tensors and matrices, nothing about PDEs or models."""

from opspec.optim.build import OPTIMIZERS, build_optimizer, split_parameters
from opspec.optim.layouts import LAYOUTS, from_matrices, infer_layout, matrix_shape, to_matrices
from opspec.optim.muon import Muon, lr_scale
from opspec.optim.polar import COEFFICIENT_SETS, POLAR_EXPRESS, QUINTIC, coefficient_schedule, polar

__all__ = [
    "COEFFICIENT_SETS", "LAYOUTS", "OPTIMIZERS", "POLAR_EXPRESS", "QUINTIC", "Muon", "build_optimizer",
    "coefficient_schedule", "from_matrices", "infer_layout", "lr_scale", "matrix_shape", "polar",
    "split_parameters", "to_matrices",
]
