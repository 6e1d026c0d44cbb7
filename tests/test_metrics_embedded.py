"""Metrics through a real body model (the embedded one): the paper's conventions end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from empose_framework.interfaces import BodyPose, PosedBody
from empose_framework.plugins import get_registry
from empose_metrics.metrics import MPJAE, MPJPE, PAMPJPE, Jitter


@pytest.fixture(scope="module")
def body():
    return get_registry().build("body_model", "embedded")


def score(metric, prediction: BodyPose, truth: BodyPose) -> torch.Tensor:
    """The metric's errors for two poses posed through its body model, as the engine hands them over."""
    return metric.errors(PosedBody(prediction, metric.body_model), PosedBody(truth, metric.body_model))


def _random_pose(n, seed):
    g = torch.Generator().manual_seed(seed)
    pose = torch.randn(n, 22, 3, generator=g) * 0.3
    pose[:, 0] = 0.0  # identity root (as after the first-frame normalisation)
    return pose


def test_identical_poses_score_zero(body):
    pose = BodyPose(_random_pose(6, 0), torch.randn(6, 10) * 0.5)
    for metric in (MPJPE(body_model=body), PAMPJPE(body_model=body), MPJAE(body_model=body)):
        assert score(metric, pose, pose).abs().max() < 1e-3


def test_root_error_counts_in_mpjpe_but_not_in_pa_mpjpe_or_mpjae(body):
    truth = BodyPose(_random_pose(5, 1), torch.zeros(5, 10))
    root = Rotation.from_euler("y", 30, degrees=True)
    pred_pose = truth.pose.clone()
    pred_pose[:, 0] = torch.as_tensor(root.as_rotvec(), dtype=torch.float32)
    pred = BodyPose(pred_pose, truth.betas)
    # Independent expectation: the body turns about its rest pelvis J0 (SMPL convention, trans 0).
    joints = body.forward(BodyPose(truth.pose, truth.betas), vertices=False).joints[:, :22].numpy().astype(np.float64)
    pelvis = joints[:, :1]
    turned = root.apply((joints - pelvis).reshape(-1, 3)).reshape(joints.shape) + pelvis
    keep = [i for i in range(22) if i not in (10, 11)]
    expected = np.linalg.norm(turned - joints, axis=-1)[:, keep] * 1000
    np.testing.assert_allclose(score(MPJPE(body_model=body), pred, truth).numpy(), expected, atol=0.05)
    assert expected.mean() > 50  # a 30 degree turn is a large MPJPE ...
    assert score(PAMPJPE(body_model=body), pred, truth).abs().max() < 0.05  # ... but a similarity
    assert score(MPJAE(body_model=body), pred, truth).abs().max() < 1e-3  # ... and pelvis-relative


def test_shape_changes_positions_not_angles(body):
    pose = _random_pose(4, 2)
    truth, pred = BodyPose(pose, torch.zeros(4, 10)), BodyPose(pose, torch.full((4, 10), 1.0))
    assert score(MPJPE(body_model=body), pred, truth).mean() > 5
    assert score(MPJAE(body_model=body), pred, truth).abs().max() < 1e-3


def test_per_frame_and_per_sequence_shapes_agree(body):
    pose = _random_pose(8, 3)[None]  # (1, 8, 22, 3): one sequence
    betas = torch.randn(1, 10) * 0.5
    per_seq = BodyPose(pose, betas)
    per_frame = BodyPose(pose, betas[:, None].expand(1, 8, 10))
    truth = BodyPose(_random_pose(8, 4)[None], torch.zeros(1, 10))
    for metric in (MPJPE(body_model=body), PAMPJPE(body_model=body), Jitter(body_model=body)):
        a, b = score(metric, per_seq, truth), score(metric, per_frame, truth)
        assert a.shape[0] == 8
        torch.testing.assert_close(a, b, equal_nan=True)


def test_evaluation_poses_each_body_once_for_all_metrics(body, monkeypatch):
    """The engine computes forward kinematics once per scored pose, however many metrics read it (§13
    item 26), and not at all for angle-only metrics; the errors equal a direct FK of both poses."""
    from empose_framework.engine.evaluation import NamedMetric, metric_errors
    from empose_framework.interfaces import Batch, SensorFrames

    calls = []
    forward = body.forward
    monkeypatch.setattr(body, "forward", lambda pose, vertices=True: calls.append(1) or forward(pose, vertices))
    pred = BodyPose(_random_pose(4, 3)[None], torch.zeros(1, 10))
    truth = BodyPose(_random_pose(4, 4)[None], torch.zeros(1, 10))
    sensors = SensorFrames(torch.zeros(1, 4, 1, 3), torch.zeros(1, 4, 1, 3, 3), torch.ones(1, 4, 1, dtype=torch.bool), ("back",))
    batch = Batch(sensors, truth, torch.tensor([4]), ["s"])
    mpjpe = MPJPE(body_model=body)
    metrics = [NamedMetric("mpjpe", mpjpe), NamedMetric("pa_mpjpe", PAMPJPE(body_model=body)),
               NamedMetric("jitter", Jitter(body_model=body))]  # fmt: skip
    got = metric_errors(metrics, pred, batch, body)
    assert len(calls) == 2  # prediction and truth, once each for three metrics
    expected = (forward(pred, False).joints[0, :, :22] - forward(truth, False).joints[0, :, :22]).norm(dim=-1) * 1000
    np.testing.assert_allclose(got["mpjpe"][0], expected[:, mpjpe.joint_idx].double().numpy())
    calls.clear()
    metric_errors([NamedMetric("mpjae", MPJAE(body_model=body))], pred, batch, body)
    assert calls == []  # angles need no forward kinematics
