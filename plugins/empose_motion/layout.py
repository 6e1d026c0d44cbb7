"""Joint names, the SMPL body-joint layout, and mapping stored motions onto a body model's joints.

Stored motions (AMASS, 3DPW, the original's LMDBs) use the 22 SMPL/SMPL-H body joints in the order
of docs/method.md §2.2. Body models name their joints in either style ("l_hip" or "left_hip", "root" or
"pelvis"); `canonical` reduces both to one spelling so lookups never depend on the style.
"""

from __future__ import annotations

import fnmatch
import zlib
from typing import Sequence

import numpy as np

from empose_framework.errors import DataError, EmposeError
from empose_framework.interfaces import fit_betas
from empose_framework.joints import SMPL_BODY_JOINTS
from empose_framework.joints import canonical_joint_name as canonical
from empose_motion.schema import SPLITS


def pose_joint_index(body_model, what: str) -> dict[str, int]:
    """Canonical name -> index among the body model's `n_pose_joints` leading joints."""
    names = list(body_model.joint_names)[: body_model.n_pose_joints]
    index = {canonical(n): i for i, n in enumerate(names)}
    missing = [n for n in SMPL_BODY_JOINTS if n not in index]
    if missing:
        raise EmposeError(
            f"{what} needs a body model with the 22 SMPL body joints, but {type(body_model).__name__}'s "
            f"first {body_model.n_pose_joints} joints lack {missing[:5]}{'...' if len(missing) > 5 else ''} "
            f"(its joints: {names[:8]}...). Use the `smplh` or `embedded` body model, or a model whose "
            "pose joints carry SMPL names."
        )
    return index


class BodyLayout:
    """Where each SMPL body joint sits among a body model's pose joints (small; pickles cheaply)."""

    def __init__(self, body_model, what: str):
        index = pose_joint_index(body_model, what)
        self.columns = [index[n] for n in SMPL_BODY_JOINTS]
        self.n_pose_joints = int(body_model.n_pose_joints)
        self.n_betas = int(body_model.n_betas)

    def from_smpl(self, pose: np.ndarray) -> np.ndarray:
        """SMPL-layout poses (T, 22, 3) -> the body model's pose joints (T, J, 3); joints the body model
        has beyond the SMPL body keep identity (zero) rotations."""
        out = np.zeros((pose.shape[0], self.n_pose_joints, 3), dtype=np.float32)
        out[:, self.columns] = pose
        return out

    def betas(self, betas: np.ndarray) -> np.ndarray:
        return fit_betas(betas, self.n_betas)


# --------------------------------------------------------------------------- subsets of a collection



def split_of(seq_id: str, by: str = "sequence") -> str:
    """Deterministic split of a sequence id: crc32 buckets 0-7 train, 8 valid, 9 test (80/10/10).

    Hashing the id (not the position) keeps a sequence in its split when files are added or removed.
    `by="folder"` hashes the id's folder instead, so all sequences of one subject share a split and
    validation subjects are never trained on."""
    key = seq_id.rsplit("/", 1)[0] if by == "folder" and "/" in seq_id else seq_id
    bucket = zlib.crc32(key.encode("utf-8")) % 10
    return "train" if bucket < 8 else ("valid" if bucket == 8 else "test")


def select_ids(ids: Sequence[str], split: str, include: Sequence[str] | None, exclude: Sequence[str] | None,
               where: str, split_by: str = "sequence") -> list[int]:
    """Positions of `ids` in `split` that match any `include` glob (all if None) and no `exclude` glob."""
    if split not in SPLITS:
        raise EmposeError(f"{where}: split must be one of {', '.join(SPLITS)}, not {split!r}.")
    keep = []
    for i, sid in enumerate(ids):
        if split != "all" and split_of(sid, split_by) != split:
            continue
        if include and not any(fnmatch.fnmatchcase(sid, p) for p in include):
            continue
        if exclude and any(fnmatch.fnmatchcase(sid, p) for p in exclude):
            continue
        keep.append(i)
    if not keep:
        raise DataError(
            f"{where}: no sequence left after selecting split={split!r}, include={list(include or [])}, "
            f"exclude={list(exclude or [])} among {len(ids)} sequences (e.g. {list(ids[:3])}). Loosen the "
            "filters or use split: all."
        )
    return keep
