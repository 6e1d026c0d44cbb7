"""LGD: update rule, gradient input (value, masking, no leak, the original's leak), no_grad
evaluation, sensor selection, and any body model / sensor set."""

import pytest
import torch

from _estimators_testkit import EM6, EM12, TinyBody, embedded_body, random_sensors
from empose_estimators.lgd import LGD
from empose_framework.interfaces import BodyPose, SensorFrames, SensorOffsets

T = 6


def make_lgd(body, names=EM6, **kw):
    torch.manual_seed(1)
    params = dict(hidden=32, blocks=1, iterations=2, use_gradient=True, rnn_init=True, rnn_hidden=16)
    return LGD(**{**params, **kw}, body_model=body, sensor_names=names)


def capture(module, what="input"):
    seen = []
    module.register_forward_hook(lambda m, args, out: seen.append((args[0] if what == "input" else out).detach().clone()))
    return seen


def independent_error(body, pose, names, offsets, seen_pos, seen_ori, seq_len, frame_ok):
    """Reference §8.1 sum-of-norms on positions + flattened orientations, written out here."""
    pos, ori = body.sensor_frames(pose, names, offsets)
    per = (pos - seen_pos).norm(dim=-1).sum(-1) + (ori - seen_ori).flatten(-2).norm(dim=-1).sum(-1)
    total = 0
    for n in range(per.shape[0]):
        keep = frame_ok[n] & (torch.arange(per.shape[1]) < seq_len[n])
        total = total + per[n][keep].sum() / seq_len[n]
    return total / per.shape[0]


def selected(sensors: SensorFrames, offsets: SensorOffsets, names):
    idx = [sensors.names.index(n) for n in names]
    return sensors.select(names), SensorOffsets(offsets.t[:, idx], offsets.r[:, idx])


def broken_sensors():
    """em12 data of a 2-sequence batch; sequence 0 loses a sensor the em6 model does not use in frame 2."""
    body = TinyBody()
    sensors, offsets, _ = random_sensors(body, EM12, b=2, t=T)
    valid = sensors.valid.clone()
    valid[0, 2, EM12.index("r_upper_arm")] = False
    return body, SensorFrames(sensors.pos, sensors.ori, valid, sensors.names), offsets


