"""`empose preprocess` and the `amass_lmdb` source, on small AMASS/3DPW-format files written here."""

import io
import multiprocessing
import os
import pickle
import subprocess
import sys
from pathlib import Path

import lmdb
import numpy as np
import pytest
from rich.console import Console
from scipy.spatial.transform import Rotation

from empose_framework.errors import DataError
from empose_motion import lmdb_store
from empose_motion.lmdb_source import AmassLMDB
from empose_motion.preprocess import run_preprocess
from motion_body_double import StickBody, fk

RATES = {"ACCAD/s1/walk_poses.npz": 120, "ACCAD/s1/run_poses.npz": 100, "CMU/02/jump_poses.npz": 60,
         "CMU/01/a_poses.npz": 120, "CMU/01/b_poses.npz": 250}


def _quiet():
    return Console(file=io.StringIO(), width=200)


def _amass_file(path: Path, n: int, fps: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fps
    # smooth motion, so that resampling is well defined
    poses = 0.4 * np.sin(t[:, None] * rng.uniform(1, 4, 156) + rng.uniform(0, 6, 156))
    data = dict(poses=poses, betas=rng.normal(size=16), trans=np.stack([t, 0.9 + 0 * t, np.cos(t)], 1),
                mocap_framerate=np.array(float(fps)), gender=np.array("female"), dmpls=np.zeros((n, 8)))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **data)
    return data


