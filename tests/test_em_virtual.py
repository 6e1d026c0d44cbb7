"""virtual_em: synthesised sensors checked against an independent numpy/scipy computation on a tiny
skinned mesh (tests/em_doubles.py), offsets (§4.5, §6.3), noise (§6.4, fixed), windows, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from em_doubles import (
    ListMotions,
    TinyBody,
    normalise_reference,
    random_motion,
    random_offsets,
    reference_sensors,
    reference_skin,
    write_offsets,
)  # fmt: skip
from empose_em.sensor_sets import EM6, EM12
from empose_em.virtual import VirtualEM
from empose_framework.errors import DataError, EmposeError
from empose_framework.interfaces import BodyPose

LENGTHS = [50, 20, 41, 33, 64]
W = 32


@pytest.fixture(scope="module")
def body():
    return TinyBody()


@pytest.fixture(scope="module")
def motions():
    rng = np.random.default_rng(7)
    return ListMotions([random_motion(rng, n, name=f"m{i}") for i, n in enumerate(LENGTHS)])


@pytest.fixture(scope="module")
def offsets_dir(tmp_path_factory):
    """Two subjects A, B at the top, a hold-out subject C that must never be read."""
    root = tmp_path_factory.mktemp("em_data")
    rng = np.random.default_rng(3)
    bank = {}
    for subject in ("B", "A"):
        bank[subject] = random_offsets(rng)
        write_offsets(root / f"{subject}_offsets.npz", *bank[subject])
    (root / "hold_out").mkdir()
    write_offsets(root / "hold_out" / "C_offsets.npz", *random_offsets(rng))
    return root, [bank["A"], bank["B"]]


def _expected(body, motion, start, stop, sites, t=None, r=None):
    pose = normalise_reference(motion.pose[start:stop])
    verts = reference_skin(body, pose, motion.betas.astype(np.float64), None)
    return pose, reference_sensors(body, verts, sites, t, r)


def _rotmats(aa):
    return Rotation.from_rotvec(np.asarray(aa, dtype=np.float64).reshape(-1, 3)).as_matrix()


def test_eval_windows_match_independent_computation(body, motions, offsets_dir):
    root, subjects = offsets_dir
    src = VirtualEM(motions=motions, sensors="em12", offsets=str(root), body_model=body)
    assert src.offsets.subjects == ("A", "B")  # sorted, hold_out/ not read
    batches = list(src.windows(batch_size=2, window=W, train=False, seed=0))
    assert [len(b.ids) for b in batches] == [2, 2, 1]
    for i, motion in enumerate(motions.motions):
        b, e = batches[i // 2], i % 2
        n = len(motion)
        start = n // 2 - W // 2 if n > W else 0
        stop = min(start + W, n)
        means, _, r = subjects[i % 2]  # deterministic subject: sequence index mod subjects
        pose, (pos, ori) = _expected(body, motion, start, stop, EM12, means, r)
        L = stop - start
        assert b.ids[e] == motion.id and int(b.seq_len[e]) == L
        np.testing.assert_allclose(b.sensors.pos[e, :L].numpy(), pos, atol=2e-5)
        np.testing.assert_allclose(b.sensors.ori[e, :L].numpy(), ori, atol=2e-4)
        assert b.sensors.names == EM12 and b.sensors.valid[e, :L].all()
        # target: first-frame root canonical, other joints untouched, translation zero
        np.testing.assert_allclose(_rotmats(b.target.pose[e, :L, 0]), _rotmats(pose[:, 0]), atol=1e-5)
        np.testing.assert_allclose(b.target.pose[e, :L, 1:].numpy(), pose[:, 1:], atol=1e-6)
        np.testing.assert_allclose(_rotmats(b.target.pose[e, 0, 0]), np.eye(3)[None], atol=1e-6)
        assert b.target.trans.abs().max() == 0
        np.testing.assert_allclose(b.target.betas[e].numpy(), motion.betas)
        # offsets handed to the model: the subject's means and rotations
        np.testing.assert_allclose(b.offsets.t[e].numpy(), means, atol=1e-7)
        np.testing.assert_allclose(b.offsets.r[e].numpy(), r, atol=1e-6)
        # padding: invalid, zero, not counted
        assert not b.sensors.valid[e, L:].any() and (b.sensors.pos[e, L:] == 0).all()
        assert b.frame_mask()[e].sum() == L


def test_sequences_whole_in_order(body, motions, offsets_dir):
    root, subjects = offsets_dir
    src = VirtualEM(motions=motions, sensors="em6", offsets=str(root), body_model=body)
    seqs = list(src.sequences())
    assert [b.ids for b in seqs] == [[m.id] for m in motions.motions]
    i = 2
    motion = motions.motions[i]
    means, _, r = subjects[i % 2]
    idx = [EM12.index(n) for n in EM6]
    _, (pos, ori) = _expected(body, motion, 0, len(motion), EM6, means[idx], r[idx])
    b = seqs[i]
    assert b.sensors.pos.shape == (1, len(motion), 6, 3) and b.sensors.names == EM6
    np.testing.assert_allclose(b.sensors.pos[0].numpy(), pos, atol=2e-5)
    np.testing.assert_allclose(b.sensors.ori[0].numpy(), ori, atol=2e-4)


def test_sensor_sets_and_custom_sites(body, motions, offsets_dir):
    root, _ = offsets_dir
    b12 = next(VirtualEM(motions=motions, offsets=str(root), body_model=body).windows(5, W, train=False, seed=0))
    b6 = next(VirtualEM(motions=motions, sensors=6, offsets=str(root), body_model=body).windows(5, W, train=False, seed=0))
    sel = b12.sensors.select(EM6)
    torch.testing.assert_close(b6.sensors.pos, sel.pos)
    torch.testing.assert_close(b6.sensors.ori, sel.ori)
    # 'chest' is not one of the 12 measured sites: zero translation, identity rotation
    bc = next(VirtualEM(motions=motions, sensors=["chest", "head"], offsets=str(root), body_model=body).windows(5, W, train=False, seed=0))
    torch.testing.assert_close(bc.sensors.pos[:, :, 1], b12.sensors.select(["head"]).pos[:, :, 0])
    skin_p, skin_r = body.sensor_frames(bc.target, ["chest"])
    keep = bc.sensors.valid[..., 0]
    torch.testing.assert_close(bc.sensors.pos[:, :, 0][keep], skin_p[:, :, 0][keep])
    torch.testing.assert_close(bc.sensors.ori[:, :, 0][keep], skin_r[:, :, 0][keep])
    assert bc.offsets.t[:, 0].abs().max() == 0


def test_embedded_offsets_deterministic_and_plausible(body, motions):
    a = VirtualEM(motions=motions, sensors=list(EM12) + ["chest"], body_model=body)
    b = VirtualEM(motions=motions, sensors=list(EM12) + ["chest"], body_model=body)
    assert len(a.offsets) == 4
    np.testing.assert_array_equal(a.offsets.means, b.offsets.means)
    m = a.offsets.means
    assert (m[..., 2] >= 0.01).all() and (m[..., 2] <= 0.02).all() and (np.abs(m[..., :2]) <= 0.005).all()
    angles = np.linalg.norm(Rotation.from_matrix(a.offsets.r.reshape(-1, 3, 3)).as_rotvec(), axis=-1)
    assert angles.max() <= np.deg2rad(10) + 1e-9 and angles.max() > np.deg2rad(2)
    assert (np.linalg.eigvalsh(a.offsets.covs) > 0).all()  # offset noise levels 0/1 actually draw
    zero = VirtualEM(motions=motions, offsets=None, body_model=body)
    assert zero.offsets.means.max() == 0 and np.allclose(zero.offsets.r, np.eye(3))


def test_validation_is_identical_every_time_and_training_is_seeded(body, motions):
    src = VirtualEM(motions=motions, sensors="em6", offset_noise=1, suppression_noise_length=0.3, body_model=body)
    v1 = list(src.windows(2, W, train=False, seed=1))
    v2 = list(VirtualEM(motions=motions, sensors="em6", offset_noise=1, body_model=body).windows(2, W, train=False, seed=5))
    for a, b in zip(v1, v2):
        assert torch.equal(a.sensors.pos, b.sensors.pos) and torch.equal(a.sensors.valid, b.sensors.valid)
    t1 = list(src.windows(2, W, train=True, seed=11))
    t2 = list(src.windows(2, W, train=True, seed=11))
    t3 = list(src.windows(2, W, train=True, seed=12))
    assert all(torch.equal(a.sensors.pos, b.sensors.pos) and a.ids == b.ids for a, b in zip(t1, t2))
    assert any(a.ids != b.ids or not torch.equal(a.sensors.pos, b.sensors.pos) for a, b in zip(t1, t3))


def _find_start(motion, target_pose, n):
    body = target_pose[:n, 1:].numpy()
    hits = [s for s in range(len(motion) - n + 1) if np.allclose(motion.pose[s : s + n, 1:], body, atol=1e-6)]
    assert len(hits) == 1
    return hits[0]


def test_training_pass_random_crops(body, motions):
    src = VirtualEM(motions=motions, offsets=None, body_model=body)
    starts = {m.id: set() for m in motions.motions}
    for seed in range(8):
        ids = []
        for b in src.windows(2, W, train=True, seed=seed):
            for e, mid in enumerate(b.ids):
                motion = motions.motions[int(mid[1:])]
                n = int(b.seq_len[e])
                assert n == min(W, len(motion))
                starts[mid].add(_find_start(motion, b.target.pose[e], n))
                ids.append(mid)
        assert sorted(ids) == sorted(m.id for m in motions.motions)  # one pass: each motion once
    for m in motions.motions:
        assert max(starts[m.id]) <= max(len(m) - W, 0)
        assert len(starts[m.id]) > 1 if len(m) > W else starts[m.id] == {0}


@pytest.fixture(scope="module")
def many_short():
    rng = np.random.default_rng(11)
    return ListMotions([random_motion(rng, 12, name=f"s{i}") for i in range(48)])


@pytest.mark.parametrize("level", [-1, 0, 1, 2, 3])
def test_offset_noise_levels(body, many_short, offsets_dir, level):
    root, subjects = offsets_dir
    src = VirtualEM(motions=many_short, offsets=str(root), offset_noise=level, body_model=body)
    b = next(src.windows(48, 12, train=True, seed=level + 10))
    p, rot = body.sensor_frames(b.target, EM12)  # skin frames (test double, independent of the source)
    t = (rot.transpose(-1, -2) @ (b.sensors.pos - p)[..., None])[..., 0]  # recovered t = R^T (s - p)
    r = rot.transpose(-1, -2) @ b.sensors.ori  # recovered r = R^T S
    subj = [0 if np.allclose(b.offsets.t[e].numpy(), subjects[0][0], atol=1e-7) else 1 for e in range(48)]
    assert {0, 1} == set(subj)  # both subjects are drawn
    for e, s in enumerate(subj):
        means, _, rr = subjects[s]
        np.testing.assert_allclose(b.offsets.t[e].numpy(), means, atol=1e-7)  # the model gets the means
        want_r = np.eye(3) if level == 3 else rr
        np.testing.assert_allclose(b.offsets.r[e].numpy(), np.broadcast_to(want_r, (12, 3, 3)), atol=1e-6)
        np.testing.assert_allclose(r[e].numpy(), np.broadcast_to(want_r, (12, 12, 3, 3)), atol=2e-4)
        if level == -1:
            np.testing.assert_allclose(t[e].numpy(), np.broadcast_to(means, (12, 12, 3)), atol=3e-5)
        if level in (2, 3):
            assert t[e].abs().max() < 3e-5
    if level in (0, 1):
        # whitened deviations z = L^-1 (t - mean) must be standard normal; constant over frames at level 0
        dev = np.stack([t[e].numpy() - subjects[s][0] for e, s in enumerate(subj)])  # (48, T, 12, 3)
        spread = np.abs(dev - dev[:, :1]).max()
        assert (spread < 3e-5) if level == 0 else (spread > 1e-3)
        chol = [np.linalg.cholesky(subjects[s][1]) for s in (0, 1)]
        z = np.stack([np.linalg.solve(chol[s], dev[e, ..., None])[..., 0] for e, s in enumerate(subj)])
        z = z[:, :1] if level == 0 else z
        z = z.reshape(-1, 3)
        assert np.abs(z.mean(0)).max() < 4.5 / np.sqrt(len(z))
        np.testing.assert_allclose(np.cov(z.T), np.eye(3), atol=0.25 if level == 0 else 0.1)


def test_spherical_noise_fixed(body, many_short):
    strength, length = 0.8, 0.5
    src = VirtualEM(
        motions=many_short, sensors="em6", offset_noise=-1, spherical_noise_strength=strength,
        spherical_noise_length=length, noise_sensors=2, body_model=body,
    )  # fmt: skip
    d_all, ratio = [], []
    for seed in range(3):
        b = next(src.windows(48, 12, train=True, seed=seed))
        clean_p, clean_r = body.sensor_frames(b.target, EM6, b.offsets)
        torch.testing.assert_close(b.sensors.ori, clean_r)  # positions only
        assert b.sensors.valid.all()
        ref = body.sensor_frames(BodyPose(b.target.pose[:, :1], b.target.betas), ["r_thigh", "r_shank"])[0]
        ell = (ref[:, 0, 0] - ref[:, 0, 1]).norm(dim=-1)
        d = b.sensors.pos - clean_p
        hit = d.norm(dim=-1) > 1e-6
        for e in range(48):
            n = int(b.seq_len[e])
            assert hit[e].any(0).sum() == 2  # two sensors of this entry
            frames = torch.nonzero(hit[e].any(1))[:, 0]
            assert len(frames) == int(length * n) and frames[-1] - frames[0] == len(frames) - 1  # one window
            norms = d[e][hit[e]].norm(dim=-1)
            assert norms.max() <= strength * ell[e] / 2 + 1e-5
            ratio.append((norms / (strength * ell[e] / 2)).numpy())
        d_all.append(d[hit].numpy())
    d_all, ratio = np.concatenate(d_all), np.concatenate(ratio)
    u = d_all / np.linalg.norm(d_all, axis=-1, keepdims=True)
    assert np.abs(u.mean(0)).max() < 0.12  # uniform directions
    np.testing.assert_allclose((u**2).mean(0), [1 / 3] * 3, atol=0.06)  # the original's y bug breaks this
    assert abs(ratio.mean() - 0.5) < 0.05  # radius uniform in [0, strength * thigh / 2]


def test_suppression_marks_sensors_invalid(body, many_short):
    src = VirtualEM(
        motions=many_short, sensors="em6", suppression_noise_length=0.5, noise_sensors=2, suppression_value=7.0,
        body_model=body,
    )  # fmt: skip
    b = next(src.windows(48, 12, train=True, seed=4))
    dropped = ~b.sensors.valid
    for e in range(48):
        n = int(b.seq_len[e])
        assert dropped[e].any(0).sum() == 2
        frames = torch.nonzero(dropped[e].any(1))[:, 0]
        assert len(frames) == int(0.5 * n) and frames[-1] - frames[0] == len(frames) - 1
    assert (b.sensors.pos[dropped] == 7.0).all() and (b.sensors.ori[dropped] == 7.0).all()
    assert (b.sensors.masked().pos[dropped] == 0).all()
    assert b.frame_mask().all()  # dropped sensors do not remove the frame from the losses


def test_parameter_errors(body, motions, tmp_path, monkeypatch):
    with pytest.raises(EmposeError, match="unknown sensor set 'em7'.*em6"):
        VirtualEM(motions=motions, sensors="em7", body_model=body)
    with pytest.raises(EmposeError, match=r"\['nose'\].*Available sites: .*back"):
        VirtualEM(motions=motions, sensors=["head", "nose"], body_model=body)
    with pytest.raises(EmposeError, match="listed twice"):
        VirtualEM(motions=motions, sensors=["head", "head"], body_model=body)
    with pytest.raises(EmposeError, match="spherical_noise_length' is 0"):
        VirtualEM(motions=motions, spherical_noise_strength=0.5, body_model=body)
    with pytest.raises(EmposeError, match="noise_sensors' must be between 1 and the number of sensors \\(6\\)"):
        VirtualEM(motions=motions, sensors="em6", suppression_noise_length=0.2, noise_sensors=7, body_model=body)
    with pytest.raises(EmposeError, match="offset_noise"):
        VirtualEM(motions=motions, offset_noise=4, body_model=body)
    with pytest.raises(DataError, match="holds no motions"):
        VirtualEM(motions=ListMotions([]), body_model=body)
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"offsets path {missing} does not exist"):
        VirtualEM(motions=motions, offsets=str(missing), body_model=body)
    monkeypatch.delenv("EMPOSE_TEST_UNSET", raising=False)
    with pytest.raises(EmposeError, match="environment variable EMPOSE_TEST_UNSET, which is not set"):
        VirtualEM(motions=motions, offsets="${EMPOSE_TEST_UNSET}/data", body_model=body)
    with pytest.raises(DataError, match="no '<subject>_offsets.npz' files"):
        VirtualEM(motions=motions, offsets=str(tmp_path), body_model=body)


def test_bad_offsets_files(body, motions, tmp_path):
    rng = np.random.default_rng(0)
    means, covs, r = random_offsets(rng)
    good = tmp_path / "A_offsets.npz"
    write_offsets(good, means, covs, r)
    truncated = tmp_path / "B_offsets.npz"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(DataError, match="B_offsets.npz.*truncated or corrupt"):
        VirtualEM(motions=motions, offsets=str(tmp_path), body_model=body)
    np.savez(truncated, means=means, covs=covs, vertex_ids=np.arange(12))
    with pytest.raises(DataError, match="B_offsets.npz: missing key 'r'"):
        VirtualEM(motions=motions, offsets=str(tmp_path), body_model=body)
    bad = means.copy()
    bad[3, 1] = np.nan
    write_offsets(truncated, bad, covs, r)
    with pytest.raises(DataError, match="B_offsets.npz: key 'means' contains NaN"):
        VirtualEM(motions=motions, offsets=str(tmp_path), body_model=body)
    write_offsets(truncated, means, covs, r * 2)
    with pytest.raises(DataError, match="key 'r' entry .* is not a rotation"):
        VirtualEM(motions=motions, offsets=str(truncated), body_model=body)
