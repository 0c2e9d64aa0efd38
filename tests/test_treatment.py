"""Each parameter's treatment comes from its structure (the model's labels, models/labels.py, applied by
optim/treatment.py), not from its shape; without labels, the shape rule."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import unchecked_model
from torch import nn

from opspec.training.config import load_config
from opspec.core.errors import OpspecError
from opspec.models import DeepONet, ParameterLabel, build_model, model_labels
from opspec.optim import build_optimizer, infer_layout
from opspec.optim.build import parameter_groups
from opspec.optim.treatment import treat_parameters

SMALL = ["model.hidden_channels=6", "model.n_layers=2", "model.n_modes=[4,4]"]


def _model(*overrides: str) -> nn.Module:
    torch.manual_seed(0)
    return unchecked_model([*SMALL, *overrides], 1, 1, 2)


def _treatments(model: nn.Module, **kwargs) -> dict[str, tuple[str | None, str]]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unrecognized parameter would warn: none may
        return {t.name: (t.layout, t.what) for _, t in treat_parameters(model, labels=model_labels(model), **kwargs)}


def test_dense_fno_is_treated_as_before_and_grouped_as_before():
    """The default model: every layout equals the old shape rule's, in one 'auto' group (old checkpoints load)."""
    model = _model()
    params = dict(model.named_parameters())
    for name, (layout, _) in _treatments(model).items():
        assert layout == infer_layout(params[name]), name
    assert _treatments(model)["fno_blocks.convs.0.weight.tensor"][0] == "per_mode"
    groups, others = parameter_groups(model, labels=model_labels)
    assert len(groups) == 1 and "layout" not in groups[0] and others
    assert [p for g in groups for p in g["params"]] == parameter_groups(model)[0][0]["params"]  # labels or none: the same
    opt = build_optimizer(model, "muon", labels=model_labels)
    assert [g["use_spectral"] for g in opt.param_groups] == [True, False]


def test_tucker_core_is_per_rank_mode_and_factors_are_matrices():
    """Measured (docs/models.md): Muon on the core's rank-mode slices and on the factors beat AdamW on them."""
    model = _model("model.name=tfno", "model.options.rank=0.42")
    t = _treatments(model)
    assert t["fno_blocks.convs.0.weight.core"] == ("per_mode", "Tucker core (r_in × r_out per pair of rank modes)")
    for k in range(4):
        assert t[f"fno_blocks.convs.1.weight.factors.factor_{k}"] == ("matrix", "Tucker factor (n_k × r_k basis)")
    assert t["fno_blocks.fno_skips.0.conv.weight"][0] == "conv"
    assert t["fno_blocks.convs.0.bias"][0] is None


def test_tucker_core_slices_are_channel_maps_in_the_factor_bases():
    """The rule's premise, against tensorly-torch's own reconstruction: W[:, :, k1, k2] = U_in C(k) U_outᵀ with
    C(k) = Σ_ab U_m1[k1, a] U_m2[k2, b] core[:, :, a, b] (a transposed or swapped axis would fail)."""
    model = _model("model.name=tfno", "model.options.rank=0.42", "model.hidden_channels=8", "model.n_modes=[6,6]")
    weight = model.fno_blocks.convs[0].weight
    core, (u_in, u_out, u_m1, u_m2) = weight.core.detach(), [f.detach() for f in weight.factors]
    assert core.shape[:2] == (u_in.shape[1], u_out.shape[1]) and core.shape[0] < u_in.shape[0]
    per_mode = torch.einsum("ka,lb,pqab->klpq", u_m1, u_m2, core)
    expected = torch.einsum("ip,klpq,oq->iokl", u_in, per_mode, u_out)
    torch.testing.assert_close(weight.to_tensor().detach(), expected, rtol=1e-5, atol=1e-6)


def test_separable_tucker_core_goes_to_adamw():
    """A separable weight (C, m1, m2) has no in × out map per mode, so neither has its Tucker core."""
    t = _treatments(_model("model.name=tfno", "model.options.rank=0.42", "model.options.separable=true"))
    assert t["fno_blocks.convs.0.weight.core"] == (None, "Tucker core outside a dense spectral weight")


def test_cp_factors_are_matrices_and_its_weights_go_to_adamw():
    """Measured (docs/models.md): Muon on the CP factors beat AdamW on them."""
    model = _model("model.name=tfno", "model.options.factorization=cp")
    cp = _treatments(model)
    weight = model.fno_blocks.convs[0].weight
    for k, factor in enumerate(weight.factors):  # factor k: n_k × R, n_k the k-th axis of the full weight
        assert factor.shape == (weight.shape[k], weight.rank)
        assert cp[f"fno_blocks.convs.0.weight.factors.factor_{k}"] == ("matrix", "CP factor (n_k × R)")
    assert cp["fno_blocks.convs.0.weight.weights"][0] is None


