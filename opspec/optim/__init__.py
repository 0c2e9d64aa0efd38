"""The spectral optimizer engine: knows tensors, matrices and the labels its caller gives, nothing about PDEs or models."""

from opspec.optim.apply import lr_scale
from opspec.optim.build import build_optimizer, parameter_groups, split_parameters
from opspec.optim.layouts import LAYOUTS, fans, from_matrices, infer_layout, matrix_shape, resolve_layout, to_matrices
from opspec.optim.muon import FAMILY, Muon
from opspec.optim.polar import COEFFICIENT_SETS, POLAR_EXPRESS, QUINTIC, coefficient_schedule, polar
from opspec.optim.registry import (OPTIMIZERS, REGISTRY, Entry, check_optimizer_options, config_choices, config_fields,
                                   optimizer_options, options_from_config)
from opspec.optim.specmuon import SpecMuon
from opspec.optim.spectral_power import spectral_power
from opspec.optim.step import SpectralOptimizer, StepControl
from opspec.optim.treatment import TREATMENTS, Labels, Treatment, treat_parameters

__all__ = [
    "COEFFICIENT_SETS", "Entry", "FAMILY", "LAYOUTS", "Labels", "OPTIMIZERS", "POLAR_EXPRESS", "QUINTIC", "REGISTRY", "Muon",
    "SpecMuon", "SpectralOptimizer", "StepControl", "TREATMENTS", "Treatment", "build_optimizer", "check_optimizer_options",
    "coefficient_schedule", "config_choices", "config_fields", "fans", "from_matrices", "infer_layout", "lr_scale",
    "matrix_shape", "optimizer_options", "options_from_config", "parameter_groups", "polar", "resolve_layout",
    "spectral_power", "split_parameters", "to_matrices", "treat_parameters",
]
