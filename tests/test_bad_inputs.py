"""Hostile and careless inputs: each is refused with exit code 2, no traceback, and one paragraph that
names the file and the key; nothing read from a data file runs code."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from empose_framework import cli
from empose_framework.errors import DataError, EmposeError

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "recipes" / "quickstart.yaml"


class Planted:
    """A pickle payload: loading it would create the file `marker`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def empose(capsys, *args) -> tuple[int, str]:
    """Run the CLI in this process; (exit code, stderr with whitespace normalised)."""
    with pytest.raises(SystemExit) as done:
        cli.main([str(a) for a in args])
    text = " ".join(capsys.readouterr().err.split())
    return done.value.code, text


def refused(capsys, *args, names: tuple[str, ...]) -> str:
    code, text = empose(capsys, *args)
    assert code == 2, text
    assert "Traceback" not in text and text.startswith("error:"), text
    for name in names:  # rich folds long words (paths) at the console width: compare without spaces
        assert name.replace(" ", "") in text.replace(" ", ""), (name, text)
    return text


# ------------------------------------------------------------------------------------ numbers


@pytest.mark.parametrize("setting, shown", [
    ("train.batch_size=0", "expected >= 1, got 0"),
    ("train.window=-4", "expected >= 1, got -4"),
    ("train.eval_every=0", "expected >= 1"),
    ("train.log_every=0", "expected >= 1"),
    ("train.lr=.nan", "expected a finite number"),
    ("train.lr=-0.1", "expected a number > 0"),
    ("train.num_threads=0", "expected 1 to 4096"),
    ("train.max_steps=-3", "expected >= 1"),
    ("device=gpu7", "expected auto, cpu, cuda, cuda:N or mps"),
    ("estimator.hidden=0", "expected >= 1"),
    ("estimator.iterations=-1", "expected >= 1"),
    ("evaluate.chunk=0", "expected >= 1"),
    ("train.select_on=mpjpee", "expected `loss` or one of this recipe's metrics"),
    ("data.train.spherical_noise_strength=2", "expected 0 to 1"),
])  # fmt: skip
def test_out_of_range_settings_are_refused_before_training(capsys, tmp_path, setting, shown):
    key = setting.split("=")[0]
    text = refused(capsys, "run", QUICKSTART, "--set", setting, "--set", f"output={tmp_path}",
                   names=(str(QUICKSTART), f"{key}:", shown))  # fmt: skip
    assert not any(tmp_path.iterdir()), "nothing may be created for a recipe that does not validate"
    assert text.count("error:") == 1


# ------------------------------------------------------------------------------------ recipes


def _write(tmp_path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_binary_recipe_file(capsys, tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(3)}, path)
    refused(capsys, "validate", path, names=(str(path), "not a text file"))


def test_duplicate_key_is_an_error_naming_both_lines(capsys, tmp_path):
    path = _write(tmp_path, QUICKSTART.read_text() + "\ntrain: {lr: 0.1}\n")
    first = 1 + QUICKSTART.read_text().splitlines().index("train:")
    refused(capsys, "validate", path, names=(str(path), "key 'train' appears twice", f"first at line {first}"))


def test_alias_bomb_is_bounded(capsys, tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]"
              for i in range(1, 9)]  # fmt: skip
    path = _write(tmp_path, "\n".join(lines) + "\nname: '${X:-y}'\n")
    refused(capsys, "validate", path, names=(str(path), "aliases expand to more than"))
    path = _write(tmp_path, "name: &n [a, *n]\n", "self.yaml")
    refused(capsys, "validate", path, names=(str(path), "refers to a mapping or list that contains it"))


@pytest.mark.parametrize("override, key", [("name=../../escaped", "name:"), ("name=.hidden", "name:"),
                                           ("data.test.up/={use: virtual_em, motions: embedded}", "data.test.up/:")])
def test_names_cannot_leave_their_folder(capsys, tmp_path, override, key):
    refused(capsys, "run", QUICKSTART, "--set", override, "--set", f"output={tmp_path}", names=(key, "plain name"))
    assert not any(tmp_path.parent.glob("escaped*")) and not any(tmp_path.iterdir())


