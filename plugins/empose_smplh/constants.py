"""SMPL-H facts shared by both body models (kinematic tree, joint names, EM-POSE sensor sites)."""

from __future__ import annotations

#: The 52 SMPL-H joints (smplx's names): 22 body joints, then 15 per hand (left, then right).
_FINGERS = ("index", "middle", "pinky", "ring", "thumb")
BODY_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)  # fmt: skip
JOINT_NAMES = BODY_JOINT_NAMES + tuple(
    f"{side}_{finger}{i}" for side in ("left", "right") for finger in _FINGERS for i in (1, 2, 3)
)

#: Parent of every joint (-1 for the root): the `kintree_table[0]` of SMPL-H.
PARENTS = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19,
    20, 22, 23, 20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35,
    21, 37, 38, 21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50,
)  # fmt: skip

N_POSE_JOINTS = 22  # root + 21 body joints: what the estimators predict; hands stay flat

_ALIASES = {"pelvis": "root", "hips": "root"}


def canonical_joint_name(name: str) -> str:
    """One spelling for the SMPL joint names that data and body models use: `left_hip`, `L_Hip` and
    `l_hip` -> `l_hip`; `pelvis` -> `root`. Joints are matched by this, never by position alone."""
    n = name.strip().lower().replace("-", "_").replace(" ", "_")
    for long, short in (("left_", "l_"), ("right_", "r_")):
        if n.startswith(long):
            n = short + n[len(long):]
    return _ALIASES.get(n, n)


#: The 22 body joints in the short spelling (`root`, `l_hip`, ...) and their parents.
SMPL_BODY_JOINTS = tuple(canonical_joint_name(n) for n in BODY_JOINT_NAMES)
SMPL_BODY_PARENTS = PARENTS[:N_POSE_JOINTS]

#: The 12 EM-POSE sensor sites in the reference's S order (§2.1) and their SMPL-H vertex ids.
SENSOR_SITE_NAMES = (
    "back", "head", "r_forearm", "r_upper_arm", "r_shoulder", "r_thigh", "r_shank",
    "l_forearm", "l_upper_arm", "l_shoulder", "l_thigh", "l_shank",
)  # fmt: skip
SMPLH_SENSOR_VERTICES = (3027, 3748, 5430, 5178, 5006, 4447, 4559, 1961, 1391, 1535, 959, 1072)

SMPLH_N_VERTICES = 6890
