"""Fast unit tests of opspec/training/trainer.py's helpers: plain values or a tmp folder, no training.

Each test fixes a hand-computed expectation, so a wrong number, a wrong file name or a branch taken the
wrong way fails (these are also the tests mutmut runs against train.py, docs/RESULTS.md).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import opspec.training.assemble as assemble
import opspec.training.trainer as train
from opspec.training.config import load_config, to_container, to_yaml
from opspec.training.distributed import Ranks
from opspec.core.errors import OpspecError
from opspec.core.fileio import FolderLock
from opspec.training.loggers import RunLogger
from opspec.training.precision import Precision


def bare_trainer(**attributes) -> train.Trainer:
    """A Trainer with only the attributes a method under test reads (no data, model or run folder)."""
    trainer = object.__new__(train.Trainer)
    defaults = {"ranks": Ranks(), "lock": None, "logger": RunLogger(), "notes": [], "epoch": 0,
                "created_dir": False, "_created_root": None}
    for key, value in {**defaults, **attributes}.items():
        setattr(trainer, key, value)
    return trainer


# -- resolve_device ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cuda", [False, True])
def test_auto_picks_cuda_exactly_when_it_is_available(cuda, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert train.resolve_device("auto") == torch.device("cuda" if cuda else "cpu")
    assert train.resolve_device("cpu") == torch.device("cpu")


def test_a_named_device_is_kept_or_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert train.resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(OpspecError, match=r"^train\.device='tpu0': expected auto, cpu, cuda or cuda:N$"):
        train.resolve_device("tpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(OpspecError, match=r"^train\.device='cuda:1': CUDA is not available on this machine$"):
        train.resolve_device("cuda:1")


# -- ensure_data -------------------------------------------------------------------------------------


@pytest.fixture()
def generation(monkeypatch):
    """Records generate_dataset's calls; open_data returns what it was asked to open."""
    calls: list[tuple[tuple, dict]] = []
    monkeypatch.setattr(train, "generate_dataset", lambda *args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.setattr(train, "open_data", lambda path: ("opened", Path(path)))
    return calls


def test_a_missing_file_is_generated_with_the_configs_settings(generation, tmp_path, capsys):
    path = tmp_path / "b.h5"
    cfg = load_config(overrides=["data.problem=burgers", f"data.path={path}", "data.grid_resolution=64",
                                 "data.n_train=7", "data.n_test=3", "data.seed=5", "data.viscosity=0.05",
                                 "data.train_resolution=64", "data.eval_resolutions=[64]", "model.n_modes=[8]"])
    assert train.ensure_data(cfg, progress=False, device=torch.device("cpu")) == ("opened", path)
    # burgers takes viscosity, time_step and device; "time" is not a config key, so it is not passed
    assert generation == [(("burgers", path), {"resolution": 64, "n_train": 7, "n_test": 3, "seed": 5,
                                               "progress": False, "viscosity": 0.05, "time_step": None,
                                               "device": "cpu"})]
    assert f"{path} is missing: generating 7+3 burgers samples at resolution 64 (seed 5)" in capsys.readouterr().out


def test_darcy_generation_gets_no_device_and_none_is_not_passed(generation, tmp_path):
    path = tmp_path / "d.h5"
    cfg = load_config(overrides=[f"data.path={path}", "data.grid_resolution=17", "data.train_resolution=17",
                                 "data.eval_resolutions=[17]", "model.n_modes=[4,4]"])
    train.ensure_data(cfg, progress=True, device=torch.device("cpu"))
    assert generation == [(("darcy", path), {"resolution": 17, "n_train": 500, "n_test": 100, "seed": 0, "progress": True})]
    generation.clear()
    burgers = load_config(base=to_container(cfg), overrides=["data.problem=burgers", "model.n_modes=[4]"])
    train.ensure_data(burgers, progress=True, device=None)
    assert "device" not in generation[0][1]


def test_a_name_without_glob_characters_is_generated_with_progress_by_default(generation, tmp_path):
    path = tmp_path / "DarcyX_s17.h5"  # letters are not glob characters: only * ? [ make a pattern
    cfg = load_config(overrides=[f"data.path={path}"])
    train.ensure_data(cfg)
    assert [(args, kwargs["progress"]) for args, kwargs in generation] == [(("darcy", path), True)]


@pytest.mark.parametrize("make, overrides", [
    (True, []),  # the file exists
    (False, ["data.generate=false"]),  # missing, generation off: open_data reports it
    (False, ["data.path={tmp}/runs_*.h5"]),  # a glob of files is never generated
])
def test_an_existing_file_a_glob_or_generate_false_is_only_opened(make, overrides, generation, tmp_path):
    path = tmp_path / "d.h5"
    if make:
        path.write_bytes(b"")
    cfg = load_config(overrides=[f"data.path={path}", *(o.format(tmp=tmp_path) for o in overrides)])
    assert train.ensure_data(cfg) == ("opened", Path(cfg.data.path))
    assert generation == []


def test_a_generator_that_refuses_its_arguments_ends_in_one_line(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise ValueError("resolution 3 is too small")

    monkeypatch.setattr(train, "generate_dataset", refuse)
    cfg = load_config(overrides=[f"data.path={tmp_path / 'd.h5'}"])
    with pytest.raises(OpspecError, match=r"^data: generating darcy: resolution 3 is too small$"):
        train.ensure_data(cfg, progress=False)


# -- optimizer_from_config, seed_everything ----------------------------------------------------------


def test_the_optimizer_gets_the_sections_options_over_every_parameter():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    cfg = load_config(overrides=["optimizer.name=adamw", "optimizer.lr=0.003", "optimizer.weight_decay=0.25"])
    optimizer = train.optimizer_from_config(model, cfg.optimizer)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert {g["lr"] for g in optimizer.param_groups} == {0.003}
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.25}
    ids = sorted(id(p) for g in optimizer.param_groups for p in g["params"])
    assert ids == sorted(id(p) for p in model.parameters())


def test_the_optimizer_shares_its_work_over_the_given_process_group(monkeypatch):
    calls = []
    monkeypatch.setattr(assemble, "build_optimizer", lambda model, name, **kwargs: calls.append((name, kwargs)))
    group = object()
    train.optimizer_from_config(torch.nn.Linear(2, 2), load_config(overrides=["optimizer.name=muon"]).optimizer, group)
    assert calls[0][0] == "muon" and calls[0][1]["process_group"] is group


def test_an_optimizer_that_refuses_an_option_ends_in_one_line(monkeypatch):
    def refuse(*args, **kwargs):
        raise ValueError("optimizer.lr=0: expected > 0")

    monkeypatch.setattr(assemble, "build_optimizer", refuse)
    with pytest.raises(OpspecError, match=r"^optimizer: optimizer\.lr=0: expected > 0$"):
        train.optimizer_from_config(torch.nn.Linear(2, 2), load_config().optimizer)


def test_seed_everything_seeds_python_numpy_and_torch():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = (random.Random(11).random(), np.random.RandomState(11).random_sample(),
                torch.rand(1, generator=torch.Generator().manual_seed(11)).item())
    train.seed_everything(11)
    assert (random.random(), np.random.random_sample(), torch.rand(1).item()) == expected


# -- run folders ------------------------------------------------------------------------------------


@pytest.mark.parametrize("files, holds", [((), False), (("last.pt",), True), (("metrics.jsonl",), True),
                                          (("best.pt", "config.yaml", "eval.json"), False)])
def test_a_folder_holds_a_run_when_it_has_last_pt_or_metrics(files, holds, tmp_path):
    for name in files:
        (tmp_path / name).write_bytes(b"")
    assert train._holds_run(tmp_path) is holds
    assert train._holds_run(tmp_path / "missing") is False


def test_run_folder_names_skip_those_that_hold_a_run(tmp_path):
    out = tmp_path / "out"
    first = train.run_dir_candidates(str(out), "exp")
    assert [next(first), next(first), next(first)] == [out / "exp", out / "exp_2", out / "exp_3"]
    for name, file in [("exp", "last.pt"), ("exp_2", "metrics.jsonl"), ("exp_4", "last.pt")]:
        (out / name).mkdir(parents=True)
        (out / name / file).write_bytes(b"")
    (out / "exp_3").mkdir()  # an empty folder holds no run: it is taken
    names = train.run_dir_candidates(str(out), "exp")
    assert [next(names), next(names)] == [out / "exp_3", out / "exp_5"]
    assert train.new_run_dir(str(out), "exp") == out / "exp_3"
    assert train.new_run_dir(str(out), "other") == out / "other"


# -- resume_changes ---------------------------------------------------------------------------------

SAVED = ["train.epochs=3", "optimizer.lr=0.01", "model.n_modes=[4,4]", "data.train_resolution=9"]


def _resume(overrides, epoch=3):
    saved = to_container(load_config(overrides=SAVED))
    return train.resume_changes(saved, load_config(overrides=overrides, base=saved), epoch, "runs/a/last.pt")


def test_flatten_gives_dotted_keys_of_nested_sections():
    tree = {"a": {"b": 1, "c": {"d": [2, 3]}}, "e": {}, "f": None}
    assert train._flatten(tree) == {"a.b": 1, "a.c.d": [2, 3], "e": {}, "f": None}
    assert train._flatten({"x": {"y": 0}}, "p.") == {"p.x.y": 0}


def test_resume_returns_the_honoured_changes_and_ignores_how_the_run_is_carried_out():
    assert _resume([]) == {}
    assert _resume(["train.device=cpu", "train.num_workers=2", "data.path=elsewhere.h5"]) == {}
    assert _resume(["train.epochs=5", "optimizer.lr=0.001", "train.progress=false"]) == {
        "optimizer.lr": (0.01, 0.001), "train.epochs": (3, 5)}


def test_resume_refuses_a_change_of_what_the_run_computes_naming_key_old_and_new():
    with pytest.raises(OpspecError, match=r"^--resume runs/a/last\.pt: model\.hidden_channels=16 would change the run "
                                          r"\(it has 32\); on resume only train\.epochs, optimizer\.lr and how"):
        _resume(["train.epochs=5", "model.hidden_channels=16"])


def test_resume_refuses_a_model_option_the_checkpoint_does_not_have():
    # model.options is free-form: the new key exists in one config only, and is still a change
    with pytest.raises(OpspecError, match=r"^--resume runs/a/last\.pt: model\.options"):
        _resume(["model.options.domain_padding=0.25"])


def test_resume_accepts_as_many_epochs_as_the_run_has_finished_and_no_fewer():
    assert _resume(["train.epochs=2"], epoch=2) == {"train.epochs": (3, 2)}
    with pytest.raises(OpspecError, match=r"^--resume runs/a/last\.pt: train\.epochs=2, but the run has finished "
                                          r"epoch 3; expected at least 3$"):
        _resume(["train.epochs=2"], epoch=3)


# -- divergence -------------------------------------------------------------------------------------


def test_why_not_finite_names_bad_data_a_zero_target_or_the_lr():
    a, u = torch.ones(3, 1, 4), torch.ones(3, 2, 4)
    bad_a, bad_u = a.clone(), u.clone()
    bad_a[2, 0, 1], bad_u[1, 1, 3] = math.nan, math.inf
    assert train._why_not_finite(bad_a, u, 0.1, 0.1) == "the batch holds NaN or Inf in the data"
    assert train._why_not_finite(a, bad_u, 0.1, 0.1) == "the batch holds NaN or Inf in the data"
    zero = u.clone()
    zero[0], zero[2] = 0, 0
    zero[1, 0] = 0  # one channel of sample 1 is zero, the other is not: sample 1 is fine
    assert train._why_not_finite(a, zero, 0.1, 0.1) == ("2 sample(s) of the batch have an all-zero target u, "
                                                        "whose relative L2 is 0/0, undefined")
    assert train._why_not_finite(a, u, 0.5, 0.25) == ("the weights diverged: optimizer.lr=0.5 is likely too large "
                                                      "(the LR of this step was 0.25)")


def test_stop_names_epoch_step_cause_and_the_checkpoint_kept(tmp_path):
    err = bare_trainer(epoch=2, saved_epoch=2, run_dir=tmp_path)._stop(3, 4, "the training loss is nan", "a cause")
    assert isinstance(err, train.DivergedError)
    assert str(err) == (f"epoch 3, step 4: the training loss is nan (a cause); the run is stopped and its last good "
                        f"checkpoint (epoch 2) is in {tmp_path}")
    err = bare_trainer(epoch=0, run_dir=tmp_path)._stop(1, 2, "x", "y")
    assert str(err) == "epoch 1, step 2: x (y); the run is stopped and no epoch finished, so there is no checkpoint"
    err = bare_trainer(epoch=4, saved_epoch=0, run_dir=tmp_path)._stop(5, 1, "x", "y")  # train.eval_every > 4
    assert str(err) == "epoch 5, step 1: x (y); the run is stopped and no checkpoint was saved yet"
    err = bare_trainer(epoch=5, saved_epoch=4, run_dir=tmp_path)._stop(6, 1, "x", "y")
    assert str(err).endswith(f"its last good checkpoint (epoch 4) is in {tmp_path}")


@pytest.mark.parametrize("bad", [None, math.nan, math.inf, -math.inf])
def test_grads_are_finite_unless_one_entry_of_one_gradient_is_not(bad):
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    trainer = bare_trainer(net=net)
    assert trainer._grads_finite()  # no gradients yet
    net(torch.ones(4, 2)).sum().backward()
    net[1].bias.grad = None  # a parameter without a gradient is skipped
    if bad is not None:
        net[0].weight.grad[2, 1] = bad
    assert trainer._grads_finite() is (bad is None)


def test_the_loss_is_this_ranks_share_of_the_mean_relative_l2(tmp_path):
    a = torch.tensor([[[3.0, 4.0]], [[1.0, 0.0]], [[0.0, 2.0]]])
    u = torch.tensor([[[3.0, 0.0]], [[2.0, 0.0]], [[0.0, 1.0]]])
    errors = [4 / 3, 1 / 2, 1.0]  # ‖a - u‖ / ‖u‖ per sample, by hand
    trainer = bare_trainer(train_net=torch.nn.Identity(), precision=Precision("fp32", torch.device("cpu")))
    assert trainer.loss(a, u).item() == pytest.approx(sum(errors) / 3, rel=1e-6)
    trainer.ranks = Ranks(rank=1, world_size=2)
    assert trainer.loss(a, u, n_global=12, weight=0.5).item() == pytest.approx(sum(errors) * 0.5 * 2 / 12, rel=1e-6)


# -- the run folder's life ---------------------------------------------------------------------------


def _tiny_cfg(tmp_path: Path, name: str = "exp"):
    return load_config(overrides=[f"out_dir={tmp_path / 'out' / 'runs'}", f"run_name={name}"])


def test_start_claims_a_fresh_locked_folder_with_empty_metrics_and_the_config(tmp_path):
    cfg = _tiny_cfg(tmp_path)
    (tmp_path / "out" / "runs" / "exp").mkdir(parents=True)
    (tmp_path / "out" / "runs" / "exp" / "last.pt").write_bytes(b"old")  # holds a run: never overwritten
    first = bare_trainer(cfg=cfg)
    first._start(None)
    run = tmp_path / "out" / "runs" / "exp_2"
    assert first.run_dir == run and first.metrics_path == run / "metrics.jsonl"
    assert (run / "metrics.jsonl").read_text() == ""
    assert (run / "config.yaml").read_text() == to_yaml(cfg)
    assert first.created_dir and first._created_root == run and first.lock is not None
    assert (tmp_path / "out" / "runs" / "exp" / "last.pt").read_bytes() == b"old"
    second = bare_trainer(cfg=cfg)
    second._start(None)  # exp_2 now holds a run (its metrics.jsonl): the next name
    assert second.run_dir == tmp_path / "out" / "runs" / "exp_3"
    given = bare_trainer(cfg=cfg)
    given._start(run)  # an explicit run_dir is used as it is
    assert given.run_dir == run and not given.created_dir and given._created_root is None
    for trainer in (first, second, given):
        trainer.close()


def test_start_records_the_highest_folder_it_created(tmp_path):
    trainer = bare_trainer(cfg=_tiny_cfg(tmp_path))
    trainer._start(None)
    assert trainer._created_root == tmp_path / "out" and trainer.created_dir
    trainer.close()


def test_start_skips_a_folder_another_trainer_holds_and_refuses_it_when_named(tmp_path, monkeypatch):
    cfg = _tiny_cfg(tmp_path)
    held = tmp_path / "out" / "runs" / "exp"
    held.mkdir(parents=True)
    (held / ".lock").write_text("pid 4242 on elsewhere\n")
    acquire = FolderLock.acquire
    monkeypatch.setattr(FolderLock, "acquire", lambda self: False if self.folder == held else acquire(self))
    trainer = bare_trainer(cfg=cfg)
    trainer._start(None)
    assert trainer.run_dir == tmp_path / "out" / "runs" / "exp_2"
    assert not (held / "metrics.jsonl").exists()
    trainer.close()
    with pytest.raises(OpspecError, match=rf"^{held}: another trainer \(pid 4242 on elsewhere\) is writing this run "
                                          "folder; expected one writer per run folder$"):
        bare_trainer(cfg=cfg)._start(held)


def test_start_under_a_file_ends_in_one_line_naming_out_dir(tmp_path):
    (tmp_path / "out").write_text("a file")
    cfg = _tiny_cfg(tmp_path)
    with pytest.raises(OpspecError, match=rf"^out_dir={tmp_path / 'out' / 'runs'}: cannot create the run folder "
                                          rf"{tmp_path / 'out' / 'runs' / 'exp'} \(Not a directory\)$"):
        bare_trainer(cfg=cfg)._start(None)


@pytest.mark.parametrize("given", [False, True])
def test_a_failed_first_write_ends_in_one_line_and_removes_only_a_folder_it_made(given, tmp_path, monkeypatch):
    write = train.atomic_write_text

    def full_disk(path, text):
        if Path(path).name == "config.yaml":
            raise OSError(28, "No space left on device", str(path))
        write(path, text)

    monkeypatch.setattr(train, "atomic_write_text", full_disk)
    run = tmp_path / "out" / "runs" / "exp"
    if given:
        run.mkdir(parents=True)  # an existing folder named by the caller is not removed
    suffix = "" if given else "; the run folder is removed"
    with pytest.raises(OpspecError, match=rf"^{run / 'config.yaml'}: No space left on device{suffix}$"):
        bare_trainer(cfg=_tiny_cfg(tmp_path))._start(run if given else None)
    assert run.is_dir() is given and (tmp_path / "out").exists() is given


def test_a_run_folder_that_cannot_be_locked_ends_in_one_line(tmp_path, monkeypatch):
    def refuse(self):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(FolderLock, "acquire", refuse)
    with pytest.raises(OpspecError, match=rf"^{tmp_path}: cannot write in the run folder \(Read-only file system\)$"):
        bare_trainer()._lock(tmp_path)


def test_discard_removes_a_new_empty_run_and_the_folders_made_for_it(tmp_path):
    trainer = bare_trainer(cfg=_tiny_cfg(tmp_path))
    trainer._start(None)
    (tmp_path / "keep").mkdir()
    assert trainer.discard() is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]  # out/ and out/runs/ were made for the run
    assert trainer.lock is None and FolderLock._held.get((tmp_path / "out" / "runs" / "exp").resolve()) is None


