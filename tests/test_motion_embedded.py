"""The `embedded` motion source: deterministic, split-disjoint, within joint limits, plausible."""

import pickle

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from empose_framework.errors import EmposeError
from empose_motion.embedded import ACTIVITIES, JOINT_LIMITS, SOLE, EmbeddedMotions
from motion_body_double import NAMES, StickBody, fk

SMPL = ["root" if n == "pelvis" else n.replace("left_", "l_").replace("right_", "r_") for n in NAMES]


@pytest.fixture(scope="module")
def body():
    return StickBody()


@pytest.fixture(scope="module")
def train(body):
    return EmbeddedMotions(body_model=body, split="train", count=16, seed=7, seconds=6.0)


def test_deterministic_and_covering_the_protocol(body, train):
    again = EmbeddedMotions(body_model=body, split="train", count=16, seed=7, seconds=6.0)
    for i in (0, 5, 13):
        a, b = train[i], again[i]
        assert a.id == b.id
        np.testing.assert_array_equal(a.pose, b.pose)
        np.testing.assert_array_equal(a.trans, b.trans)
        np.testing.assert_array_equal(a.betas, b.betas)
    assert {i.split("_", 1)[1] for i in train.ids} == set(ACTIVITIES)
    other_seed = EmbeddedMotions(body_model=body, split="train", count=2, seed=8, seconds=6.0)
    assert not np.array_equal(other_seed[0].betas, train[0].betas)


def test_splits_never_share_a_sequence(body, train):
    test = EmbeddedMotions(body_model=body, split="test", count=16, seed=7, seconds=6.0)
    valid = EmbeddedMotions(body_model=body, split="valid", count=16, seed=7, seconds=6.0)
    assert not set(train.ids) & set(test.ids) and not set(valid.ids) & set(test.ids)
    signatures = lambda src: {src[i].betas.tobytes() for i in range(len(src))}  # noqa: E731
    assert not signatures(train) & signatures(test) and not signatures(valid) & signatures(test)
    with pytest.raises(EmposeError, match="parameter 'split': expected one of 'train', 'valid', 'test'"):
        EmbeddedMotions(body_model=body, split="all")
    with pytest.raises(EmposeError, match="unknown activities"):
        EmbeddedMotions(body_model=body, activities=["juggling"])


def test_motion_contract(train):
    for i in range(len(train)):
        m = train[i]
        t = len(m)
        assert 0.8 * 6 * 60 - 1 <= t <= 1.2 * 6 * 60 + 1 and m.fps == 60.0
        assert m.pose.shape == (t, 22, 3) and m.pose.dtype == np.float32
        assert m.trans.shape == (t, 3) and m.trans.dtype == np.float32
        assert m.betas.shape == (10,) and np.all(np.abs(m.betas) <= 2.0)
        assert np.all(np.isfinite(m.pose)) and np.all(np.isfinite(m.trans))
    assert len(pickle.dumps(train)) < 20000  # rest joints only, no body model


def test_joint_limits_hold(train):
    for i in range(len(train)):
        m = train[i]
        for k, name in enumerate(SMPL):
            seq, lo, hi = JOINT_LIMITS[name]
            e = Rotation.from_rotvec(m.pose[:, k].astype(np.float64)).as_euler(seq, degrees=True)
            first = 1 if name == "root" else 0  # the heading is free
            assert np.all(e[:, first:] >= np.array(lo)[first:] - 0.5), (m.id, name, e.min(0))
            assert np.all(e[:, first:] <= np.array(hi)[first:] + 0.5), (m.id, name, e.max(0))


def test_motions_are_smooth(train):
    for i in range(len(train)):
        m = train[i]
        r = Rotation.from_rotvec(m.pose.reshape(-1, 3).astype(np.float64))
        rel = r[: -22] .inv() * r[22:]  # frame t to t+1, joint by joint
        assert np.degrees(rel.magnitude()).max() < 20.0, m.id  # < 1200 deg/s
        assert np.abs(np.diff(m.trans, axis=0)).max() < 0.06, m.id  # < 3.6 m/s


