"""The spectral optimizer engine: knows tensors and matrices, nothing about PDEs or models."""

from opspec.optim.apply import lr_scale
from opspec.optim.build import build_optimizer, parameter_groups, split_parameters
from opspec.optim.layouts import LAYOUTS, fans, from_matrices, infer_layout, matrix_shape, resolve_layout, to_matrices
from opspec.optim.muon import Muon
from opspec.optim.options import FAMILY, OPTIMIZERS, check_optimizer_options, options_from_config
from opspec.optim.polar import COEFFICIENT_SETS, POLAR_EXPRESS, QUINTIC, coefficient_schedule, polar
from opspec.optim.specmuon import SpecMuon
from opspec.optim.spectral_power import spectral_power
from opspec.optim.step import SpectralOptimizer

__all__ = [
    "COEFFICIENT_SETS", "FAMILY", "LAYOUTS", "OPTIMIZERS", "POLAR_EXPRESS", "QUINTIC", "Muon", "SpecMuon",
    "SpectralOptimizer", "build_optimizer", "check_optimizer_options", "coefficient_schedule", "fans", "from_matrices",
    "infer_layout", "lr_scale", "matrix_shape", "options_from_config", "parameter_groups", "polar", "resolve_layout", "spectral_power",
    "split_parameters", "to_matrices",
]