def test_discard_keeps_folders_it_did_not_make_or_that_hold_something(tmp_path):
    (tmp_path / "out" / "runs").mkdir(parents=True)
    (tmp_path / "out" / "runs" / "other").mkdir()
    trainer = bare_trainer(cfg=_tiny_cfg(tmp_path))
    trainer._start(None)
    assert trainer._created_root == tmp_path / "out" / "runs" / "exp"
    assert trainer.discard() is True
    assert sorted(p.name for p in (tmp_path / "out" / "runs").iterdir()) == ["other"]


def test_discard_keeps_an_empty_out_dir_that_was_there_before(tmp_path):
    (tmp_path / "out" / "runs").mkdir(parents=True)  # the user's (empty) folders
    trainer = bare_trainer(cfg=_tiny_cfg(tmp_path))
    trainer._start(None)
    assert trainer.discard() is True
    assert (tmp_path / "out" / "runs").is_dir() and list((tmp_path / "out" / "runs").iterdir()) == []


@pytest.mark.parametrize("change", ["epoch", "not_created", "other_rank", "extra_file"])
def test_discard_leaves_a_run_that_finished_an_epoch_or_is_not_its_own(change, tmp_path):
    trainer = bare_trainer(cfg=_tiny_cfg(tmp_path))
    trainer._start(None)
    run = trainer.run_dir
    if change == "epoch":
        trainer.epoch = trainer.saved_epoch = 1
    elif change == "not_created":
        trainer.created_dir = False
    elif change == "other_rank":
        trainer.ranks = Ranks(rank=1, world_size=2)
    else:
        (run / "last.pt").write_bytes(b"weights")
    assert trainer.discard() is False
    assert run.is_dir() and (run / ".lock").exists()
    if change == "extra_file":
        assert sorted(p.name for p in run.iterdir()) == [".lock", "last.pt"]
    else:
        assert (run / "metrics.jsonl").exists() and (run / "config.yaml").exists()
    trainer.close()
    trainer.close()  # twice is harmless
    assert trainer.lock is None and isinstance(trainer.logger, RunLogger)


