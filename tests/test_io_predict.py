"""`empose predict`, the plain sensor file, the exports and the live API.

Round trips for every export (motion file through the AMASS reader, BVH through empose's `bvh` source,
joints npz), golden values on a motion with known joint angles, the root normalisation of world-frame
readings on a motion where it is exact, and every bad input of the plain format (exit code 2, a message
naming the file, the site or frame, and the fix)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from empose_framework import api, motion_file
from empose_framework.engine import checkpoints
from empose_framework.interfaces import BodyPose
from empose_framework.joints import BODY_JOINT_NAMES
from empose_framework.plugins import get_registry

REPO = Path(__file__).resolve().parents[1]
EM6 = ("back", "head", "r_forearm", "r_shank", "l_forearm", "l_shank")
EM12 = ("back", "head", "r_forearm", "r_upper_arm", "r_shoulder", "r_thigh", "r_shank",
        "l_forearm", "l_upper_arm", "l_shoulder", "l_thigh", "l_shank")  # fmt: skip


@pytest.fixture(scope="module")
def registry():
    return get_registry()


@pytest.fixture(scope="module")
def body(registry):
    return registry.build("body_model", {"use": "embedded"})


def _checkpoint(registry, body, folder: Path, estimator: dict, sensors=EM6) -> Path:
    torch.manual_seed(0)
    est = registry.build("estimator", estimator, body_model=body, sensor_names=sensors)
    path = folder / f"{estimator['use']}.pt"
    checkpoints.save_atomic({"format": checkpoints.FORMAT, "estimator": estimator, "sensor_names": list(sensors),
                             "body_model": {"use": "embedded"}, "model": est.state_dict(), "step": 0}, path)
    return path


@pytest.fixture(scope="module")
def resnet_ckpt(registry, body, tmp_path_factory):
    return _checkpoint(registry, body, tmp_path_factory.mktemp("ckpt"),
                       {"use": "resnet", "hidden": 32, "blocks": 1, "estimate_shape": True})


def cli(*args, capsys):
    """Run the empose CLI in-process; returns (exit code, stdout, stderr)."""
    from empose_framework.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, " ".join(out.err.split())


# ----------------------------------------------------------------------------- a known motion


def _known_motion(body, n=5):
    """Root turned 30 deg about y, left elbow 90 deg about y, right knee 45 deg about x; a straight path."""
    pose = np.zeros((n, body.n_pose_joints, 3), np.float32)
    names = list(body.joint_names)
    pose[:, names.index("pelvis") if "pelvis" in names else 0] = Rotation.from_euler("y", 30, degrees=True).as_rotvec()
    idx = {n: i for i, n in enumerate(names)}
    pose[:, idx.get("left_elbow", idx.get("l_elbow"))] = Rotation.from_euler("y", 90, degrees=True).as_rotvec()
    pose[:, idx.get("right_knee", idx.get("r_knee"))] = Rotation.from_euler("x", 45, degrees=True).as_rotvec()
    trans = np.stack([np.linspace(0, 0.4, n), np.zeros(n), np.linspace(0, 0.2, n)], 1).astype(np.float32)
    betas = np.zeros(body.n_betas, np.float32)
    betas[:2] = (1.0, -0.5)
    return motion_file.from_body_pose(pose, betas, body, {"use": "embedded"}, 60.0, trans=trans,
                                      frame_valid=np.array([True, True, False, True, True][:n]))


def test_motion_file_is_an_amass_file(body, tmp_path):
    from empose_motion.preprocess import read_amass

    mf = _known_motion(body)
    path = motion_file.write(mf, tmp_path / "walk_poses.npz")
    with np.load(path, allow_pickle=False) as z:  # no object arrays
        assert z["poses"].shape == (5, 156) and z["betas"].shape == (16,) and float(z["mocap_framerate"]) == 60.0
        assert not z["poses"][:, 66:].any()
    sample = read_amass(path, tmp_path)
    assert sample.poses.shape == (5, 66)
    np.testing.assert_allclose(sample.poses.reshape(5, 22, 3), mf.pose, atol=1e-6)
    np.testing.assert_allclose(sample.trans, mf.trans, atol=1e-6)
    np.testing.assert_allclose(sample.betas[:2], [1.0, -0.5])
    back = motion_file.read(path)
    assert back.kind == "prediction" and back.trans_known and back.body_model == {"use": "embedded"}
    np.testing.assert_array_equal(back.frame_valid, [True, True, False, True, True])
    pose, betas = back.body_pose(body)
    np.testing.assert_allclose(pose, _known_motion(body).body_pose(body)[0], atol=1e-7)


def test_bvh_golden_values_and_joint_positions(body, tmp_path):
    from empose_io import export
    from empose_motion.bvh import parse_bvh

    mf = _known_motion(body)
    path = export.write_bvh(body, mf, tmp_path / "m.bvh")
    bvh = parse_bvh(path)
    assert bvh.names[0] == "pelvis" and set(bvh.names) == set(BODY_JOINT_NAMES)
    assert abs(bvh.fps - 60.0) < 1e-6 and bvh.motion.shape[0] == 5
    col, cols = 0, {}
    for name, chans in zip(bvh.names, bvh.channels):
        cols[name] = (col, chans)
        col += len(chans)
    assert cols["pelvis"][1] == ["Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"]
    # rotation about y only -> the Y channel holds the angle, Z and X are zero
    c = cols["pelvis"][0]
    np.testing.assert_allclose(bvh.motion[:, c + 3 : c + 6], [[0, 0, 30]] * 5, atol=1e-4)
    c = cols["left_elbow"][0]
    np.testing.assert_allclose(bvh.motion[:, c : c + 3], [[0, 0, 90]] * 5, atol=1e-4)
    c = cols["right_knee"][0]
    np.testing.assert_allclose(bvh.motion[:, c : c + 3], [[0, 45, 0]] * 5, atol=1e-4)
    # joint positions of the BVH (its own FK) equal the body model's, in metres
    _, p = bvh.global_transforms()
    pos, rot = export.forward_joints(body, mf)
    order = [bvh.names.index(n) for n in BODY_JOINT_NAMES]
    np.testing.assert_allclose(p[:, order], pos, atol=2e-5)
    # closed form: the left forearm (elbow -> wrist) is the rest forearm turned by Ry(30) Ry(90) = Ry(120)
    rest = export.rest_joints(body, mf)[0]
    e, w = BODY_JOINT_NAMES.index("left_elbow"), BODY_JOINT_NAMES.index("left_wrist")
    expect = Rotation.from_euler("y", 120, degrees=True).apply(rest[w] - rest[e])
    np.testing.assert_allclose(pos[0, w] - pos[0, e], expect, atol=1e-5)
    cm = parse_bvh(export.write_bvh(body, mf, tmp_path / "cm.bvh", units="cm"))
    np.testing.assert_allclose(cm.global_transforms()[1][:, order] / 100, pos, atol=2e-5)


def test_bvh_round_trip_through_the_bvh_source(body, tmp_path):
    from empose_io import export
    from empose_motion.bvh import BVHMotions

    rng = np.random.default_rng(3)
    n = 40
    pose = np.zeros((n, body.n_pose_joints, 3), np.float32)
    pose[:, :22] = rng.normal(0, 0.35, (n, 22, 3)).cumsum(0) * 0.2  # smooth-ish random motion
    trans = np.cumsum(rng.normal(0, 0.01, (n, 3)), 0).astype(np.float32)
    betas = rng.normal(0, 1, body.n_betas).astype(np.float32)
    mf = motion_file.from_body_pose(pose, betas, body, {"use": "embedded"}, 60.0, trans=trans)
    path = export.write_bvh(body, mf, tmp_path / "rt.bvh")
    _, b = mf.body_pose(body)
    motion = BVHMotions(path=str(path), body_model=body, betas=b.tolist(), first_frame="keep")[0]
    assert len(motion) == n
    again = motion_file.from_body_pose(motion.pose, b, body, None, 60.0, trans=motion.trans)
    p1, _ = export.forward_joints(body, mf)
    p2, _ = export.forward_joints(body, again)
    assert np.abs(p1 - p2).max() < 1e-3  # within 1 mm


def test_joints_npz_round_trip(body, tmp_path):
    from empose_io import export

    mf = _known_motion(body)
    path = export.write_joints(body, mf, tmp_path / "j.npz")
    with np.load(path, allow_pickle=False) as z:
        joints, rot, valid = z["joints"], z["global_rot"], z["frame_valid"]
        assert list(z["joint_names"]) == list(BODY_JOINT_NAMES) and float(z["fps"]) == 60.0
    np.testing.assert_array_equal(valid, [True, True, False, True, True])
    pose, betas = mf.body_pose(body)
    out = body.forward(BodyPose(torch.as_tensor(pose), torch.as_tensor(betas).expand(5, -1), torch.as_tensor(mf.trans)),
                       vertices=False)
    np.testing.assert_allclose(joints, out.joints[:, :22].numpy(), atol=1e-5)
    e = BODY_JOINT_NAMES.index("left_elbow")
    np.testing.assert_allclose(rot[:, e], np.broadcast_to(Rotation.from_euler("y", 120, degrees=True).as_matrix(), (5, 3, 3)),
                               atol=1e-5)
    # the pelvis moves with the translation: rest pelvis + trans
    rest = export.rest_joints(body, mf)[0]
    np.testing.assert_allclose(joints[:, 0], rest[0] + mf.trans, atol=1e-5)


# ----------------------------------------------------------------------------- plain sensor file


def _world_sensors(body, n=30, sites=EM12):
    """Sensors of a motion that only turns and moves the root (so the back sensor is rigid with the
    pelvis and the root normalisation is exact), placed in a world frame; plus the normalised truth."""
    yaw = np.linspace(0, 1.2, n)
    root = Rotation.from_euler("y", yaw[:, None]) * Rotation.from_euler("x", 0.2)
    pose = torch.zeros(n, body.n_pose_joints, 3)
    pose[:, 0] = torch.as_tensor(root.as_rotvec(), dtype=torch.float32)
    world = BodyPose(pose, torch.zeros(n, body.n_betas), torch.as_tensor(np.stack([np.linspace(0, 1, n), np.full(n, 0.9),
                                                                                   np.linspace(2, 2.5, n)], 1), dtype=torch.float32))
    norm_root = Rotation.from_matrix(root[0].as_matrix().T @ root.as_matrix())
    pose_n = pose.clone()
    pose_n[:, 0] = torch.as_tensor(norm_root.as_rotvec(), dtype=torch.float32)
    with torch.no_grad():
        pw, ow = body.sensor_frames(world, sites)
        pn, on = body.sensor_frames(BodyPose(pose_n, torch.zeros(n, body.n_betas)), sites)
    return pw.double().numpy(), ow.double().numpy(), pn.numpy(), on.numpy()


def _write_csv(path: Path, pos, ori, sites=EM12, times=None, fps=60.0, drop=()):
    q = Rotation.from_matrix(ori.reshape(-1, 3, 3)).as_quat().reshape(pos.shape[:2] + (4,))
    times = np.arange(len(pos)) / fps if times is None else times
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "site", "x", "y", "z", "qx", "qy", "qz", "qw"])
        for f in range(len(pos)):
            for s, name in enumerate(sites):
                if (f, name) in drop:
                    continue
                w.writerow([repr(float(times[f])), name, *map(repr, pos[f, s].tolist()), *map(repr, q[f, s].tolist())])
    return path


def test_plain_file_normalisation_is_exact_for_a_rigid_root(body, tmp_path):
    from empose_io.sensor_file import normalise, read_sensor_file

    pw, ow, pn, on = _world_sensors(body)
    for path in (_write_csv(tmp_path / "s.csv", pw, ow),):
        raw = read_sensor_file(path)
        assert raw.names == EM12 and abs(raw.fps - 60) < 1e-6 and raw.valid.all()
        pos, ori, valid = normalise(raw, body)
        np.testing.assert_allclose(pos, pn, atol=2e-4)
        np.testing.assert_allclose(ori, on, atol=2e-4)
    npz = tmp_path / "s.npz"
    np.savez(npz, time=np.arange(len(pw)) / 60.0, sites=np.array(EM12), pos=pw, ori=ow)
    pos2, ori2, _ = normalise(read_sensor_file(npz), body)
    np.testing.assert_allclose(pos2, pn, atol=2e-4)


def test_plain_file_resampled_to_60fps_and_nan_is_missing(body, tmp_path):
    from empose_io.sensor_file import read_sensor_file

    pw, ow, _, _ = _world_sensors(body, n=31)
    pw[4, 2] = np.nan
    path = tmp_path / "s120.npz"
    np.savez(path, fps=np.float64(120.0), sites=np.array(EM12), pos=pw, quat=Rotation.from_matrix(
        ow.reshape(-1, 3, 3)).as_quat().reshape(31, 12, 4))
    raw = read_sensor_file(path)
    assert len(raw) == 16 and abs(raw.fps - 60) < 1e-9
    np.testing.assert_allclose(raw.pos[3], pw[6], atol=1e-9)  # frame k at 60 fps = frame 2k at 120 fps
    assert not raw.valid[2, 2] and raw.valid[2, 3] and raw.valid[3].all()  # 120-fps frame 4 = 60-fps frame 2


def _bad(tmp_path, name, mutate):
    from empose_io.sensor_file import read_sensor_file  # noqa: F401 - (imported for the plugin path)

    pw, ow, _, _ = _world_sensors(get_registry().build("body_model", {"use": "embedded"}), n=12)
    kwargs = mutate(pw, ow)
    return _write_csv(tmp_path / name, **kwargs)


BAD_INPUTS = [
    ("unknown_site.csv", lambda p, o: {"pos": p, "ori": o, "sites": EM12[:-1] + ("l_ankle_tracker",)},
     ["l_ankle_tracker", "not sensor sites", "rename"]),
    ("millimetres.csv", lambda p, o: {"pos": p * 1000, "ori": o}, ["frame", "millimetres", "divide the positions by 1000"]),
    ("centimetres.csv", lambda p, o: {"pos": p * 100, "ori": o}, ["frame", "centimetres", "divide the positions by 100"]),
    ("uneven.csv", lambda p, o: {"pos": p, "ori": o, "times": np.r_[np.arange(6) / 60, 0.2 + np.arange(6) / 60]},
     ["frame 6", "uneven", "resample"]),
]


@pytest.mark.parametrize("name,mutate,words", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_plain_files_exit_2_with_file_where_and_fix(name, mutate, words, resnet_ckpt, tmp_path, capsys):
    path = _bad(tmp_path, name, mutate)
    code, _, err = cli("predict", resnet_ckpt, path, "-o", tmp_path / "out", capsys=capsys)
    assert code == 2, err
    assert str(path) in err and "Fix:" in err and "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "out" / f"{Path(name).stem}.npz").exists()


def test_non_unit_quaternion_names_site_and_frame(resnet_ckpt, tmp_path, capsys):
    path = _bad(tmp_path, "q.csv", lambda p, o: {"pos": p, "ori": o})
    lines = path.read_text().splitlines()
    fields = lines[1 + 3 * 12 + 2].split(",")  # frame 3, site r_forearm
    fields[5:9] = ["0.5", "0.5", "0.5", "0.9"]
    lines[1 + 3 * 12 + 2] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    code, _, err = cli("predict", resnet_ckpt, path, "-o", tmp_path / "out", capsys=capsys)
    assert code == 2 and str(path) in err
    assert "site 'r_forearm'" in err and "frame 3" in err and "norm" in err and "(x, y, z, w)" in err


def test_missing_site_the_model_needs(resnet_ckpt, tmp_path, capsys):
    pw, ow, _, _ = _world_sensors(get_registry().build("body_model", {"use": "embedded"}), n=12)
    keep = [i for i, s in enumerate(EM12) if s != "l_shank"]
    path = _write_csv(tmp_path / "no_shank.csv", pw[:, keep], ow[:, keep], sites=tuple(EM12[i] for i in keep))
    code, _, err = cli("predict", resnet_ckpt, path, "-o", tmp_path / "out", capsys=capsys)
    assert code == 2 and str(path) in err and "l_shank" in err and "add readings" in err


def test_nan_and_absent_rows_are_missing_not_errors(resnet_ckpt, tmp_path, capsys):
    pw, ow, _, _ = _world_sensors(get_registry().build("body_model", {"use": "embedded"}), n=12)
    pw[5, EM12.index("head")] = np.nan
    path = _write_csv(tmp_path / "holes.csv", pw, ow, drop={(7, "l_forearm")})
    code, _, err = cli("predict", resnet_ckpt, path, "-o", tmp_path / "out", capsys=capsys)
    assert code == 0, err
    mf = motion_file.read(tmp_path / "out" / "holes.npz")
    expect = np.ones(12, bool)
    expect[[5, 7]] = False  # head is one of the model's 6 sensors, and so is l_forearm
    np.testing.assert_array_equal(mf.frame_valid, expect)
    assert not mf.sensor_valid[5, EM12.index("head")] and mf.sensor_valid[5, EM12.index("back")]
    assert np.isfinite(mf.pose).all()


# ----------------------------------------------------------------------------- predict end to end


def test_predict_virtual_sensors_writes_all_exports_and_truth(resnet_ckpt, tmp_path, capsys):
    code, _, err = cli("predict", resnet_ckpt, "source:virtual_em", "--set", "sensors=em12",
                       "--set", "motions={use: embedded, split: test, count: 2, seconds: 1.0}", "--chunk", "7",
                       "-o", tmp_path / "out", capsys=capsys)  # fmt: skip
    assert code == 0, err
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    stems = sorted({f.split(".")[0].removesuffix("_joints").removesuffix("_truth") for f in files})
    assert len(stems) == 2
    for s in stems:
        assert {f"{s}.npz", f"{s}.bvh", f"{s}_joints.npz", f"{s}_truth.npz"} <= set(files)
        pred, truth = motion_file.read(tmp_path / "out" / f"{s}.npz"), motion_file.read(tmp_path / "out" / f"{s}_truth.npz")
        assert pred.kind == "prediction" and truth.kind == "truth" and len(pred) == len(truth) > 10
        assert pred.sensor_names == EM12 and pred.sensor_pos.shape == (len(pred), 12, 3)
        # the truth's first root orientation is the identity (normalised frame)
        assert np.abs(truth.pose[0, 0]).max() < 1e-5
    # chunked streaming (7 frames per step) equals one pass for this frame-wise model
    code, _, err = cli("predict", resnet_ckpt, "source:virtual_em", "--set", "sensors=em12",
                       "--set", "motions={use: embedded, split: test, count: 2, seconds: 1.0}", "--chunk", "0",
                       "--no-bvh", "--no-joints", "-o", tmp_path / "whole", capsys=capsys)  # fmt: skip
    assert code == 0, err
    a, b = motion_file.read(tmp_path / "out" / f"{stems[0]}.npz"), motion_file.read(tmp_path / "whole" / f"{stems[0]}.npz")
    np.testing.assert_allclose(a.pose, b.pose, atol=1e-5)


def test_predict_offline_birnn_and_recipe_input(registry, body, tmp_path, capsys):
    ckpt = _checkpoint(registry, body, tmp_path, {"use": "rnn", "hidden": 16, "layers": 1, "bidirectional": True})
    spec = tmp_path / "src.yaml"
    spec.write_text("use: virtual_em\nsensors: em6\nmotions: {use: embedded, split: test, count: 1, seconds: 1.0}\n")
    code, _, err = cli("predict", ckpt, spec, "-o", tmp_path / "out", capsys=capsys)
    assert code == 0, err
    assert len(list((tmp_path / "out").glob("*_truth.npz"))) == 1
    with pytest.raises(Exception, match="offline-only"):
        api.load(ckpt)
    code, _, err = cli("predict", ckpt, spec, "--set", "sensorz=em6", "-o", tmp_path / "o2", capsys=capsys)
    assert code == 2 and "sensorz" in err and "Did you mean 'sensors'" in err


def test_render_without_a_renderer_is_a_clear_error(resnet_ckpt, tmp_path, capsys):
    code, _, err = cli("-p", "no:render", "predict", resnet_ckpt, REPO / "examples" / "sensors_131_01.csv", "--render",
                       "-o", tmp_path / "out", capsys=capsys)  # fmt: skip
    assert code == 2 and "render_motion" in err and "--render" in err


# ----------------------------------------------------------------------------- live API


def test_live_api_matches_predict_on_the_example_csv(resnet_ckpt, tmp_path, capsys):
    from empose_io.sensor_file import read_sensor_file

    csv_path = REPO / "examples" / "sensors_131_01.csv"
    code, _, err = cli("predict", resnet_ckpt, csv_path, "-o", tmp_path / "out", "--no-bvh", "--no-joints", capsys=capsys)
    assert code == 0, err
    pred = motion_file.read(tmp_path / "out" / "sensors_131_01.npz")
    raw = read_sensor_file(csv_path)
    live = api.load(resnet_ckpt)
    idx = [raw.names.index(n) for n in live.sensor_names]
    live = api.Live(live.model, offsets=(raw.offset_t[idx], raw.offset_r[idx]))
    poses = [live.feed(raw.pos[f, idx], raw.ori[f, idx]).pose.numpy() for f in range(0, 40)]
    np.testing.assert_allclose(np.stack(poses)[:, :22], pred.pose[:40], atol=1e-4)
    assert live.feed(raw.pos[40, idx], raw.ori[40, idx]).betas.shape == (live.model.body_model.n_betas,)


def test_predict_on_an_empose_recording_file_writes_its_truth(body, resnet_ckpt, tmp_path, capsys):
    from em_doubles import random_offsets, write_recording

    pw, ow, _, _ = _world_sensors(body, n=20)
    n = len(pw)
    means, covs, r = random_offsets(np.random.default_rng(0))
    poses = np.zeros((n, 66))
    poses[:, :3] = Rotation.from_euler("y", np.linspace(0, 1.2, n)[:, None]).as_rotvec()
    masks = np.ones((n, 12), bool)
    masks[4, 1] = False  # head missing in frame 4
    path = tmp_path / "0402_walk_M_clean.npz"
    write_recording(path, "0402_walk", pw, ow, masks, poses, np.zeros(10), np.zeros((n, 3)), means, covs, r)
    code, _, err = cli("predict", resnet_ckpt, path, "-o", tmp_path / "out", "--no-bvh", capsys=capsys)
    assert code == 0, err
    pred, truth = motion_file.read(tmp_path / "out" / "0402_walk.npz"), motion_file.read(tmp_path / "out" / "0402_walk_truth.npz")
    assert len(pred) == len(truth) == n and not pred.frame_valid[4] and pred.frame_valid[[3, 5]].all()
    # the truth is root-normalised: frame f's root is the yaw turned since frame 0
    np.testing.assert_allclose(truth.pose[:, 0], poses[:, :3], atol=1e-5)
