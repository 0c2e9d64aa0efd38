"""Every model in the zoo × every option it takes, out of range: one line naming the option and what was
expected, before anything is built; the model against its data (dimensions, modes, the output's grid);
sfno and localno train where torch_harmonics is installed."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch
import yaml
from omegaconf import OmegaConf
from torch import nn

from conftest import TINY_OVERRIDES
from opspec.core.errors import OpspecError
from opspec.models import build_model
from opspec.models.zoo import (CLASS_KEYWORDS, COMMON_KEYS, DATA_KEYS, MODELS, OPTION_RULES, constructor_keywords,
                               model_class, model_keywords, probe_model)
from opspec.training.config import load_config
from opspec.training.trainer import Trainer, main

HAS_HARMONICS = importlib.util.find_spec("torch_harmonics") is not None
AVAILABLE = [name for name in MODELS if HAS_HARMONICS or MODELS[name].package != "torch_harmonics"]
SMALL = ["model.n_modes=[4,4]", "model.hidden_channels=8", "model.n_layers=2"]

# Out-of-range values of every option in OPTION_RULES (as a user types them after `model.options.KEY=`).
BAD: dict[str, list[str]] = {
    **{key: ["maybe", "2"] for key in ("use_channel_mlp", "fixed_rank_modes", "separable", "preactivation",
                                       "nonlinear_attention", "per_channel_attention", "use_positional_encoding",
                                       "use_horizontal_skip_connection", "enable_cls_token", "verbose")},
    "complex_data": ["true"],
    "positional_embedding": ["spiral", "3"],
    "non_linearity": ["linear", "softmax", "nope", "3"],
    "norm": ["ada_in", "layer_norm"],
    "channel_mlp_dropout": ["-0.1", "1", "1.5", "x"],
    "channel_mlp_expansion": ["0", "-1", "0.01", "x"],
    "channel_mlp_skip": ["id", "gate"],
    "fno_skip": ["id", "gate"],
    "horizontal_skip": ["id", "gate"],
    "resolution_scaling_factor": ["2", "0", "-1", "[2,1]", "[[2,2],[1,1]]"],
    "domain_padding": ["-0.5", "1.5", "[0.1]", "[0.1,-0.1]", "x"],
    "fno_block_precision": ["quarter", "double"],
    "stabilizer": ["relu"],
    "max_n_modes": ["[2,2]", "[4]", "[4,x]"],
    "factorization": ["svd", "3"],
    "rank": ["0", "-1", "abc", "true", ".nan", ".inf"],
    "implementation": ["fast"],
    "decomposition_kwargs": ["5", "[1]"],
    "lifting_channels": ["0", "-3", "1.5"],
    "projection_channels": ["0", "-3", "1.5"],
    "uno_out_channels": ["[8]", "[8,0]", "8"],
    "uno_n_modes": ["[[4,4]]", "[[4,4],[0,4]]", "[[4],[4]]"],
    "uno_scalings": ["[[2,2],[1,1]]", "[[1,1]]", "[[0,1],[1,1]]"],
    "horizontal_skips_map": ["[1]", "5"],
    "output_variable_codimension": ["0"],
    "hidden_variable_codimension": ["0", "-2"],
    "n_heads": ["[0,1]", "[1]"],
    "per_layer_scaling_factors": ["[[2,2],[1,1]]", "[[1,1]]"],
    "attention_scaling_factors": ["[0,1]", "[1]"],
    "attention_token_dim": ["0"],
    "positional_encoding_dim": ["0"],
    "positional_encoding_modes": ["[0,4]", "[4]", "x"],
    "static_channel_dim": ["-1", "2"],
    "variable_ids": ["5", "[1]", "[]"],
    "layer_kwargs": ["5"],
}


def _taken(name: str) -> list[str]:
    """The option keys model `name` takes that model.options may set."""
    accepted = constructor_keywords(model_class(name)) or set()
    owned = set(MODELS[name].owns)
    return sorted(k for k in accepted if k not in DATA_KEYS and (k not in COMMON_KEYS or k in owned))


def test_the_range_table_covers_every_option_of_every_zoo_model():
    """No keyword of fno, tfno, uno or codano reaches the constructor unchecked: each has a range (or is
    a class keyword, refused); each range has out-of-range values in this test's table."""
    for name in ("fno", "tfno", "uno", "codano"):
        unchecked = [k for k in _taken(name) if k not in OPTION_RULES and k not in CLASS_KEYWORDS]
        assert unchecked == [], (name, unchecked)
    assert sorted(OPTION_RULES) == sorted(BAD)