@pytest.mark.parametrize("mode", ["no_grad_eval", "train"])
def test_gradient_input_is_the_scaled_reconstruction_gradient(mode):
    body, sensors, offsets = broken_sensors()
    est = make_lgd(body)
    z_seen = capture(est.pose_net_iter)
    seq_len = torch.tensor([T, T])
    if mode == "train":
        out = est.train()(sensors, seq_len, offsets)
    else:
        with torch.no_grad():
            out = est.eval()(sensors, seq_len, offsets)
    own, own_off = selected(sensors, offsets, EM6)
    d, p, k = est.input_size, est.pose_size, est.n_betas
    frame_ok = sensors.valid.all(-1)  # all given sensors, as the original's 12-sensor mask
    for i in range(est.iterations):
        it = out.iterates[i]
        theta = it.pose.detach().requires_grad_(True)
        beta = it.betas.detach().requires_grad_(True)
        err = independent_error(body, BodyPose(theta, beta), EM6, own_off, own.pos, own.ori, seq_len, frame_ok)
        g_theta, g_beta = torch.autograd.grad(err, [theta, beta])
        z = z_seen[i]
        torch.testing.assert_close(z[..., d + p + k: d + 2 * p + k], g_theta.flatten(2) * 2 * T, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(z[..., d + 2 * p + k:], g_beta * 2 * T, atol=1e-5, rtol=1e-4)
        assert z[0, 2, d + p + k:].abs().max() == 0  # the frame with a missing sensor gives no gradient
        assert z[0, 1, d + p + k:].abs().max() > 0


def test_gradient_rows_scale_with_padding_as_the_original():
    """E is normalised per sequence by its true length L, rows are multiplied by B*T: a padded
    sequence's gradient input is T/L times the unpadded one (docs/method.md §7.5)."""
    body = TinyBody()
    sensors, offsets, _ = random_sensors(body, EM12, b=1, t=T)
    est = make_lgd(body, rnn_init=False).eval()
    z_seen = capture(est.pose_net_iter)
    with torch.no_grad():
        est(sensors, torch.tensor([4]), offsets)
        est(sensors.frames(0, 4), torch.tensor([4]), offsets)
    d, p, k = est.input_size, est.pose_size, est.n_betas
    torch.testing.assert_close(z_seen[0][:, :4, d + p + k:], z_seen[2][..., d + p + k:] * T / 4, atol=1e-5, rtol=1e-4)


def test_update_rule_and_window_shape_average():
    body = TinyBody()
    sensors, offsets, _ = random_sensors(body, EM12, b=2, t=T)
    est = make_lgd(body, average_shape=True, step_size=0.25).eval()
    init_shape = capture(est.shape_net_init, "output")
    d_pose = capture(est.pose_net_iter, "output")
    d_shape = capture(est.shape_net_iter, "output")
    with torch.no_grad():
        out = est(sensors, torch.tensor([T, T]), offsets)
    its = out.iterates
    assert len(its) == est.iterations + 1
    torch.testing.assert_close(its[0].betas, init_shape[0].mean(1, keepdim=True).expand(-1, T, -1))
    for i in range(est.iterations):
        torch.testing.assert_close(its[i + 1].pose.flatten(2) - its[i].pose.flatten(2), 0.25 * d_pose[i], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(its[i + 1].betas - its[i].betas, 0.25 * d_shape[i].mean(1, keepdim=True).expand(-1, T, -1),
                                   atol=1e-6, rtol=1e-5)  # fmt: skip
    assert out.pose.pose is not None and torch.equal(out.pose.pose, its[-1].pose)


def test_no_gradient_leaks_into_the_weights_by_default():
    body, sensors, offsets = broken_sensors()
    est = make_lgd(body).train()
    out = est(sensors, torch.tensor([T, T]), offsets)
    assert all(p.grad is None for p in est.parameters())
    out.pose.pose.sum().backward()  # the graph kept for the losses is intact
    assert est.pose_net_init.weight.grad is not None


def test_original_gradient_leak_adds_the_intermediate_reconstruction_gradients():
    body, sensors, offsets = broken_sensors()
    est = make_lgd(body, original_gradient_leak=True).train()
    seq_len = torch.tensor([T, T])
    out = est(sensors, seq_len, offsets)
    own, own_off = selected(sensors, offsets, EM6)
    frame_ok = sensors.valid.all(-1)
    hidden = sum(
        independent_error(body, out.iterates[i], EM6, own_off, own.pos, own.ori, seq_len, frame_ok)
        for i in range(est.iterations)
    )
    params = list(est.parameters())
    expected = torch.autograd.grad(hidden, params, allow_unused=True, retain_graph=True)
    touched = 0
    for prm, exp in zip(params, expected):
        if exp is None or exp.abs().max() == 0:
            assert prm.grad is None or prm.grad.abs().max() == 0
        else:
            touched += 1
            torch.testing.assert_close(prm.grad, exp, atol=1e-6, rtol=1e-4)
    assert touched > 0
    assert est.pose_net_iter.hidden_to_output.weight.grad is not None  # update nets of iterate 0 feed iterate 1

    est.zero_grad(set_to_none=True)
    with torch.no_grad():
        est.eval()(sensors, seq_len, offsets)  # never in evaluation
    assert all(p.grad is None for p in est.parameters())


def test_evaluation_under_no_grad_matches_grad_mode_and_leaves_no_trace():
    body, sensors, offsets = broken_sensors()
    est = make_lgd(body, average_shape=True).eval()
    seq_len = torch.tensor([T, 4])
    with torch.no_grad():
        quiet = est(sensors, seq_len, offsets)
    loud = est(sensors, seq_len, offsets)
    assert quiet.pose.pose.grad_fn is None and not quiet.pose.pose.requires_grad
    assert all(p.grad is None for p in est.parameters())
    torch.testing.assert_close(quiet.pose.pose, loud.pose.pose.detach())
    torch.testing.assert_close(quiet.pose.betas, loud.pose.betas.detach())


def test_invalid_readings_never_reach_the_network():
    body, sensors, offsets = broken_sensors()
    est = make_lgd(body, names=EM12).eval()
    outs = []
    for garbage in (0.0, 1e6):
        pos, ori = sensors.pos.clone(), sensors.ori.clone()
        pos[~sensors.valid] = garbage
        ori[~sensors.valid] = garbage
        with torch.no_grad():
            outs.append(est(SensorFrames(pos, ori, sensors.valid, sensors.names), torch.tensor([T, T]), offsets).pose.pose)
    torch.testing.assert_close(outs[0], outs[1])


def test_estimator_selects_its_sensors_and_their_offsets():
    body = TinyBody()
    sensors, offsets, _ = random_sensors(body, EM12, b=2, t=T)
    est = make_lgd(body).eval()
    own, own_off = selected(sensors, offsets, EM6)
    with torch.no_grad():
        a = est(sensors, torch.tensor([T, T]), offsets).pose.pose
        b = est(own, torch.tensor([T, T]), own_off).pose.pose
    torch.testing.assert_close(a, b)


BODIES = {"tiny": TinyBody, "embedded": embedded_body}


@pytest.mark.parametrize("body_name", ["embedded", "tiny"])
@pytest.mark.parametrize("names", [EM6, EM12, ("head", "back", "l_forearm", "r_thigh")], ids=["em6", "em12", "custom4"])
def test_lgd_runs_on_any_body_model_and_sensor_set(body_name, names):
    body = BODIES[body_name]()
    if body is None:
        pytest.skip("the embedded body model (empose_smplh) is not available yet")
    sensors, offsets, _ = random_sensors(body, names, b=2, t=4)
    est = make_lgd(body, names=names, average_shape=True)
    out = est.train()(sensors, torch.tensor([4, 3]), offsets)
    j, k = body.n_pose_joints, body.n_betas
    assert out.pose.pose.shape == (2, 4, j, 3) and out.pose.betas.shape == (2, 4, k)
    assert est.rnn.lstm.input_size == 12 * len(names)
    assert est.pose_net_iter.input_to_hidden.in_features == 12 * len(names) + 2 * (3 * j + k)
    assert out.sensor_iterates[0][0].shape == (2, 4, len(names), 3)
    out.pose.pose.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in est.parameters() if p.grad is not None)
    with torch.no_grad():
        est.eval()(sensors, torch.tensor([4, 4]), None)  # no offsets: zero translation, identity rotation
