"""`empose render`, the `render_motion` hook and `evaluate.render`: pictures with the bodies where the
joints project, the right number of video frames, and clear errors for bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from empose_framework import motion_file
from empose_framework.cli import main
from empose_framework.drawing import View, render_motion_file
from empose_framework.errors import EmposeError
from empose_framework.interfaces import BodyPose
from empose_framework.joints import SMPL_BODY_JOINTS
from empose_framework.plugins import Registry, get_registry
from empose_io import render as R

FPS, T = 60.0, 30  # half a second
J = {n: k for k, n in enumerate(SMPL_BODY_JOINTS)}


@pytest.fixture(scope="module")
def body():
    return get_registry().build("body_model", {"use": "embedded"})


def _pose(body, shoulder: float, elbow: float) -> np.ndarray:
    """(T, J, 3): left arm raised by `shoulder` rad (about z; negative lowers it) growing over the clip, right elbow bent."""
    pose = np.zeros((T, body.n_pose_joints, 3), np.float32)
    ramp = np.linspace(0.5, 1.0, T)
    names = [n.replace("left_", "l_").replace("right_", "r_") for n in body.joint_names]
    pose[:, names.index("l_shoulder"), 2] = shoulder * ramp
    pose[:, names.index("r_elbow"), 1] = elbow * ramp
    return pose


@pytest.fixture(scope="module")
def files(body, tmp_path_factory):
    """truth.npz and pred.npz of one short clip, with 4 sensor readings taken at the truth's sites."""
    folder = tmp_path_factory.mktemp("motions")
    betas = np.zeros(body.n_betas, np.float32)
    truth_pose, pred_pose = _pose(body, 1.2, 0.0), _pose(body, -0.6, 1.5)
    sites = ("head", "back", "l_forearm", "r_shank")
    with torch.no_grad():
        pos, ori = body.sensor_frames(BodyPose(torch.as_tensor(truth_pose), torch.zeros(T, body.n_betas)), sites)
    valid = np.ones((T, len(sites)), bool)
    valid[3, 2] = False
    sensors = {"names": sites, "pos": pos.numpy(), "ori": ori.numpy(), "valid": valid}
    paths = {}
    for kind, pose in (("truth", truth_pose), ("prediction", pred_pose)):
        mf = motion_file.from_body_pose(pose, betas, body, {"use": "embedded"}, FPS, kind=kind, sensors=sensors)
        paths[kind] = motion_file.write(mf, folder / f"{kind}.npz")
    return paths


def _cli(capsys, *args) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(["render", *map(str, args)])
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(info.value.code or 0), " ".join((captured.out + captured.err).split())


# --------------------------------------------------------------------------------- the camera


