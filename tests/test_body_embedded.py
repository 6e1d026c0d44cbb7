"""The embedded body: a closed, outward-oriented, human-proportioned mesh with a working shape space
and sensor sites, loaded through the same npz path as SMPL-H; plus the sensor fast path's agreement
with the full mesh (values and gradients) and the batching rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from empose_framework.interfaces import BodyPose, SensorOffsets
from empose_smplh import embedded
from empose_smplh.constants import JOINT_NAMES, PARENTS, SENSOR_SITE_NAMES
from empose_smplh.model import EmbeddedBody
from empose_smplh.npz import REQUIRED_KEYS, load_model_npz
from empose_smplh.render import random_pose

J = {n: i for i, n in enumerate(JOINT_NAMES)}


@pytest.fixture(scope="module")
def body():
    return EmbeddedBody(n_betas=16)


def rest(body, betas=None):
    b = torch.zeros(1, body.n_betas) if betas is None else torch.as_tensor(betas, dtype=torch.float32)[None]
    out = body.forward(BodyPose(torch.zeros(1, 22, 3), b))
    return out.joints[0].numpy().astype(np.float64), out.vertices[0].numpy().astype(np.float64)


def test_same_layout_and_tree_as_smplh(body):
    arrays = load_model_npz(embedded.embedded_model_path())
    assert set(REQUIRED_KEYS) <= set(arrays)
    n_v = arrays["v_template"].shape[0]
    assert 1000 <= n_v <= 7000
    assert arrays["posedirs"].shape == (n_v, 3, 459) and arrays["J_regressor"].shape == (52, n_v)
    assert arrays["shapedirs"].shape[2] >= 10
    assert tuple(body.parents) == PARENTS and tuple(body.joint_names) == JOINT_NAMES
    assert list(body.sensor_sites) == list(SENSOR_SITE_NAMES)
    assert body.n_pose_joints == 22
    np.testing.assert_allclose(arrays["weights"].sum(1), 1.0, atol=1e-9)


def test_generation_is_deterministic_and_cached_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv(embedded.CACHE_ENV, str(tmp_path))
    path = embedded.embedded_model_path()
    assert path.parent == tmp_path and path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    again = embedded.generate()
    stored = np.load(path)
    for key in REQUIRED_KEYS:
        np.testing.assert_array_equal(stored[key], again[key])


def test_mesh_is_closed_and_outward(body):
    faces = body.faces.numpy()
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    directed = {tuple(e) for e in edges.tolist()}
    assert len(directed) == len(edges)  # no directed edge twice: consistently oriented, edge-manifold
    assert all((b, a) in directed for a, b in directed)  # every edge has its twin: closed
    _, verts = rest(body)
    v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    volume = np.einsum("ij,ij->i", v0, np.cross(v1, v2)).sum() / 6
    assert 0.045 < volume < 0.11  # m^3: positive (outward normals), 45-110 kg at water density
    # vertex normals point outward: a vertex pushed along its normal gets further from the skeleton
    fn = np.cross(v1 - v0, v2 - v0)
    vn = np.zeros_like(verts)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    vn /= np.linalg.norm(vn, axis=1, keepdims=True)
    joints, _ = rest(body)
    d_in = _skeleton_distance(verts, joints)
    d_out = _skeleton_distance(verts + 0.005 * vn, joints)
    assert (d_out > d_in).mean() > 0.97


def _bones(joints):
    return [(joints[p], joints[j]) for j, p in enumerate(PARENTS[:22]) if p >= 0]


def _skeleton_distance(points, joints, return_closest=False):
    best = np.full(len(points), np.inf)
    closest = np.zeros_like(points)
    for a, b in _bones(joints):
        ab = b - a
        t = np.clip((points - a) @ ab / (ab @ ab), 0, 1)
        q = a + t[:, None] * ab
        d = np.linalg.norm(points - q, axis=1)
        better = d < best
        best[better], closest[better] = d[better], q[better]
    return (best, closest) if return_closest else best


def test_rest_pose_proportions(body):
    joints, verts = rest(body)
    y = lambda n: joints[J[n]][1]  # noqa: E731
    height = np.ptp(verts[:, 1])
    assert 1.6 < height < 1.85
    assert verts[:, 1].max() > y("head") > y("neck") > max(y("left_shoulder"), y("right_shoulder"))
    assert min(y("left_shoulder"), y("right_shoulder")) > y("pelvis")
    assert y("pelvis") > max(y("left_knee"), y("right_knee"))
    assert min(y("left_knee"), y("right_knee")) > max(y("left_ankle"), y("right_ankle"))
    span = np.ptp(verts[:, 0])
    assert abs(span / height - 1) < 0.15
    # SMPL-H orientation: y up, facing +z (toes in front of the heels), the body's left on +x
    assert joints[J["left_foot"]][2] > joints[J["left_ankle"]][2]
    assert joints[J["left_wrist"]][0] > 0.5 > -0.5 > joints[J["right_wrist"]][0]
    # hands: 15 joints each, lying along the hand beyond the wrist
    for side, sign in (("left", 1), ("right", -1)):
        wrist = joints[J[f"{side}_wrist"]][0] * sign
        fingers = [joints[J[n]][0] * sign for n in JOINT_NAMES if n.startswith(f"{side}_") and n[-1] in "123"]
        assert len(fingers) == 15 and min(fingers) > wrist and max(fingers) < wrist + 0.2


def _limb_lengths(joints):
    """Length of every bone of the 52-joint tree (hands included)."""
    return np.array([np.linalg.norm(joints[j] - joints[p]) for j, p in enumerate(PARENTS) if p >= 0])


@pytest.mark.parametrize("k", range(16))
def test_each_shape_component_changes_height_or_limbs_smoothly(body, k):
    steps = np.linspace(-3, 3, 7)
    heights, spans, limbs = [], [], []
    for s in steps:
        betas = np.zeros(body.n_betas)
        betas[k] = s
        joints, verts = rest(body, betas)
        heights.append(np.ptp(verts[:, 1]))
        spans.append(np.ptp(verts[:, 0]))
        limbs.append(_limb_lengths(joints))
    q = np.column_stack([heights, spans, np.array(limbs)])  # (7, 2 + 51): height, arm span, bones
    change = q[-1] - q[0]
    assert np.abs(change).max() > 0.01  # at least 1 cm of height, arm span or a bone over +-3 sd
    i = int(np.argmax(np.abs(change)))
    d = np.diff(q[:, i])
    assert np.all(d * np.sign(change[i]) > 0)  # monotonic
    assert np.abs(np.diff(d)).max() < 0.35 * np.abs(d).mean()  # smooth: nearly even steps
    assert 1.45 < min(heights) and max(heights) < 2.05  # plausible adults at +-3 sd
    # the mesh stays plausible: arm span within 20 % of height at the extremes
    for s in (-3, 3):
        betas = np.zeros(body.n_betas)
        betas[k] = s
        _, verts = rest(body, betas)
        assert abs(np.ptp(verts[:, 0]) / np.ptp(verts[:, 1]) - 1) < 0.2


def test_sensor_z_axes_point_away_from_nearest_bone(body):
    sites = list(SENSOR_SITE_NAMES)
    poses = [np.zeros((22, 3))] + [random_pose(22, s) for s in range(4)]
    pose = torch.tensor(np.stack(poses), dtype=torch.float32)
    betas = torch.tensor(np.random.default_rng(0).normal(size=(5, body.n_betas)), dtype=torch.float32)
    out = body.forward(BodyPose(pose, betas), vertices=False)
    pos, rot = body.sensor_frames(BodyPose(pose, betas), sites)
    for b in range(len(poses)):
        joints = out.joints[b].numpy().astype(np.float64)
        p = pos[b].numpy().astype(np.float64)
        _, closest = _skeleton_distance(p, joints, return_closest=True)
        away = (p - closest) / np.linalg.norm(p - closest, axis=1, keepdims=True)
        cos = np.einsum("sc,sc->s", rot[b, :, :, 2].numpy(), away)
        assert (cos > 0.5).all(), dict(zip(sites, cos.round(2)))


def test_sensor_sites_sit_at_the_anatomical_places(body):
    joints, verts = rest(body)
    site = {n: verts[v] for n, v in body.sensor_sites.items()}
    x = lambda n: site[n][0]  # noqa: E731
    # left sites on +x, right on -x, mirror images of each other
    for name in ("forearm", "upper_arm", "shoulder", "thigh", "shank"):
        assert x(f"l_{name}") > 0 > x(f"r_{name}")
        np.testing.assert_allclose(site[f"l_{name}"] * [-1, 1, 1], site[f"r_{name}"], atol=0.03)
    jy = lambda n: joints[J[n]][1]  # noqa: E731
    jx = lambda n: joints[J[n]][0]  # noqa: E731
    assert jx("left_elbow") < x("l_forearm") < jx("left_wrist")
    assert jx("left_shoulder") < x("l_upper_arm") < jx("left_elbow")
    assert jy("left_knee") < site["l_thigh"][1] < jy("left_hip")
    assert jy("left_ankle") < site["l_shank"][1] < jy("left_knee")
    assert site["back"][2] < joints[J["pelvis"]][2] and jy("pelvis") - 0.05 < site["back"][1] < jy("spine2")
    assert site["head"][1] > jy("head")
    assert site["l_shoulder"][1] > jy("left_shoulder")


def test_fast_path_agrees_with_full_mesh_values_and_gradients(body):
    rng = np.random.default_rng(3)
    pose = torch.tensor(np.stack([random_pose(22, s) for s in range(6)]).reshape(2, 3, 22, 3), dtype=torch.float32)
    pose.requires_grad_(True)
    betas = torch.tensor(rng.normal(size=(2, body.n_betas)), dtype=torch.float32, requires_grad=True)
    trans = torch.tensor(rng.normal(size=(2, 3, 3)), dtype=torch.float32)
    offsets = SensorOffsets(
        torch.tensor(rng.normal(size=(2, 12, 3)) * 0.02, dtype=torch.float32),
        torch.tensor(Rotation.random(24, random_state=1).as_matrix().reshape(2, 12, 3, 3), dtype=torch.float32),
    )
    bp = BodyPose(pose, betas, trans)
    fast = body.sensor_frames(bp, SENSOR_SITE_NAMES, offsets)
    full = body.sensor_frames(bp, SENSOR_SITE_NAMES, offsets, full_mesh=True)
    assert fast[0].shape == (2, 3, 12, 3) and fast[1].shape == (2, 3, 12, 3, 3)
    assert (fast[0] - full[0]).abs().max() < 1e-5
    rel = fast[1].transpose(-1, -2) @ full[1]
    ang = Rotation.from_matrix(rel.detach().reshape(-1, 3, 3).double().numpy()).magnitude()
    assert ang.max() < 1e-5
    w_p, w_r = torch.randn_like(fast[0]), torch.randn_like(fast[1])
    g_fast = torch.autograd.grad((fast[0] * w_p).sum() + (fast[1] * w_r).sum(), (pose, betas))
    g_full = torch.autograd.grad((full[0] * w_p).sum() + (full[1] * w_r).sum(), (pose, betas))
    for a, b in zip(g_fast, g_full):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-3)


def test_offsets_follow_the_skin_frame(body):
    bp = BodyPose(torch.tensor(random_pose(22, 7), dtype=torch.float32)[None], torch.zeros(1, body.n_betas))
    p0, r0 = body.sensor_frames(bp, ["head", "l_shank"])
    t = torch.tensor([[[0.01, 0.02, 0.03], [0.0, 0.0, 0.05]]])
    r = torch.tensor(Rotation.from_rotvec([[0.3, 0, 0], [0, 0, 1.0]]).as_matrix(), dtype=torch.float32)[None]
    p1, r1 = body.sensor_frames(bp, ["head", "l_shank"], SensorOffsets(t, r))
    torch.testing.assert_close(p1, p0 + (r0 @ t[..., None])[..., 0])
    torch.testing.assert_close(r1, r0 @ r)
    # a pure normal offset moves the sensor straight out of the skin
    torch.testing.assert_close((p1 - p0)[0, 1], 0.05 * r0[0, 1, :, 2])


def test_betas_per_sequence_equal_betas_per_frame(body):
    pose = torch.tensor(np.stack([random_pose(22, s) for s in range(6)]).reshape(2, 3, 22, 3), dtype=torch.float32)
    betas = torch.randn(2, 10)
    a = body.sensor_frames(BodyPose(pose, betas), ["back", "head"])
    b = body.sensor_frames(BodyPose(pose, betas[:, None].expand(2, 3, 10)), ["back", "head"])
    torch.testing.assert_close(a, b)
    out = body.forward(BodyPose(pose, betas), vertices=False)
    assert out.joints.shape == (2, 3, 52, 3) and out.vertices is None
    # fewer betas than the model uses are zero-padded, more are cut (docs/method.md §3.1)
    c = body.forward(BodyPose(pose, torch.cat([betas, torch.zeros(2, 6)], 1)), vertices=False)
    d = body.forward(BodyPose(pose, torch.cat([betas, torch.zeros(2, 6), torch.ones(2, 4)], 1)), vertices=False)
    torch.testing.assert_close(out.joints, c.joints)
    torch.testing.assert_close(out.joints, d.joints)


def test_damaged_cache_is_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv(embedded.CACHE_ENV, str(tmp_path))
    path = embedded.embedded_model_path()
    path.write_bytes(path.read_bytes()[:1000])
    body = EmbeddedBody()
    assert body.n_vertices > 1000 and np.load(path)["v_template"].shape[0] == body.n_vertices
