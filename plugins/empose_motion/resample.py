"""Resampling motions to a target frame rate (60 fps for everything empose feeds to a network).

Rotations are interpolated on the unit quaternion sphere (slerp between neighbouring samples after a
sign-continuity fix), never by interpolating axis-angle vectors, which takes wrong paths and breaks
at the pi wrap-around. Translations use a cubic spline (linear below 4 samples).

Time grid (a deliberate change from the original, docs/method.md §13 item 20): with n input frames at rate
r the clip lasts D = n / r; output frame k sits at time k / fps_out for every k with k / fps_out < D, so
the output has ceil(D * fps_out) frames and the same duration as the input (a 120 fps clip of n frames
gives ceil(n / 2) frames). Output times after the last input sample (at most one input frame period)
hold the last sample instead of extrapolating it.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.spatial.transform import Rotation

#: Output times within this many input frames of an input sample take that sample exactly.
_SNAP = 1e-6


def continuous_quats(q: np.ndarray) -> np.ndarray:
    """Flip signs along axis 0 so that consecutive quaternions have a non-negative dot product.

    `q` is (T, ..., 4); q and -q are the same rotation, and a slerp between neighbours of opposite
    sign would take the long way round."""
    q = np.asarray(q, dtype=np.float64)
    if q.shape[0] < 2:
        return q.copy()
    negative = np.einsum("t...c,t...c->t...", q[1:], q[:-1]) < 0
    flips = np.cumsum(negative, axis=0) % 2
    sign = np.concatenate([np.ones_like(flips[:1]), 1 - 2 * flips], axis=0)
    return q * sign[..., None]


def output_times(n_frames: int, fps_in: float, fps_out: float) -> np.ndarray:
    """Times k / fps_out of the output frames (k / fps_out < n_frames / fps_in), in seconds."""
    if n_frames < 1 or fps_in <= 0 or fps_out <= 0:
        raise ValueError(f"cannot resample {n_frames} frames from {fps_in} to {fps_out} fps")
    m = int(np.ceil(n_frames * fps_out / fps_in - 1e-9))
    return np.arange(max(m, 1)) / fps_out


def _sample_positions(n_frames: int, fps_in: float, times: np.ndarray):
    """Left neighbour index and fraction for each output time, clamped to the input range."""
    x = np.clip(times * fps_in, 0.0, n_frames - 1)
    near = np.round(x)
    x = np.where(np.abs(x - near) < _SNAP, near, x)
    i0 = np.minimum(np.floor(x).astype(np.int64), max(n_frames - 2, 0))
    return i0, x - i0


def slerp_resample(quats: np.ndarray, fps_in: float, fps_out: float = 60.0) -> np.ndarray:
    """Resample unit quaternions (n, ..., 4) (x, y, z, w) from fps_in to fps_out by slerp.

    The result (m, ..., 4) is unit-norm and sign-continuous along axis 0."""
    q = continuous_quats(quats)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    n = q.shape[0]
    times = output_times(n, fps_in, fps_out)
    if n == 1:
        return np.repeat(q, len(times), axis=0)
    i0, frac = _sample_positions(n, fps_in, times)
    q0, q1 = q[i0], q[i0 + 1]
    frac = frac.reshape((-1,) + (1,) * (q.ndim - 1))
    dot = np.clip(np.sum(q0 * q1, axis=-1, keepdims=True), -1.0, 1.0)  # >= 0 after the fix
    omega = np.arccos(dot)
    sin_omega = np.sin(omega)
    small = sin_omega < 1e-6  # nearly equal rotations: linear blend is exact to first order
    safe = np.where(small, 1.0, sin_omega)
    w0 = np.where(small, 1.0 - frac, np.sin((1.0 - frac) * omega) / safe)
    w1 = np.where(small, frac, np.sin(frac * omega) / safe)
    out = w0 * q0 + w1 * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def resample_positions(x: np.ndarray, fps_in: float, fps_out: float = 60.0) -> np.ndarray:
    """Resample positions (n, ..., 3) with a cubic spline (linear for n < 4), holding the last sample."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    times = output_times(n, fps_in, fps_out)
    if n == 1:
        return np.repeat(x, len(times), axis=0)
    i0, frac = _sample_positions(n, fps_in, times)
    if n < 4:
        frac = frac.reshape((-1,) + (1,) * (x.ndim - 1))
        return (1.0 - frac) * x[i0] + frac * x[i0 + 1]
    spline = CubicSpline(np.arange(n, dtype=np.float64), x, axis=0)
    return spline(i0 + frac)


def resample_motion(
    pose: np.ndarray, trans: np.ndarray, fps_in: float, fps_out: float = 60.0
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a motion: local axis-angle `pose (n, J, 3)` and `trans (n, 3)` from fps_in to fps_out.

    Returns float32 `(pose (m, J, 3), trans (m, 3))`; axis-angle angles lie in [0, pi]. A clip already at
    fps_out is returned unchanged (as float32)."""
    pose = np.asarray(pose, dtype=np.float64)
    trans = np.asarray(trans, dtype=np.float64)
    if pose.ndim != 3 or pose.shape[-1] != 3 or trans.shape != (pose.shape[0], 3):
        raise ValueError(f"expected pose (n, J, 3) and trans (n, 3), got {pose.shape} and {trans.shape}")
    if abs(fps_in - fps_out) < 1e-6 * fps_out:
        return pose.astype(np.float32), trans.astype(np.float32)
    n, j, _ = pose.shape
    quats = Rotation.from_rotvec(pose.reshape(-1, 3)).as_quat().reshape(n, j, 4)
    q = slerp_resample(quats, fps_in, fps_out)
    out_pose = Rotation.from_quat(q.reshape(-1, 4)).as_rotvec().reshape(q.shape[0], j, 3)
    return out_pose.astype(np.float32), resample_positions(trans, fps_in, fps_out).astype(np.float32)
