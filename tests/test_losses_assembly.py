"""The four losses on LGD and ResNet/RNN predictions: iterate averaging, the README's first-step
total (docs/method.md §8.3), the FK fix and its compatibility option, forms and edge cases."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from _estimators_testkit import EM6, EM12, TinyBody, numpy_sum_of_norms, random_sensors
from empose_estimators.lgd import LGD
from empose_estimators.resnet import ResNet
from empose_framework.errors import EmposeError
from empose_framework.interfaces import Batch, BodyModel, BodyOutput, BodyPose, Prediction, SensorFrames
from empose_losses.losses import FKLoss, PoseLoss, SensorReconstructionLoss, ShapeLoss

B, T = 2, 4


class JointsArePose(BodyModel):
    """Stub body whose joints are the axis-angle vectors themselves, root at the origin: FK errors are
    then known in closed form."""

    n_pose_joints, n_betas = 8, 2

    def forward(self, pose, vertices=True):
        joints = pose.pose.clone()
        joints[..., 0, :] = 0
        return BodyOutput(joints=joints, global_rot=None)

    def sensor_frames(self, pose, sites, offsets=None):
        raise AssertionError("the test hands the loss every reconstruction")

    def to(self, device):
        return self


def test_readme_first_step_total_is_reproduced():
    """K = 2, weights 10 / 1 / 0.01 / 0.1: logged means 0.200803, 1.002613, 8.376869, 4.107896 and the
    original's FK counting only the final estimate give total_loss 3.505206."""
    body = JointsArePose()
    pose_means = [0.200003, 0.200803, 0.201603]  # mean 0.200803
    shape_means = [1.2, 1.002613, 0.805226]  # mean 1.002613
    recon = [9.0, 8.376869, 7.753738]  # mean 8.376869
    fk = [3.0, 4.5, 4.107896]  # only the last counts in the original (each <= 24 * pose)
    s = 6
    seen_pos = torch.randn(B, T, s, 3, dtype=torch.float64)
    seen_ori = torch.randn(B, T, s, 3, 3, dtype=torch.float64)
    iterates, sensor_iterates = [], []
    for p, b, r, f in zip(pose_means, shape_means, recon, fk):
        pose = torch.zeros(B, T, 8, 3, dtype=torch.float64)
        pose[..., 7, 0] = f  # the only joint the stub FK sees move: FK error f per frame
        pose[..., 0, 0] = 24 * p - f  # root only changes the pose loss: mean |.| over 24 values = p
        iterates.append(BodyPose(pose, torch.full((B, T, 2), b, dtype=torch.float64)))
        shift = torch.zeros(B, T, s, 3, dtype=torch.float64)
        shift[..., 0] = r / s
        sensor_iterates.append((seen_pos + shift, seen_ori))
    seen = SensorFrames(seen_pos, seen_ori, torch.ones(B, T, s, dtype=torch.bool), EM6)
    pred = Prediction(iterates[-1], iterates=iterates, sensor_iterates=sensor_iterates, sensors=seen, offsets=None,
                      loss_form="l1", shape_estimated=True)  # fmt: skip
    target = BodyPose(torch.zeros(B, T, 8, 3, dtype=torch.float64), torch.zeros(B, 2, dtype=torch.float64))
    batch = Batch(seen, target, torch.tensor([T, T]), ["a", "b"])
    losses = {
        "pose": PoseLoss(body_model=body)(pred, batch),
        "shape": ShapeLoss(body_model=body)(pred, batch),
        "reconstruction": SensorReconstructionLoss(body_model=body)(pred, batch),
        "fk": FKLoss(original_final_only=True, body_model=body)(pred, batch),
    }
    assert losses["pose"].item() == pytest.approx(0.200803, abs=1e-9)
    assert losses["shape"].item() == pytest.approx(1.002613, abs=1e-9)
    assert losses["reconstruction"].item() == pytest.approx(8.376869, abs=1e-9)
    assert losses["fk"].item() == pytest.approx(4.107896, abs=1e-9)
    total = 10 * losses["pose"] + 1 * losses["shape"] + 0.01 * losses["reconstruction"] + 0.1 * losses["fk"]
    assert abs(total.item() - 3.505206) < 1e-5  # the logged components are rounded to 6 decimals
    # the fixed FK loss scores every estimate instead
    fixed = FKLoss(body_model=body)(pred, batch).item()
    assert fixed == pytest.approx(np.mean(fk), abs=1e-9)


def lgd_case(use_gradient=True):
    body = TinyBody()
    sensors, offsets, truth = random_sensors(body, EM12, b=B, t=T, seed=3)
    torch.manual_seed(0)
    est = LGD(hidden=16, blocks=1, iterations=2, use_gradient=use_gradient, rnn_init=True, rnn_hidden=8,
              body_model=body, sensor_names=EM6).train()  # fmt: skip
    valid = sensors.valid.clone()
    valid[1, 2, 0] = False
    sensors = SensorFrames(sensors.pos, sensors.ori, valid, sensors.names)
    seq_len = torch.tensor([T, 3])
    batch = Batch(sensors, truth, seq_len, ["a", "b"], offsets)
    return body, est, est(sensors, seq_len, offsets), batch


