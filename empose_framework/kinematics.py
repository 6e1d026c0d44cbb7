"""Forward kinematics and the "inside the true length" frame mask: the maths that body models, losses,
metrics and estimators share, written once here so that no plugin needs another plugin's internals.

Conventions as in `interfaces`: a transform maps local to parent coordinates; `parents` lists each
joint's parent (-1 for the root) and every parent comes before its children (true for SMPL-style trees).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def inside_mask(seq_len: torch.Tensor, t: int, device=None) -> torch.Tensor:
    """(B, t) bool: frame index below the true length `seq_len (B,)` of each zero-padded sequence
    (on `device`, default `seq_len`'s)."""
    device = seq_len.device if device is None else device
    return torch.arange(t, device=device)[None, :] < seq_len.to(device)[:, None]


def chain(local: torch.Tensor, parents: Sequence[int]) -> torch.Tensor:
    """Chain local transforms (..., J, n, n) down the tree: G_j = G_parent(j) L_j (rotations with n = 3,
    homogeneous rigid transforms with n = 4)."""
    out = [None] * local.shape[-3]
    for j, p in enumerate(parents):
        out[j] = local[..., j, :, :] if p < 0 else out[p] @ local[..., j, :, :]
    return torch.stack(out, dim=-3)


def rigid_transforms(rot: torch.Tensor, joints: torch.Tensor, parents: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose a skeleton (the SMPL convention, docs/method.md §3.1): local rotations `rot (..., J, 3, 3)` about
    the rest joint positions `joints (..., J, 3)`. Returns the posed joints (..., J, 3) and each joint's
    rigid transform relative to its rest position (..., J, 4, 4), the skinning transforms.
    Bit-identical to smplx's `batch_rigid_transform` (tested)."""
    parents = [int(p) for p in parents]
    joints = joints[..., None]
    rel = torch.cat([joints[..., :1, :, :], joints[..., 1:, :, :] - joints[..., parents[1:], :, :]], dim=-3)
    local = torch.cat([F.pad(rot, [0, 0, 0, 1]), F.pad(rel, [0, 0, 0, 1], value=1)], dim=-1)
    transforms = chain(local, parents)
    posed = transforms[..., :3, 3]
    return posed, transforms - F.pad(transforms @ F.pad(joints, [0, 0, 0, 1]), [3, 0])
