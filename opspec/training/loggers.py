"""`train.log`: none, tensorboard or wandb — the per-step loss and LRs, the per-epoch metrics, the
optimizer step's share of time and the evaluation figures, written by rank 0 alone.

Every value is logged against the global training step (an epoch's metrics at its last step), so a
resumed run continues the same axis; TensorBoard drops events past the resume point, and wandb
runs offline (files under the run folder, no network) unless WANDB_MODE says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from opspec.core.errors import OpspecError

LOGGERS = ("none", "tensorboard", "wandb")


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


def check_logger(kind: str) -> None:
    """Refuse, in one line, a logger whose package is not installed (before a run folder is created)."""
    import importlib.util
    import sys

    module = {"tensorboard": "tensorboard", "wandb": "wandb"}.get(kind)
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
    return WandbLogger(Path(run_dir), config, start_step)