@pytest.fixture()
def amass(tmp_path):
    src = tmp_path / "amass"
    files = {rel: _amass_file(src / rel, 40 + 7 * i, fps, i) for i, (rel, fps) in enumerate(RATES.items())}
    np.savez(src / "CMU" / "01" / "shape.npz", betas=np.zeros(16))  # not a motion: ignored silently
    good = (src / "CMU/01/a_poses.npz").read_bytes()
    (src / "CMU/01/c_poses.npz").write_bytes(good[: len(good) // 2])  # truncated download
    np.savez(src / "CMU/01/d_poses.npz", foo=np.zeros(3))  # not an AMASS motion
    return src, files


def _dump(folder: Path) -> dict:
    with lmdb_store.open_env(folder).begin() as txn:  # the process-wide handle (py-lmdb allows one)
        return {bytes(k): bytes(v) for k, v in txn.cursor()}


def test_preprocess_amass_writes_the_reference_layout(amass, tmp_path):
    src, files = amass
    dst = tmp_path / "out_lmdb"
    summary = run_preprocess("amass", src, dst, body_model=StickBody(), body_model_name="double", console=_quiet())

    ids = sorted(files)  # sorted walk: ACCAD before CMU, 01 before 02
    assert summary.sequences == summary.written == len(ids)
    skipped = dict(summary.skipped)
    assert set(skipped) == {"CMU/01/c_poses.npz", "CMU/01/d_poses.npz"}
    assert "truncated or corrupt" in skipped["CMU/01/c_poses.npz"]
    assert "not an AMASS motion file" in skipped["CMU/01/d_poses.npz"]

    items = _dump(dst)
    assert items[b"__len__"] == str(len(ids)).encode()
    frames = 0
    for i, sid in enumerate(ids):
        src_data = files[sid]
        n_in = src_data["poses"].shape[0]
        n = int(items[f"n_frames{i}".encode()])
        assert items[f"id{i}".encode()].decode() == sid
        assert n == -(-n_in * 60 // RATES[sid])  # ceil: duration kept
        poses = np.frombuffer(items[f"poses{i}".encode()], np.float32).reshape(n, 66)
        trans = np.frombuffer(items[f"trans{i}".encode()], np.float32).reshape(n, 3)
        betas = np.frombuffer(items[f"betas{i}".encode()], np.float32)
        joints = np.frombuffer(items[f"joints{i}".encode()], np.float32).reshape(n, 66)
        np.testing.assert_allclose(betas, src_data["betas"][:10], atol=1e-6)
        assert items[f"gender{i}".encode()] == b"female"
        if RATES[sid] in (60, 120):  # output frames coincide with input frames
            step = RATES[sid] // 60
            want = Rotation.from_rotvec(src_data["poses"][::step, :66].reshape(-1, 3))
            got = Rotation.from_rotvec(poses.reshape(-1, 3).astype(np.float64))
            assert (want.inv() * got).magnitude().max() < 1e-5
            np.testing.assert_allclose(trans, src_data["trans"][::step], atol=1e-5)
        # stored joints are the body model's FK with translation (independent numpy FK)
        want_joints, _ = fk(poses.reshape(n, 22, 3).astype(np.float64), betas, trans.astype(np.float64))
        np.testing.assert_allclose(joints.reshape(n, 22, 3), want_joints, atol=2e-5)
        frames += n
    assert summary.frames == frames
    assert summary.hours == pytest.approx(frames / 60 / 3600)


def test_interrupted_preprocess_resumes_without_duplicates(amass, tmp_path, monkeypatch):
    src, files = amass
    reference = tmp_path / "uninterrupted"
    run_preprocess("amass", src, reference, console=_quiet())

    dst = tmp_path / "interrupted"
    calls = {"n": 0}
    real = lmdb_store.encode_array

    def dying(a):  # Ctrl-C in the middle of the third sample's transaction
        calls["n"] += 1
        if calls["n"] == 2 * 3 + 2:
            raise KeyboardInterrupt
        return real(a)

    monkeypatch.setattr(lmdb_store, "encode_array", dying)
    with pytest.raises(KeyboardInterrupt):
        run_preprocess("amass", src, dst, console=_quiet())
    partial = _dump(dst)
    assert partial[b"__len__"] == b"2"  # two whole samples; nothing of the third
    assert not any(k.endswith(b"2") and not k.startswith(b"__") for k in partial)
    assert MotionCount(dst) == 2

    monkeypatch.setattr(lmdb_store, "encode_array", real)
    summary = run_preprocess("amass", src, dst, console=_quiet())
    assert (summary.already_there, summary.written, summary.sequences) == (2, len(files) - 2, len(files))
    assert _dump(dst) == _dump(reference)  # byte-identical to a run that was never interrupted
    ids = AmassLMDB(path=str(dst), body_model=StickBody()).ids
    assert ids == sorted(files) and len(set(ids)) == len(ids)


def MotionCount(folder):
    return len(AmassLMDB(path=str(folder), body_model=StickBody()))


def test_resume_with_other_options_is_refused(amass, tmp_path):
    src, _ = amass
    dst = tmp_path / "db"
    run_preprocess("amass", src, dst, console=_quiet())
    with pytest.raises(DataError, match="different options.*joints"):
        run_preprocess("amass", src, dst, body_model=StickBody(), body_model_name="double", console=_quiet())


def test_strict_stops_at_the_first_bad_file(amass, tmp_path):
    src, _ = amass
    with pytest.raises(DataError, match=r"c_poses\.npz: cannot be read as an npz archive.*truncated"):
        run_preprocess("amass", src, tmp_path / "db", strict=True, console=_quiet())


def _3dpw_file(path: Path, actors: int, n: int, seed: int):
    rng = np.random.default_rng(seed)
    seq = {"sequence": path.stem, "genders": ["f", "m"][:actors],
           "poses_60Hz": [rng.normal(scale=0.2, size=(n + a, 72)) for a in range(actors)],
           "trans_60Hz": [rng.normal(size=(n + a, 3)) for a in range(actors)],
           "betas": [rng.normal(size=10) for _ in range(actors)], "poses": [np.zeros((3, 72))] * actors}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(seq, fh, protocol=2)
    return seq


def test_preprocess_3dpw_one_sample_per_actor(tmp_path):
    src = tmp_path / "3dpw"
    seqs = {"train/courtyard_dancing_00.pkl": _3dpw_file(src / "train/courtyard_dancing_00.pkl", 2, 30, 0),
            "test/downtown_walking_00.pkl": _3dpw_file(src / "test/downtown_walking_00.pkl", 1, 20, 1)}
    (src / "validation").mkdir()
    (src / "validation/broken.pkl").write_bytes(pickle.dumps({"poses_60Hz": [1]})[:-3])
    dst = tmp_path / "3dpw_lmdb"
    summary = run_preprocess("3dpw", src, dst, console=_quiet())
    assert summary.sequences == 3  # actor-sequences, not files (docs/method.md §13 item 11)
    assert [r for r, _ in summary.skipped] == ["validation/broken.pkl"]
    source = AmassLMDB(path=str(dst), body_model=StickBody())
    assert source.ids == ["test/downtown_walking_00.pkl#0", "train/courtyard_dancing_00.pkl#0", "train/courtyard_dancing_00.pkl#1"]
    m = source[2]
    want = seqs["train/courtyard_dancing_00.pkl"]
    assert len(m) == 31 and m.fps == 60.0
    np.testing.assert_allclose(m.pose.reshape(31, 66), want["poses_60Hz"][1][:, :66], atol=1e-6)
    np.testing.assert_allclose(m.trans, want["trans_60Hz"][1], atol=1e-6)
    assert _dump(dst)[b"gender1"] == b"female" and _dump(dst)[b"gender2"] == b"male"


def test_source_layout_splits_filters_and_pickling(amass, tmp_path):
    src, files = amass
    dst = tmp_path / "db"
    run_preprocess("amass", src, dst, console=_quiet())
    body = StickBody()
    source = AmassLMDB(path=str(dst), body_model=body)
    assert len(source) == len(files)
    m = source[1]
    assert m.pose.shape == (len(m), 22, 3) and m.pose.dtype == np.float32
    assert m.betas.shape == (10,) and m.trans.shape == (len(m), 3) and m.fps == 60.0
    parts = [AmassLMDB(path=str(dst), body_model=body, split=s).ids if _has_split(dst, s) else [] for s in ("train", "valid", "test")]
    assert sorted(sum(parts, [])) == sorted(files) and sum(map(len, parts)) == len(files)
    cmu = ["CMU/01/a_poses.npz", "CMU/01/b_poses.npz", "CMU/02/jump_poses.npz"]
    assert AmassLMDB(path=str(dst), body_model=body, include=["CMU/*"]).ids == cmu
    assert AmassLMDB(path=str(dst), body_model=body, include=["CMU/*"], exclude=["*/02/*"], max_sequences=1).ids == ["CMU/01/a_poses.npz"]
    blob = pickle.dumps(source)
    assert len(blob) < 4000  # no environment handle, no body model inside
    copy = pickle.loads(blob)
    np.testing.assert_array_equal(copy[1].pose, m.pose)
    with multiprocessing.get_context("fork").Pool(1) as pool:  # a data-loader worker inherits the handle
        assert pool.map(_frames_of, [(source, i) for i in range(len(source))]) == [len(source[i]) for i in range(len(source))]
    with pytest.raises(DataError, match="no sequence left"):
        AmassLMDB(path=str(dst), body_model=body, include=["nothing*"])


def _frames_of(args):
    source, i = args
    return len(source[i])


def _has_split(dst, split):
    from empose_motion.layout import split_of

    return any(split_of(i) == split for i in AmassLMDB(path=str(dst), body_model=StickBody()).ids)


def test_reads_an_original_database_with_understated_length(tmp_path):
    """The original's 3DPW databases store `__len__` = number of files; every sample must still be read."""
    env = lmdb.open(str(tmp_path / "orig"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(3):
            n = 5 + i
            txn.put(f"poses{i}".encode(), np.full((n, 66), 0.1 * i, np.float32).tobytes())
            txn.put(f"betas{i}".encode(), np.zeros(10, np.float32).tobytes())
            txn.put(f"trans{i}".encode(), np.zeros((n, 3), np.float32).tobytes())
            txn.put(f"joints{i}".encode(), np.zeros((n, 66), np.float32).tobytes())
            txn.put(f"n_frames{i}".encode(), str(n).encode())
            txn.put(f"id{i}".encode(), b"courtyard_basketball_00.pkl")
            txn.put(f"gender{i}".encode(), b"male")
        txn.put(b"__len__", b"2")
    env.close()
    source = AmassLMDB(path=str(tmp_path / "orig"), body_model=StickBody())
    assert len(source) == 3
    assert len(source[2]) == 7 and np.allclose(source[2].pose, 0.2)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"nope does not exist.*empose preprocess"):
        AmassLMDB(path=str(tmp_path / "nope"), body_model=StickBody())
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"data\.mdb is missing"):
        AmassLMDB(path=str(tmp_path / "empty"), body_model=StickBody())


def test_truncated_or_garbage_lmdb_is_a_clear_error_not_a_crash(amass, tmp_path):
    src, _ = amass
    dst = tmp_path / "db"
    run_preprocess("amass", src, dst, console=_quiet())
    data = dst / "data.mdb"
    size = data.stat().st_size
    os.truncate(data, size - 4096)
    # in a child process, so that a failure of the guard (SIGBUS) cannot take the test run down
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n" \
           "from motion_body_double import StickBody\nfrom empose_motion.lmdb_source import AmassLMDB\n" \
           f"s = AmassLMDB(path={str(dst)!r}, body_model=StickBody()); [s[i] for i in range(len(s))]"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stderr
    assert "is truncated" in run.stderr and "Copy the folder again" in run.stderr
    data.write_bytes(b"\x00" * 8192)
    with pytest.raises(DataError, match="not an LMDB database"):
        AmassLMDB(path=str(dst), body_model=StickBody())


def test_corrupt_sample_is_named(amass, tmp_path):
    src, _ = amass
    dst = tmp_path / "db"
    run_preprocess("amass", src, dst, console=_quiet())
    env = lmdb_store.open_env(dst, write=True, map_size=1 << 26)
    with env.begin(write=True) as txn:
        txn.put(b"poses1", b"\x00" * 12)
    env.close()
    source = AmassLMDB(path=str(dst), body_model=StickBody())
    source[0]
    with pytest.raises(DataError, match=r"key `poses1` holds 12 bytes"):
        source[1]


def test_cli_preprocess_without_joints(amass, tmp_path):
    src, files = amass
    dst = tmp_path / "cli_db"
    run = subprocess.run([sys.executable, "-m", "empose_framework", "-p", "no:smplh", "preprocess", "amass", str(src),
                          str(dst), "--no-joints"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "COLUMNS": "200"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sequences in the database" in run.stdout and f"│     {len(files)} │" in run.stdout.replace(" " * 10, "")
    assert "skipped CMU/01/c_poses.npz" in run.stdout
    assert b"joints0" not in _dump(dst) and AmassLMDB(path=str(dst), body_model=StickBody())[0].pose.shape[1] == 22
    bad = subprocess.run([sys.executable, "-m", "empose_framework", "-p", "no:smplh", "preprocess", "amass",
                          str(tmp_path / "missing"), str(dst), "--no-joints"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "missing does not exist" in " ".join((bad.stdout + bad.stderr).split())
