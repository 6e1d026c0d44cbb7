"""MPJPE, PA-MPJPE and MPJAE exactly as EM-POSE reports them (reference §9), plus jitter.

Each metric returns errors per (frame, evaluated joint); the engine selects frames and pools means
and population STDs (one place: `empose_framework.engine.evaluation`). Joints are chosen by name so
that the paper's subsets carry over to any body model that uses SMPL joint names (`l_`/`left_`
spellings both match); a body model with other names needs `joints:` in the recipe.
"""

from __future__ import annotations

import math
from typing import ClassVar, Sequence

import torch

from empose_framework.errors import RecipeError
from empose_framework.geometry import aa_to_rotmat, geodesic_angle, local_to_global, similarity_fit
from empose_framework.interfaces import BodyModel, BodyPose, Metric
from empose_framework.params import Param
from empose_smplh.constants import BODY_JOINT_NAMES as BODY_JOINTS
from empose_smplh.constants import canonical_joint_name

#: §2.2: positional metrics use the 22 body joints but the feet
POSITION_JOINTS = tuple(j for j in BODY_JOINTS if j not in ("left_foot", "right_foot"))
#: §2.2: the angular metric skips root, ankles, feet and wrists (15 joints)
ANGLE_JOINTS = (
    "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "spine3", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
)  # fmt: skip


def joint_indices(body_model: BodyModel, names: Sequence[str], metric: str, param: str = "joints") -> list[int]:
    """Indices of `names` among the body model's estimated joints; a RecipeError names the missing ones."""
    available = [canonical_joint_name(n) for n in list(body_model.joint_names)[: body_model.n_pose_joints]]
    missing = [n for n in names if canonical_joint_name(n) not in available]
    if missing:
        raise RecipeError(
            f"metric '{metric}': joints {missing} are not among the {body_model.n_pose_joints} estimated joints of "
            f"body model {type(body_model).__name__} ({', '.join(list(body_model.joint_names)[: body_model.n_pose_joints])}). "
            f"List the joints to evaluate with `{param}:` in the metric's spec (e.g. `metrics: [{{use: {metric}, "
            f"{param}: [...]}}]`)."
        )
    return [available.index(canonical_joint_name(n)) for n in names]


_RECENT_FK: list[tuple] = []  # (body model, pose tensor, betas tensor, their versions, joints), newest first


def body_joints(body_model: BodyModel, pose: BodyPose) -> torch.Tensor:
    """Positions (..., n_pose_joints, 3) from FK with the pose's own shape and no translation (§9).

    Every metric of an evaluation scores the same prediction and target, so the last two results are
    kept and reused for the very same tensors (same objects, unmodified: in-place changes bump the
    tensors' version counters) instead of posing both bodies once per metric (reference §13 item 26)."""
    versions = (pose.pose._version, pose.betas._version)
    for bm, p, b, v, joints in _RECENT_FK:
        if bm is body_model and p is pose.pose and b is pose.betas and v == versions:
            return joints
    out = body_model.forward(BodyPose(pose.pose, pose.betas, None), vertices=False)
    joints = out.joints[..., : body_model.n_pose_joints, :]
    _RECENT_FK[:] = [(body_model, pose.pose, pose.betas, versions, joints), *_RECENT_FK[:1]]
    return joints


def _flatten(x: torch.Tensor, trailing: int) -> torch.Tensor:
    return x.reshape(-1, *x.shape[x.dim() - trailing :])


class _JointMetric(Metric):
    default_joints: ClassVar[tuple[str, ...]] = POSITION_JOINTS
    metric_name: ClassVar[str] = ""

    def __init__(self, joints: list[str] | None = None, *, body_model: BodyModel):
        self.body_model = body_model
        self.joint_idx = joint_indices(body_model, joints or self.default_joints, self.metric_name)


_JOINTS_DOC = "evaluated joints by name (null = the paper's subset, {})"


class MPJPE(_JointMetric):
    """Mean per-joint position error [mm]: FK of both poses with their own shapes, trans 0, no alignment.

    Not root-aligned, as the original: root-orientation and pelvis-offset (J0(beta)) errors count (§13.4).
    """

    unit = "mm"
    metric_name = "mpjpe"
    params = (Param("joints", list[str] | None, None, _JOINTS_DOC.format("20 joints: all body joints but the feet")),)

    def errors(self, prediction: BodyPose, target: BodyPose) -> torch.Tensor:
        pred, true = body_joints(self.body_model, prediction), body_joints(self.body_model, target)
        idx = self.joint_idx
        return _flatten((pred[..., idx, :] - true[..., idx, :]).norm(dim=-1), 1) * 1000.0


