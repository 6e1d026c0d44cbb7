"""`empose preprocess amass|3dpw SRC DST`: AMASS / 3DPW files -> a motion LMDB at 60 fps (docs/method.md §6.1).

AMASS: every `*.npz` under SRC (recursive, directories and files sorted) except `*shape.npz` and the two
files the EM-POSE protocol leaves out; id = path relative to SRC with forward slashes; resampled to 60
fps (see `resample.py`). 3DPW: every `*.pkl` under SRC (sorted), one sample per actor, already 60 fps;
id = `<relative path>#<actor index>` (unique, unlike the original's). Files that cannot be used are
skipped and listed with the reason at the end (`--strict` stops at the first one instead).

Each sample is committed on its own (see `lmdb_store.MotionWriter`), so an interrupted run is resumed by
running the same command again. One preprocess at a time writes a destination (`guard.FolderLock`), and
3DPW pickles are read with a restricted unpickler (numpy arrays and plain containers only), so a
planted file cannot run code. FK joints (`joints{i}`) are computed with the chosen body model; training
recomputes joints anyway, so `--no-joints` skips them (and the body model).
"""

from __future__ import annotations

import os
import pickle
import shutil
import sys
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from empose_framework import safe_pickle
from empose_framework.errors import DataError, EmposeError
from empose_framework.guard import FolderLock, Stopped, make_folder, terminate_as_interrupt
from empose_motion.layout import BodyLayout, pose_joint_index
from empose_motion.lmdb_store import FORMAT, FORMAT_VERSION, MotionWriter
from empose_motion.resample import resample_motion

FPS = 60.0
#: Left out by the EM-POSE protocol (docs/method.md §6.1), so a rebuilt database matches the original's.
PROTOCOL_EXCLUDED = ("MTR03_poses.npz", "WalkingStraightBackwards08_poses.npz")
DEFAULT_MAP_SIZE_GB = {"amass": 16.0, "3dpw": 1.0}
FK_CHUNK = 1000


@dataclass
class Sample:
    id: str
    poses: np.ndarray  # (F, 66) axis-angle, SMPL body layout
    betas: np.ndarray
    trans: np.ndarray  # (F, 3)
    gender: str


@dataclass
class Summary:
    written: int = 0
    already_there: int = 0
    sequences: int = 0  # in the database at the end
    frames: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def hours(self) -> float:
        return self.frames / FPS / 3600.0


# --------------------------------------------------------------------------- file discovery and readers


def _walk_sorted(src: Path, suffix: str) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(src):
        dirs.sort()
        found.extend(Path(root) / f for f in sorted(files) if f.endswith(suffix))
    return found


def _rel_id(path: Path, src: Path) -> str:
    return path.relative_to(src).as_posix()


def _check_finite(path: Path, **arrays: np.ndarray) -> None:
    for key, a in arrays.items():
        if not np.all(np.isfinite(a)):
            raise DataError(f"{path}: key '{key}' contains NaN or infinite values. Fix or remove the file.")


def read_amass(path: Path, src: Path) -> Sample:
    """One AMASS SMPL-H npz, resampled to 60 fps. Raises DataError naming the file, key and fix."""
    def bad(reason: str) -> DataError:
        return DataError(f"{path}: {reason}")

    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            rate_key = "mocap_frame_rate" if "mocap_frame_rate" in keys else "mocap_framerate"  # SMPL-X AMASS spelling
            missing = [k for k in ("poses", "betas", "trans") if k not in keys] + ([rate_key] if rate_key not in keys else [])
            if missing:
                raise bad(f"no key(s) {missing}, so it is not an AMASS motion file (keys: {sorted(keys)}). "
                          "Only AMASS SMPL-H `*_poses.npz` files can be preprocessed.")
            poses = np.asarray(data["poses"], dtype=np.float64)
            betas = np.asarray(data["betas"], dtype=np.float64).reshape(-1)
            trans = np.asarray(data["trans"], dtype=np.float64)
            rate = np.asarray(data[rate_key])
            if rate.dtype.kind not in "biuf" or rate.size != 1:
                raise bad(f"key '{rate_key}' holds {rate.dtype} {rate.shape} {rate.reshape(-1)[:3].tolist()!r}, not one "
                          "number; the frame rate must be a number (frames per second). Fix the file.")
            fps = float(rate.reshape(()))
            try:
                g = data["gender"] if "gender" in keys else np.array("neutral")
                gender = g.item().decode() if isinstance(g.item(), bytes) else str(g.item())
            except ValueError:  # stored as a pickled object: not worth unpickling for a label
                gender = "unknown"
    except DataError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise bad(f"cannot be read as an npz archive ({type(exc).__name__}: {exc}); it is truncated or corrupt. "
                  "Download or extract it again.") from exc
    if poses.ndim != 2 or poses.shape[1] < 66:
        raise bad(f"key 'poses' has shape {poses.shape}, expected (frames, >= 66) axis-angle values.")
    if trans.shape != (poses.shape[0], 3):
        raise bad(f"key 'trans' has shape {trans.shape}, expected ({poses.shape[0]}, 3) to match 'poses'.")
    if poses.shape[0] < 2:
        raise bad(f"has {poses.shape[0]} frame(s); a motion needs at least 2.")
    if not fps > 0:
        raise bad(f"key '{rate_key}' is {fps}; the frame rate must be positive.")
    _check_finite(path, poses=poses[:, :66], trans=trans, betas=betas)
    pose, trans60 = resample_motion(poses[:, :66].reshape(-1, 22, 3), trans, fps, FPS)
    return Sample(_rel_id(path, src), pose.reshape(-1, 66), betas[:10].astype(np.float32), trans60, gender)