def test_tt_cores_are_per_outgoing_rank_and_separable_spectral_weights_go_to_adamw():
    """Measured (docs/models.md): TT core k (r_{k-1}, n_k, r_k) as r_k matrices (r_{k-1} × n_k) beat AdamW on it;
    the first core (1, n_0, r_0) is a row per rank, below min_side, so AdamW."""
    model = _model("model.name=tfno", "model.options.factorization=tt", "model.options.rank=0.42",
                   "model.hidden_channels=16", "model.n_modes=[8,8]")
    tt = {t.name: t for _, t in treat_parameters(model, labels=model_labels)}
    cores = [tt[f"fno_blocks.convs.0.weight.factors.factor_{k}"] for k in range(4)]
    shapes = [tuple(f.shape) for f in model.fno_blocks.convs[0].weight.factors]
    assert [s[0] for s in shapes[1:]] == [s[2] for s in shapes[:-1]] and shapes[0][0] == shapes[-1][2] == 1
    assert cores[0].layout is None and cores[0].by.startswith("min_side")
    assert all(c.layout == "per_mode" and c.what.startswith("TT core") for c in cores[1:])
    separable = _treatments(_model("model.options.separable=true"))
    assert separable["fno_blocks.convs.0.weight.tensor"][0] is None  # (C, m1, m2): a scale per channel and mode


@pytest.mark.parametrize("overrides", [
    ["model.name=fno", "model.options.norm=group_norm", "model.options.fno_skip=soft-gating"],
    ["model.name=tfno", "model.options.rank=0.42"],
    ["model.name=tfno", "model.options.factorization=cp"],
    ["model.name=tfno", "model.options.factorization=tt"],
    ["model.name=uno"],
    ["model.name=codano", "model.options.use_positional_encoding=true", "model.options.variable_ids=[a]",
     "model.options.positional_encoding_modes=[4,4]", "model.options.enable_cls_token=true"],
])
def test_every_parameter_of_every_model_is_recognized(overrides):
    """No parameter of any offered model falls through to 'unrecognized' (that would warn)."""
    model = _model(*overrides)
    t = _treatments(model)
    assert len(t) == len(list(model.parameters()))
    assert all(what != "unrecognized" for _, what in t.values())


def test_deeponet_weights_are_matrices():
    model = DeepONet(1, 1, 1, sensors=8, branch_width=16, trunk_width=16, depth=2, basis=4)
    t = _treatments(model)
    assert t["branch.0.weight"] == ("matrix", "linear weight (out × in)")
    assert t["trunk.0.weight"][0] is None  # (16 × 1): shorter than min_side
    assert t["bias"][0] is None
    assert sum(layout == "matrix" for layout, _ in t.values()) == 5


def test_an_unrecognized_matrix_goes_to_adamw_with_a_warning_naming_it():
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.kernel = nn.Parameter(torch.randn(5, 4))
            self.lin = nn.Linear(4, 3)

    with pytest.warns(UserWarning, match=r"^kernel \(shape \(5, 4\), owned by Odd\): no known structure"):
        t = {t.name: t for _, t in treat_parameters(Odd(), labels=model_labels)}
    assert t["kernel"].layout is None and t["lin.weight"].layout == "matrix"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an override replaces the label, so its warning is not raised
        t = {t.name: t for _, t in treat_parameters(Odd(), overrides={"kernel": "matrix"}, labels=model_labels)}
    assert t["kernel"].layout == "matrix"


def test_overrides_by_name_pattern_first_match_wins():
    model = _model("model.name=tfno", "model.options.rank=0.42")
    t = _treatments(model, overrides={"*.convs.0.weight.core": "flatten", "*.core": "adamw", "*factor_3": "shape"})
    assert t["fno_blocks.convs.0.weight.core"][0] == "flatten"
    assert t["fno_blocks.convs.1.weight.core"] == (None, "set by the user")
    assert t["fno_blocks.convs.1.weight.factors.factor_3"] == ("matrix", "by shape and dtype")
    assert t["fno_blocks.convs.1.weight.factors.factor_2"] == ("matrix", "Tucker factor (n_k × r_k basis)")
    groups, _ = parameter_groups(model, treat={"*.core": "flatten"}, labels=model_labels)
    flat = [g for g in groups if g.get("layout") == "flatten"]
    assert len(flat) == 1 and len(flat[0]["params"]) == 2


