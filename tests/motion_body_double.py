"""A stick-figure test double of an SMPL-like body model, for the motion-source tests.

22 joints with SMPL names (smplx spelling, to exercise name matching) at roughly SMPL's neutral rest
positions (T-pose, Y up, facing +Z). Betas scale the skeleton (beta 0: height, beta 1: width), so tests
can see which shape a motion was retargeted to. FK is plain numpy with scipy rotations, independent of
empose's own geometry code.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from empose_framework.interfaces import BodyModel, BodyOutput

NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
    "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
REST = np.array([
    [0.000, -0.223, 0.028], [0.068, -0.314, 0.021], [-0.068, -0.314, 0.021], [-0.004, -0.110, -0.004],
    [0.103, -0.690, 0.017], [-0.103, -0.690, 0.017], [0.002, 0.024, 0.003], [0.089, -1.085, -0.026],
    [-0.089, -1.085, -0.026], [0.003, 0.083, 0.029], [0.114, -1.137, 0.093], [-0.114, -1.137, 0.093],
    [-0.002, 0.292, -0.015], [0.079, 0.193, -0.009], [-0.079, 0.193, -0.009], [0.005, 0.355, 0.051],
    [0.172, 0.226, -0.021], [-0.172, 0.226, -0.021], [0.434, 0.215, -0.037], [-0.434, 0.215, -0.037],
    [0.698, 0.221, -0.036], [-0.698, 0.221, -0.036],
])


def rest_joints(betas: np.ndarray) -> np.ndarray:
    """Rest joint positions (..., 22, 3) for shapes `betas (..., K)`."""
    betas = np.asarray(betas, dtype=np.float64)
    b = np.zeros(betas.shape[:-1] + (2,))
    b[..., : min(2, betas.shape[-1])] = betas[..., :2]
    scale = np.stack([1 + 0.03 * b[..., 1], 1 + 0.05 * b[..., 0], np.ones_like(b[..., 0])], -1)
    return REST * scale[..., None, :]


def fk(pose: np.ndarray, betas: np.ndarray, trans: np.ndarray | None = None):
    """Joints (T, 22, 3) and global rotations (T, 22, 3, 3) of poses (T, 22, 3); betas (K,) or (T, K)."""
    t = pose.shape[0]
    rest = np.broadcast_to(rest_joints(betas), (t, 22, 3))
    local = Rotation.from_rotvec(pose.reshape(-1, 3)).as_matrix().reshape(t, 22, 3, 3)
    glob = np.zeros_like(local)
    pos = np.zeros((t, 22, 3))
    for j, p in enumerate(PARENTS):
        if p < 0:
            glob[:, j] = local[:, j]
            pos[:, j] = rest[:, j]
        else:
            glob[:, j] = glob[:, p] @ local[:, j]
            pos[:, j] = pos[:, p] + np.einsum("tab,tb->ta", glob[:, p], rest[:, j] - rest[:, p])
    if trans is not None:
        pos = pos + trans[:, None]
    return pos, glob


class StickBody(BodyModel):
    """Test double: FK-only SMPL-like skeleton."""

    joint_names = NAMES
    parents = PARENTS
    n_pose_joints = 22
    n_betas = 10
    faces = torch.zeros((0, 3), dtype=torch.long)
    sensor_sites: dict = {}

    def forward(self, pose, vertices=True):
        lead = pose.pose.shape[:-2]
        p = pose.pose.detach().cpu().double().numpy().reshape(-1, 22, 3)
        betas = pose.betas.detach().cpu().double().numpy().reshape(-1, pose.betas.shape[-1])
        if betas.shape[0] == 1:
            betas = np.repeat(betas, p.shape[0], 0)
        elif betas.shape[0] != p.shape[0]:  # (B, K) with pose (B, T, ...): repeat over frames
            betas = np.repeat(betas, p.shape[0] // betas.shape[0], 0)
        trans = None if pose.trans is None else pose.trans.detach().cpu().double().numpy().reshape(-1, 3)
        joints, rots = fk(p, betas, trans)
        return BodyOutput(
            torch.from_numpy(joints).float().reshape(*lead, 22, 3), torch.from_numpy(rots).float().reshape(*lead, 22, 3, 3)
        )

    def sensor_frames(self, pose, sites, offsets=None):
        raise NotImplementedError("the stick-figure double has no mesh")

    def to(self, device):
        return self