def test_view_matches_the_closed_form():
    """Front view of a y-up, +z-facing body turned 25° to its left and raised 12°: closed-form axes."""
    az, el = math.radians(25), math.radians(12)
    v = View.looking(np.array([0, 1.0, 0]), np.array([0, 0, 1.0]), 25, 12)
    np.testing.assert_allclose(v.toward, [math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)], atol=1e-12)
    np.testing.assert_allclose(v.right, [math.cos(az), 0, -math.sin(az)], atol=1e-12)
    basis = np.stack([v.right, v.up, v.toward])
    np.testing.assert_allclose(basis @ basis.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(basis) > 0  # right-handed: not a mirror image


# --------------------------------------------------------------------------------- what is drawn


def _classes(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks of ground-truth blue and prediction orange pixels (hue tests, not exact colours)."""
    r, g, b = (img[..., k].astype(int) for k in range(3))
    return (b > r + 40) & (b > g + 10), (r > b + 60) & (r > g + 20)


def test_bodies_are_drawn_where_their_joints_project(body, files):
    truth, pred = motion_file.read(files["truth"]), motion_file.read(files["prediction"])
    index = np.array([T - 1])
    tracks = [R._track(body, "truth", files["truth"], truth, index, "none"),
              R._track(body, "prediction", files["prediction"], pred, index, "none")]  # fmt: skip
    scene = R.Scene(tracks, body, 240, overlay=False)
    img = np.asarray(scene.frame(0, 0.0, 0, "title", None))
    assert img.shape == (scene.height, scene.width, 3)
    blue, orange = _classes(img)
    left, right = slice(0, scene.panel_w), slice(scene.panel_w, 2 * scene.panel_w)
    # each body in its own half, in its own colour, and a real figure (not a few stray pixels)
    assert blue[:, left].mean() > 0.05 and orange[:, right].mean() > 0.05
    assert blue[:, right].sum() == 0 and orange[:, left].sum() == 0
    for p, (track, mask) in enumerate(zip(tracks, (blue, orange))):
        x, y, _ = scene.px(track.joints[0], p)
        x, y = np.round(x / R.SS).astype(int), np.round(y / R.SS).astype(int)
        for name in ("spine2", "spine3", "l_hip", "r_hip", "l_knee", "r_knee", "neck", "head"):
            k = J[name]
            window = mask[y[k] - 2:y[k] + 3, x[k] - 2:x[k] + 3]
            assert window.mean() > 0.6, (track.kind, name, window.mean())
        # upright and not mirrored: head above pelvis, the body's left on the viewer's right
        assert y[J["head"]] < y[J["root"]] - 40 and x[J["l_hip"]] > x[J["r_hip"]]
        # the truth's left arm is raised (shoulder +1.2 rad about z): its wrist is above the shoulder
        assert (y[J["l_wrist"]] < y[J["l_shoulder"]]) == (track.kind == "truth")
        # far from the body, below the title: background
        assert not mask[scene.header + 5, p * scene.panel_w + 3]


def test_sensor_markers_are_drawn_at_the_readings(body, files):
    truth = motion_file.read(files["truth"])
    track = R._track(body, "truth", files["truth"], truth, np.array([0]), "readings")
    scene = R.Scene([track], body, 240)
    img = np.asarray(scene.frame(0, 0.0, 0, "title", None)).astype(int)
    x, y, _ = scene.px(track.readings[0], 0)
    x, y = np.round(x / R.SS).astype(int), np.round(y / R.SS).astype(int)
    yellow = (img[..., 0] > 200) & (img[..., 1] > 170) & (img[..., 2] < 120)
    # a reading's z axis is the skin normal there: the back and head sensors (on the back of the head)
    # face well away from the camera, so the torso and head hide them (drawn hollow); the shin sensor
    # faces it and is drawn filled. (The forearm sensor, on a thin limb seen edge-on, may go either way.)
    facing = dict(zip(track.reading_names, track.reading_ori[0, :, :, 2] @ scene.view.toward))
    assert facing["back"] < -0.5 and facing["head"] < -0.5 and facing["r_shank"] > 0.5
    for k, name in enumerate(track.reading_names):
        seen = yellow[y[k] - 1:y[k] + 2, x[k] - 1:x[k] + 2].any()
        if name != "l_forearm":
            assert seen == (name == "r_shank"), name


# --------------------------------------------------------------------------------- files


def test_mp4_has_one_frame_per_output_time(files, tmp_path, capsys):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "clip.mp4"
    code, text = _cli(capsys, files["prediction"], "--truth", files["truth"], "-o", out, "--fps", 20, "--size", 160)
    assert code == 0 and f"wrote {out}" in text
    gen = imageio_ffmpeg.read_frames(str(out))
    meta = next(gen)
    frames = list(gen)
    # 30 frames at 60 fps span t = 0 .. 29/60 s; at 20 fps that is t = 0, 0.05, ..., 0.45: 10 frames
    assert len(frames) == 10 and meta["fps"] == 20 and meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    w, h = meta["size"]
    img = np.frombuffer(frames[-1], np.uint8).reshape(h, w, 3)
    blue, orange = _classes(img)
    assert blue[:, : w // 2].mean() > 0.03 and orange[:, w // 2:].mean() > 0.03


def test_gif_and_the_fallback_without_ffmpeg(files, tmp_path, monkeypatch):
    out = R.render_motion(files["truth"], None, tmp_path / "a.gif", {"fps": 10, "size": 140, "quiet": True})
    with Image.open(out) as gif:
        assert gif.n_frames == 5 and gif.info["duration"] == 100  # t = 0, 0.1, ..., 0.4 s
    # GIF frame times are whole hundredths of a second: 15 fps becomes 7/100 s, t = 0, 0.07, ..., 0.42: 7 frames
    out = R.render_motion(files["truth"], None, tmp_path / "c.gif", {"size": 140, "quiet": True})
    with Image.open(out) as gif:
        assert gif.n_frames == 7 and gif.info["duration"] == 70
    monkeypatch.setattr(R, "_ffmpeg", lambda: None)
    written = R.render_motion(files["truth"], None, tmp_path / "b.mp4", {"fps": 10, "size": 140, "quiet": True})
    assert written == tmp_path / "b.gif" and not (tmp_path / "b.mp4").exists()
    with Image.open(written) as gif:
        assert gif.n_frames == 5


def test_contact_sheet_through_the_hook(files, tmp_path):
    out = render_motion_file(files["prediction"], files["truth"], tmp_path / "sheet.png", {"frames": 4, "size": 160, "columns": 2})
    img = np.asarray(Image.open(out).convert("RGB"))
    tile_h = (img.shape[0] - 4) // 2
    assert tile_h >= 160 and img.shape[1] > img.shape[0]  # 2 x 2 tiles of two panels each
    blue, orange = _classes(img)
    assert blue.mean() > 0.02 and orange.mean() > 0.02
    with pytest.raises(EmposeError, match="render_motion"):
        render_motion_file(files["prediction"], None, tmp_path / "x.png", registry=Registry(entry_points=False))


# --------------------------------------------------------------------------------- bad input


def test_bad_input_exits_2_with_a_clear_message(files, tmp_path, capsys):
    missing = tmp_path / "nope.npz"
    code, text = _cli(capsys, missing, "-o", tmp_path / "o.png")
    assert code == 2 and str(missing) in text and "no such motion file" in text and "Traceback" not in text

    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    code, text = _cli(capsys, other, "-o", tmp_path / "o.png")
    assert code == 2 and str(other) in text and "poses" in text

    text_file = tmp_path / "notes.npz"
    text_file.write_text("not an archive")
    code, text = _cli(capsys, text_file, "-o", tmp_path / "o.png")
    assert code == 2 and str(text_file) in text

    code, text = _cli(capsys, files["truth"], "-o", tmp_path / "o.png", "--body-model", "nosuch")
    assert code == 2 and "--body-model nosuch" in text and "unknown body_model 'nosuch'" in text

    code, text = _cli(capsys, files["truth"], "-o", tmp_path / "o.png", "--start", 0.499, "--end", 0.5)
    assert code == 2 and "select no frames" in text and "30 frames at 60 fps" in text

    code, text = _cli(capsys, files["truth"], "-o", tmp_path / "o.png", "--sensors", "all")
    assert code == 2 and "--sensors 'all'" in text and "readings" in text

    code, text = _cli(capsys, files["truth"], "-o", tmp_path / "o.avi")
    assert code == 2 and "unknown output type '.avi'" in text and ".mp4" in text

    mf = motion_file.read(files["truth"])
    mf.body_model = {"use": "smplh_typo"}
    odd = motion_file.write(mf, tmp_path / "odd_body.npz")
    code, text = _cli(capsys, odd, "-o", tmp_path / "o.png")
    assert code == 2 and str(odd) in text and "smplh_typo" in text and "--body-model" in text

    mf = motion_file.read(files["truth"])
    mf.pose, mf.trans, mf.frame_valid = mf.pose[:10], mf.trans[:10], mf.frame_valid[:10]
    mf.sensor_names = None
    short = motion_file.write(mf, tmp_path / "short.npz")
    code, text = _cli(capsys, files["prediction"], "--truth", short, "-o", tmp_path / "o.png")
    assert code == 2 and "10 frames" in text and "30 frames" in text and str(short) in text


# --------------------------------------------------------------------------------- evaluate.render


def test_extremes_pick_best_and_worst_once():
    from empose_framework.engine.evaluation import _worst_window, extremes
    from empose_framework.engine.pooling import MetricInfo, Pool

    pool = Pool([MetricInfo("mpjpe", "mm")])
    for sid, err in (("a", 30.0), ("b", 10.0), ("c", float("nan")), ("d", 50.0), ("e", 20.0)):
        pool.add(sid, 4, 4, {"mpjpe": np.full((4, 2), err) if err == err else np.zeros((0, 2))})
    assert extremes(pool, "mpjpe", 2) == [("best1", "b"), ("best2", "e"), ("worst1", "d"), ("worst2", "a")]
    # fewer sequences than 2N: each drawn once, the unscored one never
    assert extremes(pool, "mpjpe", 3) == [("best1", "b"), ("best2", "e"), ("best3", "a"), ("worst1", "d")]
    err = np.array([0, 0, 5, 1, 1, 9, 9, 0, 0], float)
    assert _worst_window(err, 2) == 5 and _worst_window(err, 3) == 4 and _worst_window(err, 20) == 0


class _RestPose(torch.nn.Module):
    """Predicts the rest pose and mean shape for every frame (errors differ per sequence)."""

    streamable = False

    def __init__(self, body):
        super().__init__()
        self.j, self.k = body.n_pose_joints, body.n_betas
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, sensors, seq_len, offsets=None):
        from empose_framework.interfaces import Prediction

        b, t = sensors.pos.shape[:2]
        return Prediction(BodyPose(torch.zeros(b, t, self.j, 3), torch.zeros(b, t, self.k)))


def test_render_extremes_writes_motion_files_and_videos(body, tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    from empose_framework.engine.evaluation import NamedMetric, evaluate_sequences, render_extremes

    reg = get_registry()
    source = reg.build("sensor_source", {"use": "virtual_em", "sensors": "em6",
                                         "motions": {"use": "embedded", "split": "test", "count": 3, "seconds": 0.6}},
                       body_model=body)  # fmt: skip
    metrics = [NamedMetric("mpjpe", reg.build("metric", "mpjpe", body_model=body))]
    est = _RestPose(body)
    pool = evaluate_sequences(est, source.sequences(), metrics, None, body_model=body)
    rows = sorted(pool.rows()[:-1], key=lambda r: r["mpjpe_mean"])
    videos = render_extremes(est, source.sequences(), pool, metrics, 1, None, tmp_path, body, {"use": "embedded"},
                             log=lambda m: None, options={"size": 160, "quiet": True})  # fmt: skip
    safe = lambda s: "".join(c if c.isalnum() or c in "-." else "_" for c in s)  # noqa: E731
    assert rows[0]["mpjpe_mean"] < rows[-1]["mpjpe_mean"]
    assert {v.name for v in videos} == {f"best1_{safe(rows[0]['sequence'])}.mp4", f"worst1_{safe(rows[-1]['sequence'])}.mp4"}
    truths = {b.ids[0]: b for b in source.sequences()}
    for video in videos:
        seq = rows[0]["sequence"] if video.name.startswith("best") else rows[-1]["sequence"]
        batch, t = truths[seq], int(truths[seq].seq_len[0])
        truth = motion_file.read(video.with_name(video.stem + "_truth.npz"))
        pred = motion_file.read(video.with_name(video.stem + "_pred.npz"))
        assert truth.kind == "truth" and pred.kind == "prediction" and len(truth) == len(pred) == t
        np.testing.assert_allclose(truth.pose, batch.target.pose[0, :t, :22].numpy(), atol=1e-6)  # embedded: SMPL order
        assert np.all(pred.pose == 0) and pred.sensor_names == batch.sensors.names
        gen = imageio_ffmpeg.read_frames(str(video))
        next(gen)
        assert sum(1 for _ in gen) == int(np.floor((t - 1) * 30 / 60 + 1e-9)) + 1  # 30 fps from 60


def test_render_plugin_module_is_light():
    import subprocess
    import sys

    code = "import sys, empose_io.render_plugin; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
