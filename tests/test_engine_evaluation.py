"""Evaluation protocol: pooling (§9-§10), chunked inference with carried state, frame selection,
and the real-recording evaluation with its hold-out subject (--cross-subject)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from em_doubles import write_recording
from empose_framework.engine import checkpoints, run
from empose_framework.engine.evaluation import NamedMetric, metric_errors, predict_sequence
from empose_framework.engine.pooling import MetricInfo, Pool
from empose_framework.interfaces import Batch, BodyPose, Metric, SensorFrames
from empose_framework.recipes import load_recipe
from engine_doubles import SineMotions, install_registry, write_recipe


def test_pool_sequence_rows_and_frame_weighted_overall_with_population_std():
    pool = Pool([MetricInfo("m", "mm")])
    a = np.array([[1.0, 3.0], [5.0, 7.0]])  # 2 frames x 2 joints
    b = np.array([[10.0, 10.0], [10.0, 10.0], [10.0, 10.0], [10.0, 10.0]])
    pool.add("a", 3, 2, {"m": a})
    pool.add("b", 4, 4, {"m": b})
    rows = pool.rows()
    assert rows[0]["m_mean"] == pytest.approx(4.0) and rows[0]["m_std"] == pytest.approx(np.sqrt(5.0))
    assert rows[1]["m_mean"] == pytest.approx(10.0) and rows[1]["m_std"] == pytest.approx(0.0)
    everything = np.concatenate([a.ravel(), b.ravel()])
    assert rows[2]["m_mean"] == pytest.approx(everything.mean())  # 8.0, not the mean of means (7.0)
    assert rows[2]["m_std"] == pytest.approx(everything.std(ddof=0))
    assert rows[2]["frames"] == 7 and rows[2]["used_frames"] == 6


class _FrameIndex(Metric):
    """Reports each frame's pose value, so the selected rows show which frames were kept."""

    unit = ""

    def errors(self, prediction, target):
        return prediction.pose.pose[..., 0, :1].reshape(-1, 1)


class _Jerky(_FrameIndex):
    temporal_support = 3


def _batch(valid: torch.Tensor) -> Batch:
    b, t = valid.shape
    pose = torch.arange(t, dtype=torch.float32)[None, :, None, None].expand(b, t, 22, 3).clone()
    sensors = SensorFrames(torch.zeros(b, t, 2, 3), torch.zeros(b, t, 2, 3, 3), valid[..., None].expand(b, t, 2), ("a", "b"))
    return Batch(sensors, BodyPose(pose, torch.zeros(b, 10)), torch.full((b,), t), ["s"] * b)


def test_frame_selection_drops_invalid_frames_and_erodes_for_temporal_metrics():
    valid = torch.ones(1, 10, dtype=torch.bool)
    valid[0, 5] = False
    batch = _batch(valid)
    got = metric_errors([NamedMetric("f", _FrameIndex()), NamedMetric("j", _Jerky())], batch.target, batch, None)
    assert got["f"][0][:, 0].tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert got["j"][0][:, 0].tolist() == [2, 3, 4, 8, 9]  # frame t needs frames t-2..t all valid


def test_chunked_inference_carries_the_recurrent_state(monkeypatch):
    registry = install_registry(monkeypatch)
    body = registry.build("body_model", "embedded")
    source = registry.build(
        "sensor_source", {"use": "virtual_em", "sensors": "em6", "motions": {"use": "sine_motions", "n": 1, "frames": 90}},
        body_model=body,
    )
    torch.manual_seed(0)
    spec = {"use": "lgd", "hidden": 32, "blocks": 1, "iterations": 1, "use_gradient": True, "rnn_init": True, "rnn_hidden": 32}
    est = registry.build("estimator", spec, body_model=body, sensor_names=source.sensor_names).eval()
    batch = next(iter(source.sequences()))
    with torch.no_grad():
        whole = predict_sequence(est, batch, None)
        chunked = predict_sequence(est, batch, 32)
        fresh = torch.cat([est(batch.sensors.frames(s, s + 32), torch.tensor([min(32, 90 - s)]), batch.offsets).pose.pose
                           for s in range(0, 90, 32)], dim=1)  # fmt: skip
    torch.testing.assert_close(chunked.pose, whole.pose, atol=1e-4, rtol=1e-4)
    assert (fresh[:, 32:] - whole.pose[:, 32:]).abs().max() > 1e-3  # restarting the LSTM per chunk would differ
    assert chunked.betas.shape == (1, 10)  # one shape per sequence: the first frame's