class PAMPJPE(_JointMetric):
    """Per-joint position error [mm] after a per-frame similarity Procrustes (rotation, translation, scale)."""

    unit = "mm"
    metric_name = "pa_mpjpe"
    params = (
        Param("joints", list[str] | None, None, _JOINTS_DOC.format("20 joints: all body joints but the feet")),
        Param("align_joints", list[str] | None, None, "joints used to fit the alignment (null = every estimated joint, 22 for SMPL-H)"),
    )

    def __init__(self, joints: list[str] | None = None, align_joints: list[str] | None = None, *, body_model: BodyModel):
        super().__init__(joints, body_model=body_model)
        self.align_idx = (
            joint_indices(body_model, align_joints, self.metric_name, "align_joints")
            if align_joints
            else list(range(body_model.n_pose_joints))
        )

    def errors(self, prediction: BodyPose, target: BodyPose) -> torch.Tensor:
        pred = _flatten(body_joints(self.body_model, prediction), 2)
        true = _flatten(body_joints(self.body_model, target), 2)
        # Fit on the alignment joints (all 22 in the original, feet included), evaluate on the metric joints.
        scale, rot, mx, my = similarity_fit(true[:, self.align_idx], pred[:, self.align_idx])
        aligned = scale[:, None, None] * ((pred - my) @ rot.transpose(-1, -2)) + mx
        idx = self.joint_idx
        return (aligned[:, idx] - true[:, idx]).norm(dim=-1) * 1000.0


class MPJAE(_JointMetric):
    """Per-joint angle error [deg] between pelvis-relative global joint orientations (root set to identity)."""

    unit = "deg"
    metric_name = "mpjae"
    default_joints = ANGLE_JOINTS
    params = (Param("joints", list[str] | None, None, _JOINTS_DOC.format("15 joints: no root, ankles, feet or wrists")),)

    def errors(self, prediction: BodyPose, target: BodyPose) -> torch.Tensor:
        n = self.body_model.n_pose_joints
        parents = list(self.body_model.parents)[:n]
        rels = []
        for pose in (prediction, target):
            local = aa_to_rotmat(pose.pose[..., :n, :])
            eye = torch.eye(3, dtype=local.dtype, device=local.device).expand_as(local[..., :1, :, :])
            rels.append(local_to_global(torch.cat([eye, local[..., 1:, :, :]], dim=-3), parents))
        idx = self.joint_idx
        angle = geodesic_angle(rels[0][..., idx, :, :], rels[1][..., idx, :, :])
        return _flatten(angle, 1) * (180.0 / math.pi)


class Jitter(_JointMetric):
    """Mean jerk of the predicted joints [km/s³]: |third finite difference of position| x fps^3.

    As TransPose/PIP report it (FK of the predicted pose, no translation). Needs the previous three
    frames: the first three frames of a sequence are NaN and the engine excludes frame t when any of
    frames t-3..t is excluded (`temporal_support`). Time is the last leading dimension of the pose.
    """

    unit = "km/s³"
    metric_name = "jitter"
    default_joints = BODY_JOINTS
    temporal_support: ClassVar[int] = 4
    params = (
        Param("joints", list[str] | None, None, _JOINTS_DOC.format("all 22 body joints")),
        Param("fps", float, 60.0, "frame rate of the evaluated sequences", min=1e-3),
    )

    def __init__(self, joints: list[str] | None = None, fps: float = 60.0, *, body_model: BodyModel):
        super().__init__(joints, body_model=body_model)
        self.fps = fps

    def errors(self, prediction: BodyPose, target: BodyPose) -> torch.Tensor:
        pos = body_joints(self.body_model, prediction)[..., self.joint_idx, :]  # (..., T, E, 3)
        jerk = pos[..., 3:, :, :] - 3 * pos[..., 2:-1, :, :] + 3 * pos[..., 1:-2, :, :] - pos[..., :-3, :, :]
        value = jerk.norm(dim=-1) * (self.fps**3 / 1000.0)
        nan = value.new_full((*value.shape[:-2], min(3, pos.shape[-3]), value.shape[-1]), float("nan"))
        return _flatten(torch.cat([nan, value], dim=-2), 1)