CASES = [(name, key) for name in AVAILABLE for key in _taken(name) if key in BAD]


@pytest.mark.parametrize("name, key", CASES)
def test_every_model_refuses_every_option_out_of_range_before_it_is_built(name, key, monkeypatch):
    """Each value as `model.options.KEY=VALUE` gives it (YAML): one line naming it, and no constructor call."""
    def built(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(model_class(name), "__init__", built)
    base = {"name": name, "n_modes": [4, 4], "hidden_channels": 8, "n_layers": 2, "lifting_channel_ratio": 2,
            "projection_channel_ratio": 2, "options": {"default_in_shape": [9, 9]} if name == "localno" else {}}
    for value in BAD[key]:
        cfg = OmegaConf.create({**base, "options": {**base["options"], key: yaml.safe_load(value)}})
        with pytest.raises(OpspecError, match=rf"^model\.options\.{key}=.*: expected "):
            model_keywords(name, cfg, 1, 1, 2)


def test_the_config_path_refuses_the_reported_values_before_the_run_folder(tiny_overrides, tmp_path, capsys):
    """The issue's examples through the CLI: a TFNO rank of 0, fno_block_precision=quarter, domain_padding=-0.5."""
    for option in ("model.options.rank=0", "model.options.fno_block_precision=quarter",
                   "model.options.domain_padding=-0.5", "model.options.non_linearity=linear"):
        assert main([*tiny_overrides, "model.name=tfno", option]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"error: {option.split('=')[0]}="), err
    assert not (tmp_path / "runs").exists()


def test_codano_positional_encoding_needs_its_variable_ids_and_modes():
    cfg = load_config(overrides=[*SMALL, "model.name=codano", "model.options.use_positional_encoding=true"])
    with pytest.raises(OpspecError, match=r"^model\.options\.use_positional_encoding=true: expected model\.options\.variable_ids"):
        model_keywords("codano", cfg.model, 1, 1, 2)


def test_a_class_keyword_is_refused_by_name():
    cases = [(n, k) for n in AVAILABLE if n != "localno" for k in CLASS_KEYWORDS if k in _taken(n)]
    assert {k for _, k in cases} == set(CLASS_KEYWORDS)
    for name, key in cases:
        cfg = load_config(overrides=[*SMALL, f"model.name={name}", f"model.options.{key}=SpectralConv"])
        with pytest.raises(OpspecError, match=rf"^model\.options\.{key}: .* takes a class there"):
            model_keywords(name, cfg.model, 1, 1, 2)


@pytest.mark.parametrize("overrides", [
    ["model.name=tfno", "model.options.rank=0.5"],
    ["model.options.domain_padding=0.25", "model.options.non_linearity=silu", "model.options.norm=group_norm"],
    ["model.options.resolution_scaling_factor=[2,0.5]"],
    ["model.name=uno", "model.options.uno_scalings=[[0.5,0.5],[2,2]]"],
])
def test_options_in_range_build_a_model_on_the_input_grid(overrides):
    cfg = load_config(overrides=[*SMALL, *overrides])
    model = build_model(cfg.model, 1, 1, 2)
    assert all(p.numel() > 0 for p in model.parameters())
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 1, 16, 16)


# -- the model against its data ---------------------------------------------------------------------------


