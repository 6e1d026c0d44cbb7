"""The `bvh` source: parsing, joint mapping, retargeting onto the body model, 60 fps, errors."""

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from empose_framework.errors import DataError, EmposeError
from empose_framework.interfaces import Motion
from empose_motion.bvh import CMU_CLIPS, BVHMotions, auto_joint_map, parse_bvh
from motion_body_double import NAMES, PARENTS, REST, StickBody, fk

CMU = CMU_CLIPS  # the three real clips shipped with empose (gzipped BVH)
SMPL = ["root" if n == "pelvis" else n.replace("left_", "l_").replace("right_", "r_") for n in NAMES]


# --------------------------------------------------------------------------- a BVH with known answers


def _write_smpl_bvh(path: Path, pose: np.ndarray, trans: np.ndarray, fps: float, order: str = "ZYX"):
    """A BVH of the double's own skeleton (SMPL names and tree, T-pose offsets) playing `pose`."""
    children = {j: [c for c, p in enumerate(PARENTS) if p == j] for j in range(22)}
    lines = ["HIERARCHY"]

    def joint(j, depth):
        pad = "  " * depth
        off = REST[j] if PARENTS[j] < 0 else REST[j] - REST[PARENTS[j]]
        lines.append(f"{pad}{'ROOT' if PARENTS[j] < 0 else 'JOINT'} {NAMES[j]}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {off[0]:.6f} {off[1]:.6f} {off[2]:.6f}")
        chans = " ".join(f"{a}rotation" for a in order)
        lines.append(f"{pad}  CHANNELS {6 if PARENTS[j] < 0 else 3} {'Xposition Yposition Zposition ' if PARENTS[j] < 0 else ''}{chans}")
        for c in children[j]:
            joint(c, depth + 1)
        if not children[j]:
            lines.append(f"{pad}  End Site")
            lines.append(pad + "  {")
            tip = {10: (0, -0.02, 0.06), 11: (0, -0.02, 0.06), 15: (0, 0.12, 0)}.get(j, (0.08 * np.sign(REST[j][0]), 0, 0))
            lines.append(f"{pad}    OFFSET {tip[0]:.4f} {tip[1]:.4f} {tip[2]:.4f}")
            lines.append(pad + "  }")
        lines.append(pad + "}")

    joint(0, 0)
    order_j = []

    def walk(j):
        order_j.append(j)
        for c in children[j]:
            walk(c)

    walk(0)
    lines += ["MOTION", f"Frames: {pose.shape[0]}", f"Frame Time: {1 / fps:.7f}"]
    for t in range(pose.shape[0]):
        row = list(trans[t])  # the root's position channels; its OFFSET (rest pelvis) is added on reading
        for j in order_j:
            row += list(Rotation.from_rotvec(pose[t, j]).as_euler(order, degrees=True))
        lines.append(" ".join(f"{v:.6f}" for v in row))
    path.write_text("\n".join(lines) + "\n")