def _write_recordings(root: Path, body) -> None:
    """Two subjects 1-4 sequences and one hold-out sequence, with virtual sensors on the embedded body."""
    (root / "hold_out").mkdir(parents=True)
    motions = SineMotions(n=3, frames=80, seed=11, body_model=body)
    eye = np.broadcast_to(np.eye(3), (12, 3, 3))
    names = ("back", "head", "r_forearm", "r_upper_arm", "r_shoulder", "r_thigh", "r_shank", "l_forearm",
             "l_upper_arm", "l_shoulder", "l_thigh", "l_shank")  # fmt: skip
    for i, (folder, seq) in enumerate([(root, "0402_arms_M"), (root, "0526_walking_M"), (root / "hold_out", "0715_arms_M")]):
        m = motions[i]
        pose = torch.as_tensor(m.pose)
        pos, ori = body.sensor_frames(BodyPose(pose, torch.as_tensor(m.betas)), names)
        masks = np.ones((80, 12), dtype=bool)
        masks[10:15, 4] = False  # r_shoulder: not one of the 6 sensors, yet these frames leave the metrics
        poses66 = np.asarray(m.pose, dtype=np.float64).reshape(80, 66)
        write_recording(folder / f"{seq}_clean.npz", seq, pos.numpy(), ori.numpy(), masks, poses66, m.betas,
                        np.zeros((80, 3)), np.zeros((12, 3)), np.zeros((12, 3, 3)), eye)  # fmt: skip


def test_real_recordings_evaluation_and_the_hold_out_subject(tmp_path, monkeypatch):
    registry = install_registry(monkeypatch)
    body = registry.build("body_model", "embedded")
    _write_recordings(tmp_path / "real", body)
    trained = run(load_recipe(write_recipe(tmp_path), ["train.max_steps=1", "data.test={}"], registry=registry))
    assert (trained / "checkpoints" / "best.pt").is_file()
    sets = ["task=evaluate", f"evaluate.checkpoint={trained / 'checkpoints' / 'best.pt'}",
            f"data.test={{real: {{use: empose_recordings, path: {tmp_path / 'real'}}}}}"]  # fmt: skip
    subjects = run(load_recipe(write_recipe(tmp_path), sets, registry=registry))
    table = json.loads((subjects / "eval" / "real.json").read_text())
    assert [s["sequence"] for s in table["sequences"]] == ["0402_arms_M", "0526_walking_M"]  # sorted, top level
    assert [s["used_frames"] for s in table["sequences"]] == [75, 75]  # all 12 sensors must be valid (§9)
    hold = run(load_recipe(write_recipe(tmp_path), sets, registry=registry), cross_subject=True)
    table = json.loads((hold / "eval" / "real_holdout.json").read_text())
    assert [s["sequence"] for s in table["sequences"]] == ["0715_arms_M"] and table["cross_subject"] is True
    ckpt = checkpoints.load(trained / "checkpoints" / "best.pt")
    assert ckpt["estimator"]["use"] == "lgd" and ckpt["step"] == 1


def test_evaluate_run_refuses_estimator_overrides_and_records_what_it_used(tmp_path, monkeypatch):
    import yaml

    from empose_framework.errors import EmposeError

    registry = install_registry(monkeypatch)
    trained = run(load_recipe(write_recipe(tmp_path), ["train.max_steps=1", "data.test={}"], registry=registry))
    evaluate = ["task=evaluate", f"evaluate.checkpoint={trained / 'checkpoints' / 'best.pt'}", "evaluate.chunk=auto"]
    # an estimator setting the checkpoint does not have would be silently ignored: refused
    with pytest.raises(EmposeError, match=r"estimator: task 'evaluate' takes its estimator from evaluate.checkpoint .* differs in hidden"):
        run(load_recipe(write_recipe(tmp_path), [*evaluate, "estimator.hidden=16"], registry=registry), run_dir=tmp_path / "e0")
    # the recipe's own estimator is the checkpoint's: harmless; without one the checkpoint's is used and recorded
    same = run(load_recipe(write_recipe(tmp_path), evaluate, registry=registry), run_dir=tmp_path / "e1")
    alone = run(load_recipe(write_recipe(tmp_path), [*evaluate, "estimator=null"], registry=registry), run_dir=tmp_path / "e2")
    ckpt = checkpoints.load(trained / "checkpoints" / "best.pt")
    for folder in (same, alone):
        recorded = yaml.safe_load((folder / "recipe.yaml").read_text())
        assert recorded["estimator"] == ckpt["estimator"] and recorded["evaluate"]["chunk"] == "auto"
        assert json.loads((folder / "eval" / "held.json").read_text())["chunk"] == 256  # LGD's own chunking (§10.1)
