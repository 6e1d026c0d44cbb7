"""Real-motion training pieces: subject-wise splits, per-clip random shapes, random headings, the shipped
CMU clips (gzipped BVH), and the CMU corpus through the user's path (skipped when it is absent)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from scipy.spatial.transform import Rotation

from em_doubles import ListMotions, TinyBody, random_motion
from empose_em.virtual import VirtualEM, heading_angles
from empose_motion import lmdb_store
from empose_motion.bvh import CMU_CLIPS, BVHMotions, CMUClips
from empose_motion.layout import select_ids, split_of
from empose_motion.lmdb_source import AmassLMDB
from empose_motion.preprocess import run_preprocess
from motion_body_double import StickBody

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("EMPOSE_CMU_AMASS", REPO.parent / "shared" / "data" / "cmu-amass"))
BVH_DIR = Path(os.environ.get("EMPOSE_CMU_DIR", REPO.parent / "shared" / "data" / "cmu"))


def test_folder_split_keeps_each_subject_in_one_split():
    ids = [f"CMU/{s:02d}/{s:02d}_{t:02d}_poses.npz" for s in range(1, 60) for t in range(1, 6)]
    parts = {sp: select_ids(ids, sp, None, None, "test", split_by="folder") for sp in ("train", "valid", "test")}
    assert sorted(i for p in parts.values() for i in p) == list(range(len(ids)))  # a partition
    subjects = {sp: {ids[i].split("/")[1] for i in p} for sp, p in parts.items()}
    assert not (subjects["train"] & subjects["valid"]) and not (subjects["train"] & subjects["test"])
    assert all(subjects.values()) and len(subjects["train"]) > len(subjects["valid"])
    # by sequence, a subject's clips scatter over the splits
    assert len({split_of(f"CMU/07/07_{t:02d}_poses.npz") for t in range(1, 30)}) > 1
    assert len({split_of(f"CMU/07/07_{t:02d}_poses.npz", "folder") for t in range(1, 30)}) == 1


def _lmdb(tmp_path, ids):
    writer = lmdb_store.MotionWriter(tmp_path / "db", {"format": lmdb_store.FORMAT, "version": lmdb_store.FORMAT_VERSION,
                                                        "fps": 60.0}, 2**24)  # fmt: skip
    rng = np.random.default_rng(0)
    for i in ids:
        writer.add(i, rng.normal(scale=0.2, size=(20, 66)).astype(np.float32), np.zeros(10, np.float32),
                   np.zeros((20, 3), np.float32), None, "neutral")  # fmt: skip
    writer.close()
    return tmp_path / "db"


def test_shape_std_gives_each_clip_its_own_fixed_shape(tmp_path):
    ids = [f"CMU/{s:02d}/{s:02d}_0{t}_poses.npz" for s in range(1, 9) for t in range(1, 4)]
    db = _lmdb(tmp_path, ids)
    stored = AmassLMDB(path=str(db), body_model=StickBody())
    assert all(not stored[i].betas.any() for i in range(len(stored)))
    src = AmassLMDB(path=str(db), body_model=StickBody(), shape_std=1.0)
    again = AmassLMDB(path=str(db), body_model=StickBody(), shape_std=1.0, split="valid", split_by="folder")
    betas = np.stack([src[i].betas for i in range(len(src))])
    assert betas.shape == (len(ids), 10) and np.abs(betas).max() <= 2.0
    assert len({b.tobytes() for b in betas}) == len(ids)  # one per clip
    assert 0.6 < betas.std() < 1.3
    for k in range(len(again)):  # the same clip gets the same shape whatever the selection
        assert np.array_equal(again[k].betas, betas[ids.index(again.ids[k])])


def _yaw(rot: np.ndarray) -> tuple[float, np.ndarray]:
    """The angle about y and the residual of a rotation that should be a pure turn about y."""
    rv = Rotation.from_matrix(rot).as_rotvec()
    return float(rv[1]), rv[[0, 2]]


def test_random_heading_turns_windows_about_the_up_axis():
    rng = np.random.default_rng(3)
    body = TinyBody()
    motions = ListMotions([random_motion(rng, 40, name=f"m{i}") for i in range(4)])
    plain = VirtualEM(motions=motions, sensors="em12", offsets=None, body_model=body)
    turned = VirtualEM(motions=motions, sensors="em12", offsets=None, random_heading=True, body_model=body)
    a = next(plain.windows(4, 16, train=False, seed=0))
    b = next(turned.windows(4, 16, train=False, seed=0))
    assert torch.equal(b.sensors.pos, next(turned.windows(4, 16, train=False, seed=0)).sensors.pos)  # fixed in validation
    angles = heading_angles(4, None, np.arange(4)).numpy()
    for e in range(4):
        first = Rotation.from_rotvec(b.target.pose[e, 0, 0].numpy()).as_matrix()
        yaw, rest = _yaw(first)
        assert abs(yaw - angles[e]) < 1e-5 and np.abs(rest).max() < 1e-5
        ry = Rotation.from_rotvec([0, angles[e], 0]).as_matrix()
        # the whole body turns about the pelvis: orientations by R_y, positions about the pelvis joint
        assert np.allclose(b.sensors.ori[e].numpy(), ry @ a.sensors.ori[e].numpy(), atol=1e-5)
        j0 = body.forward(plain_pose := a.target, vertices=False).joints[e, :, 0].numpy()  # pelvis per frame
        expect = (a.sensors.pos[e].numpy() - j0[:, None]) @ ry.T + j0[:, None]
        assert np.allclose(b.sensors.pos[e].numpy(), expect, atol=1e-5), plain_pose
    assert torch.equal(b.target.pose[:, :, 1:], a.target.pose[:, :, 1:])
    train = [next(turned.windows(4, 16, train=True, seed=s)).target.pose[:, 0, 0] for s in (1, 1, 2)]
    assert torch.equal(train[0], train[1]) and not torch.equal(train[0], train[2])
    seqs = next(turned.sequences())  # whole test sequences are never turned
    assert torch.allclose(seqs.target.pose[0, 0, 0], torch.zeros(3), atol=1e-6)


def test_shipped_cmu_clips_read_like_the_originals():
    from empose_framework.plugins import get_registry

    body = get_registry().build("body_model", "embedded")
    clips = CMUClips(body_model=body)
    assert clips.ids == ["01_01.bvh", "131_01.bvh", "131_02.bvh"]
    assert [len(clips[i]) for i in range(3)] == [1376, 497, 624]  # 120 -> 60 fps, 01_01's T-pose dropped
    assert (CMU_CLIPS / "README.md").read_text().count("mocap.cs.cmu.edu") == 1
    if not BVH_DIR.is_dir():
        pytest.skip(f"the original BVH files are not at {BVH_DIR} (set EMPOSE_CMU_DIR) to compare with")
    plain = BVHMotions(path=str(BVH_DIR), body_model=body)
    assert plain.ids == clips.ids
    assert np.array_equal(plain[1].pose, clips[1].pose)


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the CMU corpus (AMASS layout) is not at {CORPUS}; set EMPOSE_CMU_AMASS")
def test_cmu_corpus_preprocesses_through_the_user_path(tmp_path):
    """A few real clips of one subject: 24 fps -> 60 fps, every clip kept, readable by amass_lmdb."""
    src = tmp_path / "cmu"
    clips = sorted((CORPUS / "CMU" / "02").glob("*_poses.npz"))[:3]
    assert clips, f"{CORPUS}/CMU/02 holds no clips"
    (src / "CMU" / "02").mkdir(parents=True)
    for c in clips:
        (src / "CMU" / "02" / c.name).symlink_to(c)
    summary = run_preprocess("amass", src, tmp_path / "db", console=Console(file=io.StringIO()))
    assert summary.sequences == 3 and not summary.skipped
    source = AmassLMDB(path=str(tmp_path / "db"), body_model=StickBody(), split_by="folder")
    for i, c in enumerate(clips):
        n24 = np.load(c)["poses"].shape[0]
        assert len(source[i]) == int(np.ceil(n24 / 24 * 60 - 1e-9))
        assert source[i].fps == 60.0 and source.ids[i] == f"CMU/02/{c.name}"
