"""The closed-form sensor gradient (empose_smplh.sensor_grad) against autograd: the body model's
vector-Jacobian product, LGD's gradient input (offsets, invalid and padded frames), and training."""

import pytest
import torch

from _estimators_testkit import EM6, EM12, embedded_body
from empose_estimators.lgd import LGD
from empose_framework.geometry import aa_to_rotmat
from empose_framework.interfaces import BodyModel, BodyPose, SensorFrames, SensorOffsets
from empose_smplh.model import NpzBodyModel
from test_body_smplh import licensed_layout_arrays


@pytest.fixture(scope="module", params=["embedded", "smplh_layout"])
def body(request):
    if request.param == "embedded":
        return embedded_body()
    return NpzBodyModel(licensed_layout_arrays(), 10, "SMPL-H layout (test)")


def sites_of(body, n=6):
    return EM6 if set(EM6) <= set(body.sensor_sites) else tuple(body.sensor_sites)[:n]


def random_case(body, b=2, t=4, seed=0, joints=None):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(b, t, joints or body.n_pose_joints, 3, generator=g) * 0.6
    theta[0, 0] = 0.0  # the axis-angle Jacobian at the identity (next to it: test_axis_angle_jacobian)
    offsets = SensorOffsets(
        torch.randn(b, 6, 3, generator=g) * 0.03, aa_to_rotmat(torch.randn(b, 6, 3, generator=g) * 0.3)
    )
    return g, theta, offsets


def unit_cotangents(g, shape_pos, shape_ori):
    """Cotangents like LGD's: unit vectors per sensor position and per flattened orientation."""
    d_pos = torch.nn.functional.normalize(torch.randn(*shape_pos, generator=g), dim=-1)
    d_ori = torch.nn.functional.normalize(torch.randn(*shape_ori[:-2], 9, generator=g), dim=-1).view(shape_ori)
    return d_pos, d_ori


@pytest.mark.parametrize("case", ["offsets", "no_offsets", "betas_per_sequence", "all_joints", "trans"])
def test_closed_form_vjp_equals_autograd(body, case):
    joints = body.n_joints if case == "all_joints" else None
    g, theta, offsets = random_case(body, joints=joints)
    b, t = theta.shape[:2]
    betas = (
        torch.randn(b, body.n_betas, generator=g)
        if case == "betas_per_sequence"
        else torch.randn(b, t, body.n_betas, generator=g)
    )
    trans = torch.randn(b, t, 3, generator=g) if case == "trans" else None
    offsets = None if case == "no_offsets" else offsets
    pose, sites = BodyPose(theta, betas, trans), sites_of(body)
    ref_pos, ref_ori, ref_vjp = BodyModel.sensor_frames_vjp(body, pose, sites, offsets)  # autograd
    pos, ori, vjp = body.sensor_frames_vjp(pose, sites, offsets)
    assert torch.equal(pos, ref_pos) and torch.equal(ori, ref_ori)
    d_pos, d_ori = unit_cotangents(g, pos.shape, ori.shape)
    for mine, ref in zip(vjp(d_pos, d_ori), ref_vjp(d_pos, d_ori)):
        assert mine.shape == ref.shape
        torch.testing.assert_close(mine, ref, atol=1e-5, rtol=1e-5)
        assert ref.abs().max() > 1e-2  # not trivially zero


def test_frames_keep_the_graph_and_vjp_stays_outside_it(body):
    g, theta, offsets = random_case(body)
    theta = theta.requires_grad_(True)
    betas = torch.randn(2, 4, body.n_betas, generator=g).requires_grad_(True)
    pos, ori, vjp = body.sensor_frames_vjp(BodyPose(theta, betas), sites_of(body), offsets)
    assert pos.requires_grad and ori.requires_grad
    d_theta, d_betas = vjp(*unit_cotangents(g, pos.shape, ori.shape))
    assert not d_theta.requires_grad and not d_betas.requires_grad
    (pos.sum() + ori.sum()).backward()  # the graph is intact
    assert theta.grad.abs().max() > 0


