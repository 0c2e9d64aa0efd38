"""opspec.checkpoint piece by piece, in milliseconds (no training): the fast subset the mutation run of
checkpoint.py uses (docs/RESULTS.md, "Mutation testing"). Each test names the plausible bug it catches."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from opspec.checkpoint import (
    atomic_save, best_of, load_checkpoint, make_payload, read_metrics, reconcile_run, resolve_checkpoint,
    restore_training_state, rng_state, set_rng_state, tensor_state_dict,
)
from opspec.errors import OpspecError


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
    net, optimizer, scheduler = _parts(seed=5)
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
    with pytest.raises(OpspecError, match="run/last.pt: the checkpoint does not fit"):
        restore_training_state(payload, net, optimizer, scheduler)


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
                          json.dumps({"epoch": 4, "test_rel_l2": 0.3}), '{"epoch": 5, "te'])
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
    assert any("best.pt: rebuilt as epoch 2" in n for n in state.notes)


def test_reconcile_rebuilds_a_missing_best_pt_and_leaves_a_right_one(tmp_path):
    run, payload = _run(tmp_path, [1], ckpt_epoch=1, errors={1: 0.5}, best_pt_epoch=None)
    reconcile_run(run, payload)
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
