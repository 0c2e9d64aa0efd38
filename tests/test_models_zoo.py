"""model.name picks neuraloperator 2.0's regular-grid models; model.options passes constructor keywords."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from neuralop.models import FNO, TFNO

from opspec.training.config import CHOICES, load_config
from opspec.core.errors import OpspecError
from opspec.models import MODEL_NAMES, build_model

SMALL = ["model.hidden_channels=6", "model.n_layers=2", "model.n_modes=[4,4]"]
HAS_HARMONICS = importlib.util.find_spec("torch_harmonics") is not None


def _build(*overrides: str, n_space: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(load_config(overrides=[*SMALL, *overrides]).model, 1, 1, n_space)


def test_config_offers_every_model_name():
    assert tuple(CHOICES["model.name"]) == MODEL_NAMES


def test_fno_without_options_is_todays_fno_bit_for_bit():
    """The quick start's model: the same keywords, the same RNG draws, the same weights and outputs."""
    cfg = load_config().model
    torch.manual_seed(3)
    ours = build_model(cfg, 1, 1, 2)
    torch.manual_seed(3)
    theirs = FNO(n_modes=(12, 12), in_channels=1, out_channels=1, hidden_channels=32, n_layers=4,
                 lifting_channel_ratio=2, projection_channel_ratio=2)
    a, b = dict(ours.named_parameters()), dict(theirs.named_parameters())
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 1, 17, 17)
    assert torch.equal(ours(x), theirs(x))


def test_tfno_rank_and_factorizations():
    """Tucker 0.42 has a core and 4 factors per layer; CP weights + factors; TT four cores; each runs at two resolutions."""
    tucker = _build("model.name=tfno", "model.options.rank=0.42")
    names = [n for n, _ in tucker.named_parameters() if ".convs.0.weight" in n]
    assert names == ["fno_blocks.convs.0.weight.core"] + [f"fno_blocks.convs.0.weight.factors.factor_{k}" for k in range(4)]
    torch.manual_seed(0)
    reference = TFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=6, n_layers=2, rank=0.42)
    assert tucker.fno_blocks.convs[0].weight.core.shape == reference.fno_blocks.convs[0].weight.core.shape
    cp = _build("model.name=tfno", "model.options.factorization=cp", "model.options.rank=0.5")
    assert {n.rsplit(".", 1)[-1] for n, _ in cp.named_parameters() if ".convs.1.weight" in n} == {"weights", *{f"factor_{k}" for k in range(4)}}
    tt = _build("model.name=tfno", "model.options.factorization=tt")
    cores = [p for n, p in tt.named_parameters() if ".convs.0.weight.factors" in n]
    assert [c.ndim for c in cores] == [3, 3, 3, 3] and cores[0].shape[0] == 1 and cores[-1].shape[-1] == 1
    for model in (tucker, cp, tt):
        for size in (9, 17):
            assert model(torch.randn(2, 1, size, size)).shape == (2, 1, size, size)


def test_options_reach_the_constructor():
    padded = _build("model.options.domain_padding=0.25")
    assert padded.domain_padding is not None and padded.domain_padding.domain_padding == 0.25
    plain = _build("model.options.positional_embedding=null", "model.options.non_linearity=relu",
                   "model.options.channel_mlp_expansion=1.0")
    assert plain.positional_embedding is None and plain.non_linearity is torch.nn.functional.relu
    assert plain.lifting.fcs[0].weight.shape[1] == 1  # no grid channels appended
    assert plain.fno_blocks.channel_mlp[0].fcs[0].weight.shape[0] == 6  # expansion 1.0 × width 6
    x = torch.randn(2, 1, 9, 9)
    assert padded(x).shape == plain(x).shape == (2, 1, 9, 9)


def test_uno_and_codano_build_and_run_at_two_resolutions():
    for name in ("uno", "codano"):
        model = _build(f"model.name={name}")
        for size in (16, 24):
            assert model(torch.randn(2, 1, size, size)).shape == (2, 1, size, size), name
    uno = _build("model.name=uno", "model.n_layers=3", "model.options.uno_scalings=[[1,1],[0.5,0.5],[2,2]]",
                 "model.options.uno_out_channels=[6,8,6]", "model.options.domain_padding=0.1")
    assert uno(torch.randn(1, 1, 16, 16)).shape == (1, 1, 16, 16)


@pytest.mark.parametrize("overrides, message", [
    (["model.options.bogus=1"], r"^model\.options\.bogus: FNO takes no keyword 'bogus'$"),
    (["model.name=tfno", "model.options.rnak=0.4"], r"^model\.options\.rnak: TFNO takes no keyword 'rnak'$"),
    (["model.options.in_channels=3"], r"model\.options\.in_channels: set by the data"),
    (["model.options.hidden_channels=3"], r"model\.options\.hidden_channels: set model\.hidden_channels instead"),
    (["model.name=deeponet", "model.options.width=3"], r"model\.options\.width: DeepONet takes only"),
    (["model.options.non_linearity=nope"], r"model\.options\.non_linearity='nope'"),
])
def test_a_keyword_the_model_does_not_take_is_one_line_naming_it(overrides, message):
    with pytest.raises(OpspecError, match=message) as err:
        _build(*overrides)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(HAS_HARMONICS, reason="torch_harmonics is installed")
def test_models_of_a_missing_optional_package_are_refused_by_name():
    for name in ("sfno", "localno"):
        with pytest.raises(OpspecError, match=rf"model.name='{name}' needs the optional package 'torch_harmonics'"):
            _build(f"model.name={name}")


@pytest.mark.skipif(not HAS_HARMONICS, reason="needs torch_harmonics")
def test_sfno_builds_when_torch_harmonics_is_installed():
    model = _build("model.name=sfno")
    assert model(torch.randn(1, 1, 8, 16)).shape == (1, 1, 8, 16)


def test_options_travel_with_the_checkpointed_config():
    """evaluate rebuilds a model from its config: the options must survive the container round trip."""
    from opspec.training.config import to_container

    cfg = load_config(overrides=[*SMALL, "model.name=tfno", "model.options.rank=0.42", "model.options.domain_padding=[0.1,0.2]"])
    again = load_config(base=to_container(cfg))
    torch.manual_seed(1)
    a = build_model(cfg.model, 1, 1, 2)
    torch.manual_seed(1)
    b = build_model(again.model, 1, 1, 2)
    assert a.domain_padding.domain_padding == [0.1, 0.2]
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
