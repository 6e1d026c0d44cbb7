"""The four EM-POSE training losses (docs/method.md §8). The recipe's `weight` multiplies each; these
classes never weight themselves.

With a prediction that carries `iterates` (LGD's K+1 estimates, see `empose_estimators.lgd`) every loss
is the mean over them, so `pose` (weight 10), `shape` (1), `sensor_reconstruction` (0.01) and `fk` (0.1)
add up to the original's total [w_p sum P_i + w_fk sum F_i + w_s sum B_i + w_r sum R_i] / (K+1).
Other predictions are scored on their single final estimate. Losses read only the declared fields of
`Prediction`, never its `extras`.

Frames: the pose (l1) and shape losses use every frame inside the true length (padded L1, no sensor
mask); the others also drop frames outside `batch.frame_mask()` (a sensor missing). Estimators without
a shape head (`shape_estimated` false) are posed with the ground-truth shape by
`sensor_reconstruction` and `fk`, and score 0 on `shape`.
"""

from __future__ import annotations

import torch

from empose_framework.errors import EmposeError
from empose_framework.interfaces import Batch, BodyPose, Loss, Prediction
from empose_framework.primitives import masked_mse, padded_l1, sum_of_norms
from empose_losses import schema


def _estimates(prediction: Prediction) -> list[BodyPose]:
    """The K+1 LGD estimates when the prediction carries them, else the final one."""
    return list(prediction.iterates or [prediction.pose])


def _posed(prediction: Prediction, batch: Batch) -> list[BodyPose]:
    """The estimates to pose through the body model: with the ground-truth shape when the estimator
    predicts none (as the metrics do, docs/method.md §10.1), so a shapeless model is not blamed for shape."""
    estimates = _estimates(prediction)
    if prediction.shape_estimated or batch.target is None:
        return estimates
    return [BodyPose(e.pose, batch.target.betas) for e in estimates]


def _target(batch: Batch, loss: str) -> BodyPose:
    if batch.target is None:
        raise EmposeError(
            f"loss '{loss}' needs ground truth, but the batch (ids {batch.ids[:3]}...) has none. Use a "
            "sensor source with ground truth for training and validation, or drop this loss from the recipe."
        )
    return batch.target


def _leading(target: torch.Tensor, n: int, what: str, loss: str) -> torch.Tensor:
    """The first n entries of the second-last (joints) or last (betas) axis of the ground truth."""
    have = target.shape[-2] if what == "joints" else target.shape[-1]
    if have < n:
        raise EmposeError(
            f"loss '{loss}': the ground truth has {have} {what} but the estimator predicts {n}. The sensor "
            "source and the estimator must use the same body model."
        )
    return target[..., :n, :] if what == "joints" else target[..., :n]


class PoseLoss(Loss):
    """Pose error: padded L1 over all pose values (LGD, per estimate) or masked MSE (ResNet/RNN)."""

    params = schema.POSE

    def __init__(self, *, form, body_model):
        self.form = form
        self.body_model = body_model

    def __call__(self, prediction: Prediction, batch: Batch) -> torch.Tensor:
        form = self.form if self.form != "auto" else prediction.loss_form or "l1"
        estimates = _estimates(prediction)
        gt = _leading(_target(batch, "pose").pose, estimates[0].pose.shape[-2], "joints", "pose").flatten(2)
        if form == "l1":
            terms = [padded_l1(e.pose.flatten(2), gt, batch.seq_len) for e in estimates]
        else:
            mask = batch.frame_mask()
            terms = [masked_mse(e.pose.flatten(2), gt, batch.seq_len, mask) for e in estimates]
        return torch.stack(terms).mean()


class ShapeLoss(Loss):
    """Shape error: padded L1 between per-frame betas and the ground truth (zero without a shape head)."""

    params = schema.SHAPE

    def __init__(self, *, body_model):
        self.body_model = body_model

    def __call__(self, prediction: Prediction, batch: Batch) -> torch.Tensor:
        if not prediction.shape_estimated:
            return prediction.pose.betas.new_zeros(())
        estimates = _estimates(prediction)
        pred0 = estimates[0].betas
        gt = _leading(_target(batch, "shape").betas, pred0.shape[-1], "betas", "shape")
        if gt.dim() == 2:
            gt = gt[:, None, :]
        gt = gt.expand_as(pred0)
        return torch.stack([padded_l1(e.betas, gt, batch.seq_len) for e in estimates]).mean()


class SensorReconstructionLoss(Loss):
    """Sum over sensors of the distance between the sensors the network saw and those the body model
    places for each estimate (positions in metres + Frobenius distance of the orientations). Needs the
    prediction's `sensors` (and their `offsets`)."""

    params = schema.SENSOR_RECONSTRUCTION

    def __init__(self, *, positions, orientations, body_model):
        if not (positions or orientations):
            raise EmposeError("loss 'sensor_reconstruction': positions and orientations are both false; enable one.")
        self.positions, self.orientations = positions, orientations
        self.body_model = body_model

    def __call__(self, prediction: Prediction, batch: Batch) -> torch.Tensor:
        seen, offsets = prediction.require("sensors", "sensor_reconstruction"), prediction.offsets
        estimates = _posed(prediction, batch)
        cached = list(prediction.sensor_iterates or [None] * len(estimates))
        mask = batch.frame_mask()
        terms = []
        for est, done in zip(estimates, cached):
            pos, ori = done if done is not None else self.body_model.sensor_frames(est, seen.names, offsets)
            term = pos.new_zeros(())
            if self.positions:
                term = term + sum_of_norms(pos, seen.pos, batch.seq_len, mask)
            if self.orientations:
                term = term + sum_of_norms(ori.flatten(-2), seen.ori.flatten(-2), batch.seq_len, mask)
            terms.append(term)
        return torch.stack(terms).mean()


class FKLoss(Loss):
    """Sum over the estimated joints of the distance between forward-kinematics joint positions of each
    estimate and of the ground truth (translation zero for both)."""

    params = schema.FK

    def __init__(self, *, original_final_only, body_model):
        self.original_final_only = original_final_only
        self.body_model = body_model

    def _joints(self, pose: BodyPose) -> torch.Tensor:
        out = self.body_model.forward(BodyPose(pose.pose, pose.betas), vertices=False)
        return out.joints[..., : self.body_model.n_pose_joints, :]

    def __call__(self, prediction: Prediction, batch: Batch) -> torch.Tensor:
        target = _target(batch, "fk")
        with torch.no_grad():
            gt = self._joints(target)
        estimates = _posed(prediction, batch)
        if self.original_final_only:
            estimates = estimates[-1:]
        mask = batch.frame_mask()
        return torch.stack([sum_of_norms(self._joints(e), gt, batch.seq_len, mask) for e in estimates]).mean()