def test_core_under_adamw_steps_exactly_as_torch_adamw():
    """A core sent to AdamW by an override steps as torch's AdamW with the AdamW part's lr (an independent reference)."""
    model = _model("model.name=tfno", "model.options.rank=0.42")
    core = model.fno_blocks.convs[0].weight.core
    ref = nn.Parameter(core.detach().clone())
    opt = build_optimizer(model, "muon", labels=model_labels, lr=0.02, adamw_lr=1e-3, weight_decay=0.1, treat={"*.core": "adamw"})
    torch_opt = torch.optim.AdamW([ref], lr=1e-3, weight_decay=0.1)
    for step in range(3):
        g = torch.randn(core.shape, dtype=core.dtype, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        core.grad = g.clone()
        ref.grad = g.clone()
        opt.step()
        torch_opt.step()
    torch.testing.assert_close(core.detach(), ref.detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("treat, message", [
    ({"*.cor": "adamw"}, r"pattern '\*\.cor' matches no trainable parameter"),
    ({"*.core": "orthogonal"}, r"treat\['\*\.core'\]='orthogonal': expected one of"),
    ({"*factor_0": "per_mode"}, r"has no 'per_mode' layout"),
])
def test_bad_overrides_are_one_line_errors(treat, message):
    model = _model("model.name=tfno", "model.options.rank=0.42")
    with pytest.raises(ValueError, match=message) as err:
        build_optimizer(model, "muon", labels=model_labels, treat=treat)
    assert "\n" not in str(err.value)


def test_treat_in_a_config_is_checked():
    cfg = load_config(overrides=['optimizer.treat={"*.core": flatten}'])
    assert dict(cfg.optimizer.treat) == {"*.core": "flatten"}
    with pytest.raises(OpspecError, match=r"optimizer\.treat"):
        load_config(overrides=['optimizer.treat={"*.core": sideways}'])


def test_without_labels_every_parameter_gets_the_shape_rule():
    """The convenience for any nn.Module: linear, conv and dense spectral weights (all of the dense FNO, the
    Tucker TFNO's parts) as their structure gives them; what it loses is what only the owner knows: a separable
    spectral weight or Tucker core (a scale per channel and mode) is mapped per mode instead of going to AdamW,
    an embedding table is one matrix, an unrecognized tensor is mapped without a warning."""
    for overrides in ([], ["model.name=tfno", "model.options.rank=0.42"]):
        model = _model(*overrides)
        plain = {t.name: t for _, t in treat_parameters(model)}
        assert all(t.by == "shape" and t.what == "by shape and dtype" for t in plain.values())
        assert {n: t.layout for n, t in plain.items()} == {n: layout for n, (layout, _) in _treatments(model).items()}
    model = _model("model.name=tfno", "model.options.rank=0.42", "model.options.separable=true")
    core = "fno_blocks.convs.0.weight.core"
    assert {t.name: t.layout for _, t in treat_parameters(model)}[core] == "per_mode"
    assert _treatments(model)[core][0] is None
    table = nn.Embedding(10, 4)
    assert [t.layout for _, t in treat_parameters(table)] == ["matrix"]
    assert [t.layout for _, t in treat_parameters(table, labels=model_labels)] == [None]


def test_labels_from_the_caller_a_map_of_strings_or_label_objects():
    """As optax's partition: the caller names each parameter's treatment; unlabelled ones get the shape rule."""
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))
    labels = {"0.weight": "adamw", "1.weight": ParameterLabel("matrix", "the readout")}
    t = {t.name: t for _, t in treat_parameters(model, labels=labels)}
    assert (t["0.weight"].layout, t["0.weight"].by) == (None, "label")
    assert (t["1.weight"].layout, t["1.weight"].what) == ("matrix", "the readout")
    assert (t["0.bias"].layout, t["0.bias"].by) == (None, "shape")
    opt = build_optimizer(model, "muon", labels=labels)
    assert [len(g["params"]) for g in opt.param_groups] == [1, 3]
    with pytest.raises(ValueError, match=r"labels\['0.weight'\]='sideways': expected one of"):
        build_optimizer(model, "muon", labels={"0.weight": "sideways"})
    with pytest.raises(ValueError, match=r"labels\['0.bias'\].layout='matrix': parameter 0.bias of shape \(8,\) has no"):
        build_optimizer(model, "muon", labels={"0.bias": ParameterLabel("matrix", "a bias")})
