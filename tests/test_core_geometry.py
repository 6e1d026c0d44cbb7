"""Rotations and Procrustes against scipy and closed forms."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from empose_framework import geometry as g

RNG = np.random.default_rng(0)


def rotvecs(n, max_angle=np.pi):
    axes = RNG.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    return axes * RNG.uniform(0, max_angle, size=(n, 1))


def test_axis_angle_matches_scipy_including_near_zero_and_pi():
    aa = np.concatenate([rotvecs(200), rotvecs(5, 1e-7), rotvecs(5) / np.pi * (np.pi - 1e-6)])
    ours = g.aa_to_rotmat(torch.tensor(aa, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(ours, Rotation.from_rotvec(aa).as_matrix(), atol=1e-12)
    back = g.rotmat_to_aa(torch.tensor(ours)).numpy()
    # same rotation (axis-angle is ambiguous at pi, so compare matrices)
    np.testing.assert_allclose(Rotation.from_rotvec(back).as_matrix(), ours, atol=1e-9)
    assert np.all(np.linalg.norm(back, axis=1) <= np.pi + 1e-9)


def test_geodesic_angle_is_the_relative_rotation_angle():
    a, b = Rotation.from_rotvec(rotvecs(100)), Rotation.from_rotvec(rotvecs(100))
    expected = (a.inv() * b).magnitude()
    ours = g.geodesic_angle(torch.tensor(a.as_matrix()), torch.tensor(b.as_matrix())).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-9)
    flip = torch.tensor(Rotation.from_rotvec([[0, np.pi, 0]]).as_matrix())
    assert abs(g.geodesic_angle(torch.eye(3, dtype=torch.float64)[None], flip).item() - np.pi) < 1e-9


def test_procrustes_recovers_a_known_similarity():
    x = RNG.normal(size=(4, 22, 3))
    rot = Rotation.random(4, random_state=1).as_matrix()
    y = 0.37 * np.einsum("bij,bnj->bni", rot, x) + RNG.normal(size=(4, 1, 3))
    aligned = g.similarity_procrustes(torch.tensor(x), torch.tensor(y)).numpy()
    np.testing.assert_allclose(aligned, x, atol=1e-10)


def test_procrustes_returns_a_proper_rotation_for_a_mirrored_input():
    x = RNG.normal(size=(22, 3))
    y = x * np.array([-1.0, 1.0, 1.0])  # a reflection: the best orthogonal fit has det -1
    aligned = g.similarity_procrustes(torch.tensor(x), torch.tensor(y)).numpy()
    # recover the transform that was applied and check it is a rotation, not a reflection
    y0, a0 = y - y.mean(0), aligned - aligned.mean(0)
    m, *_ = np.linalg.lstsq(y0, a0, rcond=None)
    assert np.linalg.det(m) > 0
    assert np.linalg.norm(aligned - x) > 1e-3  # a mirror image cannot be matched exactly


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rotations_are_differentiable(dtype):
    aa = torch.tensor(rotvecs(8), dtype=dtype, requires_grad=True)
    g.rotmat_to_aa(g.aa_to_rotmat(aa)).sum().backward()
    assert torch.isfinite(aa.grad).all()
