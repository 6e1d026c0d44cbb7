"""Streaming: every causal estimator gives the same frames streamed as windowed; BiRNN refuses."""

import pytest
import torch

from _estimators_testkit import EM6, EM12, TinyBody, random_sensors
from empose_estimators.lgd import LGD
from empose_estimators.resnet import ResNet
from empose_estimators.rnn import RNN
from empose_framework.errors import EmposeError

T = 7


def causal_estimators(body):
    torch.manual_seed(0)
    common = dict(body_model=body, sensor_names=EM6)
    return {
        "resnet": ResNet(hidden=32, blocks=2, estimate_shape=True, shape_hidden=16, average_shape=True,
                         causal_shape_average=True, **common),
        "rnn": RNN(hidden=16, layers=2, estimate_shape=True, shape_hidden=8, average_shape=True,
                   causal_shape_average=True, learn_init_state=True, **common),
        "lgd_rnn": LGD(hidden=32, blocks=1, iterations=2, use_gradient=True, average_shape=True,
                       causal_shape_average=True, rnn_init=True, rnn_hidden=16, **common),
        "lgd_rnn_per_frame_shape": LGD(hidden=32, blocks=1, iterations=2, use_gradient=True, rnn_init=True,
                                       rnn_hidden=16, **common),
    }  # fmt: skip


def _train_a_little(est, sensors, offsets):
    """A few BatchNorm updates so the running statistics are not the identity."""
    est.train()
    with torch.no_grad():
        for _ in range(3):
            est(sensors, torch.full((sensors.pos.shape[0],), T), offsets)
    est.eval()


