"""The four EM-POSE training losses (reference §8). The recipe's `weight` multiplies each; these
classes never weight themselves.

With an LGD prediction (`extras["iterates"]`, see `empose_estimators.lgd`) every loss is the mean over
the K+1 estimates, so `pose` (weight 10), `shape` (1), `sensor_reconstruction` (0.01) and `fk` (0.1)
add up to the original's total [w_p sum P_i + w_fk sum F_i + w_s sum B_i + w_r sum R_i] / (K+1).
Other predictions are scored on their single final estimate.

Frames: the pose (l1) and shape losses use every frame inside the true length (padded L1, no sensor
mask); the others also drop frames outside `batch.frame_mask()` (a sensor missing). Estimators without
a shape head (`extras["shape_estimated"]` false) are posed with the ground-truth shape by
`sensor_reconstruction` and `fk`, and score 0 on `shape`.
"""

from __future__ import annotations

import torch

from empose_framework.errors import EmposeError
from empose_framework.interfaces import Batch, BodyPose, Loss, Prediction
from empose_framework.params import Param
from empose_losses.primitives import masked_mse, padded_l1, sum_of_norms


def _estimates(prediction: Prediction) -> list[BodyPose]:
    """The K+1 LGD estimates when the prediction carries them, else the final one."""
    return list(prediction.extras.get("iterates") or [prediction.pose])


def _posed(prediction: Prediction, batch: Batch) -> list[BodyPose]:
    """The estimates to pose through the body model: with the ground-truth shape when the estimator
    predicts none (as the metrics do, reference §10.1), so a shapeless model is not blamed for shape."""
    estimates = _estimates(prediction)
    if prediction.extras.get("shape_estimated", True) or batch.target is None:
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

    params = (
        Param("form", str, "auto", "l1: padded L1, mean over the J*3 axis-angle values (LGD, §8.3); mse: "
              "masked sum of squares over joints, i.e. the original's body + root MSE terms (ResNet/RNN, "
              "§8.2); auto: what the estimator reports in extras['loss_form'] (l1 if it reports nothing)",
              choices=("auto", "l1", "mse")),
    )  # fmt: skip

    def __init__(self, form: str = "auto", *, body_model):
        if form not in ("auto", "l1", "mse"):
            raise EmposeError(f"loss 'pose': form must be auto, l1 or mse, got {form!r}.")
        self.form = form
        self.body_model = body_model

    def __call__(self, prediction: Prediction, batch: Batch) -> torch.Tensor:
        form = self.form if self.form != "auto" else prediction.extras.get("loss_form", "l1")
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

    params = ()

    def __init__(self, *, body_model):
        self.body_model = body_model

    def __call__(self, prediction: Prediction, batch: Batch) -> torch.Tensor:
        if not prediction.extras.get("shape_estimated", True):
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
    places for each estimate (positions in metres + Frobenius distance of the orientations)."""

    params = (
        Param("positions", bool, True, "include the position term"),
        Param("orientations", bool, True, "include the orientation term (flattened 3x3 matrices)"),
    )

    def __init__(self, positions: bool = True, orientations: bool = True, *, body_model):
        if not (positions or orientations):
            raise EmposeError("loss 'sensor_reconstruction': positions and orientations are both false; enable one.")
        self.positions, self.orientations = positions, orientations
        self.body_model = body_model

    def __call__(self, prediction: Prediction, batch: Batch) -> torch.Tensor:
        extras = prediction.extras
        if "sensors" in extras:
            seen, offsets = extras["sensors"], extras.get("offsets")
        else:
            seen, offsets = batch.sensors.masked(0.0), batch.offsets
        estimates = _posed(prediction, batch)
        cached = list(extras.get("sensor_iterates") or [None] * len(estimates))
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

    params = (
        Param("original_final_only", bool, False, "reproduce the original's bug (reference §8.3, §13 item 8): "
              "score only the final LGD estimate, which the original counts once per estimate"),
    )  # fmt: skip

    def __init__(self, original_final_only: bool = False, *, body_model):
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
