"""empose_recordings: small files written in the exact §5 layout, normalisation (§5.4) checked against
independent numpy/scipy computations, masks, subject/hold-out selection, and bad data."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from em_doubles import (
    ListMotions,
    TinyBody,
    normalise_reference,
    random_motion,
    random_offsets,
    reference_sensors,
    reference_skin,
    write_offsets,
    write_recording,
)  # fmt: skip
from empose_em.recordings import EMPoseRecordings
from empose_em.sensor_sets import EM6, EM12
from empose_em.virtual import VirtualEM
from empose_framework.errors import DataError, EmposeError
from empose_framework.interfaces import BodyPose, SensorOffsets

# (folder, subject, task, frames); file names sort as 0402_arms < 0402_walking < 0526_sitting
SEQUENCES = [("", "0526", "sitting", 30), ("", "0402", "walking", 45), ("", "0402", "arms", 37),
             ("hold_out", "0715", "lunges", 28)]  # fmt: skip


@pytest.fixture(scope="module")
def body():
    return TinyBody(n_betas=10)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, body):
    """A data root in the §5.1 layout; returns (root, {seq_id: ground-truth dict})."""
    root = tmp_path_factory.mktemp("em_real")
    (root / "hold_out").mkdir()
    rng = np.random.default_rng(5)
    truth = {}
    for folder, subject, task, n in SEQUENCES:
        means, covs, r = random_offsets(rng)
        write_offsets(root / folder / f"{subject}_offsets.npz", means, covs, r)
        m = random_motion(rng, n, n_betas=10)
        pose = BodyPose(torch.as_tensor(m.pose), torch.as_tensor(m.betas), torch.as_tensor(m.trans))
        pos, ori = body.sensor_frames(pose, EM12, SensorOffsets(torch.as_tensor(means).float(), torch.as_tensor(r).float()))
        pos, ori = pos.numpy().astype(np.float64), ori.numpy().astype(np.float64)
        masks = rng.random((n, 12)) > 0.08
        masks[:3] = True
        pos[~masks] = 0.0  # what a missing reading looks like in a file
        seq_id = f"{subject}_{task}_M"
        write_recording(root / folder / f"{seq_id}_clean.npz", seq_id, pos, ori, masks, m.pose.reshape(n, 66),
                        m.betas, m.trans, means, covs, r)  # fmt: skip
        truth[seq_id] = dict(pose=m.pose.astype(np.float64), betas=m.betas.astype(np.float64), trans=m.trans,
                             pos=pos, ori=ori, masks=masks, means=means, r=r)  # fmt: skip
    return root, truth


def _copy(dataset, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(dataset[0], root)
    return root


def test_layout_sorting_subjects_and_hold_out(body, dataset):
    root, _ = dataset
    src = EMPoseRecordings(path=str(root), body_model=body)
    ids = [b.ids[0] for b in src.sequences()]
    assert ids == ["0402_arms_M", "0402_walking_M", "0526_sitting_M"]  # sorted file names, no hold-out
    assert [b.ids[0] for b in EMPoseRecordings(path=str(root), subjects=["0526"], body_model=body).sequences()] == ["0526_sitting_M"]
    # YAML reads an unquoted 0402 as a number (PyYAML even as octal 258): both spellings find '0402'
    for value in (402, 258):
        assert len(EMPoseRecordings(path=str(root), subjects=[value], body_model=body)) == 2
    with pytest.raises(DataError, match="subject '9999' not found; the data holds subjects 0402, 0526"):
        EMPoseRecordings(path=str(root), subjects=["9999"], body_model=body)
    held = EMPoseRecordings(path=str(root), hold_out=True, body_model=body)
    assert [b.ids[0] for b in held.sequences()] == ["0715_lunges_M"]


def test_consistent_normalisation_puts_sensors_on_the_normalised_body(body, dataset):
    root, truth = dataset
    src = EMPoseRecordings(path=str(root), normalisation="consistent", body_model=body)
    for b in src.sequences():
        g = truth[b.ids[0]]
        pose = normalise_reference(g["pose"])
        verts = reference_skin(body, pose, g["betas"], None)
        pos, ori = reference_sensors(body, verts, EM12, g["means"], g["r"])
        m = g["masks"]
        np.testing.assert_allclose(b.sensors.pos[0].numpy()[m], pos[m], atol=3e-5)
        np.testing.assert_allclose(b.sensors.ori[0].numpy()[m], ori[m], atol=3e-4)
        got_root = Rotation.from_rotvec(b.target.pose[0, :, 0].numpy()).as_matrix()
        np.testing.assert_allclose(got_root, Rotation.from_rotvec(pose[:, 0]).as_matrix(), atol=1e-5)
        np.testing.assert_allclose(b.target.pose[0, :, 1:].numpy(), pose[:, 1:], atol=1e-6)
        assert b.target.trans.abs().max() == 0 and b.target.pose.shape[-2] == body.n_pose_joints


def test_original_normalisation_formula(body, dataset):
    root, truth = dataset
    src = EMPoseRecordings(path=str(root), body_model=body)
    for b in src.sequences():
        g = truth[b.ids[0]]
        r0t = Rotation.from_rotvec(g["pose"][0, 0]).as_matrix().T
        want_pos = np.einsum("ab,fsb->fsa", r0t, g["pos"] - g["trans"][:, None])  # R0^T (s - t_f)
        want_ori = np.einsum("ab,fsbc->fsac", r0t, g["ori"])
        m = g["masks"]
        np.testing.assert_allclose(b.sensors.pos[0].numpy()[m], want_pos[m], atol=2e-5)
        np.testing.assert_allclose(b.sensors.ori[0].numpy()[m], want_ori[m], atol=2e-5)
        np.testing.assert_allclose(b.offsets.t[0].numpy(), g["means"], atol=1e-7)
        np.testing.assert_allclose(b.offsets.r[0].numpy(), g["r"], atol=1e-6)
        np.testing.assert_allclose(b.target.betas[0].numpy(), g["betas"], atol=1e-6)


def test_masks_and_six_sensor_frame_exclusion(body, dataset):
    root, truth = dataset
    src = EMPoseRecordings(path=str(root), sensors="em6", body_model=body)
    idx = [EM12.index(n) for n in EM6]
    for b in src.sequences():
        m = truth[b.ids[0]]["masks"]
        assert b.sensors.names == EM6
        np.testing.assert_array_equal(b.sensors.valid[0].numpy(), m[:, idx])
        assert (b.sensors.pos[0][~b.sensors.valid[0]] == 0).all() and (b.sensors.ori[0][~b.sensors.valid[0]] == 0).all()
        # metric frames: all 12 sensors valid, even though only 6 are read (§13 item 6)
        np.testing.assert_array_equal(b.frame_mask()[0].numpy(), m.all(1))
        assert (m[:, idx].all(1) & ~m.all(1)).any()  # the data do exercise the difference
        assert b.offsets.t.shape == (1, 6, 3)


def test_windows_middle_crop_normalised_on_its_first_frame(body, dataset):
    root, truth = dataset
    src = EMPoseRecordings(path=str(root), body_model=body)
    w = 16
    batches = list(src.windows(2, w, train=False, seed=0))
    again = list(src.windows(2, w, train=False, seed=9))
    assert all(torch.equal(a.sensors.pos, c.sensors.pos) for a, c in zip(batches, again))
    b = batches[0]
    for e, sid in enumerate(b.ids):
        g = truth[sid]
        n = len(g["pose"])
        a = n // 2 - w // 2
        r0t = Rotation.from_rotvec(g["pose"][a, 0]).as_matrix().T
        want = np.einsum("ab,fsb->fsa", r0t, g["pos"][a : a + w] - g["trans"][a : a + w, None])
        m = g["masks"][a : a + w]
        np.testing.assert_allclose(b.sensors.pos[e].numpy()[m], want[m], atol=2e-5)
        np.testing.assert_array_equal(b.frame_mask()[e].numpy(), m.all(1))
    train = list(src.windows(3, w, train=True, seed=1))
    assert sorted(train[0].ids) == ["0402_arms_M", "0402_walking_M", "0526_sitting_M"]


def test_virtual_em_reads_the_per_subject_offsets_files(body, dataset):
    root, truth = dataset
    rng = np.random.default_rng(0)
    motions = ListMotions([random_motion(rng, 10, n_betas=10)])
    src = VirtualEM(motions=motions, offsets=str(root), body_model=body)
    assert src.offsets.subjects == ("0402", "0526")  # top-level files only: hold_out/0715 is not read
    np.testing.assert_allclose(src.offsets.means[0], truth["0402_arms_M"]["means"])  # written last for 0402
    np.testing.assert_allclose(src.offsets.means[1], truth["0526_sitting_M"]["means"])


def test_missing_root_and_env(body, dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("EM_DATA_REAL", raising=False)
    with pytest.raises(EmposeError, match="environment variable EM_DATA_REAL, which is not set"):
        EMPoseRecordings(body_model=body)
    monkeypatch.setenv("EM_DATA_REAL", str(tmp_path / "missing"))
    with pytest.raises(DataError, match=f"folder {tmp_path / 'missing'} \\(from the environment variable EM_DATA_REAL\\) does not exist"):
        EMPoseRecordings(body_model=body)
    monkeypatch.setenv("EM_DATA_REAL", str(dataset[0]))
    assert len(EMPoseRecordings(body_model=body)) == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no \\*_clean.npz sequence files in"):
        EMPoseRecordings(path=str(tmp_path / "empty"), body_model=body)
    with pytest.raises(DataError, match="hold_out does not exist"):
        EMPoseRecordings(path=str(tmp_path / "empty"), hold_out=True, body_model=body)
    with pytest.raises(EmposeError, match="sensor sites \\['nose'\\]"):
        EMPoseRecordings(path=str(dataset[0]), sensors=["nose"], body_model=body)


def _rewrite(path, **changes):
    with np.load(path) as f:
        data = {k: f[k] for k in f.files}
    for k, v in changes.items():
        if v is None:
            del data[k]
        else:
            data[k] = v
    np.savez(path, **data)


def test_truncated_and_malformed_files(body, dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    f = root / "0402_walking_M_clean.npz"
    good = f.read_bytes()
    f.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="0402_walking_M_clean.npz.*truncated or corrupt"):
        EMPoseRecordings(path=str(root), body_model=body)
    f.write_bytes(good)
    _rewrite(f, smpl_trans=None)
    with pytest.raises(DataError, match="0402_walking_M_clean.npz: missing key 'smpl_trans'"):
        EMPoseRecordings(path=str(root), body_model=body)
    f.write_bytes(good)
    with np.load(f) as g:
        poses = g["smpl_poses"]
    _rewrite(f, smpl_poses=poses[:, :63])
    with pytest.raises(DataError, match="key 'smpl_poses' has shape \\(45, 63\\), expected \\(F, 66\\)"):
        EMPoseRecordings(path=str(root), body_model=body)
    f.write_bytes(good)
    with np.load(f) as g:
        masks = g["sensor_masks"]
    _rewrite(f, sensor_masks=masks.astype(np.float32))
    with pytest.raises(DataError, match="'sensor_masks' has dtype float32, expected bool"):
        EMPoseRecordings(path=str(root), body_model=body)
    f.write_bytes(good)
    _rewrite(f, id=np.array("0402_walking_M", dtype=object))  # a pickled id (older numpy writers)
    assert "0402_walking_M" in [b.ids[0] for b in EMPoseRecordings(path=str(root), body_model=body).sequences()]


def test_nonfinite_readings(body, dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    f = root / "0526_sitting_M_clean.npz"
    with np.load(f) as g:
        pos, masks, poses = g["sensor_pos"].copy(), g["sensor_masks"], g["smpl_poses"].copy()
    pos[12, 4, 1] = np.nan
    pos[20, 7, 0] = np.inf
    masks = masks.copy()
    masks[12, 4] = masks[20, 7] = True
    pos[5, 2] = np.nan  # NaN where the file marks the sensor missing is not an error
    masks[5, 2] = False
    _rewrite(f, sensor_pos=pos, sensor_masks=masks)
    expected = "0526_sitting_M_clean.npz: sequence '0526_sitting_M' has NaN or inf .* frame 12 \\(sensor 4, 'r_shoulder'; 2 readings"
    with pytest.raises(DataError, match=expected):
        EMPoseRecordings(path=str(root), body_model=body)
    src = EMPoseRecordings(path=str(root), subjects=["0526"], nonfinite="mask", body_model=body)
    b = next(src.sequences())
    assert not b.sensors.valid[0, 12, 4] and not b.sensors.valid[0, 20, 7] and not b.sensors.valid[0, 5, 2]
    assert torch.isfinite(b.sensors.pos).all() and torch.isfinite(b.sensors.ori).all()
    assert not b.frame_mask()[0, 12] and not b.frame_mask()[0, 20]
    poses[9, 30] = np.nan
    _rewrite(f, smpl_poses=poses)
    with pytest.raises(DataError, match="sequence '0526_sitting_M' has NaN or inf in the ground truth 'smpl_poses' at frame 9"):
        EMPoseRecordings(path=str(root), nonfinite="mask", body_model=body)