def _heading(pose_root):
    """Facing direction (x, z) of the root: the body's +z axis in the world."""
    fwd = Rotation.from_rotvec(pose_root.astype(np.float64)).apply([0.0, 0.0, 1.0])[:, [0, 2]]
    return fwd / np.linalg.norm(fwd, axis=1, keepdims=True)


def test_feet_on_the_floor_walking_forward_sitting_down(body):
    src = EmbeddedMotions(body_model=body, split="valid", count=16, seed=3, seconds=6.0)
    for i in range(len(src)):
        m = src[i]
        activity = m.id.split("_", 1)[1]
        joints, _ = fk(m.pose.astype(np.float64), m.betas, m.trans.astype(np.float64))
        lowest = joints[:, [7, 8, 10, 11], 1].min(1)  # ankles and toes
        if activity == "jumping_jacks":
            assert abs(lowest.min() - SOLE) < 1e-3 and lowest.max() > SOLE + 0.03  # airborne
        else:
            np.testing.assert_allclose(lowest, SOLE, atol=1e-3)  # always standing on the floor
        path = m.trans[-1, [0, 2]] - m.trans[0, [0, 2]]
        seconds = len(m) / 60
        if activity == "walking":
            vel = np.diff(m.trans[:, [0, 2]], axis=0) * 60
            speed = np.linalg.norm(vel, axis=1)
            forward = np.sum(vel * _heading(m.pose[1:, 0]), axis=1)
            assert speed.mean() > 0.5  # m/s
            assert np.mean(forward > 0.7 * speed) > 0.9  # moving the way it faces
        elif activity in ("arms_slow", "arms_fast", "head_shoulders", "jumping_jacks"):
            assert np.linalg.norm(path) < 0.1 * seconds
        if activity == "sitting":
            assert joints[:, 0, 1].max() - joints[:, 0, 1].min() > 0.25  # the pelvis goes down to a seat


def test_generated_motions_are_cached_read_only(body):
    src = EmbeddedMotions(body_model=body, split="test", count=3, seconds=2.0)
    first = src[1]
    assert src[1] is first  # generated once per process
    fresh = src.generate(1)[0]  # the uncached path gives the same motion
    np.testing.assert_array_equal(first.pose, fresh.pose)
    np.testing.assert_array_equal(first.trans, fresh.trans)
    with pytest.raises(ValueError, match="read-only"):
        first.pose[0, 0, 0] = 1.0  # a consumer cannot corrupt the cached copy
    assert len(pickle.dumps(src)) < 20000  # the cache does not travel to DataLoader workers


def test_real_human_ranges_covered(train):
    """Poses common in real motion capture (bench/joint_ranges.py) that the first generator never made:
    arms hanging below raised collars (shoulder past -100 deg), moving collars, a thoracic curve, the
    elbow's carrying angle and forearm twist, a rolled ankle set and hip flexion past -120 deg."""
    e = {}
    for i in range(len(train)):
        pose = train[i].pose.astype(np.float64)
        for k, name in enumerate(SMPL):
            e.setdefault(name, []).append(Rotation.from_rotvec(pose[:, k]).as_euler(JOINT_LIMITS[name][0], degrees=True))
    e = {n: np.concatenate(v) for n, v in e.items()}
    assert e["l_shoulder"][:, 2].min() < -100 and e["r_shoulder"][:, 2].max() > 100
    assert np.ptp(np.percentile(e["l_collar"][:, 2], [5, 95])) > 20 and np.ptp(e["r_collar"][:, 1]) > 10
    assert np.percentile(e["spine3"][:, 0], 95) > 20
    assert np.median(e["l_elbow"][:, 2]) > 5 and np.median(e["r_elbow"][:, 2]) < -5  # carrying angle, mirrored
    assert np.percentile(e["l_elbow"][:, 1], 95) > 25  # forearm twist
    assert np.ptp(np.percentile(e["l_ankle"][:, 2], [5, 95])) > 15
    assert min(e["l_hip"][:, 0].min(), e["r_hip"][:, 0].min()) < -120  # a deep squat
