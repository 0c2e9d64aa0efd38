"""train.log (opspec/loggers.py): TensorBoard events read back, wandb offline (a real offline run and a
recording stand-in for what the trainer logs), one-line errors for a missing package."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from opspec.core.errors import OpspecError
from opspec.training.loggers import RunLogger, build_logger


def _png(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1), dpi=20)
    fig.savefig(path)
    plt.close(fig)
    return path


class FakeWandb(types.ModuleType):
    """Records wandb.init's arguments and every logged dict."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.inits: list[dict] = []
        self.logged: list[dict] = []
        self.finished = 0
        self.Settings = lambda **kw: kw
        self.Image = lambda path: ("image", path)

    def init(self, **kw):
        self.inits.append(kw)
        fake = self
        return types.SimpleNamespace(id=kw.get("id") or "abc123", define_metric=lambda *a, **k: None,
                                     log=lambda d: fake.logged.append(dict(d)),
                                     finish=lambda: setattr(fake, "finished", fake.finished + 1))


def test_none_non_main_and_bad_kind():
    assert not build_logger("none", "/nonexistent", {}).active
    assert type(build_logger("wandb", "/nonexistent", {}, is_main=False)) is RunLogger
    with pytest.raises(OpspecError, match=r"train.log='comet': expected one of \['none', 'tensorboard', 'wandb', 'mlflow'\]"):
        build_logger("comet", "/nonexistent", {})


@pytest.mark.parametrize("kind, module", [("wandb", "wandb"), ("tensorboard", "torch.utils.tensorboard"),
                                          ("mlflow", "mlflow")])
def test_missing_package_is_one_line(kind, module, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(OpspecError, match=rf"^train.log={kind}: the {kind} package is not installed \(pip install 'opspec\[{kind}\]'\)$"):
        build_logger(kind, tmp_path, {})


def test_tensorboard_events_read_back_and_resume_drops_later_steps(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = build_logger("tensorboard", tmp_path, {}, "a: 1")
    for step in range(1, 7):
        log.log_step(step, {"loss": 1.0 / step, "lr/group0": 0.01})
    log.log_epoch(3, {"epoch": 1, "train_loss": 0.5, "note": "text is skipped"})
    log.log_epoch(6, {"epoch": 2, "train_loss": 0.25})
    log.log_figure("curves", _png(tmp_path / "c.png"), 6)
    log.close()
    log = build_logger("tensorboard", tmp_path, {}, start_step=4)  # resumed after step 3: steps 4-6 replayed
    log.log_step(4, {"loss": 9.0})
    log.close()

    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert {"step/loss", "step/lr/group0", "epoch/epoch", "epoch/train_loss"} <= set(events.Tags()["scalars"])
    assert "epoch/note" not in events.Tags()["scalars"] and events.Tags()["images"] == ["curves"]
    loss = {e.step: e.value for e in events.Scalars("step/loss")}
    assert loss == pytest.approx({1: 1.0, 2: 0.5, 3: 1 / 3, 4: 9.0})
    assert [(e.step, e.value) for e in events.Scalars("epoch/train_loss")] == [(3, 0.5)]


def test_wandb_is_offline_unless_told_and_resume_reuses_the_id(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    log = build_logger("wandb", tmp_path, {"seed": 0})
    log.log_step(1, {"loss": 0.5})
    log.log_epoch(1, {"epoch": 1, "train_loss": 0.5, "flag": True})
    log.log_figure("eval", tmp_path / "e.png", 1)
    log.close()
    assert fake.inits[0]["mode"] == "offline" and fake.inits[0]["dir"] == str(tmp_path) and fake.inits[0]["id"] is None
    assert fake.logged == [{"global_step": 1, "step/loss": 0.5}, {"global_step": 1, "epoch/epoch": 1.0, "epoch/train_loss": 0.5},
                           {"global_step": 1, "eval": ("image", str(tmp_path / "e.png"))}]
    monkeypatch.setenv("WANDB_MODE", "online")
    build_logger("wandb", tmp_path, {}, start_step=5)
    assert fake.inits[1]["mode"] == "online" and fake.inits[1]["id"] == "abc123" and fake.inits[1]["resume"] == "allow"


def test_real_wandb_offline_run_writes_under_the_run_folder(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    log = build_logger("wandb", tmp_path, {"seed": 0})
    log.log_step(1, {"loss": 0.5})
    log.log_figure("eval", _png(tmp_path / "e.png"), 1)
    log.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    assert (tmp_path / "wandb_id").read_text().strip() in runs[0].name


def test_trainer_logs_steps_epochs_lrs_optimizer_share_and_figures(tiny_overrides, monkeypatch):
    from opspec.training.trainer import main as train_main

    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    assert train_main(tiny_overrides + ["train.epochs=2", "train.log=wandb", "train.grad_clip=1.0"]) == 0
    steps = [d for d in fake.logged if "step/loss" in d]
    assert [d["global_step"] for d in steps] == list(range(1, 7))  # 12 samples, batch 4: 3 steps × 2 epochs
    assert all({"step/lr/group0", "step/lr/group1", "step/grad_norm"} <= set(d) for d in steps)
    epochs = [d for d in fake.logged if "epoch/test_rel_l2" in d]
    assert [d["global_step"] for d in epochs] == [3, 6]
    assert all(0 < d["epoch/optimizer_share"] < 1 for d in epochs)
    images = {k for d in fake.logged for k, v in d.items() if isinstance(v, tuple) and v[0] == "image"}
    assert images == {"curves", "eval_samples"} and fake.finished == 1


def test_mlflow_runs_read_back_through_mlflows_client(tiny_overrides, tmp_path, monkeypatch):
    """train.log=mlflow: the config as parameters, every epoch record and step value as metrics, the
    figures as artifacts, read back with MlflowClient from the default file store <out_dir>/mlruns;
    a resumed run continues the same MLflow run."""
    import json

    from mlflow import MlflowClient

    from opspec.training.trainer import main as train_main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    base = tiny_overrides + ["train.log=mlflow", "train.mlflow_experiment=tiny", "run_name=ml"]
    assert train_main(base + ["train.epochs=1"]) == 0
    run_dir = tmp_path / "runs" / "ml"
    assert train_main(["--resume", str(run_dir), "train.epochs=2"]) == 0
    client = MlflowClient(tracking_uri=(tmp_path / "runs" / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.run_name == "ml" and runs[0].info.status == "FINISHED"
    run_id = runs[0].info.run_id
    assert (run_dir / "mlflow_id").read_text().strip() == run_id
    params = runs[0].data.params
    assert params["optimizer.name"] == "muon" and params["train.epochs"] == "1" and params["seed"] == "0"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = 3  # 12 train samples in batches of 4
    for key in ("train_loss", "test_rel_l2", "lr"):
        history = client.get_metric_history(run_id, f"epoch/{key}")
        assert sorted((m.step, m.value) for m in history) == [(r["epoch"] * steps, pytest.approx(r[key])) for r in records]
    assert [m.step for m in client.get_metric_history(run_id, "step/loss")] == list(range(1, 2 * steps + 1))
    assert client.get_metric_history(run_id, "step/lr/group0")
    evaluated = json.loads((run_dir / "eval.json").read_text())
    final = client.get_metric_history(run_id, "epoch/final_rel_l2_mean_17")
    assert final[-1].value == pytest.approx(evaluated["17"]["rel_l2_mean"])
    figures = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert figures == {"figures/curves", "figures/eval_samples"}
