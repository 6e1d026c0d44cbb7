"""The core's forward kinematics and frame mask, against smplx, direct products and numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from smplx.lbs import batch_rigid_transform

from empose_framework.errors import EmposeError
from empose_framework.kinematics import chain, inside_mask, rigid_transforms
from empose_smplh.constants import PARENTS


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rigid_transforms_equal_smplx_bit_for_bit(dtype):
    """Body models pose through `rigid_transforms`: it must give exactly smplx's numbers (parity)."""
    rng = np.random.default_rng(0)
    rot = torch.tensor(Rotation.random(5 * 52, random_state=1).as_matrix().reshape(5, 52, 3, 3), dtype=dtype)
    joints = torch.tensor(rng.normal(scale=0.3, size=(5, 52, 3)), dtype=dtype)
    want_joints, want_rel = batch_rigid_transform(rot, joints, torch.tensor(PARENTS), dtype=dtype)
    got_joints, got_rel = rigid_transforms(rot, joints, PARENTS)
    assert torch.equal(got_joints, want_joints) and torch.equal(got_rel, want_rel)


def test_rigid_transforms_match_a_direct_chain_in_numpy():
    """Independent check of the convention: p_j = p_parent + G_parent (J_j - J_parent), G_j = G_parent R_j,
    and the skinning transform maps the rest joint onto the posed one."""
    parents = [-1, 0, 1, 0, 3]
    rng = np.random.default_rng(2)
    rot = Rotation.random(5, random_state=3).as_matrix()
    rest = rng.normal(size=(5, 3))
    g, p = np.empty_like(rot), np.empty_like(rest)
    for j, par in enumerate(parents):
        g[j] = rot[j] if par < 0 else g[par] @ rot[j]
        p[j] = rest[j] if par < 0 else p[par] + g[par] @ (rest[j] - rest[par])
    posed, rel = rigid_transforms(torch.tensor(rot)[None], torch.tensor(rest)[None], parents)
    np.testing.assert_allclose(posed[0].numpy(), p, atol=1e-12)
    np.testing.assert_allclose(rel[0, :, :3, :3].numpy(), g, atol=1e-12)
    moved = np.einsum("jab,jb->ja", rel[0, :, :3, :3].numpy(), rest) + rel[0, :, :3, 3].numpy()
    np.testing.assert_allclose(moved, p, atol=1e-12)


def test_chain_matches_a_direct_product():
    parents = [-1, 0, 1, 0, 3]
    local = Rotation.random(5, random_state=4).as_matrix()
    out = chain(torch.tensor(local), parents).numpy()
    np.testing.assert_allclose(out[2], local[0] @ local[1] @ local[2], atol=1e-12)
    np.testing.assert_allclose(out[4], local[0] @ local[3] @ local[4], atol=1e-12)


def test_inside_mask_marks_frames_below_the_true_length():
    seq_len = torch.tensor([0, 3, 5])
    want = np.arange(5)[None, :] < np.array([0, 3, 5])[:, None]
    np.testing.assert_array_equal(inside_mask(seq_len, 5).numpy(), want)
    assert inside_mask(seq_len, 5, torch.device("cpu")).dtype == torch.bool


@pytest.mark.parametrize("parents", [PARENTS, (-1, 0, 0, 1, 2, 1, -1, 6)])  # SMPL-H order; by depth, two roots
def test_chain_by_depth_equals_a_joint_by_joint_chain_with_its_gradient(parents):
    """`chain` multiplies a whole depth at once: values bit for bit and gradients (float64) as the plain loop."""
    local = torch.tensor(Rotation.random(3 * len(parents), random_state=5).as_matrix().reshape(3, len(parents), 3, 3))
    weight = torch.randn(3, len(parents), 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    grads = []
    for fn in (chain, _loop_chain):
        x = local.clone().requires_grad_(True)
        out = fn(x, parents)
        (out * weight).sum().backward()
        grads.append((out.detach(), x.grad))
    assert torch.equal(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-12, rtol=1e-12)


def _loop_chain(local, parents):
    out = []
    for j, p in enumerate(parents):
        out.append(local[:, j] if p < 0 else out[p] @ local[:, j])
    return torch.stack(out, dim=1)


def test_chain_names_a_parent_after_its_child():
    with pytest.raises(EmposeError, match="joint 1 has parent 2"):
        chain(torch.eye(3).expand(1, 3, 3, 3), (-1, 2, 0))
