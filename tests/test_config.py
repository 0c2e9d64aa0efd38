"""Configs: schema defaults, YAML files, dotted overrides, and one-line errors for bad keys or values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from opspec.training.config import Config, load_config, to_container
from opspec.core.errors import OpspecError

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_default_config_file_equals_schema_defaults():
    from_file = to_container(load_config(Path(__file__).parent.parent / "configs" / "darcy_fno.yaml"))
    assert from_file == to_container(load_config())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert set(to_container(cfg)) >= {"data", "model", "optimizer", "train", "seed"}
    assert cfg.data.train_resolution in cfg.data.eval_resolutions


def test_overrides_are_typed():
    cfg = load_config(overrides=["train.epochs=7", "optimizer.lr=1e-4", "model.n_modes=[6,6]", "seed=3"])
    assert cfg.train.epochs == 7 and cfg.optimizer.lr == pytest.approx(1e-4)
    assert list(cfg.model.n_modes) == [6, 6] and cfg.seed == 3
    assert isinstance(Config().train.epochs, int)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "unknown config key 'train.epoch'"),
        ("nonsense=1", "unknown config key 'nonsense'"),
        ("train.epochs=many", "key 'train.epochs'.*could not be converted to Integer"),
        ("optimizer.lr=-1", r"override .optimizer.lr=-1.: optimizer.lr=-1.0: expected a number in \(0, ∞\)"),
        ("optimizer.name=sgd", "optimizer.name='sgd', expected one of"),
        ("train.epochs", "expected key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(OpspecError, match=message):
        load_config(overrides=[override])


def test_bad_yaml_files(tmp_path):
    with pytest.raises(OpspecError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(OpspecError, match="expected a mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "typo.yaml").write_text("train:\n  batchsize: 3\n")
    with pytest.raises(OpspecError, match="unknown config key 'train.batchsize'"):
        load_config(tmp_path / "typo.yaml")
    (tmp_path / "broken.yaml").write_text("train: [unclosed\n")
    with pytest.raises(OpspecError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optimizer.betas=[0.9]"], r"optimizer.betas=\[0.9\]: expected two numbers"),
        (["optimizer.ns_steps=0"], "optimizer.ns_steps=0: expected an integer >= 1"),
        (["optimizer.momentum=2"], r"optimizer.momentum=2.0: expected a number in \[0, 1\)"),
        (["optimizer.eps=-1"], "optimizer.eps=-1.0: expected"),
        (["optimizer.lr=nan"], "optimizer.lr=nan: expected"),
        (["optimizer.lr=inf"], "optimizer.lr=inf: expected"),
        (["train.scheduler=step", "train.step_size=0"], "override 'train.step_size=0': train.step_size=0, expected an integer >= 1"),
        (["train.num_workers=-1"], "train.num_workers=-1, expected an integer >= 0"),
        (["train.gamma=-1"], "train.gamma=-1.0, expected a finite number > 0"),
        (["train.gamma=nan"], "train.gamma=nan, expected a finite number > 0"),
        (["seed=-1"], r"seed=-1, expected an integer in \[0, 2\*\*32\)"),
        (["model.n_modes=[0,0]"], r"model.n_modes=\[0, 0\], expected one integer >= 1"),
        # neuraloperator keeps n_modes of s Fourier modes on the first axes, n_modes//2+1 of s//2+1 on the last
        (["data.train_resolution=9", "model.n_modes=[10,4]"], r"expected at most \[9, 9\]"),
        (["data.train_resolution=8", "model.n_modes=[4,10]"], r"expected at most \[8, 9\]"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(overrides, message):
    with pytest.raises(OpspecError, match=message):
        load_config(overrides=overrides)


def test_the_largest_fno_modes_a_resolution_resolves_are_accepted():
    assert list(load_config(overrides=["data.train_resolution=9", "model.n_modes=[9,9]"]).model.n_modes) == [9, 9]
    assert list(load_config(overrides=["data.train_resolution=8", "model.n_modes=[8,9]"]).model.n_modes) == [8, 9]


def test_the_error_blames_the_override_or_file_that_set_the_bad_key(tmp_path):
    with pytest.raises(OpspecError, match=r"^override 'optimizer.lr=-1': optimizer.lr"):
        load_config(overrides=["optimizer.lr=-1", "train.epochs=3", "seed=2"])
    (tmp_path / "c.yaml").write_text("train:\n  num_workers: -2\n")
    with pytest.raises(OpspecError, match=rf"^{tmp_path / 'c.yaml'}: train.num_workers=-2"):
        load_config(tmp_path / "c.yaml", overrides=["train.epochs=3"])
    # a value bad only together with another: the one set last is blamed
    with pytest.raises(OpspecError, match=r"^override 'data.train_resolution=9': model.n_modes=\[12, 12\]"):
        load_config(overrides=["data.train_resolution=9", "train.epochs=3"])


@pytest.mark.parametrize("bad, line", [
    ("optimizer.lr=-1", r"optimizer\.lr=-1\.0: expected a number in \(0, ∞\)"),
    ("optimizer.momentum=2", r"optimizer\.momentum=2\.0: expected a number in \[0, 1\)"),
    ("train.num_workers=-1", r"train\.num_workers=-1, expected an integer >= 0"),
    ("train.epochs=two", r"key 'train\.epochs': Value 'two' .*Integer"),
    ("train.epoch=2", r"unknown config key 'train\.epoch'"),
])
def test_a_bad_override_between_good_ones_is_the_one_blamed(bad, line):
    with pytest.raises(OpspecError) as caught:
        load_config(overrides=["seed=2", bad, "train.batch_size=5"])
    message = str(caught.value)
    assert "\n" not in message
    assert re.match(rf"^override {re.escape(repr(bad))}: {line}", message), message
    assert "seed" not in message and "batch_size" not in message
