"""Metrics on hand-computed cases, checked against numpy/scipy (not against empose's own geometry).

A test double body model makes FK transparent: joint positions are the pose vectors themselves, so a
"prediction" can be any point set (e.g. a rotated, scaled copy of the truth).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from empose_framework.errors import RecipeError
from empose_framework.interfaces import BodyModel, BodyOutput, BodyPose, PosedBody
from empose_metrics.metrics import MPJAE, MPJPE, PAMPJPE, Jitter

NAMES = [
    "pelvis", "l_hip", "r_hip", "spine1", "l_knee", "r_knee", "spine2", "l_ankle", "r_ankle", "spine3",
    "l_foot", "r_foot", "neck", "l_collar", "r_collar", "head", "l_shoulder", "r_shoulder", "l_elbow",
    "r_elbow", "l_wrist", "r_wrist",
]  # fmt: skip
PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]
POS_IDX = [i for i in range(22) if i not in (10, 11)]
ANG_IDX = [1, 2, 3, 4, 5, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19]


class PointBody(BodyModel):
    """Test double: FK returns the pose vectors as joint positions (metres)."""

    joint_names = NAMES
    parents = PARENTS
    n_pose_joints = 22
    n_betas = 10
    faces = torch.zeros(0, 3, dtype=torch.long)
    sensor_sites = {}

    def forward(self, pose, vertices=True):
        return BodyOutput(joints=pose.pose.clone(), global_rot=torch.zeros(*pose.pose.shape, 3))

    def sensor_frames(self, pose, sites, offsets=None):
        raise NotImplementedError

    def to(self, device):
        return self


def _pose(points: np.ndarray) -> PosedBody:
    """Points as a pose posed through the point body (as the engine hands poses to metrics)."""
    x = torch.as_tensor(points, dtype=torch.float32)
    return PosedBody(BodyPose(pose=x, betas=torch.zeros(*x.shape[:-2], 10)), PointBody())


def test_rotated_scaled_copy_has_zero_pa_mpjpe_and_known_mpjpe():
    rng = np.random.default_rng(0)
    truth = rng.normal(scale=0.3, size=(7, 22, 3))
    rot = Rotation.random(7, random_state=1).as_matrix()
    pred = 1.3 * np.einsum("nij,nkj->nki", rot, truth) + np.array([0.1, -0.2, 0.05])
    body = PointBody()
    expected = np.linalg.norm(pred - truth, axis=-1)[:, POS_IDX] * 1000
    mpjpe = MPJPE(body_model=body).errors(_pose(pred), _pose(truth))
    assert mpjpe.shape == (7, 20)
    np.testing.assert_allclose(mpjpe.numpy(), expected, rtol=1e-4, atol=1e-3)
    pa = PAMPJPE(body_model=body).errors(_pose(pred), _pose(truth))
    assert pa.shape == (7, 20) and pa.abs().max() < 1e-2  # mm


def _similarity_align_np(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Align y to x: proper rotation from scipy's Kabsch, then the closed-form least-squares scale."""
    mx, my = x.mean(0), y.mean(0)
    rot, _ = Rotation.align_vectors(x - mx, y - my)
    ry = rot.apply(y - my)
    scale = np.sum((x - mx) * ry) / np.sum((y - my) ** 2)
    return scale * ry + mx


def test_pa_mpjpe_fits_on_all_22_joints_and_scores_20_against_scipy():
    rng = np.random.default_rng(3)
    truth = rng.normal(scale=0.3, size=(5, 22, 3))
    pred = truth @ Rotation.random(random_state=4).as_matrix().T * 0.8 + rng.normal(scale=0.05, size=truth.shape)
    pred[:, 10] += 0.5  # a big foot error moves the fit (fit joints) but is not itself scored
    expected = np.stack([np.linalg.norm(_similarity_align_np(t, p) - t, axis=-1)[POS_IDX] for t, p in zip(truth, pred)])
    got = PAMPJPE(body_model=PointBody()).errors(_pose(pred), _pose(truth)).numpy()
    np.testing.assert_allclose(got, expected * 1000, rtol=1e-3, atol=1e-2)
    # a mirror image is not a similarity: the fit must stay a proper rotation, so the error is large
    mirrored = truth * np.array([-1.0, 1.0, 1.0])
    got = PAMPJPE(body_model=PointBody()).errors(_pose(mirrored), _pose(truth)).numpy()
    expected = np.stack([np.linalg.norm(_similarity_align_np(t, p) - t, axis=-1)[POS_IDX] for t, p in zip(truth, mirrored)])
    np.testing.assert_allclose(got, expected * 1000, rtol=1e-3, atol=1e-2)
    assert got.mean() > 50


def test_mpjae_single_joint_rotation_propagates_to_children_only():
    truth = np.zeros((1, 22, 3))
    truth[0, 0] = [0.3, 1.0, -0.2]  # any root orientation: MPJAE is pelvis-relative
    pred = truth.copy()
    pred[0, 0] = [-2.0, 0.1, 0.4]
    pred[0, 1] = [0.0, 0.0, 0.5]  # l_hip by 0.5 rad: l_hip and its descendants l_knee are off by 0.5 rad
    got = MPJAE(body_model=PointBody()).errors(_pose(pred), _pose(truth)).numpy()[0]
    expected = np.zeros(15)
    expected[[ANG_IDX.index(1), ANG_IDX.index(4)]] = math.degrees(0.5)
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_mpjae_matches_scipy_chain_products():
    rng = np.random.default_rng(5)
    truth, pred = rng.normal(scale=0.6, size=(2, 4, 22, 3))
    got = MPJAE(body_model=PointBody()).errors(_pose(pred), _pose(truth)).numpy()

    def globals_(aa):
        out = []
        for j, p in enumerate(PARENTS):
            local = Rotation.identity() if j == 0 else Rotation.from_rotvec(aa[j])
            out.append(local if p < 0 else out[p] * local)
        return out

    for n in range(4):
        gp, gt = globals_(pred[n]), globals_(truth[n])
        expected = [np.degrees((gp[j].inv() * gt[j]).magnitude()) for j in ANG_IDX]
        np.testing.assert_allclose(got[n], expected, atol=2e-3)


def test_jitter_of_a_cubic_trajectory_is_its_constant_jerk():
    fps = 60.0
    t = np.arange(10) / fps
    coef = np.random.default_rng(2).normal(size=(22, 3))
    pos = t[:, None, None] ** 3 * coef  # jerk = 6 coef (m/s^3)
    got = Jitter(body_model=PointBody(), fps=fps).errors(_pose(pos[None]), _pose(pos[None])).numpy()
    assert got.shape == (10, 22)
    assert np.isnan(got[:3]).all()
    np.testing.assert_allclose(got[3:], np.broadcast_to(np.linalg.norm(6 * coef, axis=-1) / 1000, (7, 22)), rtol=1e-3)


def test_unknown_joint_names_are_a_recipe_error_naming_the_fix():
    class Odd(PointBody):
        joint_names = [f"j{i}" for i in range(22)]

    with pytest.raises(RecipeError, match=r"left_foot.*`joints:`|`joints:`"):
        MPJPE(body_model=Odd())
    metric = MPJPE(joints=["j0", "j3"], body_model=Odd())
    assert metric.errors(_pose(np.ones((2, 22, 3))), _pose(np.zeros((2, 22, 3)))).shape == (2, 2)