def test_on_main_returns_the_result_or_raises_the_same_line():
    trainer = bare_trainer()
    assert trainer._on_main(lambda: 41 + 1) == 42

    def fail():
        raise OpspecError("runs/a: no space left")

    with pytest.raises(OpspecError, match=r"^runs/a: no space left$"):
        trainer._on_main(fail)


@pytest.mark.parametrize("improved", [False, True])
def test_save_epoch_writes_last_then_best_when_improved_then_the_metrics_line(improved, tmp_path):
    trainer = bare_trainer(run_dir=tmp_path)
    trainer.checkpoint = lambda record: {"epoch": record["epoch"], "weights": torch.arange(3.0)}
    (tmp_path / "best.pt").write_bytes(b"older best")
    trainer._save_epoch({"epoch": 2, "test_rel_l2": 0.25}, improved)
    assert torch.load(tmp_path / "last.pt")["epoch"] == 2
    if improved:
        assert (tmp_path / "best.pt").read_bytes() == (tmp_path / "last.pt").read_bytes()
    else:
        assert (tmp_path / "best.pt").read_bytes() == b"older best"
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"epoch": 2, "test_rel_l2": 0.25}]


def test_log_final_logs_every_resolution_the_curves_and_the_samples_of_the_last_one(tmp_path, monkeypatch):
    calls = []
    logger = SimpleNamespace(log_epoch=lambda step, values: calls.append(("epoch", step, values)),
                             log_figure=lambda name, path, step: calls.append(("figure", name, Path(path), step)))
    plotted = []

    def plot(net, file, resolution, path):
        plotted.append((net, file))
        calls.append(("plot", resolution, path))
        return path

    monkeypatch.setattr(train, "plot_samples", plot)
    cfg = load_config(overrides=["data.eval_resolutions=[9,17,33]"])
    net, file = torch.nn.Linear(1, 1), object()
    trainer = bare_trainer(cfg=cfg, logger=logger, epoch=3, steps_per_epoch=5, run_dir=tmp_path, net=net, file=file)
    train.log_final(trainer, {9: {"rel_l2_mean": 0.5}, 33: {"rel_l2_mean": 0.25}})
    (copy, given_file), = plotted  # a deep copy of the model is plotted, so the training model stays where it is
    assert given_file is file and copy is not net and copy.weight is not net.weight
    assert torch.equal(copy.weight, net.weight)
    assert calls == [("epoch", 15, {"final_rel_l2_mean_9": 0.5, "final_rel_l2_mean_33": 0.25}),
                     ("figure", "curves", tmp_path / "curves.png", 15),
                     ("plot", 33, tmp_path / "eval_samples.png"),
                     ("figure", "eval_samples", tmp_path / "eval_samples.png", 15)]


def test_parse_args_reads_config_resume_and_overrides():
    args = train.parse_args(["--resume", "runs/a", "train.epochs=5", "optimizer.lr=1e-3"])
    assert (args.config, args.resume, args.overrides) == (None, "runs/a", ["train.epochs=5", "optimizer.lr=1e-3"])
    args = train.parse_args(["--config", "c.yaml"])
    assert (args.config, args.resume, args.overrides) == ("c.yaml", None, [])
