"""The shared SMPL-H code path on a file in the exact licensed layout (random but valid arrays):
loading, errors, forward kinematics against chained 4x4 transforms in numpy, and the sparse sensor
path against full-mesh vertex normals computed in numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from empose_framework.errors import DataError, EmposeError
from empose_framework.interfaces import BodyPose
from empose_smplh.constants import PARENTS, SENSOR_SITE_NAMES, SMPLH_SENSOR_VERTICES
from empose_smplh.model import SMPLH

V, F, NJ, KS = 6890, 13776, 52, 16


def licensed_layout_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays shaped like the AMASS neutral SMPL-H model.npz (dtypes as in that file)."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(V, 3)) * [0.3, 0.6, 0.15]
    # faces: every vertex in some face; the site vertices in several
    faces = np.stack([rng.permutation(V) for _ in range(3)], 1)
    faces = np.concatenate([faces, rng.integers(0, V, size=(F - V, 3))])
    bad = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    faces[bad] = [0, 1, 2]
    weights = np.zeros((V, NJ))
    for i in range(V):
        js = rng.choice(NJ, size=4, replace=False)
        weights[i, js] = rng.dirichlet(np.ones(4))
    j_reg = rng.random((NJ, V)) * (rng.random((NJ, V)) < 0.01)
    j_reg /= j_reg.sum(1, keepdims=True)
    kintree = np.stack([np.array(PARENTS, dtype=np.int64), np.arange(NJ)]).astype(np.uint32)
    kintree[0, 0] = 4294967295  # how the file stores "no parent"
    return {
        "v_template": v,
        "f": faces.astype(np.uint32),
        "shapedirs": rng.normal(size=(V, 3, KS)) * 0.01,
        "posedirs": rng.normal(size=(V, 3, 9 * (NJ - 1))) * 0.002,
        "J_regressor": j_reg,
        "weights": weights,
        "kintree_table": kintree,
        "bs_style": np.array("lbs"),  # extra keys present in the real file are ignored
    }


@pytest.fixture(scope="module")
def layout_file(tmp_path_factory):
    arrays = licensed_layout_arrays()
    path = tmp_path_factory.mktemp("smplh") / "model.npz"
    np.savez(path, **arrays)
    return path, arrays


@pytest.fixture(scope="module")
def model(layout_file):
    return SMPLH(path=str(layout_file[0]))


# ------------------------------------------------------------------------------ numpy reference


def numpy_fk(a, pose, betas, trans, n_betas=10):
    """SMPL-H forward kinematics in float64 numpy with explicit 4x4 chains (docs/method.md §3.1)."""
    parents = list(PARENTS)
    full = np.zeros((NJ, 3))
    full[: len(pose)] = pose
    rots = Rotation.from_rotvec(full).as_matrix()
    v_shaped = a["v_template"] + a["shapedirs"][:, :, :n_betas] @ betas
    joints = a["J_regressor"] @ v_shaped
    feat = (rots[1:] - np.eye(3)).reshape(-1)
    v_posed = v_shaped + (a["posedirs"].reshape(V * 3, -1) @ feat).reshape(V, 3)
    g = np.zeros((NJ, 4, 4))
    for j in range(NJ):
        local = np.eye(4)
        local[:3, :3] = rots[j]
        local[:3, 3] = joints[j] - (joints[parents[j]] if j else 0)
        g[j] = local if j == 0 else g[parents[j]] @ local
    skin = g.copy()
    skin[:, :3, 3] -= np.einsum("jab,jb->ja", g[:, :3, :3], joints)  # move rest joints to the origin first
    tr = np.einsum("vj,jab->vab", a["weights"], skin)
    verts = np.einsum("vab,vb->va", tr[:, :3, :3], v_posed) + tr[:, :3, 3] + trans
    return g[:, :3, 3] + trans, g[:, :3, :3], verts


def numpy_frames(verts, faces, vertex_ids):
    """Sensor frames per docs/method.md §4 from full-mesh vertex normals."""
    fn = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    vn = np.zeros_like(verts)
    np.add.at(vn, faces[:, 0], fn)
    np.add.at(vn, faces[:, 1], fn)
    np.add.at(vn, faces[:, 2], fn)
    pos, rot = [], []
    for v in vertex_ids:
        face = faces[np.nonzero((faces == v).any(1))[0].max()]
        h = next(u for u in face if u != v)
        z = vn[v] / np.linalg.norm(vn[v])
        u = (verts[h] - verts[v]) / np.linalg.norm(verts[h] - verts[v])
        y = np.cross(z, u)
        y /= np.linalg.norm(y)
        x = np.cross(y, z)
        pos.append(verts[v])
        rot.append(np.stack([x / np.linalg.norm(x), y, z], 1))
    return np.array(pos), np.array(rot)


def angle(r1, r2):
    rel = np.swapaxes(r1, -1, -2) @ r2
    return np.abs(Rotation.from_matrix(rel.reshape(-1, 3, 3)).magnitude())


# ------------------------------------------------------------------------------ tests


def test_licensed_layout_loads_with_smplh_facts(model):
    assert model.n_joints == 52 and model.n_pose_joints == 22 and model.n_betas == 10
    assert tuple(model.parents) == PARENTS
    assert model.joint_names[0] == "pelvis" and model.joint_names[21] == "right_wrist"
    assert model.faces.shape == (F, 3) and model.faces.dtype == torch.long
    assert list(model.sensor_sites) == list(SENSOR_SITE_NAMES)
    assert list(model.sensor_sites.values()) == list(SMPLH_SENSOR_VERTICES)


@pytest.mark.parametrize("n_pose", [22, 52])
def test_forward_matches_numpy_chain(layout_file, model, n_pose):
    _, a = layout_file
    rng = np.random.default_rng(n_pose)
    pose = rng.normal(size=(3, n_pose, 3)) * 0.5
    betas = rng.normal(size=(3, 10))
    trans = rng.normal(size=(3, 3))
    out = model.forward(BodyPose(torch.tensor(pose), torch.tensor(betas), torch.tensor(trans)))
    assert out.joints.dtype == torch.float32
    for b in range(3):
        joints, grot, verts = numpy_fk(a, pose[b], betas[b], trans[b])
        np.testing.assert_allclose(out.joints[b].numpy(), joints, atol=2e-5)
        np.testing.assert_allclose(out.global_rot[b].numpy(), grot, atol=2e-6)
        np.testing.assert_allclose(out.vertices[b].numpy(), verts, atol=2e-5)


def test_flat_hands_equal_zero_hand_pose(model):
    pose = torch.randn(2, 22, 3) * 0.4
    betas = torch.randn(2, 10)
    a = model.forward(BodyPose(pose, betas))
    b = model.forward(BodyPose(torch.cat([pose, torch.zeros(2, 30, 3)], 1), betas))
    torch.testing.assert_close(a.vertices, b.vertices, atol=1e-6, rtol=0)


def test_sparse_sensor_path_matches_full_mesh_numpy(layout_file, model):
    _, a = layout_file
    rng = np.random.default_rng(5)
    pose = rng.normal(size=(2, 22, 3)) * 0.5
    betas = rng.normal(size=(2, 10))
    bp = BodyPose(torch.tensor(pose), torch.tensor(betas))
    pos, rot = model.sensor_frames(bp, SENSOR_SITE_NAMES)
    faces = a["f"].astype(np.int64)
    for b in range(2):
        _, _, verts = numpy_fk(a, pose[b], betas[b], np.zeros(3))
        p_ref, r_ref = numpy_frames(verts, faces, SMPLH_SENSOR_VERTICES)
        assert np.abs(pos[b].numpy() - p_ref).max() < 1e-5
        assert angle(rot[b].numpy(), r_ref).max() < 1e-5


def test_error_missing_file_explains_where_to_get_it(tmp_path):
    with pytest.raises(DataError) as err:
        SMPLH(path=str(tmp_path / "nowhere" / "model.npz"))
    msg = str(err.value)
    for needle in ("SMPL_MODELS", "nowhere/model.npz", "Extended SMPL+H", "mano", "body_model: {use: embedded}"):
        assert needle.lower() in msg.lower()
    assert "\n" not in msg


def test_error_unset_env_names_variable(monkeypatch):
    monkeypatch.delenv("SMPL_MODELS", raising=False)
    with pytest.raises(EmposeError, match=r"SMPL_MODELS.*not set.*embedded"):
        SMPLH()


def test_default_path_expands_env(monkeypatch, tmp_path, layout_file):
    target = tmp_path / "smplh_amass" / "neutral"
    target.mkdir(parents=True)
    (target / "model.npz").symlink_to(layout_file[0])
    monkeypatch.setenv("SMPL_MODELS", str(tmp_path))
    assert SMPLH(n_betas=16).n_betas == 16


def test_error_wrong_layout_names_missing_key(tmp_path, layout_file):
    arrays = dict(licensed_layout_arrays(1))
    del arrays["weights"]
    path = tmp_path / "model.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=r"key 'weights' is missing"):
        SMPLH(path=str(path))
    arrays = dict(licensed_layout_arrays(1))
    arrays["posedirs"] = arrays["posedirs"][:, :, :207]  # an SMPL (24-joint) pose basis
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=r"'posedirs' has shape \(6890, 3, 207\), expected \(6890, 3, 459\)"):
        SMPLH(path=str(path))


def test_error_corrupt_file(tmp_path, layout_file):
    path = tmp_path / "model.npz"
    path.write_bytes(layout_file[0].read_bytes()[:5000])
    with pytest.raises(DataError, match=r"truncated or corrupt"):
        SMPLH(path=str(path))


def test_bad_inputs_are_explained(model):
    with pytest.raises(EmposeError, match=r"expected \(\.\.\., J, 3\).*22.*52"):
        model.forward(BodyPose(torch.zeros(2, 24, 3), torch.zeros(2, 10)))
    with pytest.raises(EmposeError, match=r"betas has shape \(3, 10\)"):
        model.forward(BodyPose(torch.zeros(2, 5, 22, 3), torch.zeros(3, 10)))
    with pytest.raises(EmposeError, match=r"no sensor site 'elbow'"):
        model.sensor_frames(BodyPose(torch.zeros(1, 22, 3), torch.zeros(1, 10)), ["head", "elbow"])
    with pytest.raises(EmposeError, match=r"n_betas=20"):
        type(model)(path=model.source, n_betas=20)
