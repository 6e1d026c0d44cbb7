"""Resampling to 60 fps: slerp on rotations, spline on translation, duration kept, no extrapolation."""

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from empose_motion.resample import continuous_quats, output_times, resample_motion, slerp_resample


def _spin(times, axis, omega):
    """Rotation vectors of a constant-angular-velocity spin (angles beyond pi included)."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    return Rotation.from_rotvec(np.outer(omega * times, axis))


@pytest.mark.parametrize("fps_in", [120.0, 100.0, 59.94, 250.0, 30.0])
def test_constant_angular_velocity_is_reproduced(fps_in):
    n = int(fps_in * 2.3)
    t_in = np.arange(n) / fps_in
    axes = [(0, 1, 0), (1, 2, -0.5)]
    omegas = [5.0, -3.1]  # rad/s: several full turns, so canonical axis-angles wrap at pi
    pose = np.stack([_spin(t_in, a, w).as_rotvec() for a, w in zip(axes, omegas)], 1)
    trans = np.stack([t_in, t_in**2, np.sin(t_in)], 1)
    out_pose, out_trans = resample_motion(pose, trans, fps_in, 60.0)

    m = math.ceil(n * 60 / fps_in - 1e-9)
    assert out_pose.shape == (m, 2, 3) and out_trans.shape == (m, 3)
    assert out_pose.dtype == np.float32 and out_trans.dtype == np.float32
    t_out = np.arange(m) / 60.0
    inside = t_out <= t_in[-1] + 1e-9
    for j, (a, w) in enumerate(zip(axes, omegas)):
        want = _spin(np.minimum(t_out, t_in[-1]), a, w)
        err = (want.inv() * Rotation.from_rotvec(out_pose[:, j].astype(np.float64))).magnitude()
        assert err.max() < 1e-5  # float32 storage
    # quadratic translation is reproduced exactly by the cubic spline inside the input range
    np.testing.assert_allclose(out_trans[inside, :2], np.stack([t_out, t_out**2], 1)[inside], atol=1e-5)


@pytest.mark.parametrize("n, fps_in", [(241, 120.0), (240, 120.0), (1000, 100.0), (37, 250.0), (5, 30.0), (599, 59.94)])
def test_duration_is_preserved_and_nothing_is_extrapolated(n, fps_in):
    times = output_times(n, fps_in, 60.0)
    duration = n / fps_in
    assert times[-1] < duration  # every output time lies inside the clip ...
    assert len(times) / 60.0 >= duration - 1e-9  # ... and the output lasts at least as long,
    assert len(times) / 60.0 < duration + 1 / 60.0  # but less than one output frame longer
    rng = np.random.default_rng(n)
    pose = rng.normal(size=(n, 3, 3))
    trans = rng.normal(size=(n, 3))
    out_pose, out_trans = resample_motion(pose, trans, fps_in, 60.0)
    late = times > (n - 1) / fps_in  # after the last input sample: the last sample held, not extrapolated
    if late.any():
        np.testing.assert_allclose(out_trans[late], np.repeat(trans[-1:], late.sum(), 0), atol=1e-5)
        held = Rotation.from_rotvec(pose[-1]).inv()
        for k in np.flatnonzero(late):
            assert (held * Rotation.from_rotvec(out_pose[k].astype(np.float64))).magnitude().max() < 1e-5


def test_120_fps_keeps_every_second_frame_exactly():
    rng = np.random.default_rng(0)
    pose = Rotation.random(400 * 4, random_state=1).as_rotvec().reshape(400, 4, 3)
    trans = rng.normal(size=(400, 3))
    out_pose, out_trans = resample_motion(pose, trans, 120.0, 60.0)
    assert out_pose.shape[0] == 200
    err = (Rotation.from_rotvec(pose[::2].reshape(-1, 3)).inv() * Rotation.from_rotvec(out_pose.reshape(-1, 3).astype(float))).magnitude()
    assert err.max() < 1e-5
    np.testing.assert_allclose(out_trans, trans[::2], atol=1e-6)


def test_slerp_output_is_unit_and_sign_continuous():
    rng = np.random.default_rng(3)
    n = 300
    t = np.arange(n) / 120.0
    # a smooth but fast rotation path, given with random quaternion signs (as stored files may have)
    rot = Rotation.from_rotvec(np.stack([2 * np.sin(3 * t), 4 * t, np.cos(5 * t)], 1))
    q = rot.as_quat() * rng.choice([-1.0, 1.0], size=(n, 1))
    out = slerp_resample(q[:, None], 120.0, 60.0)[:, 0]
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, atol=1e-12)
    assert np.all(np.sum(out[1:] * out[:-1], -1) > 0)  # no sign flip between neighbours
    # same rotations as the input at the shared sample times (every second frame)
    err = (rot[::2].inv() * Rotation.from_quat(out)).magnitude()
    assert err.max() < 1e-9
    # consecutive outputs are close on SO(3) (continuity): at most the input's largest step times two
    steps = (Rotation.from_quat(out[1:]).inv() * Rotation.from_quat(out[:-1])).magnitude()
    in_steps = (rot[1:].inv() * rot[:-1]).magnitude()
    assert steps.max() <= 2 * in_steps.max() + 1e-9


def test_slerp_midpoint_is_the_geodesic_midpoint_not_an_axis_angle_average():
    a = Rotation.from_rotvec([0, 0, 3.0])
    b = Rotation.from_rotvec([0, 0, -3.0])  # 0.283 rad away from a, across the pi wrap
    q = np.stack([a.as_quat(), b.as_quat()])[:, None]
    mid = Rotation.from_quat(slerp_resample(q, 60.0, 120.0)[1, 0])
    # the short way round passes through pi about z; averaging axis-angles would give the identity
    assert (Rotation.from_rotvec([0, 0, np.pi]).inv() * mid).magnitude() < 1e-9


def test_continuity_fix_makes_neighbour_dots_non_negative():
    q = Rotation.random(50, random_state=2).as_quat()
    q[::3] *= -1
    fixed = continuous_quats(q)
    assert np.all(np.sum(fixed[1:] * fixed[:-1], -1) >= 0)
    assert np.all(np.abs(np.abs(fixed) - np.abs(q)) < 1e-15)  # only signs changed


def test_same_rate_is_unchanged():
    pose = np.random.default_rng(1).normal(size=(10, 2, 3))
    trans = np.zeros((10, 3))
    out, _ = resample_motion(pose, trans, 60.0, 60.0)
    np.testing.assert_allclose(out, pose.astype(np.float32))