def _smooth_pose(n, fps, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fps
    pose = 0.35 * np.sin(t[:, None, None] * rng.uniform(0.5, 2.5, (1, 22, 3)) + rng.uniform(0, 6, (1, 22, 3)))
    pose[:, 0] = 0.0
    pose[:, 0, 1] = 0.8 * t  # turning on the spot
    trans = np.stack([0.3 * t, 0.02 * np.sin(4 * t), 0.1 * t], 1)
    return pose, trans


def test_retargeting_its_own_skeleton_gives_back_the_motion(tmp_path):
    pose, trans = _smooth_pose(61, 30.0, 0)
    _write_smpl_bvh(tmp_path / "own.bvh", pose, trans, 30.0)
    src = BVHMotions(path=str(tmp_path / "own.bvh"), body_model=StickBody(), first_frame="keep")
    m, jmap, scale = src.load(0)
    assert jmap == {n: n_ for n, n_ in zip(SMPL, NAMES)} and scale == pytest.approx(1.0)
    assert len(m) == 122 and m.fps == 60.0  # 30 -> 60 fps, duration kept
    got = Rotation.from_rotvec(m.pose[::2].reshape(-1, 3).astype(np.float64))
    err = (Rotation.from_rotvec(pose.reshape(-1, 3)).inv() * got).magnitude()
    assert err.max() < 1e-4  # identical skeletons: the rotations come back
    np.testing.assert_allclose(m.trans[::2], trans, atol=1e-4)


def test_channel_order_and_user_map(tmp_path):
    pose, trans = _smooth_pose(20, 60.0, 1)
    _write_smpl_bvh(tmp_path / "xzy.bvh", pose, trans, 60.0, order="XZY")
    (tmp_path / "map.yaml").write_text("spine2: null\nleft_wrist: left_elbow\n")
    src = BVHMotions(path=str(tmp_path / "xzy.bvh"), body_model=StickBody(), joint_map=str(tmp_path / "map.yaml"), first_frame="keep")
    m = src[0]
    np.testing.assert_allclose(m.pose[:, 6], 0.0, atol=1e-6)  # unmapped spine2: follows its parent
    np.testing.assert_allclose(m.pose[:, 20], 0.0, atol=1e-6)  # l_wrist takes the elbow's global rotation
    # everything else is still exact, the children of spine2 included (globals are carried over)
    _, g_want = fk(pose, np.zeros(10))
    _, g_got = fk(m.pose.astype(np.float64), np.zeros(10))
    for k in (9, 12, 15, 16, 18, 4):
        err = Rotation.from_matrix(np.swapaxes(g_want[:, k], 1, 2) @ g_got[:, k]).magnitude()
        assert err.max() < 1e-4, SMPL[k]
    with pytest.raises(EmposeError, match=r"'LeftArm', which is not a joint of this file"):
        BVHMotions(path=str(tmp_path / "xzy.bvh"), body_model=StickBody(), joint_map={"l_shoulder": "LeftArm"})[0]
    with pytest.raises(EmposeError, match=r"key 'l_shouldr' is not a body joint.*Did you mean 'l_shoulder'"):
        BVHMotions(path=str(tmp_path / "xzy.bvh"), body_model=StickBody(), joint_map={"l_shouldr": "left_shoulder"})


def test_bad_files_are_clear_errors(tmp_path):
    pose, trans = _smooth_pose(10, 60.0, 2)
    _write_smpl_bvh(tmp_path / "ok.bvh", pose, trans, 60.0)
    text = (tmp_path / "ok.bvh").read_text()
    (tmp_path / "cut.bvh").write_text(text[: int(len(text) * 0.8)])
    with pytest.raises(DataError, match=r"cut\.bvh.*truncated: 10 frames of 69 channels declared but only \d complete"):
        parse_bvh(tmp_path / "cut.bvh")
    (tmp_path / "bad.bvh").write_text(text.replace("OFFSET", "OFSET", 1))
    with pytest.raises(DataError, match=r"bad\.bvh \(line 4\): expected 'OFFSET', found 'OFSET'"):
        parse_bvh(tmp_path / "bad.bvh")
    with pytest.raises(DataError, match="no such file or folder"):
        BVHMotions(path=str(tmp_path / "missing"), body_model=StickBody())
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no \*\.bvh files"):
        BVHMotions(path=str(tmp_path / "empty"), body_model=StickBody())


# --------------------------------------------------------------------------- real CMU clips


def _cmu_positions(path: Path):
    """Global joint positions (F, J, 3) of a BVH, computed here from the raw channels (independent FK)."""
    text = gzip.decompress(path.read_bytes()).decode()
    lines = text.split("MOTION")[0].split("\n")
    names, parents, offsets, channels, stack = [], [], [], [], []
    for line in lines:
        tok = line.split()
        if not tok:
            continue
        if tok[0] in ("ROOT", "JOINT"):
            names.append(tok[1])
            parents.append(stack[-1] if stack else -1)
            pending = len(names) - 1
        elif tok[0] == "End":
            pending = None
        elif tok[0] == "{":
            stack.append(pending) if pending is not None else stack.append(stack[-1])
        elif tok[0] == "}":
            stack.pop()
        elif tok[0] == "OFFSET" and pending is not None:
            offsets.append([float(v) for v in tok[1:4]])
        elif tok[0] == "CHANNELS":
            channels.append(tok[2:])
    data = np.loadtxt(text.split("Frame Time:")[1].split("\n", 1)[1].splitlines())
    f = data.shape[0]
    glob = np.zeros((f, len(names), 3, 3))
    pos = np.zeros((f, len(names), 3))
    col = 0
    for j, ch in enumerate(channels):
        rot_axes = "".join(c[0] for c in ch if "rotation" in c)
        rcols = [col + i for i, c in enumerate(ch) if "rotation" in c]
        local = Rotation.from_euler(rot_axes, data[:, rcols], degrees=True).as_matrix()
        shift = np.array(offsets[j]) + (data[:, col:col + 3] if "Xposition" in ch else np.zeros((f, 3)))
        if parents[j] < 0:
            glob[:, j], pos[:, j] = local, shift
        else:
            glob[:, j] = glob[:, parents[j]] @ local
            pos[:, j] = pos[:, parents[j]] + np.einsum("fab,fb->fa", glob[:, parents[j]], shift)
        col += len(ch)
    return names, pos


EXPECTED = {
    "01_01.bvh": dict(root="Hips", l_hip="LeftUpLeg", l_knee="LeftLeg", l_ankle="LeftFoot", l_foot="LeftToeBase",
                      spine1="LowerBack", spine2="Spine", spine3="Spine1", neck="Neck1", head="Head",
                      l_collar="LeftShoulder", l_shoulder="LeftArm", l_elbow="LeftForeArm", l_wrist="LeftHand",
                      r_collar="RightShoulder", r_shoulder="RightArm", r_elbow="RightForeArm", r_wrist="RightHand"),
    "131_01.bvh": dict(root="Hips", l_hip="LeftHip", l_knee="LeftKnee", l_ankle="LeftAnkle", l_foot="LeftToe",
                       spine1="lowerback", spine2="Chest", spine3="Chest2", neck="Neck", head="Head",
                       l_collar="LeftCollar", l_shoulder="LeftShoulder", l_elbow="LeftElbow", l_wrist="LeftWrist",
                       r_collar="RightCollar", r_shoulder="RightShoulder", r_elbow="RightElbow", r_wrist="RightWrist"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_both_cmu_naming_styles_map_by_structure(name):
    bvh = parse_bvh(CMU / f"{name}.gz")
    assert len(bvh.names) == 31 and bvh.fps == 120.0
    jmap = {k: bvh.names[v] for k, v in auto_joint_map(bvh, np.broadcast_to(np.eye(3), (31, 3, 3))).items()}
    assert {k: jmap[k] for k in EXPECTED[name]} == EXPECTED[name]


def _embedded_body():
    try:
        from empose_smplh.model import EmbeddedBody
    except ImportError as exc:
        pytest.skip(f"the embedded body model is not available ({exc})")
    return EmbeddedBody()


class _Body:
    """A body model for the CMU tests and its FK joints, computed by the body model (not by retargeting)."""

    def __init__(self, kind):
        self.kind = kind
        self.model = StickBody() if kind == "double" else _embedded_body()

    def joints(self, m):
        if self.kind == "double":
            return fk(m.pose.astype(np.float64), m.betas, m.trans.astype(np.float64))[0]
        import torch

        from empose_framework.interfaces import BodyPose

        with torch.no_grad():
            pose = BodyPose(torch.from_numpy(m.pose), torch.from_numpy(m.betas)[None].expand(len(m), -1), torch.from_numpy(m.trans))
            return self.model.forward(pose, vertices=False).joints[:, :22].double().numpy()

    def rest(self, betas):
        betas = np.zeros(10, np.float32) + np.pad(np.asarray(betas, np.float32), (0, 10 - len(betas)))
        return self.joints(Motion("rest", np.zeros((1, 22, 3), np.float32), betas, np.zeros((1, 3), np.float32)))[0]


@pytest.fixture(scope="module", params=["double", "embedded"])
def cmu_motions(request):
    body = _Body(request.param)
    src = BVHMotions(path=str(CMU), body_model=body.model, betas=[1.0, -0.5])
    return src, {m.id: m for m in (src[i] for i in range(len(src)))}, body


def test_cmu_clips_load_at_60_fps_without_the_added_tpose(cmu_motions):
    src, motions, _ = cmu_motions
    assert src.ids == ["01_01.bvh", "131_01.bvh", "131_02.bvh"]
    # 01_01 starts with an added T-pose (dropped); the 131 clips start with captured motion (kept)
    assert len(motions["01_01.bvh"]) == math.ceil((2752 - 1) / 2)
    assert len(motions["131_01.bvh"]) == math.ceil(994 / 2) and len(motions["131_02.bvh"]) == math.ceil(1247 / 2)
    first = Rotation.from_rotvec(motions["01_01.bvh"].pose[0].astype(np.float64)).magnitude()
    assert first.max() > 0.3  # not the T-pose (all joints near identity)


def test_cmu_retargeted_bone_lengths_are_the_body_models(cmu_motions):
    _, motions, body = cmu_motions
    rest = body.rest([1.0, -0.5])
    want = np.linalg.norm(rest[1:] - rest[list(PARENTS[1:])], axis=-1)
    for m in motions.values():
        np.testing.assert_allclose(m.betas[:2], [1.0, -0.5])
        joints = body.joints(m)
        lengths = np.linalg.norm(joints[:, 1:] - joints[:, list(PARENTS[1:])], axis=-1)
        np.testing.assert_allclose(lengths, np.broadcast_to(want, lengths.shape), atol=1e-4)


def test_cmu_limb_directions_follow_the_capture(cmu_motions):
    """Each limb segment of the body points where the captured segment points (independent BVH FK)."""
    _, motions, body = cmu_motions
    pairs = {"131_01.bvh": [("l_hip", "l_knee", "LeftHip", "LeftKnee"), ("r_knee", "r_ankle", "RightKnee", "RightAnkle"),
                            ("l_shoulder", "l_elbow", "LeftShoulder", "LeftElbow"), ("r_elbow", "r_wrist", "RightElbow", "RightWrist")],
             "01_01.bvh": [("l_hip", "l_knee", "LeftUpLeg", "LeftLeg"), ("r_knee", "r_ankle", "RightLeg", "RightFoot"),
                           ("l_shoulder", "l_elbow", "LeftArm", "LeftForeArm"), ("r_elbow", "r_wrist", "RightForeArm", "RightHand")]}
    for clip, segs in pairs.items():
        names, pos = _cmu_positions(CMU / f"{clip}.gz")
        pos = pos[1::2] if clip == "01_01.bvh" else pos[::2]  # the 60 fps frames
        m = motions[clip]
        joints = body.joints(m)
        for a, b, ca, cb in segs:
            d_body = joints[:, SMPL.index(b)] - joints[:, SMPL.index(a)]
            d_cmu = pos[: len(m), names.index(cb)] - pos[: len(m), names.index(ca)]
            cos = np.sum(d_body * d_cmu, 1) / np.linalg.norm(d_body, axis=1) / np.linalg.norm(d_cmu, axis=1)
            assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 1.0, (clip, a, b)


@pytest.mark.parametrize("clip", ["131_01.bvh", "131_02.bvh"])
def test_cmu_walking_feet_stay_on_the_floor(cmu_motions, clip):
    """In standing frames (the lowest foot joint at rest, < 0.1 m/s) that joint is within 5 cm of the
    floor height of the first frames."""
    m = cmu_motions[1][clip]
    joints = cmu_motions[2].joints(m)
    feet = joints[:, [7, 8, 10, 11]]  # ankles and toes
    floor = feet[:30, :, 1].min()  # first half second
    low = feet[:, :, 1].argmin(1)
    speed = np.linalg.norm(np.gradient(feet, axis=0), axis=-1)[np.arange(len(m)), low] * 60
    standing = speed < 0.1
    assert standing.mean() > 0.3  # the clip does stand and step
    height = feet[np.arange(len(m)), low, 1]
    assert np.abs(height[standing] - floor).max() < 0.05
    steps = np.linalg.norm(m.trans[-1, [0, 2]] - m.trans[0, [0, 2]])
    assert steps > 1.0  # it walks somewhere