def test_only_declared_environment_variables_are_read(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("EMPOSE_TEST_SECRET", "hunter2")
    text = QUICKSTART.read_text().replace("name: quickstart", "name: quickstart\nmissing_data_hint: '${EMPOSE_TEST_SECRET}'")
    path = _write(tmp_path, text, "q.yaml")
    out = refused(capsys, "validate", path, names=(str(path), "missing_data_hint", "does not declare it",
                                                  "env: [EMPOSE_TEST_SECRET]"))  # fmt: skip
    assert "hunter2" not in out


def test_run_folder_records_declared_variables_unexpanded(tmp_path, monkeypatch):
    from empose_framework.recipes import load_recipe

    monkeypatch.setenv("EMPOSE_TEST_DATA", "/secret/place")
    text = QUICKSTART.read_text().replace("seed: 0", "env: [EMPOSE_CMU_DIR, EMPOSE_TEST_DATA]\nseed: 0")
    text = text.replace("name: quickstart", "name: quickstart\nmissing_data_hint: 'data in ${EMPOSE_TEST_DATA}'")
    text = text.replace("motions: cmu_clips", "motions: {use: bvh, path: \"${RECIPE_DIR}/cmu\"}")
    recipe = load_recipe(_write(tmp_path, text, "q.yaml"))
    assert recipe.data["missing_data_hint"] == "data in /secret/place"
    assert recipe.recorded["missing_data_hint"] == "data in ${EMPOSE_TEST_DATA}"
    assert "/secret/place" not in recipe.dump(recorded=True)
    assert yaml.safe_load(recipe.dump(recorded=True))["env"] == ["EMPOSE_CMU_DIR", "EMPOSE_TEST_DATA"]
    # ${RECIPE_DIR} is recorded expanded, so the run folder's own recipe.yaml still finds the data
    assert str(tmp_path.resolve()) in recipe.recorded["data"]["test"]["cmu"]["motions"]["path"]


# ------------------------------------------------------------------------------------ folders


def test_output_or_run_dir_that_is_a_file(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    refused(capsys, "run", QUICKSTART, "--set", f"output={blocker}", names=("output:", str(blocker)))
    refused(capsys, "run", QUICKSTART, "--run-dir", blocker, names=("--run-dir", str(blocker), "is a file"))
    assert blocker.read_text() == "x"


# ------------------------------------------------------------------------------------ checkpoints


def test_planted_checkpoint_is_refused_and_never_runs(capsys, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "best.pt"
    torch.save({"format": "empose-checkpoint/1", "payload": Planted(marker)}, ckpt)
    refused(capsys, "run", QUICKSTART, "--set", "task=evaluate", "--set", f"evaluate.checkpoint={ckpt}",
            "--set", f"output={tmp_path / 'runs'}", names=(str(ckpt), "not part of the empose checkpoint format"))  # fmt: skip
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpt, run / "checkpoints" / "last.pt")
    refused(capsys, "run", QUICKSTART, "--resume", run, names=(str(run / "checkpoints" / "last.pt"), "could run code"))
    assert not marker.exists()


def test_checkpoint_of_another_estimator_names_the_file(tmp_path):
    from empose_framework.engine import checkpoints

    ckpt = {"estimator": {"use": "lgd"}, "sensor_names": ["a"] * 6, "model": torch.nn.Linear(3, 4).state_dict()}
    with pytest.raises(DataError, match=r"checkpoint /x/best\.pt: its weights do not fit the estimator 'lgd' with 6"):
        checkpoints.load_weights(torch.nn.Linear(3, 5), ckpt, "/x/best.pt")


def test_old_checkpoints_with_numpy_rng_state_still_load(tmp_path):
    """Checkpoints written before RNG states became tensors hold numpy's state as an array."""
    from empose_framework.engine import checkpoints
    from empose_framework.engine.train import rng_state, set_rng_state

    old = {"format": checkpoints.FORMAT, "estimator": {"use": "lgd"}, "sensor_names": [], "body_model": {}, "model": {},
           "step": 3, "resume": {"rng": {**rng_state(), "numpy": np.random.get_state()}, "best": np.float64(0.5)}}  # fmt: skip
    torch.save(old, tmp_path / "old.pt")
    loaded = checkpoints.load(tmp_path / "old.pt")
    expected = np.random.random(3)
    np.random.random(5)
    set_rng_state(loaded["resume"]["rng"])
    assert np.array_equal(np.random.random(3), expected)


# ------------------------------------------------------------------------------------ data files


def test_object_arrays_in_npz_files_never_unpickle_code(tmp_path):
    from empose_em.recordings import _read_id
    from empose_smplh.npz import load_model_npz

    marker = tmp_path / "pwned"
    path = tmp_path / "model.npz"
    arrays = {k: np.zeros((2, 2)) for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights", "f")}
    arrays["J_regressor"] = np.array([Planted(marker)], dtype=object)
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=r"model\.npz: key 'J_regressor' is a pickled Python object .*not allowed"):
        load_model_npz(path)
    rec = tmp_path / "0402_walk_M_clean.npz"
    np.savez(rec, id=np.array([Planted(marker)], dtype=object))
    with np.load(rec, allow_pickle=False) as f, pytest.raises(DataError, match=r"clean\.npz: key 'id' is a pickled object"):
        _read_id(f, rec)
    np.savez(rec, id=np.array("0402_walk", dtype=object))  # a plain pickled string is still read
    with np.load(rec, allow_pickle=False) as f:
        assert _read_id(f, rec) == "0402_walk"
    assert not marker.exists()


def test_3dpw_pickle_with_code_is_refused(tmp_path):
    from empose_motion.preprocess import read_3dpw

    marker = tmp_path / "pwned"
    path = tmp_path / "courtyard.pkl"
    path.write_bytes(pickle.dumps({"poses_60Hz": [Planted(marker)]}))
    with pytest.raises(DataError, match=r"courtyard\.pkl: refused: global 'pathlib.*not allowed"):
        read_3dpw(path, tmp_path)
    assert not marker.exists()
    seq = {"poses_60Hz": [np.zeros((4, 72))], "trans_60Hz": [np.zeros((4, 3))], "betas": [np.zeros(10)], "genders": ["f"]}
    path.write_bytes(pickle.dumps(seq, protocol=2))
    (sample,) = read_3dpw(path, tmp_path)
    assert sample.id == "courtyard.pkl#0" and sample.gender == "female" and sample.poses.shape == (4, 66)


def test_string_frame_rate_is_named(tmp_path):
    from empose_motion.preprocess import read_amass

    path = tmp_path / "walk_poses.npz"
    np.savez(path, poses=np.zeros((5, 156)), betas=np.zeros(16), trans=np.zeros((5, 3)), mocap_framerate=np.array("120"))
    with pytest.raises(DataError, match=r"walk_poses\.npz: key 'mocap_framerate' holds <U3 .*not one number"):
        read_amass(path, tmp_path)


def test_render_pose_of_the_wrong_kind(tmp_path):
    from empose_smplh.render import load_pose

    np.savez(tmp_path / "p.npz", pose=np.zeros((22, 3)))
    with pytest.raises(EmposeError, match=r"p\.npz: is an \.npz archive \(keys \['pose'\]\)"):
        load_pose(str(tmp_path / "p.npz"), 22)
    np.save(tmp_path / "s.npy", np.array(["a"] * 66))
    with pytest.raises(EmposeError, match=r"s\.npy: holds <U1 values, not numbers"):
        load_pose(str(tmp_path / "s.npy"), 22)
    np.save(tmp_path / "o.npy", np.array([Planted(tmp_path / "pwned")], dtype=object))
    with pytest.raises(EmposeError, match=r"o\.npy: cannot read it"):
        load_pose(str(tmp_path / "o.npy"), 22)
    assert not (tmp_path / "pwned").exists()


BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Chest
  {
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 10 0
    }
  }
}
MOTION
Frames: 3
Frame Time: 0.0333333
0 0 0 0 0 0 0 0 0
0 0 0 0 0 0 0 0 0 7
0 0 0 0 0 0 0 0 0
"""


def test_bvh_rows_must_hold_one_frame_each(tmp_path):
    from empose_motion.bvh import parse_bvh

    path = tmp_path / "a.bvh"
    path.write_text(BVH)
    with pytest.raises(DataError, match=r"a\.bvh \(line 20\): frame 1 has 10 values but the HIERARCHY declares 9"):
        parse_bvh(path)
    path.write_text(BVH.replace("0 0 0 0 0 0 0 0 0 7", "0 0 0 0 0 nan 0 0 0"))
    with pytest.raises(DataError, match=r"\(line 20\): frame 1 contains NaN"):
        parse_bvh(path)
    with gzip.open(tmp_path / "b.bvh.gz", "wt") as fh:
        fh.write(BVH.replace("0 0 0 0 0 0 0 0 0 7\n", "0 0 0 0 0 0 0 0 0\n0 0 0 0 0 0 0 0 0\n"))
    with pytest.raises(DataError, match=r"\(line 22\): 4 frame rows follow `Frames: 3`"):
        parse_bvh(tmp_path / "b.bvh.gz")
    path.write_text(BVH.replace("0 0 0 0 0 0 0 0 0 7", "0 0 0 0 0 0 0 0 0"))
    assert parse_bvh(path).motion.shape == (3, 9)


# ------------------------------------------------------------------------------------ LMDB


def _db(tmp_path, ids=("A/a.npz", "A/b.npz")):
    from empose_motion.lmdb_store import MotionWriter

    folder = tmp_path / "db"
    writer = MotionWriter(folder, {"format": "empose-motion-lmdb"}, 1 << 24)
    for k, seq_id in enumerate(ids):
        poses = np.full((4, 66), 0.1 * k, np.float32)
        writer.add(seq_id, poses, np.zeros(10, np.float32), np.zeros((4, 3), np.float32), None, "male")
    writer.close()
    return folder


def test_nan_in_an_lmdb_sample_names_the_sample(tmp_path):
    import lmdb

    from empose_motion.lmdb_store import MotionDB

    folder = _db(tmp_path)
    poses = np.zeros((4, 66), np.float32)
    poses[2, 5] = np.nan
    with lmdb.open(str(folder), map_size=1 << 24) as env, env.begin(write=True) as txn:
        txn.put(b"poses1", poses.tobytes())
    db = MotionDB(folder)
    assert np.all(np.isfinite(db.read(0)["poses"]))
    with pytest.raises(DataError, match=r"sample 1 \('A/b\.npz'\) has NaN or infinite values in `poses1` at frame 2"):
        db.read(1)


def test_overwritten_samples_are_detected_and_a_rerun_repairs_them(tmp_path):
    """What two concurrent writers without a lock did: sample 1 overwritten, its done key left behind."""
    import lmdb

    from empose_motion import lmdb_store
    from empose_motion.lmdb_store import MotionDB, MotionWriter

    folder = _db(tmp_path)
    with lmdb.open(str(folder), map_size=1 << 24) as env, env.begin(write=True) as txn:
        txn.put(b"id1", b"A/c.npz")
        txn.put(b"__done__/A/c.npz", b"1")
    lmdb_store._READERS.clear()
    with pytest.raises(DataError, match=r"db: the database is damaged: 1 sequence\(s\) .* Rerun the same `empose preprocess`"):
        MotionDB(folder)
    notes = []
    writer = MotionWriter(folder, {"format": "empose-motion-lmdb"}, 1 << 24, log=notes.append)
    assert not writer.is_done("A/b.npz") and writer.is_done("A/c.npz") and writer.is_done("A/a.npz")
    writer.add("A/b.npz", np.zeros((4, 66), np.float32), np.zeros(10, np.float32), np.zeros((4, 3), np.float32), None, "m")
    writer.close()
    assert "repaired" in notes[0] and "1 sequence(s)" in notes[0]
    assert MotionDB(folder).ids == ["A/a.npz", "A/c.npz", "A/b.npz"]


def test_failed_strict_preprocess_leaves_no_empty_database(tmp_path):
    from rich.console import Console

    from empose_motion.preprocess import run_preprocess

    src = tmp_path / "amass" / "CMU" / "01"
    src.mkdir(parents=True)
    np.savez(src / "bad_poses.npz", poses=np.zeros((5, 156)))
    dst = tmp_path / "out"
    with pytest.raises(DataError, match=r"bad_poses\.npz: no key"):
        run_preprocess("amass", tmp_path / "amass", dst, strict=True, console=Console(file=open(os.devnull, "w")))
    assert not dst.exists()
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(EmposeError, match=r"destination .*blocker is a file"):
        run_preprocess("amass", tmp_path / "amass", blocker, console=Console(file=open(os.devnull, "w")))
