"""Rotations and rigid alignment in torch, batched over any leading dimensions.

Thin wrappers around roma (robust near 0 and pi, differentiable) fixing empose's conventions:
rotation matrices map local to parent coordinates; axis-angle angles lie in [0, pi].
"""

from __future__ import annotations

import roma
import torch


def aa_to_rotmat(aa: torch.Tensor) -> torch.Tensor:
    """Axis-angle (..., 3) -> rotation matrices (..., 3, 3)."""
    return roma.rotvec_to_rotmat(aa)


def rotmat_to_aa(rot: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> axis-angle (..., 3) with angle in [0, pi] (quaternion-based)."""
    return roma.rotmat_to_rotvec(rot)


def geodesic_angle(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """Angle (radians, in [0, pi]) of r1^T r2, computed with atan2 so it is accurate near 0 and pi."""
    rel = r1.transpose(-1, -2) @ r2
    vee = torch.stack(
        [rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0], rel[..., 1, 0] - rel[..., 0, 1]], -1
    )
    trace = rel.diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.atan2(vee.norm(dim=-1) / 2, (trace - 1) / 2)


def similarity_fit(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best similarity mapping points y (..., N, 3) onto x (..., N, 3) (Umeyama, rotation with det +1):
    returns (scale (...), rot (..., 3, 3), mean_x (..., 1, 3), mean_y (..., 1, 3)) such that
    y' = scale * (y - mean_y) @ rot^T + mean_x. Fit on some points, apply to others (PA-MPJPE)."""
    mx, my = x.mean(-2, keepdim=True), y.mean(-2, keepdim=True)
    x0, y0 = x - mx, y - my
    cov = x0.transpose(-1, -2) @ y0  # sum_i x_i y_i^T
    u, s, vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(u @ vh))
    d = torch.where(d == 0, torch.ones_like(d), d)
    corr = torch.ones_like(s)
    corr[..., -1] = d
    rot = u @ torch.diag_embed(corr) @ vh  # maps y0 onto x0
    scale = (s * corr).sum(-1) / y0.square().sum((-1, -2)).clamp_min(1e-12)
    return scale, rot, mx, my


def similarity_procrustes(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Align points y (..., N, 3) to x (..., N, 3) with the best rotation (det +1), uniform scale and
    translation (Umeyama); returns the aligned copy of y."""
    scale, rot, mx, my = similarity_fit(x, y)
    return scale[..., None, None] * ((y - my) @ rot.transpose(-1, -2)) + mx