def test_codano_on_one_dimensional_data_is_one_line():
    cfg = load_config(overrides=["model.name=codano", "model.n_modes=[4]", "model.hidden_channels=8"])
    with pytest.raises(OpspecError, match=r"^model\.name='codano': the data has 1 spatial dimension"):
        build_model(cfg.model, 1, 1, 1)


@pytest.mark.parametrize("name", ["fno", "tfno", "uno", "codano"])
def test_modes_beyond_the_training_grid_are_refused_for_every_spectral_model(name):
    """9 points resolve at most 9 modes on the first axis and 9 // 2 on the last (the real FFT's)."""
    with pytest.raises(OpspecError, match=r"model\.n_modes=\[10, 4\] is more than data\.train_resolution=9 resolves"):
        load_config(overrides=[*SMALL, f"model.name={name}", "model.n_modes=[10,4]", "data.train_resolution=9"])
    load_config(overrides=[*SMALL, f"model.name={name}", "model.n_modes=[9,9]", "data.train_resolution=9"])


@pytest.mark.parametrize("resolution, modes, extra, message", [
    ("'/2'", "[10,4]", [], r"model\.n_modes=\[10, 4\] is more than the training grid \[9, 9\] resolves"),
    ("'/2'", "[4,4]", ["model.name=uno", "model.options.uno_n_modes=[[4,4],[12,4]]"],
     r"model\.options\.uno_n_modes=\[12, 4\] is more than the training grid \[9, 9\]"),
])
def test_a_strided_training_resolution_gets_the_same_modes_check(resolution, modes, extra, message, darcy_file,
                                                                 tmp_path, capsys):
    """'/2' of the 17-point file is 9 points: the check the count 9 gets, made on the grid the file gives."""
    args = [*TINY_OVERRIDES, f"data.path={darcy_file}", f"out_dir={tmp_path / 'ck'}", f"model.n_modes={modes}",
            f"data.train_resolution={resolution}", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert not (tmp_path / "ck").exists()


def test_the_probe_refuses_a_model_whose_output_is_off_the_targets_grid():
    with pytest.raises(OpspecError, match=r"output has shape \[1, 8, 8\], the target \[1, 4, 4\]"):
        probe_model(nn.Upsample(scale_factor=2), torch.randn(1, 1, 4, 4), (1, 4, 4), "fno")
    with pytest.raises(OpspecError, match=r"fails on the data's input of shape \[2, 4, 4\]"):
        probe_model(nn.Conv2d(1, 1, 1), torch.randn(1, 2, 4, 4), (1, 4, 4), "fno")


def test_half_precision_blocks_off_cuda_are_refused_before_the_run_folder(tiny_overrides, tmp_path, capsys):
    assert main([*tiny_overrides, "train.device=cpu", "model.options.fno_block_precision=half"]) == 2
    assert "half-precision FFTs run on CUDA only" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# -- sfno and localno (torch_harmonics) ---------------------------------------------------------------------


@pytest.mark.skipif(not HAS_HARMONICS, reason="needs torch_harmonics (pip install --no-build-isolation "
                                               "'opspec[harmonics]', docs/models.md)")
@pytest.mark.parametrize("name, epochs, extra", [("sfno", 2, []), ("localno", 1, ["model.options.default_in_shape=[9,9]"])])
def test_sfno_and_localno_train(name, epochs, extra, tiny_overrides):
    """sfno trains and lowers its loss; localno (slower on the CPU) trains an epoch to a finite error."""
    cfg = load_config(overrides=[*tiny_overrides, f"model.name={name}", "optimizer.name=adamw", "optimizer.lr=3e-3",
                                 f"train.epochs={epochs}", "data.eval_resolutions=[9]", *extra])
    trainer = Trainer(cfg)
    history = trainer.fit()
    trainer.close()
    assert [r["epoch"] for r in history] == list(range(1, epochs + 1))
    assert history[-1]["train_loss"] < history[0]["train_loss"] or epochs == 1
    assert 0 < history[-1]["test_rel_l2"] < 10 and (trainer.run_dir / "last.pt").is_file()