def read_3dpw(path: Path, src: Path) -> list[Sample]:
    """Every actor of one 3DPW sequence pickle (60 fps already)."""
    try:
        with open(path, "rb") as fh:
            seq = safe_pickle.load(fh, encoding="latin1")
    except pickle.UnpicklingError as exc:
        if "is not allowed" in str(exc):
            raise DataError(f"{path}: refused: {exc}. A 3DPW sequence file holds only arrays, lists and strings; this one "
                            "was not loaded, since it could run code. Use the files from the 3DPW download.") from None
        raise DataError(f"{path}: cannot be unpickled ({exc}); it is truncated or not a 3DPW sequence file. Download or "
                        "extract it again.") from None
    except (EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError, KeyError) as exc:
        raise DataError(f"{path}: cannot be unpickled ({type(exc).__name__}: {exc}); it is truncated or not a 3DPW "
                        "sequence file. Download or extract it again.") from exc
    if not isinstance(seq, dict):
        raise DataError(f"{path}: holds a {type(seq).__name__}, not a 3DPW sequence dictionary.")
    missing = [k for k in ("poses_60Hz", "betas", "trans_60Hz", "genders") if k not in seq]
    if missing:
        raise DataError(f"{path}: no key(s) {missing} (keys: {sorted(seq)[:10]}); not a 3DPW sequence file.")
    samples = []
    for s in range(len(seq["poses_60Hz"])):
        poses = np.asarray(seq["poses_60Hz"][s], dtype=np.float64)
        trans = np.asarray(seq["trans_60Hz"][s], dtype=np.float64)
        betas = np.asarray(seq["betas"][s], dtype=np.float64).reshape(-1)
        if poses.ndim != 2 or poses.shape[1] < 66 or trans.shape != (poses.shape[0], 3):
            raise DataError(f"{path}: actor {s} has poses_60Hz {poses.shape} and trans_60Hz {trans.shape}; "
                            "expected (F, >= 66) and (F, 3).")
        _check_finite(path, poses_60Hz=poses[:, :66], trans_60Hz=trans, betas=betas)
        gender = "female" if str(seq["genders"][s]).startswith("f") else "male"
        samples.append(Sample(f"{_rel_id(path, src)}#{s}", poses[:, :66].astype(np.float32),
                              betas[:10].astype(np.float32), trans.astype(np.float32), gender))
    return samples


# --------------------------------------------------------------------------- the run


def build_body_model(name: str, device: str):
    """The body model used for FK joints, built through the plugin registry with default parameters."""
    from empose_framework.plugins import get_registry

    cls = get_registry().load("body_model", name, where="--body-model")
    try:
        model = cls()
    except EmposeError as exc:
        raise type(exc)(f"{exc} (needed for the FK joints; use `--body-model embedded`, or `--no-joints` since "
                        "training recomputes joints)") from exc
    pose_joint_index(model, f"--body-model {name}")
    return model.to(device)


def fk_joints(body_model, sample: Sample, device: str) -> np.ndarray:
    """(F, 66) joint positions of the SMPL body joints, with translation (the original's `joints{i}`)."""
    import torch

    from empose_framework.interfaces import BodyPose

    layout = BodyLayout(body_model, "FK joints")
    pose = layout.from_smpl(sample.poses.reshape(-1, 22, 3))
    betas = torch.from_numpy(layout.betas(sample.betas))[None].to(device)
    out = []
    with torch.no_grad():
        for a in range(0, pose.shape[0], FK_CHUNK):
            p = torch.from_numpy(pose[a:a + FK_CHUNK])[None].to(device)
            t = torch.from_numpy(np.ascontiguousarray(sample.trans[a:a + FK_CHUNK]))[None].to(device)
            joints = body_model.forward(BodyPose(p, betas, t), vertices=False).joints[0]
            out.append(joints[:, layout.columns].reshape(-1, 66).float().cpu().numpy())
    return np.concatenate(out)