@pytest.mark.parametrize("name", ["resnet", "rnn", "lgd_rnn", "lgd_rnn_per_frame_shape"])
@pytest.mark.parametrize("chunk", [1, 3])
def test_streamed_equals_windowed(name, chunk):
    body = TinyBody()
    sensors, offsets, _ = random_sensors(body, EM12, b=2, t=T)
    est = causal_estimators(body)[name]
    _train_a_little(est, sensors, offsets)
    assert est.streamable
    with torch.no_grad():
        window = est(sensors, torch.full((2,), T), offsets).pose
        est.reset()
        parts = [est.step(sensors.frames(s, min(s + chunk, T)), offsets).pose for s in range(0, T, chunk)]
    torch.testing.assert_close(torch.cat([p.pose for p in parts], 1), window.pose, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(torch.cat([p.betas for p in parts], 1), window.betas, atol=2e-6, rtol=1e-5)


def test_reset_starts_a_new_sequence():
    body = TinyBody()
    sensors, offsets, _ = random_sensors(body, EM12, b=1, t=T)
    est = causal_estimators(body)["lgd_rnn"].eval()
    with torch.no_grad():
        est.reset()
        first = [est.step(sensors.frames(i, i + 1), offsets).pose.pose for i in range(3)]
        est.reset()
        again = est.step(sensors.frames(0, 1), offsets).pose.pose
        continued = est.step(sensors.frames(0, 1), offsets).pose.pose
    torch.testing.assert_close(again, first[0])
    assert not torch.allclose(continued, first[0])  # the LSTM state was carried


@pytest.mark.parametrize("name", ["rnn", "lgd_rnn_no_gradient"])
def test_padded_frames_do_not_change_valid_frames(name):
    """A sequence padded to T and its unpadded version give the same valid frames (causal model).
    (LGD's gradient input is scaled by T/L on padded sequences, as the original: see test_estimators_lgd.)"""
    body = TinyBody()
    sensors, offsets, _ = random_sensors(body, EM12, b=2, t=T)
    if name == "rnn":
        est = causal_estimators(body)["rnn"].eval()
    else:
        est = LGD(hidden=32, blocks=1, iterations=2, rnn_init=True, rnn_hidden=16, body_model=body, sensor_names=EM6)
        est.eval()
    with torch.no_grad():
        padded = est(sensors, torch.tensor([T, 4]), offsets).pose.pose
        short = est(sensors.frames(0, 4), torch.tensor([4, 4]), offsets).pose.pose
    torch.testing.assert_close(padded[1, :4], short[1], atol=2e-6, rtol=1e-5)


def test_birnn_is_offline_only():
    body = TinyBody()
    sensors, offsets, _ = random_sensors(body, EM12, b=1, t=T)
    est = RNN(hidden=8, layers=1, bidirectional=True, body_model=body, sensor_names=EM6).eval()
    assert not est.streamable
    est(sensors, torch.tensor([T]), offsets)  # windowed works
    with pytest.raises(EmposeError, match="offline-only"):
        est.reset()
    with pytest.raises(EmposeError, match="offline-only"):
        est.step(sensors.frames(0, 1), offsets)


def test_stream_batch_size_is_fixed_until_reset():
    body = TinyBody()
    sensors, offsets, _ = random_sensors(body, EM12, b=2, t=T)
    est = causal_estimators(body)["rnn"].eval()
    with torch.no_grad():
        est.reset()
        est.step(sensors.frames(0, 1), offsets)
        one = sensors.frames(1, 2)
        one = type(one)(one.pos[:1], one.ori[:1], one.valid[:1], one.names)
        with pytest.raises(EmposeError, match="reset"):
            est.step(one, None)


def test_streaming_state_is_detached():
    body = TinyBody()
    sensors, offsets, _ = random_sensors(body, EM12, b=1, t=T)
    est = causal_estimators(body)["rnn"].eval()
    est.reset()
    est.step(sensors.frames(0, 1), offsets)
    h, c = est._stream["state"]["rnn"]
    assert not h.requires_grad and not c.requires_grad


def test_lgd_rnn_streams_on_the_embedded_body():
    from _estimators_testkit import embedded_body

    body = embedded_body()
    if body is None:
        pytest.skip("the embedded body model (empose_smplh) is not available yet")
    sensors, offsets, _ = random_sensors(body, EM12, b=1, t=T)
    est = causal_estimators(body)["lgd_rnn"].eval()
    with torch.no_grad():
        window = est(sensors, torch.tensor([T]), offsets).pose
        est.reset()
        parts = [est.step(sensors.frames(s, s + 1), offsets).pose for s in range(T)]
    torch.testing.assert_close(torch.cat([p.pose for p in parts], 1), window.pose, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(torch.cat([p.betas for p in parts], 1), window.betas, atol=2e-6, rtol=1e-5)


def _lgd_rnn_6_streamed(per_call: int, reference: bool = False, compiled: bool = False):
    """The recipe's LGD RNN 6 (recipes/lgd_rnn_6.yaml) on the embedded body, a few BatchNorm updates in,
    streamed over a fixed 8-frame sequence `per_call` frames at a time: (pose, betas) of every frame."""
    from pathlib import Path

    import yaml

    from _estimators_testkit import embedded_body

    body = embedded_body()
    recipe = yaml.safe_load((Path(__file__).resolve().parents[1] / "recipes" / "lgd_rnn_6.yaml").read_text())
    params = {k: v for k, v in recipe["estimator"].items() if k != "use"}
    sensors, offsets, _ = random_sensors(body, EM12, b=1, t=8, seed=4)
    torch.manual_seed(0)
    est = LGD(**params, body_model=body, sensor_names=EM6)
    _train_a_little(est, sensors, offsets)
    est.reference = reference
    if compiled:
        est.compile_stream(sensors.frames(0, per_call), offsets)
    with torch.no_grad():
        est.reset()
        parts = [est.step(sensors.frames(s, s + per_call), offsets).pose for s in range(0, 8, per_call)]
    return torch.cat([p.pose for p in parts], 1), torch.cat([p.betas for p in parts], 1)


@pytest.mark.parametrize("per_call", [1, 4])
def test_lgd_rnn_6_streams_as_the_reference_path(per_call):
    """Streamed on the fast paths (closed-form gradient, folded update nets, native LSTM kernel), LGD RNN 6
    equals the autograd/module reference path."""
    fast, ref = _lgd_rnn_6_streamed(per_call), _lgd_rnn_6_streamed(per_call, reference=True)
    assert (fast[0] - ref[0]).abs().max() <= 1e-5  # radians per joint
    torch.testing.assert_close(fast[1], ref[1], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_compiled_lgd_rnn_6_streams_as_the_reference_path():
    """compile_stream() (torch.compile of the whole step; ~40 s on a cold inductor cache, a few seconds
    warm) equals the reference path, one frame per call."""
    fast, ref = _lgd_rnn_6_streamed(1, compiled=True), _lgd_rnn_6_streamed(1, reference=True)
    assert (fast[0] - ref[0]).abs().max() <= 1e-5  # radians per joint
    torch.testing.assert_close(fast[1], ref[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("t", [1, 3])
@pytest.mark.parametrize("carried", [False, True])
def test_unrolled_lstm_cells_equal_nn_lstm(t, carried):
    """RNNLayer's cell-by-cell LSTM (what compile_stream traces) equals nn.LSTM."""
    from empose_estimators.layers import RNNLayer

    torch.manual_seed(0)
    layer = RNNLayer(5, 8, 2).eval()
    x = torch.randn(2, t, 5)
    state = (torch.randn(2, 2, 8), torch.randn(2, 2, 8)) if carried else None
    with torch.no_grad():
        mine, (h, c) = layer._cells(x, state)
        out, (h_ref, c_ref) = layer.lstm(x, state)
    for a, b in ((mine, out), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("skip,batch_norm", [(False, True), (True, True), (True, False)])
def test_folded_mlps_equal_the_modules_in_eval(skip, batch_norm):
    from empose_estimators.layers import MLP, FoldedMLPs

    torch.manual_seed(0)
    nets = [MLP(10, 7, 16, 2, 0.0, skip, batch_norm), MLP(10, 3, 16, 2, 0.0, skip, batch_norm)]
    x = torch.randn(2, 5, 10)
    for net in nets:  # non-trivial running statistics and slopes
        net.train()(torch.randn(40, 10) * 3 + 1)
        for m in net.modules():
            if isinstance(m, torch.nn.PReLU):
                torch.nn.init.uniform_(m.weight, -0.5, 1.5)
        net.eval()
    slot = []
    with torch.no_grad():
        folded = FoldedMLPs.cached(nets, slot)(x)
        for mine, net in zip(folded, nets):
            torch.testing.assert_close(mine, net(x), atol=1e-5, rtol=1e-5)
        assert FoldedMLPs.cached(nets, slot) is slot[1]  # reused while the weights are unchanged
        nets[0].hidden_to_output.bias.add_(1.0)
        assert torch.allclose(FoldedMLPs.cached(nets, slot)(x)[0], nets[0](x), atol=1e-5)  # rebuilt
