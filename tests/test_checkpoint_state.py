"""opspec.training.checkpoint piece by piece, in milliseconds (no training): the fast subset the mutation run of
checkpoint.py uses (docs/RESULTS.md, "Mutation testing"). Each test names the plausible bug it catches."""

from __future__ import annotations

import errno
import json
import math
import random
from fractions import Fraction

import numpy as np
import pytest
import torch

import opspec.training.checkpoint
from opspec.training.checkpoint import (
    append_metrics, atomic_save, best_of, load_checkpoint, make_payload, read_metrics, reconcile_run, resolve_checkpoint,
    restore_training_state, rng_state, set_rng_state, tensor_state_dict,
)
from opspec.core.errors import OpspecError


def _parts(seed: int = 0, width: int = 3):
    torch.manual_seed(seed)
    net = torch.nn.Linear(width, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    net(torch.ones(1, width)).sum().backward()
    optimizer.step()
    scheduler.step()
    return net, optimizer, scheduler


def _payload(epoch: int = 2, record=None, best: float = 0.5, best_epoch: int = 1, **kw):
    net, optimizer, scheduler = _parts(**kw)
    return make_payload({"seed": 0}, {"in_channels": 1}, epoch, best, best_epoch, record, net, optimizer, scheduler)


def test_rng_round_trip_restores_torch_numpy_and_python_including_the_gaussian_cache():
    """A restore that skips one generator, or numpy's cached second Gaussian, draws different numbers."""
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian (has_gauss = 1)
    state = rng_state()
    first = (torch.rand(3), np.random.standard_normal(3), [random.random() for _ in range(3)])
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    set_rng_state(state)
    second = (torch.rand(3), np.random.standard_normal(3), [random.random() for _ in range(3)])
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])
    assert first[2] == second[2]


def test_payload_holds_every_part_and_round_trips_through_atomic_save(tmp_path):
    payload = _payload(epoch=3, record={"epoch": 3, "test_rel_l2": 0.25}, best=0.25, best_epoch=3)
    assert {"version", "config", "meta", "epoch", "best", "best_epoch", "record", "model", "optimizer", "scheduler",
            "rng"} <= set(payload)
    assert payload["epoch"] == 3 and payload["best"] == 0.25 and payload["best_epoch"] == 3
    atomic_save(payload, tmp_path / "last.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left
    loaded = load_checkpoint(tmp_path)
    assert loaded["path"] == str(tmp_path / "last.pt")
    assert loaded["epoch"] == 3 and loaded["record"] == {"epoch": 3, "test_rel_l2": 0.25}
    assert all(torch.equal(loaded["model"][k], payload["model"][k]) for k in payload["model"])


def test_restore_training_state_puts_back_weights_optimizer_scheduler_and_rng():
    payload = _payload(seed=0)
    expected_rand = torch.rand(4, generator=torch.Generator().set_state(payload["rng"]["torch"]))
    torch.manual_seed(5)
    net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)  # never stepped: last_epoch 0
    restore_training_state(payload, net, optimizer, scheduler)
    assert all(torch.equal(v, payload["model"][k]) for k, v in net.state_dict().items())
    momentum = optimizer.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(momentum, payload["optimizer"]["state"][0]["momentum_buffer"])
    assert scheduler.state_dict()["last_epoch"] == payload["scheduler"]["last_epoch"]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert torch.equal(torch.rand(4), expected_rand)


def test_restore_into_other_parts_is_one_opspec_error():
    payload = dict(_payload(width=3), path="run/last.pt")
    net, optimizer, scheduler = _parts(width=4)
    with pytest.raises(OpspecError, match=r"run/last.pt: the checkpoint does not fit .*: Error\(s\) in loading state_dict"):
        restore_training_state(payload, net, optimizer, scheduler)


def test_restore_without_a_scheduler_leaves_it_to_the_caller():
    payload = _payload()
    net, optimizer, _ = _parts(seed=5)
    restore_training_state(payload, net, optimizer, None)
    assert all(torch.equal(v, payload["model"][k]) for k, v in net.state_dict().items())


def test_python_rng_state_read_back_as_lists_is_accepted():
    """A state whose tuples came back as lists (JSON, YAML) must still restore Python's generator."""
    random.seed(4)
    state = rng_state()
    state["python"] = [state["python"][0], list(state["python"][1]), state["python"][2]]
    expected = [random.random() for _ in range(3)]
    random.seed(0)
    set_rng_state(state)
    assert [random.random() for _ in range(3)] == expected