def run_preprocess(dataset: str, src: Path, dst: Path, *, body_model=None, body_model_name: str | None = None,
                   map_size_gb: float | None = None, strict: bool = False, device: str = "cpu",
                   console=None) -> Summary:
    """Write (or continue writing) the LMDB at `dst`; `body_model=None` means no FK joints."""
    from rich.console import Console

    console = console or Console()
    src, dst = Path(src), Path(dst)
    if dataset not in DEFAULT_MAP_SIZE_GB:
        raise EmposeError(f"unknown dataset {dataset!r}: use `amass` or `3dpw`.")
    if not src.is_dir():
        raise DataError(f"source folder {src} does not exist. Give the folder holding the {dataset} files.")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise EmposeError(f"destination {dst} lies inside the source {src}; choose a folder outside it.")
    if dst.exists() and not dst.is_dir():
        raise EmposeError(f"destination {dst} is a file, not a folder; give a new or existing folder for the LMDB.")
    files = _walk_sorted(src, ".npz" if dataset == "amass" else ".pkl")
    if dataset == "amass":
        files = [f for f in files if not f.name.endswith("shape.npz")]
    if not files:
        raise DataError(f"no {'*.npz' if dataset == 'amass' else '*.pkl'} files under {src}; is it the {dataset} folder?")

    meta = {"format": FORMAT, "version": FORMAT_VERSION, "fps": FPS, "source": dataset,
            "joints": body_model is not None, "body_model": body_model_name if body_model is not None else None,
            "resampling": "quaternion slerp + cubic spline, last sample held"}
    size = int((map_size_gb or DEFAULT_MAP_SIZE_GB[dataset]) * 2**30)
    created = make_folder(dst, "destination", "Choose a writable folder.")
    lock = FolderLock(dst, "preprocess").acquire()
    try:
        with terminate_as_interrupt():
            writer = MotionWriter(dst, meta, size, log=lambda m: console.print(f"[yellow]{m}[/]"))
            summary = _write_all(writer, dataset, src, dst, files, body_model, strict, device, console)
    except BaseException:
        if created and not _has_samples(dst):  # nothing worth keeping: leave no empty database behind
            shutil.rmtree(dst, ignore_errors=True)
        raise
    finally:
        lock.release()
    _print_summary(console, dataset, dst, summary)
    return summary


def _has_samples(dst: Path) -> bool:
    from empose_motion.lmdb_store import LEN_KEY, open_env

    if not (dst / "data.mdb").is_file() or (dst / "data.mdb").stat().st_size == 0:
        return False
    try:
        env = open_env(dst, write=True)
        try:
            with env.begin() as txn:
                return int(txn.get(LEN_KEY) or 0) > 0
        finally:
            env.close()
    except Exception:  # noqa: BLE001 - unreadable: keep it, the user decides
        return True


def _write_all(writer, dataset, src, dst, files, body_model, strict, device, console) -> Summary:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    summary = Summary()
    try:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   TextColumn("{task.fields[current]}", style="dim"))
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(f"preprocess {dataset}", total=len(files), current="")
            for path in files:
                rel = _rel_id(path, src)
                progress.update(task, current=rel)
                _write_file(writer, dataset, src, path, rel, body_model, strict, device, summary)
                progress.advance(task)
            progress.update(task, current="")
        with writer.env.begin() as txn:
            summary.sequences = writer.length
            summary.frames = sum(int(txn.get(f"n_frames{i}".encode())) for i in range(writer.length))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM
        console.print(f"[yellow]interrupted[/]: {writer.length} sequences are safely in {dst}; run the same command "
                      "again to continue.")
        exc = sys.exc_info()[1]
        if isinstance(exc, Stopped):  # SIGTERM: exit 143 (the CLI maps a KeyboardInterrupt to 130)
            raise SystemExit(exc.exit_code) from None
        raise
    finally:
        writer.close()
    return summary


def _write_file(writer, dataset, src, path, rel, body_model, strict, device, summary: Summary) -> None:
    """Add the samples of one source file that the database lacks (so that a rerun resumes), counting them
    in `summary`; an unreadable file is skipped with its reason, or stops the run under `strict`."""
    if path.name in PROTOCOL_EXCLUDED:
        summary.skipped.append((rel, "left out by the EM-POSE protocol"))
        return
    if dataset == "amass" and writer.is_done(rel):
        summary.already_there += 1
        return
    try:
        samples = [read_amass(path, src)] if dataset == "amass" else read_3dpw(path, src)
    except DataError as exc:
        if strict:
            raise
        summary.skipped.append((rel, exc.message.removeprefix(f"{path}: ")))
        return
    for sample in samples:
        if writer.is_done(sample.id):
            summary.already_there += 1
            continue
        joints = fk_joints(body_model, sample, device) if body_model is not None else None
        writer.add(sample.id, sample.poses, sample.betas, sample.trans, joints, sample.gender)
        summary.written += 1


def _print_summary(console, dataset: str, dst: Path, s: Summary) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{dataset} -> {dst}", title_justify="left")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("sequences in the database", str(s.sequences))
    table.add_row("  written now", str(s.written))
    table.add_row("  already there (resumed)", str(s.already_there))
    table.add_row("frames (60 fps)", str(s.frames))
    table.add_row("hours", f"{s.hours:.2f}")
    table.add_row("files skipped", str(len(s.skipped)))
    console.print(table)
    for rel, reason in s.skipped:
        console.print(f"[yellow]skipped[/] {escape(rel)}: {escape(reason)}", highlight=False)
