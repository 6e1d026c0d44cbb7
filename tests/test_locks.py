"""One writer per folder (advisory locks), SIGTERM handled like Ctrl-C, leftovers cleaned up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from empose_framework import cli
from empose_framework.engine import run
from empose_framework.engine import train as train_module
from empose_framework.errors import EmposeError
from empose_framework.guard import LOCK_NAME, FolderLock
from empose_framework.recipes import load_recipe
from engine_doubles import install_registry, write_recipe

HOLD = ("import sys, time; from empose_framework.guard import FolderLock; FolderLock(sys.argv[1], 'test').acquire(); "
        "print('held', flush=True); time.sleep(60)")


@pytest.fixture
def holder(tmp_path):
    """Another process that holds the lock of tmp_path/held."""
    folder = tmp_path / "held"
    folder.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield folder, proc.pid
    proc.kill()
    proc.wait()


def test_second_writer_is_refused_naming_the_holder(holder):
    folder, pid = holder
    with pytest.raises(EmposeError, match=rf"held is in use by another empose process \(pid {pid} on .*-c .*\)\. Only one "
                                          r"training run may write there"):  # fmt: skip
        FolderLock(folder, "training run").acquire()


def test_run_and_resume_refuse_a_folder_another_process_holds(holder, capsys):
    folder, pid = holder
    for extra in (["--run-dir", folder], ["--resume", folder]):
        with pytest.raises(SystemExit) as done:
            cli.main(["run", str(Path(__file__).parents[1] / "recipes" / "quickstart.yaml"), *map(str, extra)])
        text = " ".join(capsys.readouterr().err.split())
        assert done.value.code == 2 and f"pid {pid}" in text and "Traceback" not in text, text
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME]  # nothing written next to the other run


def test_preprocess_refuses_a_destination_in_use(holder, tmp_path):
    from rich.console import Console

    from empose_motion.preprocess import run_preprocess

    folder, pid = holder
    src = tmp_path / "amass"
    src.mkdir()
    np.savez(src / "a_poses.npz", poses=np.zeros((5, 156)), betas=np.zeros(16), trans=np.zeros((5, 3)), mocap_framerate=60)
    with pytest.raises(EmposeError, match=rf"in use by another empose process \(pid {pid}.*Only one preprocess"):
        run_preprocess("amass", src, folder, console=Console(file=open(os.devnull, "w")))
    assert not (folder / "data.mdb").exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(60)", "pass"), str(tmp_path)], capture_output=True)
    assert dead.returncode == 0
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] != os.getpid()  # the dead holder is still recorded
    with FolderLock(tmp_path, "test"):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released


# ------------------------------------------------------------------------------------ signals


@pytest.fixture
def registry(monkeypatch):
    return install_registry(monkeypatch)


def _signal_at(monkeypatch, step: int, times: int, signum=signal.SIGTERM):
    original = train_module.Trainer.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.on_step.append(lambda t: [os.kill(os.getpid(), signum) for _ in range(times)] if t.progress.step == step else None)

    monkeypatch.setattr(train_module.Trainer, "__init__", init)
    return original


def test_sigterm_saves_prints_the_resume_command_and_exits_143(tmp_path, registry, monkeypatch):
    path = write_recipe(tmp_path)
    original = _signal_at(monkeypatch, 5, 1)
    run_dir = tmp_path / "r"
    with pytest.raises(SystemExit) as stop:
        run(load_recipe(path, ["train.max_steps=9"], registry=registry), run_dir=run_dir)
    assert stop.value.code == 143
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == 5
    log = (run_dir / "train.log").read_text()
    assert "interrupted at step 5" in log and f"--resume {run_dir}" in log
    # a partial checkpoint a kill -9 left behind is removed when the run is resumed
    stray = run_dir / "checkpoints" / ".last.pt.abc123.tmp"
    stray.write_bytes(b"partial")
    monkeypatch.setattr(train_module.Trainer, "__init__", original)
    run(load_recipe(path, ["train.max_steps=6"], registry=registry), resume=run_dir)
    assert not stray.exists() and "removed .last.pt.abc123.tmp" in (run_dir / "train.log").read_text()


def test_second_signal_stops_at_once_and_says_what_was_saved(tmp_path, registry, monkeypatch):
    path = write_recipe(tmp_path)
    _signal_at(monkeypatch, 6, 2)  # evaluation (and last.pt) at step 4
    run_dir = tmp_path / "r"
    with pytest.raises(SystemExit) as stop:
        run(load_recipe(path, ["train.max_steps=9"], registry=registry), run_dir=run_dir)
    assert stop.value.code == 143
    log = (run_dir / "train.log").read_text()
    assert "stopped at once at step 6 (SIGTERM)" in log and "last.pt holds step 4; resume from there" in log
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == 4


def test_run_that_fails_before_its_first_step_leaves_no_folder(tmp_path, registry):
    path = write_recipe(tmp_path)
    with pytest.raises(EmposeError, match="lmdb"):
        run(load_recipe(path, ["data.valid.motions={use: amass_lmdb, path: /no/such/lmdb}"], registry=registry))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    existing = tmp_path / "mine"
    existing.mkdir()
    with pytest.raises(EmposeError):
        run(load_recipe(path, ["data.valid.motions={use: amass_lmdb, path: /no/such/lmdb}"], registry=registry),
            run_dir=existing)  # fmt: skip
    assert existing.is_dir()  # a folder the user made is never removed


def test_sigterm_during_preprocess_behaves_like_ctrl_c(tmp_path):
    """The preprocess command in a real process: SIGTERM stops it with 143 and the resume hint."""
    src = tmp_path / "amass"
    src.mkdir()
    for i in range(40):
        np.savez(src / f"m{i:02d}_poses.npz", poses=np.zeros((2000, 156)), betas=np.zeros(16), trans=np.zeros((2000, 3)),
                 mocap_framerate=120)  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "empose_framework", "preprocess", "amass", str(src), str(tmp_path / "db"),
                             "--no-joints"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline and not (tmp_path / "db" / "data.mdb").exists():
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("preprocessing finished before the signal arrived")
    assert proc.returncode == 143, out
    assert "run the same command again to continue" in out and "Traceback" not in out


def test_make_folder_creates_once_and_names_an_unwritable_place(tmp_path):
    from empose_framework.errors import EmposeError
    from empose_framework.guard import make_folder

    assert make_folder(tmp_path / "a" / "b", "--run-dir", "Choose another.") is True
    assert make_folder(tmp_path / "a" / "b", "--run-dir", "Choose another.") is False
    (tmp_path / "f").write_text("a file")
    with pytest.raises(EmposeError, match=r"destination: cannot create the folder .*f/db .*Choose another\."):
        make_folder(tmp_path / "f" / "db", "destination", "Choose another.")
