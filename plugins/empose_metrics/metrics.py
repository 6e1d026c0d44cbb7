"""MPJPE, PA-MPJPE and MPJAE exactly as EM-POSE reports them (docs/method.md §9), plus jitter.

Each metric returns errors per (frame, evaluated joint) of two `PosedBody`s whose forward kinematics the
engine computes once for all metrics; the engine selects frames and pools means and population STDs
(one place: `empose_framework.engine.evaluation`). Joints are chosen by name so
that the paper's subsets carry over to any body model that uses SMPL joint names (`l_`/`left_`
spellings both match); a body model with other names needs `joints:` in the recipe.
"""

from __future__ import annotations

import math
from typing import ClassVar, Sequence

import torch

from empose_framework.errors import RecipeError
from empose_framework.geometry import aa_to_rotmat, geodesic_angle, similarity_fit
from empose_framework.interfaces import BodyModel, Metric, PosedBody
from empose_framework.joints import BODY_JOINT_NAMES as BODY_JOINTS
from empose_framework.joints import canonical_joint_name
from empose_framework.kinematics import chain
from empose_metrics import schema

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


def _flatten(x: torch.Tensor, trailing: int) -> torch.Tensor:
    return x.reshape(-1, *x.shape[x.dim() - trailing :])


class _JointMetric(Metric):
    default_joints: ClassVar[tuple[str, ...]] = POSITION_JOINTS
    metric_name: ClassVar[str] = ""

    def __init__(self, *, joints: list[str] | None, body_model: BodyModel):
        self.body_model = body_model
        self.joint_idx = joint_indices(body_model, joints or self.default_joints, self.metric_name)



class MPJPE(_JointMetric):
    """Mean per-joint position error [mm]: FK of both poses with their own shapes, trans 0, no alignment.

    Not root-aligned, as the original: root-orientation and pelvis-offset (J0(beta)) errors count (§13 item 4).
    """

    unit = "mm"
    metric_name = "mpjpe"
    params = schema.MPJPE

    def errors(self, prediction: PosedBody, target: PosedBody) -> torch.Tensor:
        pred, true = prediction.joints, target.joints
        idx = self.joint_idx
        return _flatten((pred[..., idx, :] - true[..., idx, :]).norm(dim=-1), 1) * 1000.0


class PAMPJPE(_JointMetric):
    """Per-joint position error [mm] after a per-frame similarity Procrustes (rotation, translation, scale)."""

    unit = "mm"
    metric_name = "pa_mpjpe"
    params = schema.PA_MPJPE

    def __init__(self, *, joints: list[str] | None, align_joints: list[str] | None, body_model: BodyModel):
        super().__init__(joints=joints, body_model=body_model)
        self.align_idx = (
            joint_indices(body_model, align_joints, self.metric_name, "align_joints")
            if align_joints
            else list(range(body_model.n_pose_joints))
        )

    def errors(self, prediction: PosedBody, target: PosedBody) -> torch.Tensor:
        pred = _flatten(prediction.joints, 2)
        true = _flatten(target.joints, 2)
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
    params = schema.MPJAE

    def errors(self, prediction: PosedBody, target: PosedBody) -> torch.Tensor:
        n = self.body_model.n_pose_joints
        parents = list(self.body_model.parents)[:n]
        rels = []
        for posed in (prediction, target):
            local = aa_to_rotmat(posed.pose.pose[..., :n, :])
            eye = torch.eye(3, dtype=local.dtype, device=local.device).expand_as(local[..., :1, :, :])
            rels.append(chain(torch.cat([eye, local[..., 1:, :, :]], dim=-3), parents))
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
    params = schema.JITTER

    def __init__(self, *, joints: list[str] | None, fps: float, body_model: BodyModel):
        super().__init__(joints=joints, body_model=body_model)
        self.fps = fps

    def errors(self, prediction: PosedBody, target: PosedBody) -> torch.Tensor:
        pos = prediction.joints[..., self.joint_idx, :]  # (..., T, E, 3)
        jerk = pos[..., 3:, :, :] - 3 * pos[..., 2:-1, :, :] + 3 * pos[..., 1:-2, :, :] - pos[..., :-3, :, :]
        value = jerk.norm(dim=-1) * (self.fps**3 / 1000.0)
        nan = value.new_full((*value.shape[:-2], min(3, pos.shape[-3]), value.shape[-1]), float("nan"))
        return _flatten(torch.cat([nan, value], dim=-2), 1)
