"""SMPL-H facts shared by both body models (kinematic tree, joint names, EM-POSE sensor sites)."""

from __future__ import annotations

from empose_framework.joints import BODY_JOINT_NAMES
from empose_framework.sites import EM12

#: The 52 SMPL-H joints (smplx's names): 22 body joints, then 15 per hand (left, then right).
_FINGERS = ("index", "middle", "pinky", "ring", "thumb")
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

#: The 12 EM-POSE sensor sites in the reference's S order (§2.1) and their SMPL-H vertex ids.
SENSOR_SITE_NAMES = EM12
SMPLH_SENSOR_VERTICES = (3027, 3748, 5430, 5178, 5006, 4447, 4559, 1961, 1391, 1535, 959, 1072)

SMPLH_N_VERTICES = 6890
