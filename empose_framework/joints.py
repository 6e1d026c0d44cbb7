"""The SMPL body-joint table, shared by the core and the plugins.

Data files (AMASS, BVH exports, the empose motion file) store the 22 SMPL/SMPL-H body joints in this
order; body models may name their joints in another spelling or order, so joints are always matched by
`canonical_joint_name`, never by position alone.
"""

from __future__ import annotations

#: The 22 SMPL-H body joints in smplx's spelling and AMASS order (root, then 21 body joints).
BODY_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)  # fmt: skip

#: Parent of each of the 22 body joints (-1 for the root): SMPL-H's `kintree_table[0]`.
SMPL_BODY_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)

_ALIASES = {"pelvis": "root", "hips": "root"}


def canonical_joint_name(name: str) -> str:
    """One spelling for the SMPL joint names that data and body models use: `left_hip`, `L_Hip` and
    `l_hip` -> `l_hip`; `pelvis` -> `root`. Joints are matched by this, never by position alone."""
    n = name.strip().lower().replace("-", "_").replace(" ", "_")
    for long, short in (("left_", "l_"), ("right_", "r_")):
        if n.startswith(long):
            n = short + n[len(long):]
    return _ALIASES.get(n, n)


#: The 22 body joints in the short spelling (`root`, `l_hip`, ...).
SMPL_BODY_JOINTS = tuple(canonical_joint_name(n) for n in BODY_JOINT_NAMES)


def body_joint_index(joint_names, n_pose_joints: int) -> list[int] | None:
    """For each of the 22 SMPL body joints, its index among a body model's first `n_pose_joints`
    joints (matched by canonical name); None when the body model lacks any of them."""
    index = {canonical_joint_name(n): i for i, n in enumerate(list(joint_names)[:n_pose_joints])}
    if any(n not in index for n in SMPL_BODY_JOINTS):
        return None
    return [index[n] for n in SMPL_BODY_JOINTS]
