"""`train.log`: none, tensorboard, wandb or mlflow — the per-step loss and LRs, the per-epoch metrics,
the optimizer step's share of time and the evaluation figures, written by rank 0 alone.

Every value is logged against the global training step (an epoch's metrics at its last step), so a
resumed run continues the same axis; TensorBoard drops events past the resume point, wandb runs
offline (files under the run folder, no network) unless WANDB_MODE says otherwise, and MLflow writes
a local file store `<out_dir>/mlruns` unless `train.mlflow_uri` or MLFLOW_TRACKING_URI names a server.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping

from opspec.core.errors import OpspecError

LOGGERS = ("none", "tensorboard", "wandb", "mlflow")


class RunLogger:
    """The interface, and train.log=none: every call does nothing."""

    active = False

    def log_step(self, step: int, values: Mapping[str, float]) -> None:
        """Values of one training step (the loss, the LR of each group, the gradient norm)."""

    def log_epoch(self, step: int, record: Mapping[str, Any]) -> None:
        """An epoch's metrics.jsonl record (its numbers), at the global step that ended the epoch."""

    def log_figure(self, name: str, path: str | os.PathLike, step: int) -> None:
        """A PNG written by opspec (learning curves, test samples)."""

    def close(self) -> None:
        pass


def _numbers(record: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoardLogger(RunLogger):
    """Event files in <run>/tensorboard: scalars step/*, epoch/*, images, the config as text."""

    active = True

    def __init__(self, run_dir: Path, config_yaml: str, start_step: int = 0) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise OpspecError("train.log=tensorboard: the tensorboard package is not installed "
                              "(pip install 'opspec[tensorboard]')") from None
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"), purge_step=start_step or None)
        if not start_step:
            self.writer.add_text("config", "```\n" + config_yaml + "\n```", 0)

    def log_step(self, step: int, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(f"step/{key}", value, step)

    def log_epoch(self, step: int, record: Mapping[str, Any]) -> None:
        for key, value in _numbers(record).items():
            self.writer.add_scalar(f"epoch/{key}", value, step)
        self.writer.flush()

    def log_figure(self, name: str, path: str | os.PathLike, step: int) -> None:
        import matplotlib.image

        image = matplotlib.image.imread(str(path))[..., :3]  # RGBA floats in [0, 1] → RGB
        self.writer.add_image(name, image, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger(RunLogger):
    """A wandb run in <run>/wandb, offline unless WANDB_MODE is set; a resumed run reuses its id.
    WANDB_PROJECT names the project (default "opspec")."""

    active = True

    def __init__(self, run_dir: Path, config: Mapping[str, Any], start_step: int = 0) -> None:
        try:
            import wandb
        except ImportError:
            raise OpspecError("train.log=wandb: the wandb package is not installed (pip install 'opspec[wandb]')") from None
        self.wandb = wandb
        run_dir = Path(run_dir)
        id_file = run_dir / "wandb_id"
        run_id = id_file.read_text().strip() if start_step and id_file.exists() else None
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "opspec"),
            name=run_dir.name,
            dir=str(run_dir),
            config=dict(config),
            mode=os.environ.get("WANDB_MODE", "offline"),
            id=run_id,
            resume="allow" if run_id else None,
            settings=wandb.Settings(quiet=True, console="off"),
        )
        id_file.write_text(self.run.id + "\n")
        self.run.define_metric("global_step")
        self.run.define_metric("*", step_metric="global_step")

    def log_step(self, step: int, values: Mapping[str, float]) -> None:
        self.run.log({"global_step": step, **{f"step/{k}": v for k, v in values.items()}})

    def log_epoch(self, step: int, record: Mapping[str, Any]) -> None:
        self.run.log({"global_step": step, **{f"epoch/{k}": v for k, v in _numbers(record).items()}})

    def log_figure(self, name: str, path: str | os.PathLike, step: int) -> None:
        self.run.log({"global_step": step, name: self.wandb.Image(str(path))})

    def close(self) -> None:
        self.run.finish()


def _flat_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow parameters: dotted keys, values as text (MLflow's 6000-character cap)."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flat_params(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)[:6000]
    return flat


def mlflow_uri(setting: str, run_dir: Path) -> str:
    """The tracking URI: train.mlflow_uri, else MLFLOW_TRACKING_URI, else a file store beside the run folder."""
    uri = setting or os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri and "://" not in uri and not uri.startswith(("sqlite:", "file:", "databricks")):
        uri = Path(uri).resolve().as_uri()  # a plain folder: a file store there
    return uri or (Path(run_dir).resolve().parent / "mlruns").as_uri()


class MlflowLogger(RunLogger):
    """An MLflow run named after the run folder, the config as its parameters; a resumed run reuses its id
    (<run>/mlflow_id). A file store needs MLFLOW_ALLOW_FILE_STORE (MLflow 3 keeps it in maintenance
    mode): opspec sets it for the file stores it writes."""

    active = True

    def __init__(self, run_dir: Path, config: Mapping[str, Any], start_step: int = 0) -> None:
        try:
            from mlflow import MlflowClient
            from mlflow.entities import Metric, Param
        except ImportError:
            raise OpspecError("train.log=mlflow: the mlflow package is not installed (pip install 'opspec[mlflow]')") from None
        self.Metric = Metric
        run_dir = Path(run_dir)
        train = config.get("train", {})
        self.uri = mlflow_uri(str(train.get("mlflow_uri") or ""), run_dir)
        if self.uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=self.uri)
        id_file = run_dir / "mlflow_id"
        run_id = id_file.read_text().strip() if start_step and id_file.exists() else None
        if run_id is None:
            name = str(train.get("mlflow_experiment") or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "opspec")
            run = self.client.create_run(self._experiment(name), run_name=run_dir.name,
                                         tags={"opspec.run_dir": str(run_dir.resolve())})
            run_id = run.info.run_id
            params = [Param(k, v) for k, v in _flat_params(config).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
                self.client.log_batch(run_id, params=params[i:i + 100])
            id_file.write_text(run_id + "\n")
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id

    def _experiment(self, name: str) -> str:
        """The experiment's id, created if missing (another trial may create it at the same moment)."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except Exception:  # created meanwhile by a concurrent run: read it back
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _metrics(self, step: int, prefix: str, values: Mapping[str, Any]) -> None:
        """Log numeric values under `prefix` at `step`, in batches MLflow accepts."""
        stamp = int(time.time() * 1000)
        metrics = [self.Metric(f"{prefix}{k}", v, stamp, step) for k, v in _numbers(values).items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def log_step(self, step: int, values: Mapping[str, float]) -> None:
        self._metrics(step, "step/", values)

    def log_epoch(self, step: int, record: Mapping[str, Any]) -> None:
        self._metrics(step, "epoch/", record)

    def log_figure(self, name: str, path: str | os.PathLike, step: int) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path=f"figures/{name}")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def check_logger(kind: str) -> None:
    """Refuse, in one line, a logger whose package is not installed (before a run folder is created)."""
    import importlib.util
    import sys

    module = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}.get(kind)
    if module is None:
        return
    loaded = sys.modules.get(module, False)  # None: an import of it failed before (or a test hid it)
    if loaded is None or (loaded is False and importlib.util.find_spec(module) is None):
        raise OpspecError(f"train.log={kind}: the {module} package is not installed (pip install 'opspec[{module}]')")


def build_logger(kind: str, run_dir: str | os.PathLike, config: Mapping[str, Any], config_yaml: str = "",
                 is_main: bool = True, start_step: int = 0) -> RunLogger:
    """The logger `train.log` names; a do-nothing one on every rank but 0. `start_step`: the global
    step a resumed run continues from (0 for a new run)."""
    if kind not in LOGGERS:
        raise OpspecError(f"train.log={kind!r}: expected one of {list(LOGGERS)}")
    if kind == "none" or not is_main:
        return RunLogger()
    if kind == "tensorboard":
        return TensorBoardLogger(Path(run_dir), config_yaml, start_step)
    if kind == "mlflow":
        return MlflowLogger(Path(run_dir), config, start_step)
    return WandbLogger(Path(run_dir), config, start_step)
