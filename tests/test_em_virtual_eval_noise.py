"""virtual_em evaluation noise (`noise_seed`): test sets and validation windows noisy in the same way on
every run, independent of batching; the intended sensors and frames affected; dropped sensors leave the
metric frames (EM-POSE protocol); seedless noise on a test set refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from em_doubles import ListMotions, TinyBody, random_motion
from empose_em.sensor_sets import EM6
from empose_em.virtual import VirtualEM
from empose_framework.errors import EmposeError
from empose_framework.interfaces import BodyPose


@pytest.fixture(scope="module")
def body():
    return TinyBody()


@pytest.fixture(scope="module")
def motions():
    rng = np.random.default_rng(5)
    return ListMotions([random_motion(rng, n, name=f"e{i}") for i, n in enumerate([40, 23, 31, 40])])


def _source(body, motions, **kw):
    return VirtualEM(motions=motions, sensors="em6", body_model=body, **kw)


def _windows(batches):
    """Per sequence id: (pos, ori, valid, frame_mask) over its true length."""
    out = {}
    for b in batches:
        for e, sid in enumerate(b.ids):
            n = int(b.seq_len[e])
            out[sid] = (b.sensors.pos[e, :n], b.sensors.ori[e, :n], b.sensors.valid[e, :n], b.frame_mask()[e, :n])
    return out


def test_spherical_noise_same_every_run_only_chosen_sensors_and_window(body, motions):
    kw = dict(offset_noise=-1, spherical_noise_strength=0.8, spherical_noise_length=0.5, noise_sensors=2)
    clean = _windows(_source(body, motions).sequences())
    run1 = _windows(_source(body, motions, noise_seed=3, **kw).sequences())
    run2 = _windows(_source(body, motions, noise_seed=3, **kw).sequences())  # a fresh source: a new run
    other = _windows(_source(body, motions, noise_seed=4, **kw).sequences())
    for sid, (pos, ori, valid, mask) in run1.items():
        n = len(pos)
        assert torch.equal(pos, run2[sid][0]) and torch.equal(valid, run2[sid][2])
        assert not torch.equal(pos, other[sid][0])  # the seed matters
        torch.testing.assert_close(ori, clean[sid][1])  # spherical noise moves positions only
        d = (pos - clean[sid][0]).norm(dim=-1)  # (n, S)
        hit = d > 1e-6
        assert int(hit.any(0).sum()) == 2  # exactly the two noisy sensors
        frames = torch.nonzero(hit.any(1))[:, 0]
        assert len(frames) == int(0.5 * n) and int(frames[-1] - frames[0]) == len(frames) - 1  # one window
        assert valid.all() and mask.all()  # displaced readings stay valid and count


def test_suppression_drops_sensors_and_their_frames_leave_the_metrics(body, motions):
    src = _source(body, motions, offset_noise=-1, suppression_noise_length=0.4, noise_sensors=1, suppression_value=5.0,
                  noise_seed=0)  # offset_noise -1: the subjects' mean offsets, so only the suppression differs
    clean = _windows(_source(body, motions).sequences())
    for sid, (pos, ori, valid, mask) in _windows(src.sequences()).items():
        n = len(pos)
        dropped = ~valid
        assert int(dropped.any(0).sum()) == 1
        frames = torch.nonzero(dropped.any(1))[:, 0]
        assert len(frames) == int(0.4 * n) and int(frames[-1] - frames[0]) == len(frames) - 1
        assert (pos[dropped] == 5.0).all() and (ori[dropped] == 5.0).all()
        torch.testing.assert_close(pos[~dropped], clean[sid][0][~dropped])  # the rest untouched
        # EM-POSE protocol: a frame counts for the metrics only when every recorded sensor is valid
        assert torch.equal(mask, valid.all(dim=-1)) and int(mask.sum()) == n - int(0.4 * n)


def test_noise_independent_of_batching_and_validation_clean_unless_asked(body, motions):
    kw = dict(offset_noise=1, spherical_noise_strength=0.5, spherical_noise_length=0.3,
              suppression_noise_length=0.2, noise_sensors=2)  # fmt: skip
    noisy = _source(body, motions, noise_seed=9, **kw)
    one = _windows(noisy.windows(1, 32, train=False, seed=0))
    four = _windows(noisy.windows(4, 32, train=False, seed=123))  # other batching, other training seed
    assert one.keys() == four.keys()
    for sid in one:  # the same draws; the body model's batched float maths may differ in the last bit
        for a, b in zip(one[sid], four[sid]):
            if a.is_floating_point():
                torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
            else:
                assert torch.equal(a, b)
    clean = _windows(_source(body, motions).windows(2, 32, train=False, seed=0))
    unseeded = _windows(_source(body, motions, **kw).windows(2, 32, train=False, seed=0))  # a copied train spec
    for sid in clean:
        assert torch.equal(unseeded[sid][0], clean[sid][0]) and unseeded[sid][2].all()
        assert not torch.equal(one[sid][0], clean[sid][0])


@pytest.mark.parametrize("level", [0, 1])
def test_offset_noise_on_test_sequences(body, motions, level):
    src = _source(body, motions, offset_noise=level, noise_seed=2)
    means = src.offsets.means  # (subjects, S, 3)
    for i, b in enumerate(src.sequences()):
        p, rot = body.sensor_frames(b.target, EM6)  # skin frames (test double)
        t = (rot.transpose(-1, -2) @ (b.sensors.pos - p)[..., None])[..., 0][0]  # (T, S, 3) recovered offsets
        mean = torch.as_tensor(means[i % len(means)], dtype=t.dtype)
        torch.testing.assert_close(b.offsets.t[0], mean)  # the model still gets the subject's means
        assert (t - mean).abs().max() > 1e-4  # drawn, not the mean
        spread = (t - t[:1]).abs().max()
        assert spread < 3e-5 if level == 0 else spread > 1e-4  # one draw per sequence / per frame
    again = [b.sensors.pos for b in _source(body, motions, offset_noise=level, noise_seed=2).sequences()]
    assert all(torch.equal(a.sensors.pos, b) for a, b in zip(src.sequences(), again))


def test_seedless_test_noise_refused_and_seed_checked(body, motions):
    src = _source(body, motions, spherical_noise_strength=0.5, spherical_noise_length=0.2)
    with pytest.raises(EmposeError, match="noise_seed: 0"):
        src.sequences()
    with pytest.raises(EmposeError, match="noise_seed"):
        _source(body, motions, noise_seed=-1)
    # no noise settings: test sequences are clean exactly as before (offset_noise has a training default)
    b = next(_source(body, motions).sequences())
    p, r = body.sensor_frames(b.target, EM6, b.offsets)
    torch.testing.assert_close(b.sensors.pos, p)
    assert isinstance(b.target, BodyPose)