def test_reconstruction_loss_uses_or_recomputes_the_forward_model_alike():
    body, est, pred, batch = lgd_case()
    assert pred.sensor_iterates[0] is not None and pred.sensor_iterates[-1] is None
    loss = SensorReconstructionLoss(body_model=body)
    cached = loss(pred, batch)
    bare = dataclasses.replace(pred, sensor_iterates=None)
    torch.testing.assert_close(loss(bare, batch), cached)
    # independent value: numpy sum-of-norms per estimate, averaged
    own = batch.sensors.select(EM6).masked()
    idx = [EM12.index(n) for n in EM6]
    off = type(batch.offsets)(batch.offsets.t[:, idx], batch.offsets.r[:, idx])
    mask = batch.frame_mask().numpy()
    expected = []
    for it in pred.iterates:
        pos, ori = body.sensor_frames(it, EM6, off)
        expected.append(
            numpy_sum_of_norms(pos.detach(), own.pos, batch.seq_len, mask)
            + numpy_sum_of_norms(ori.detach().flatten(-2), own.ori.flatten(-2), batch.seq_len, mask)
        )
    assert cached.item() == pytest.approx(np.mean(expected), rel=1e-5)


def test_pose_shape_and_fk_average_over_the_iterates():
    body, est, pred, batch = lgd_case(use_gradient=False)
    its = pred.iterates
    gt_pose = batch.target.pose.numpy()
    seq = batch.seq_len.numpy()

    def per_seq(per_frame, mask=None):
        return np.mean([per_frame[n][(np.arange(T) < seq[n]) & (True if mask is None else mask[n])].sum() / seq[n] for n in range(B)])

    pose_expected = np.mean([per_seq(np.abs(it.pose.detach().numpy() - gt_pose).reshape(B, T, -1).mean(-1)) for it in its])
    assert PoseLoss(body_model=body)(pred, batch).item() == pytest.approx(pose_expected, rel=1e-5)
    gt_betas = batch.target.betas.numpy()[:, None]
    shape_expected = np.mean([per_seq(np.abs(it.betas.detach().numpy() - gt_betas).mean(-1)) for it in its])
    assert ShapeLoss(body_model=body)(pred, batch).item() == pytest.approx(shape_expected, rel=1e-5)
    mask = batch.frame_mask().numpy()
    gt_joints = body.forward(batch.target, vertices=False).joints[..., :4, :]
    fk_each = [numpy_sum_of_norms(body.forward(it, vertices=False).joints[..., :4, :].detach(), gt_joints, seq, mask) for it in its]
    assert FKLoss(body_model=body)(pred, batch).item() == pytest.approx(np.mean(fk_each), rel=1e-5)
    assert FKLoss(original_final_only=True, body_model=body)(pred, batch).item() == pytest.approx(fk_each[-1], rel=1e-5)
    total = sum(loss(pred, batch) for loss in (PoseLoss(body_model=body), ShapeLoss(body_model=body),
                                                 SensorReconstructionLoss(body_model=body), FKLoss(body_model=body)))  # fmt: skip
    total.backward()
    assert est.pose_net_init.weight.grad.abs().max() > 0  # losses on later iterates reach the initialiser


def test_resnet_prediction_uses_masked_mse_and_no_shape():
    body = TinyBody()
    sensors, offsets, truth = random_sensors(body, EM12, b=B, t=T, seed=4)
    est = ResNet(hidden=16, blocks=1, body_model=body, sensor_names=EM12).eval()
    valid = sensors.valid.clone()
    valid[0, 1, 3] = False
    sensors = SensorFrames(sensors.pos, sensors.ori, valid, sensors.names)
    batch = Batch(sensors, truth, torch.tensor([T, 2]), ["a", "b"], offsets)
    with torch.no_grad():
        pred = est(sensors, batch.seq_len, offsets)
    assert pred.loss_form == "mse" and pred.shape_estimated is False
    diff2 = ((pred.pose.pose - truth.pose) ** 2).sum((-1, -2)).numpy()
    keep = batch.frame_mask().numpy()
    expected = np.mean([diff2[n][keep[n]].sum() / int(batch.seq_len[n]) for n in range(B)])
    assert PoseLoss(body_model=body)(pred, batch).item() == pytest.approx(expected, rel=1e-5)
    l1 = PoseLoss(form="l1", body_model=body)(pred, batch).item()
    assert not math.isclose(l1, expected)
    assert ShapeLoss(body_model=body)(pred, batch).item() == 0.0
    assert torch.isfinite(SensorReconstructionLoss(body_model=body)(pred, batch))
    # without a shape head, FK poses the prediction with the ground-truth shape
    posed = body.forward(BodyPose(pred.pose.pose, truth.betas), vertices=False).joints[..., :4, :]
    gt = body.forward(truth, vertices=False).joints[..., :4, :]
    expected_fk = numpy_sum_of_norms(posed, gt, batch.seq_len, keep)
    assert FKLoss(body_model=body)(pred, batch).item() == pytest.approx(expected_fk, rel=1e-5)


def test_losses_need_ground_truth():
    body, est, pred, batch = lgd_case()
    batch.target = None
    with pytest.raises(EmposeError, match="needs ground truth"):
        PoseLoss(body_model=body)(pred, batch)


def test_ground_truth_with_fewer_joints_than_predicted_is_an_error():
    body, est, pred, batch = lgd_case()
    batch.target = BodyPose(batch.target.pose[..., :2, :], batch.target.betas)
    with pytest.raises(EmposeError, match="same body model"):
        PoseLoss(body_model=body)(pred, batch)


def test_bad_pose_form_is_refused():
    with pytest.raises(EmposeError, match="loss PoseLoss: parameter 'form': expected one of 'auto', 'l1', 'mse'"):
        PoseLoss(form="huber", body_model=TinyBody())
