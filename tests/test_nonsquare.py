"""Non-square grids: per-axis strides, '/K' strides, labels, one-line errors, and a training run on 9×17."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from opspec.data import CanonicalFile, OperatorDataset, write_canonical
from opspec.data.canonical import parse_resolution
from opspec.core.errors import OpspecError
from opspec.training.trainer import main as train_main


@pytest.fixture()
def rect_file(tmp_path) -> tuple[Path, dict]:
    """A nodal 9 × 17 grid: a smooth a, and u = a² + x (so a model can learn it a little)."""
    rng = np.random.default_rng(0)
    x, y = np.linspace(0, 1, 9), np.linspace(0, 1, 17)
    data = {}
    for split, n in (("train", 12), ("test", 4)):
        c = rng.normal(size=(n, 3, 1, 1))
        a = c[:, 0] * np.sin(np.pi * x)[:, None] + c[:, 1] * np.cos(np.pi * y)[None] + c[:, 2]
        data[split] = (a, a**2 + x[:, None])
    path = write_canonical(tmp_path / "rect.h5", {s: [d] for s, d in data.items()}, {"train": 12, "test": 4},
                           problem="darcy", coords={"x": x, "y": y})
    return path, {s: (a.astype(np.float32), u.astype(np.float32)) for s, (a, u) in data.items()}


def test_strides_points_and_labels_per_axis(rect_file):
    path, data = rect_file
    f = CanonicalFile(path)
    assert f.grid_shape == (9, 17) and f.grid_size is None
    assert f.strides("/2") == (2, 2) and f.points("/2") == (5, 9) and f.label("/2") == "5x9"
    assert f.strides([5, 17]) == (2, 1) and f.label([9, 17]) == "9x17" and f.strides("3x5") == (4, 4)
    assert f.valid_resolutions() == [(9, 17), (5, 9), (3, 5), (2, 3)]
    np.testing.assert_array_equal(f.read("train", "u", [3, 9]), data["train"][1][:, ::4, ::2])
    np.testing.assert_allclose(f.coords("/4")["y"], np.linspace(0, 1, 5))
    with pytest.raises(OpspecError, match=r"valid points per axis: x: \[9, 5, 3, 2\], y: \[17, 9, 5, 3, 2\]") as err:
        f.strides([4, 9])
    assert "\n" not in str(err.value)
    assert f.strides(9) == (1, 2)  # an int means that many points on every axis, whatever stride each needs
    with pytest.raises(OpspecError, match="resolution 4 is not a strided subsample"):
        f.strides(4)
    with pytest.raises(OpspecError, match="gives 1 axes; the grid has 2"):
        f.strides([9])
    assert parse_resolution("64x128") == [64, 128] and parse_resolution("/2") == "/2" and parse_resolution("33") == 33
    a, u = OperatorDataset(f, "test", "/2")[[0, 3]]
    assert a.shape == (2, 1, 5, 9) and u.shape == (2, 1, 5, 9)


def test_training_and_evaluation_on_a_non_square_grid(rect_file, tmp_path, capsys):
    path, _ = rect_file
    overrides = ["model.n_modes=[4,4]", "model.hidden_channels=8", "model.n_layers=2", "train.batch_size=4",
                 "train.eval_batch_size=8", "train.progress=false", "data.generate=false", "train.epochs=2",
                 f"data.path={path}", f"out_dir={tmp_path / 'runs'}", "data.train_resolution=[5,9]",
                 "data.eval_resolutions=[/2,[9,17]]", "data.in_memory=false"]
    assert train_main(overrides) == 0
    out = capsys.readouterr().out
    assert "5x9 (train)" in out and "9x17" in out
    results = json.loads((tmp_path / "runs" / "darcy_fno" / "eval.json").read_text())
    assert set(results) == {"5x9", "9x17"} and results["9x17"]["n_samples"] == 4
    lines = [json.loads(line) for line in (tmp_path / "runs" / "darcy_fno" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and np.isfinite(lines[-1]["test_rel_l2"])