@pytest.mark.parametrize("angle", [0.0, 1e-7, 1e-4, 2e-3, 0.5, 3.0])
def test_axis_angle_jacobian_matches_float64_autograd(angle):
    """J_r(theta)^T vee(R^T G) = dE/dtheta for E = <G, R(theta)>; checked against float64 autograd
    (float32 autograd through the rotation formula loses ~1e-4 next to the identity; this does not)."""
    from empose_smplh.sensor_grad import _right_jacobian_t

    g = torch.Generator().manual_seed(int(angle * 1e7) % 1000)
    axis = torch.nn.functional.normalize(torch.randn(4, 3, generator=g, dtype=torch.float64), dim=-1)
    theta = (axis * angle).requires_grad_(True)
    grad_r = torch.randn(4, 3, 3, generator=g, dtype=torch.float64)
    rot = aa_to_rotmat(theta)
    (rot * grad_r).sum().backward()
    a = rot.detach().transpose(-1, -2) @ grad_r
    vee = torch.stack([a[..., 2, 1] - a[..., 1, 2], a[..., 0, 2] - a[..., 2, 0], a[..., 1, 0] - a[..., 0, 1]], -1)
    mine = _right_jacobian_t(theta.detach().float(), vee.float())
    torch.testing.assert_close(mine.double(), theta.grad, atol=1e-5, rtol=1e-5)


def make_lgd(body, **kw):
    torch.manual_seed(3)
    params = dict(hidden=32, blocks=1, iterations=2, use_gradient=True, rnn_init=True, rnn_hidden=16)
    return LGD(**{**params, **kw}, body_model=body, sensor_names=sites_of(body))


def data(body, b=2, t=6, names=None):
    """Sensors with an invalid reading (sequence 0, frame 2) and a padded sequence (1: L = 4)."""
    g, theta, offsets = random_case(body, b, t, seed=1)
    names = names or sites_of(body)
    pos, ori = body.sensor_frames(BodyPose(theta, torch.randn(b, body.n_betas, generator=g)), names, offsets)
    pos = pos + torch.randn(pos.shape, generator=g) * 0.01  # not exactly reachable
    valid = torch.ones(b, t, len(names), dtype=torch.bool)
    valid[0, 2, 1] = False
    pos[0, 2, 1] = float("nan")  # an invalid reading's value must not matter
    return SensorFrames(pos, ori, valid, tuple(names)), torch.tensor([t, 4]), offsets


@pytest.mark.parametrize("use", [(True, True), (True, False), (False, True)])
def test_lgd_gradient_input_equals_autograd(body, use):
    est = make_lgd(body, use_pos=use[0], use_ori=use[1]).eval()
    sensors, seq_len, offsets = data(body)
    inp = est._inputs(sensors, seq_len, offsets)
    g = torch.Generator().manual_seed(5)
    theta = torch.randn(2, 6, est.pose_size, generator=g) * 0.5
    beta = torch.randn(2, 6, est.n_betas, generator=g)
    with torch.no_grad():
        pos, ori, g_theta, g_beta = est._gradient_input(theta, beta, inp, leak=False)
        ref = est._autograd_gradient_input(theta, beta, inp, leak=False)
    torch.testing.assert_close(pos, ref[0], atol=0, rtol=0)
    torch.testing.assert_close(g_theta, ref[2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g_beta, ref[3], atol=1e-5, rtol=1e-5)
    assert g_theta[0, 2].abs().max() == 0 and g_theta[1, 4:].abs().max() == 0  # invalid and padded frames
    assert g_theta[1, 3].abs().max() > 0


def test_lgd_training_matches_the_autograd_reference(body):
    """Training step: same outputs, same weight gradients of a loss on every iterate and sensor iterate."""
    sensors, seq_len, offsets = data(body)
    grads = {}
    for reference in (False, True):
        est = make_lgd(body).train()
        est.reference = reference
        out = est(sensors, seq_len, offsets)
        loss = sum(it.pose.abs().mean() + it.betas.square().mean() for it in out.iterates)
        loss = loss + sum(p.square().mean() + o.square().mean() for p, o in filter(None, out.sensor_iterates))
        loss.backward()
        grads[reference] = (out.pose.pose.detach(), [w.grad.clone() for w in est.parameters()])
    torch.testing.assert_close(grads[False][0], grads[True][0], atol=1e-5, rtol=1e-5)
    for mine, ref in zip(grads[False][1], grads[True][1]):
        torch.testing.assert_close(mine, ref, atol=1e-5, rtol=1e-4)


def test_tiny_body_uses_the_autograd_default():
    """A body model without a closed form (the test double) still feeds LGD through the default."""
    from _estimators_testkit import TinyBody, random_sensors

    body = TinyBody()
    sensors, offsets, _ = random_sensors(body, EM12, b=2, t=5)
    est = LGD(hidden=16, blocks=1, iterations=1, use_gradient=True, body_model=body, sensor_names=EM6).eval()
    inp = est._inputs(sensors, torch.tensor([5, 5]), offsets)
    theta, beta = torch.randn(2, 5, est.pose_size) * 0.3, torch.randn(2, 5, est.n_betas)
    with torch.no_grad():
        mine = est._gradient_input(theta, beta, inp, leak=False)
        ref = est._autograd_gradient_input(theta, beta, inp, leak=False)
    for a, b in zip(mine, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
