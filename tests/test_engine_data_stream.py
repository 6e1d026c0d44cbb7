"""The training data stream: sources positioned directly at batch k (no replay) give exactly the batches
the pass from 0 gives there, batches made ahead in a worker thread change no number, a source without
`start` still resumes exactly (by replay), and the worker stops on errors and signals."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from em_doubles import ListMotions, TinyBody, random_motion, random_offsets, write_offsets, write_recording
from empose_em.recordings import EMPoseRecordings
from empose_em.virtual import VirtualEM
from empose_framework.engine import prefetch as prefetch_module
from empose_framework.engine import train as train_module
from empose_framework.engine.prefetch import Prefetcher
from empose_framework.errors import DataError
from engine_doubles import install_registry, last_weights, run_recipe, write_recipe


def _tensors(batch):
    s, t = batch.sensors, batch.target
    return [s.pos, s.ori, s.valid, t.pose, t.betas, batch.seq_len, batch.offsets.t, batch.offsets.r, batch.frame_valid]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(
        x.ids == y.ids and all(u.shape == v.shape and torch.equal(u, v) for u, v in zip(_tensors(x), _tensors(y)))
        for x, y in zip(a, b)
    )


@pytest.fixture(scope="module")
def body():
    return TinyBody(n_betas=10)


@pytest.fixture(scope="module")
def motions(body):
    rng = np.random.default_rng(3)
    # some shorter than the window (padding, t_max below the window), one much longer
    return [random_motion(rng, t, n_betas=10, name=f"m{i}") for i, t in enumerate([40, 12, 30, 9, 80, 25, 16, 33, 50, 14])]


CONFIGS = {
    "paper": dict(offset_noise=0),
    "means": dict(offset_noise=-1),
    "per_frame_turned": dict(offset_noise=1, random_heading=True),
    "noisy": dict(offset_noise=1, spherical_noise_strength=0.5, spherical_noise_length=0.4,
                  suppression_noise_length=0.3, noise_sensors=2),
    "noisy_zero": dict(offset_noise=2, suppression_noise_length=0.5, noise_sensors=3, random_heading=True),
}  # fmt: skip


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("train", [True, False])
def test_virtual_em_start_gives_the_rest_of_the_pass_without_synthesising_the_skipped(body, motions, config, train):
    src = VirtualEM(motions=ListMotions(motions), sensors="em12", body_model=body, **CONFIGS[config])
    full = list(src.windows(3, 16, train=train, seed=11))
    assert len(full) == 4
    calls = []
    real = body.sensor_frames
    body.sensor_frames = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        for k in range(len(full) + 2):
            calls.clear()
            src.motions.reads = 0
            rest = list(src.windows(3, 16, train=train, seed=11, start=k))
            assert _same(rest, full[k:]), k
            per_batch = 2 if train and src.sph_length > 0 else 1  # + the reference-length pose
            assert len(calls) == per_batch * len(rest)  # the skipped batches were not synthesised
            if config == "paper" or not train:  # their draws need no lengths: skipped motions are not read
                assert src.motions.reads == sum(len(b.ids) for b in rest)
    finally:
        del body.sensor_frames


def test_recordings_start_gives_the_rest_of_the_pass(tmp_path, body):
    rng = np.random.default_rng(8)
    means, covs, r = random_offsets(rng)
    write_offsets(tmp_path / "0402_offsets.npz", means, covs, r)
    for i, n in enumerate([30, 18, 45, 26, 21]):
        m = random_motion(rng, n, n_betas=10)
        pos, ori = rng.normal(size=(n, 12, 3)), np.tile(np.eye(3), (n, 12, 1, 1))
        write_recording(tmp_path / f"0402_task{i}_M_clean.npz", f"0402_task{i}_M", pos, ori, np.ones((n, 12), bool),
                        m.pose.reshape(n, 66), m.betas, m.trans, means, covs, r)  # fmt: skip
    src = EMPoseRecordings(path=str(tmp_path), sensors="em6", body_model=body)
    for train in (True, False):
        full = list(src.windows(2, 20, train=train, seed=5))
        assert len(full) == 3
        for k in range(5):
            assert _same(list(src.windows(2, 20, train=train, seed=5, start=k)), full[k:]), (train, k)


# ------------------------------------------------------------------------------------ the trainer


@pytest.fixture
def registry(monkeypatch):
    return install_registry(monkeypatch)



def _equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _without_start(monkeypatch):
    """Make virtual_em a source without the capability: not seekable, `windows` takes no `start`."""
    original = VirtualEM.windows

    def windows(self, batch_size, window, *, train, seed, device="cpu"):
        return original(self, batch_size, window, train=train, seed=seed, device=device)

    monkeypatch.setattr(VirtualEM, "seekable", False)
    monkeypatch.setattr(VirtualEM, "windows", windows)


def _spy_starts(monkeypatch) -> list:
    """Record the `start` each training pass of virtual_em is asked for (None: not given)."""
    starts, real = [], VirtualEM.windows
    monkeypatch.setattr(VirtualEM, "windows", lambda self, *a, **k: starts.append(k.get("start")) or real(self, *a, **k))
    return starts


def _count_prefetchers(monkeypatch) -> list:
    made = []
    real = prefetch_module.Prefetcher.__init__
    monkeypatch.setattr(prefetch_module.Prefetcher, "__init__", lambda self, *a, **k: made.append(1) or real(self, *a, **k))
    return made


def test_prefetched_training_equals_training_without_a_worker(tmp_path, registry, monkeypatch):
    """The tiny recipe has dropout (global RNG) and 3 batches per epoch, so the worker running ahead
    across epoch ends must neither shift the RNG nor reorder data: the weights are bit-identical."""
    path = write_recipe(tmp_path)
    monkeypatch.setattr(train_module, "PREFETCH_CPU", 3)  # the worker, also on the CPU
    made = _count_prefetchers(monkeypatch)
    ahead = run_recipe(path, registry, "train.max_steps=8", run_dir=tmp_path / "ahead")
    assert made == [1]
    _without_start(monkeypatch)
    inline = run_recipe(path, registry, "train.max_steps=8", run_dir=tmp_path / "inline")
    assert made == [1]  # no worker for a source without the capability
    assert _equal(last_weights(ahead), last_weights(inline))
    for name in ("ahead", "inline"):  # the same epoch bookkeeping
        progress = torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=False)["resume"]["progress"]
        assert (progress["epoch"], progress["consumed"]) == (2, 2)


def test_resume_positions_a_seekable_source_and_replays_one_without_start(tmp_path, registry, monkeypatch):
    path = write_recipe(tmp_path)
    full = last_weights(run_recipe(path, registry, "train.max_steps=9", run_dir=tmp_path / "full"))
    starts = _spy_starts(monkeypatch)
    original_init = train_module.Trainer.__init__

    def interrupt_at_5(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.on_step.append(lambda t: setattr(t.interrupt, "requested", t.progress.step == 5 or t.interrupt.requested))

    for name in ("seek", "replay"):
        monkeypatch.setattr(train_module.Trainer, "__init__", interrupt_at_5)
        with pytest.raises(SystemExit):
            run_recipe(path, registry, "train.max_steps=9", run_dir=tmp_path / name)
        monkeypatch.setattr(train_module.Trainer, "__init__", original_init)
        starts.clear()
        resumed = run_recipe(path, registry, "train.max_steps=9", resume=tmp_path / name)
        assert _equal(full, last_weights(resumed)), name
        if name == "seek":
            assert starts[0] == 2  # step 5 = epoch 1, batch 2 (3 batches per epoch): started there directly
            _without_start(monkeypatch)
            starts = _spy_starts(monkeypatch)
        else:
            assert starts[0] is None  # replayed


def test_signal_stops_the_worker_and_saves(tmp_path, registry, monkeypatch):
    path = write_recipe(tmp_path)
    monkeypatch.setattr(train_module, "PREFETCH_CPU", 3)
    original = train_module.Trainer.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.on_step.append(lambda t: [os.kill(os.getpid(), signal.SIGTERM) for _ in range(2)] if t.progress.step == 3 else None)

    monkeypatch.setattr(train_module.Trainer, "__init__", init)
    with pytest.raises(SystemExit) as stop:
        run_recipe(path, registry, "train.max_steps=9", run_dir=tmp_path / "r")
    assert stop.value.code == 143
    assert not [t for t in threading.enumerate() if t.name == "empose-prefetch"]


# ------------------------------------------------------------------------------------ the worker


def test_worker_passes_items_in_order_then_the_error():
    def items():
        yield from range(5)
        raise DataError("motion 5 is broken")

    got = []
    with pytest.raises(DataError, match="motion 5 is broken"):
        for x in Prefetcher(items(), depth=2):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]


def test_close_stops_a_worker_that_is_ahead_and_closes_its_items():
    closed = []

    def items():
        try:
            for i in range(10**9):
                yield i
        finally:
            closed.append(True)

    p = Prefetcher(items(), depth=2)
    assert [next(p), next(p)] == [0, 1]
    time.sleep(0.1)  # let it fill its queue and wait
    p.close()
    assert not p._thread.is_alive() and closed == [True]
    with pytest.raises(StopIteration):
        next(p)
