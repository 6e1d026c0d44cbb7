"""Forward kinematics and the "inside the true length" frame mask: the maths that body models, losses,
metrics and estimators share, written once here so that no plugin needs another plugin's internals.

Conventions as in `interfaces`: a transform maps local to parent coordinates; `parents` lists each
joint's parent (-1 for the root) and every parent comes before its children (true for SMPL-style trees).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from empose_framework.errors import EmposeError


def inside_mask(seq_len: torch.Tensor, t: int, device=None) -> torch.Tensor:
    """(B, t) bool: frame index below the true length `seq_len (B,)` of each zero-padded sequence
    (on `device`, default `seq_len`'s)."""
    device = seq_len.device if device is None else device
    return torch.arange(t, device=device)[None, :] < seq_len.to(device)[:, None]


def chain(local: torch.Tensor, parents: Sequence[int]) -> torch.Tensor:
    """Chain local transforms (..., J, n, n) down the tree: G_j = G_parent(j) L_j (rotations with n = 3,
    homogeneous rigid transforms with n = 4). The joints of one depth are multiplied in one batched
    product (a dozen kernels for SMPL-H's 52 joints, not one per joint, forward and backward); each
    product is the per-joint one, so the numbers are those of a joint-by-joint chain, bit for bit."""
    by_depth, sizes, parent_pos, order = _levels(tuple(int(p) for p in parents), local.device)
    levels = (local if by_depth is None else local.index_select(-3, by_depth)).split(sizes, dim=-3)
    out = [levels[0]]
    for here, pos in zip(levels[1:], parent_pos):
        out.append(out[-1].index_select(-3, pos) @ here)
    out = out[0] if len(out) == 1 else torch.cat(out, dim=-3)
    return out if order is None else out.index_select(-3, order)


@functools.lru_cache(maxsize=64)
def _levels(parents: tuple[int, ...], device: torch.device):
    """The joints ordered by depth in the tree, the size of each depth, per depth below the roots each
    joint's parent's position within the depth above, and the permutation back to joint order (both
    permutations None where the joints are numbered by depth already)."""
    depth: list[int] = []
    for j, p in enumerate(parents):
        if p >= j:
            raise EmposeError(
                f"kinematic tree: joint {j} has parent {p}, but every parent must come before its children "
                "(SMPL-style order). Renumber the joints of the body model's tree so that parents come first."
            )
        depth.append(0 if p < 0 else depth[p] + 1)
    levels = [[j for j, d in enumerate(depth) if d == level] for level in range(max(depth, default=0) + 1)]
    as_index = lambda ids: torch.tensor(ids, dtype=torch.long, device=device)  # noqa: E731
    parent_pos = [as_index([above.index(parents[j]) for j in ids]) for above, ids in zip(levels, levels[1:])]
    by_depth = [j for ids in levels for j in ids]
    if by_depth == sorted(by_depth):
        return None, [len(ids) for ids in levels], parent_pos, None
    order = sorted(range(len(by_depth)), key=by_depth.__getitem__)
    return as_index(by_depth), [len(ids) for ids in levels], parent_pos, as_index(order)


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
