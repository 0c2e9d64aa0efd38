"""Where trials run: on Ray Tune (embedded local Ray by default, a running cluster with `address`; one
Tune experiment per planning round, restored by Tuner.restore when a killed sweep starts again), or inline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from opspec.core.errors import OpspecError
from opspec.sweep.records import ResultStore, TrialSpec
from opspec.sweep.spec import SweepSpec
from opspec.sweep.trial import TrialContext, run_trial

DONE_MARK = "opspec_round_done"


def tune_trial(config: dict[str, Any]) -> None:
    """The Ray Tune function trainable: one opspec trial, its final test error reported to Tune."""
    from ray import tune

    record = run_trial(TrialContext(**config["context"]), TrialSpec(**config["trial"]))
    final = record.get("final", {}).get(str(record.get("train_resolution")), -1.0)
    tune.report({"test_rel_l2": final, "diverged": int("diverged" in record)})


def _trial_name(trial: Any) -> str:
    """Ray's name and folder for a trial: opspec's trial key."""
    return TrialSpec(**trial.config["trial"]).key


def _import_ray():
    """Ray and Ray Tune, or one line naming the extra."""
    try:
        import ray
        from ray import tune
    except ImportError:
        raise OpspecError("python -m opspec.sweep: Ray Tune is not installed (pip install 'opspec[sweep]'); "
                          "--inline runs the trials in this process without Ray") from None
    return ray, tune


class RayExecutor:
    """Runs a round of trials as one Tune experiment under `<sweep>/tune/round_<k>`."""

    def __init__(self, spec: SweepSpec, ctx: TrialContext, address: str | None = None, num_cpus: int | None = None,
                 num_gpus: int | None = None) -> None:
        self.ray, self.tune = _import_ray()
        self.spec, self.ctx = spec, ctx
        self.storage = Path(ctx.sweep_dir).resolve() / "tune"
        os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"  # a trial changes to the sweep's start folder itself
        if not self.ray.is_initialized():
            if address:  # a cluster's workers get this process's PYTHONPATH (a local Ray's inherit it)
                env = {k: os.environ[k] for k in ("PYTHONPATH", "RAY_CHDIR_TO_TRIAL_DIR") if k in os.environ}
                self.ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": env})
            else:
                self.ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, log_to_driver=False)
        self.trainable = self.tune.with_resources(tune_trial, {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial})

    def _finish(self, folder: Path, tuner: Any) -> None:
        """Run a Tune experiment to its end and mark its round done."""
        tuner.fit()
        (folder / DONE_MARK).write_text("done\n")

    def restore_unfinished(self) -> None:
        """Finish the rounds a killed sweep left: Tune restarts their unfinished and errored trials."""
        for folder in sorted(self.storage.glob("round_*")):
            if (folder / DONE_MARK).exists():
                continue
            if not self.tune.Tuner.can_restore(str(folder)):  # killed before Tune saved its state: replanned
                (folder / DONE_MARK).write_text("abandoned: no experiment state to restore\n")
                continue
            print(f"sweep: restoring {folder.name}", flush=True)
            self._finish(folder, self.tune.Tuner.restore(str(folder), trainable=self.trainable, resume_unfinished=True,
                                                         resume_errored=True))

    def run(self, trials: list[TrialSpec]) -> None:
        """One round: every trial of `trials` as a grid point of a new Tune experiment."""
        tune = self.tune
        self.storage.mkdir(parents=True, exist_ok=True)
        name = f"round_{len(list(self.storage.glob('round_*'))) + 1}"
        tuner = tune.Tuner(
            self.trainable,
            param_space={"context": self.ctx.as_dict(), "trial": tune.grid_search([t.as_dict() for t in trials])},
            tune_config=tune.TuneConfig(max_concurrent_trials=self.spec.max_concurrent or None, reuse_actors=True,
                                        trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(name=name, storage_path=str(self.storage), verbose=1,
                                      failure_config=tune.FailureConfig(max_failures=0)),
        )
        self._finish(self.storage / name, tuner)

    def close(self) -> None:
        """Disconnect from Ray (an embedded local Ray stops)."""
        self.ray.shutdown()


class InlineExecutor:
    """Runs the trials one after another in this process (no Ray): small sweeps and tests."""

    def __init__(self, ctx: TrialContext, train: Any = run_trial) -> None:
        self.ctx, self.train = ctx, train

    def restore_unfinished(self) -> None:
        """Nothing to restore: a trial's own run folder carries its progress."""

    def run(self, trials: list[TrialSpec]) -> None:
        """Train each trial in turn; store a record the train function returned without storing it."""
        store = ResultStore(Path(self.ctx.sweep_dir))
        for trial in trials:
            print(f"{trial.optimizer} lr {trial.lr:g} seed {trial.seed} epochs {trial.epochs} ({trial.role})", flush=True)
            record = self.train(self.ctx, trial)
            if store.get(trial.key) is None:  # a train function that does not store its record itself
                store.put({"role": trial.role, **record, "key": trial.key})

    def close(self) -> None:
        """Nothing held."""
