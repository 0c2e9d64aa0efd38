"""A sweep from start (or a killed sweep's restart) to its report: restore, plan, run, repeat, analyse."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from omegaconf import OmegaConf

from opspec.core.errors import OpspecError
from opspec.core.fileio import atomic_write_text
from opspec.sweep.analysis import write_report
from opspec.sweep.plan import pending_trials
from opspec.sweep.records import ResultStore, TrialSpec
from opspec.sweep.spec import SweepSpec, spec_dict


class Executor(Protocol):
    """Runs trials (Ray Tune or inline)."""

    def restore_unfinished(self) -> None:
        """Finish what a killed sweep left running."""

    def run(self, trials: list[TrialSpec]) -> None:
        """Train every trial of one round."""

    def close(self) -> None:
        """Release what the executor holds."""


def _unique(trials: list[TrialSpec]) -> list[TrialSpec]:
    """Trials without duplicate keys, in order."""
    seen: dict[str, TrialSpec] = {}
    for t in trials:
        seen.setdefault(t.key, t)
    return list(seen.values())


def run_sweep(spec: SweepSpec, sweep_dir: Path, executor: Executor, command: str, max_rounds: int = 100) -> str:
    """Train every trial the protocol asks for (never one that finished), then write the report."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(sweep_dir / "spec.yaml", OmegaConf.to_yaml(OmegaConf.create(spec_dict(spec))))
    store = ResultStore(sweep_dir)
    try:
        executor.restore_unfinished()
        for _ in range(max_rounds):
            pending = _unique(pending_trials(spec, store.load()))
            if not pending:
                break
            print(f"sweep: {len(pending)} trials to run: {', '.join(t.key for t in pending)}", flush=True)
            executor.run(pending)
            done = store.load()
            failed = [t.key for t in pending if t.key not in done]
            if failed:
                raise OpspecError(f"trial {failed[0]} (and {len(failed) - 1} more) did not finish: its error is in "
                                  f"{sweep_dir / 'tune'} (Ray's trial logs); run the sweep again to retry it")
        else:
            raise OpspecError(f"the sweep planned more than {max_rounds} rounds; expected fewer (extend_edges too large?)")
    finally:
        executor.close()
    return write_report(list(store.load().values()), spec, sweep_dir, command)


def records(sweep_dir: Path) -> list[dict[str, Any]]:
    """A sweep folder's finished trials."""
    return list(ResultStore(sweep_dir).load().values())
