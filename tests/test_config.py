"""Configs: schema defaults, YAML files, dotted overrides, and one-line errors for bad keys or values."""

from __future__ import annotations

from pathlib import Path

import pytest

from opspec.config import Config, load_config, to_container
from opspec.errors import OpspecError

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