def test_a_failed_checkpoint_write_is_an_os_error_naming_the_file(tmp_path, monkeypatch):
    """torch's zip writer reports a full disk as RuntimeError; the trainer turns OSError into one line."""
    def broken(obj, fh, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(opspec.training.checkpoint.torch, "save", broken)
    with pytest.raises(OSError) as info:
        atomic_save(_payload(), tmp_path / "last.pt")
    assert info.value.errno == errno.EIO and info.value.filename == str(tmp_path / "last.pt")
    assert "is the disk full? ([enforce fail at inline_container.cc:672]" in info.value.strerror
    assert list(tmp_path.iterdir()) == []


def test_load_prefers_what_it_is_asked_for_and_unpickles_weights_only(tmp_path):
    atomic_save(_payload(epoch=1), tmp_path / "best.pt")
    atomic_save(_payload(epoch=2), tmp_path / "last.pt")
    assert load_checkpoint(tmp_path, prefer="best")["epoch"] == 1
    assert load_checkpoint(tmp_path)["epoch"] == 2
    (tmp_path / "best.pt").unlink()
    assert resolve_checkpoint(tmp_path, prefer="best") == tmp_path / "last.pt"
    torch.save({"model": {}, "config": {}, "extra": Fraction(1, 3)}, tmp_path / "pickle.pt")  # not a weights-only type
    with pytest.raises(OpspecError, match=r"pickle.pt: not a readable opspec checkpoint \(UnpicklingError\)"):
        load_checkpoint(tmp_path / "pickle.pt")


def test_append_metrics_writes_one_strict_line_each(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append_metrics(path, {"epoch": 1, "test_rel_l2": 0.5})
    append_metrics(path, {"epoch": 2, "test_rel_l2": 0.25})
    assert path.read_text() == '{"epoch": 1, "test_rel_l2": 0.5}\n{"epoch": 2, "test_rel_l2": 0.25}\n'
    with pytest.raises(ValueError, match="not finite"):
        append_metrics(path, {"epoch": 3, "test_rel_l2": float("nan")})
    assert len(path.read_text().splitlines()) == 2


def test_tensor_state_dict_drops_non_tensors():
    net = torch.nn.Linear(2, 2)
    net.register_buffer("b", torch.ones(1))
    sd = tensor_state_dict(net)
    assert set(sd) == {"weight", "bias", "b"} and all(isinstance(v, torch.Tensor) for v in sd.values())


def test_resolve_and_load_refuse_what_is_not_a_checkpoint(tmp_path):
    with pytest.raises(OpspecError, match="no such checkpoint"):
        resolve_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(OpspecError, match="holds no checkpoint"):
        resolve_checkpoint(tmp_path)
    (tmp_path / "best.pt").write_bytes(b"x")
    assert resolve_checkpoint(tmp_path) == tmp_path / "best.pt"  # last.pt missing: best.pt
    (tmp_path / "last.pt").write_bytes(b"x")
    assert resolve_checkpoint(tmp_path) == tmp_path / "last.pt"
    assert resolve_checkpoint(tmp_path, prefer="best") == tmp_path / "best.pt"
    with pytest.raises(OpspecError, match="not a readable opspec checkpoint"):
        load_checkpoint(tmp_path / "last.pt")
    for name, obj, message in [("list.pt", [1], "not an opspec checkpoint"),
                               ("nomodel.pt", {"config": {}}, "not an opspec checkpoint"),
                               ("noconfig.pt", {"model": {}}, "not an opspec checkpoint"),
                               ("v2.pt", {"model": {}, "config": {}, "version": 2}, "version 2"),
                               ("vstr.pt", {"model": {}, "config": {}, "version": "1"}, "version '1'")]:
        torch.save(obj, tmp_path / name)
        with pytest.raises(OpspecError, match=message):
            load_checkpoint(tmp_path / name)
    torch.save({"model": {}, "config": {}}, tmp_path / "v0.pt")  # no version: an old checkpoint, accepted
    assert load_checkpoint(tmp_path / "v0.pt")["path"].endswith("v0.pt")


def _write_metrics(path, lines):
    path.write_text("".join(line + "\n" for line in lines))


def test_read_metrics_keeps_whole_finite_records_only(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert read_metrics(path) == []
    _write_metrics(path, [json.dumps({"epoch": 1, "test_rel_l2": 0.5}), "[1, 2]",
                          json.dumps({"epoch": "2", "test_rel_l2": 0.4}), '{"epoch": 3, "test_rel_l2": NaN}',
                          "garbage in the middle", json.dumps({"epoch": 4, "test_rel_l2": 0.3}), '{"epoch": 5, "te'])
    assert [r["epoch"] for r in read_metrics(path)] == [1, 4]
    with path.open("ab") as fh:  # a torn multi-byte character
        fh.write(b'{"epoch": 6, "note": "\xe2\x82')
    assert [r["epoch"] for r in read_metrics(path)] == [1, 4]


def test_best_of_takes_the_first_lowest_epoch():
    records = [{"epoch": 1, "test_rel_l2": 0.5}, {"epoch": 2, "test_rel_l2": 0.3}, {"epoch": 3, "test_rel_l2": 0.3},
               {"epoch": 4, "test_rel_l2": 0.4}]
    assert best_of(records) == (0.3, 2)
    assert best_of([]) == (math.inf, 0)


def _run(tmp_path, epochs_in_metrics, ckpt_epoch, errors, best_pt_epoch, record=True):
    run = tmp_path / "run"
    run.mkdir()
    _write_metrics(run / "metrics.jsonl", [json.dumps({"epoch": e, "test_rel_l2": errors[e]}) for e in epochs_in_metrics])
    payload = _payload(epoch=ckpt_epoch, record={"epoch": ckpt_epoch, "test_rel_l2": errors[ckpt_epoch]} if record else None)
    atomic_save(payload, run / "last.pt")
    if best_pt_epoch is not None:
        atomic_save(_payload(epoch=best_pt_epoch), run / "best.pt")
    return run, load_checkpoint(run)


def test_reconcile_drops_replayed_epochs_and_restores_the_missing_line(tmp_path):
    errors = {1: 0.5, 2: 0.4, 3: 0.45}
    run, payload = _run(tmp_path, [1, 3], ckpt_epoch=2, errors=errors, best_pt_epoch=2)
    state = reconcile_run(run, payload)
    assert [r["epoch"] for r in state.records] == [1, 2]
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert (state.best, state.best_epoch) == (0.4, 2)
    assert any("restored epoch 2" in n for n in state.notes)


def test_reconcile_rebuilds_a_best_pt_that_a_crash_left_behind(tmp_path):
    errors = {1: 0.5, 2: 0.4}
    run, payload = _run(tmp_path, [1, 2], ckpt_epoch=2, errors=errors, best_pt_epoch=1)
    state = reconcile_run(run, payload)
    assert state.best_epoch == 2
    assert torch.load(run / "best.pt", weights_only=True)["epoch"] == 2
    assert "best.pt: rebuilt as epoch 2 (it was epoch 1)" in state.notes


def test_reconcile_rebuilds_a_missing_best_pt_and_leaves_a_right_one(tmp_path):
    run, payload = _run(tmp_path, [1], ckpt_epoch=1, errors={1: 0.5}, best_pt_epoch=None)
    assert "best.pt: rebuilt as epoch 1 (it was missing)" in reconcile_run(run, payload).notes
    assert torch.load(run / "best.pt", weights_only=True)["epoch"] == 1
    before = (run / "best.pt").stat().st_mtime_ns
    assert reconcile_run(run, payload).notes == []
    assert (run / "best.pt").stat().st_mtime_ns == before


def test_reconcile_keeps_an_older_best_it_cannot_rebuild_and_says_so(tmp_path):
    errors = {1: 0.3, 2: 0.4}
    run, payload = _run(tmp_path, [1, 2], ckpt_epoch=2, errors=errors, best_pt_epoch=None)
    state = reconcile_run(run, payload)
    assert (state.best, state.best_epoch) == (0.3, 1)
    assert not (run / "best.pt").exists()
    assert any("whose weights are gone" in n for n in state.notes)


def test_reconcile_rebuilds_a_best_pt_that_only_full_unpickling_could_read(tmp_path):
    """best.pt is read weights-only too: one holding another object counts as unreadable and is rebuilt."""
    run, payload = _run(tmp_path, [1], ckpt_epoch=1, errors={1: 0.5}, best_pt_epoch=None)
    torch.save({"epoch": 1, "extra": Fraction(1, 3)}, run / "best.pt")
    assert "best.pt: rebuilt as epoch 1 (it was missing)" in reconcile_run(run, payload).notes
    assert torch.load(run / "best.pt", weights_only=True)["epoch"] == 1


def test_reconcile_without_metrics_trusts_the_checkpoint_and_writes_the_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    atomic_save(_payload(epoch=3, best=0.25, best_epoch=2), run / "last.pt")
    state = reconcile_run(run, load_checkpoint(run))
    assert (state.records, state.best, state.best_epoch) == ([], 0.25, 2)
    assert (run / "metrics.jsonl").read_text() == ""
    old = dict(load_checkpoint(run))
    del old["best"], old["best_epoch"]  # a checkpoint from before best_epoch existed
    state = reconcile_run(run, old)
    assert (state.best, state.best_epoch) == (math.inf, 0)


def test_reconcile_after_a_torn_multibyte_character_in_metrics(tmp_path):
    """A kill mid-append can cut a UTF-8 character: resume must rewrite the file, not fail to decode it."""
    run, payload = _run(tmp_path, [1, 2], ckpt_epoch=2, errors={1: 0.5, 2: 0.4}, best_pt_epoch=2)
    with (run / "metrics.jsonl").open("ab") as fh:
        fh.write(b'{"epoch": 3, "note": "\xe2\x82')
    state = reconcile_run(run, payload)
    assert [r["epoch"] for r in state.records] == [1, 2]
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
