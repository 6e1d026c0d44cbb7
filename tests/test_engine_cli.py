"""`empose run` end to end through the CLI: the quickstart recipe (shrunk with --set), Ctrl-C and
--resume, evaluation-only runs, and the paper recipes' missing-data messages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAPER = ["resnet_6", "resnet_12", "birnn_6", "birnn_12", "lgd_6", "lgd_12", "lgd_rnn_6", "lgd_rnn_12"]
TINY_QUICKSTART = [
    "estimator.hidden=24", "estimator.rnn_hidden=24", "estimator.blocks=1",
    "data.train.motions.count=8", "data.train.motions.seconds=2", "data.valid.motions.count=2",
    "data.valid.motions.seconds=2", "data.test.heldout.motions.count=2", "data.test.heldout.motions.seconds=3",
    "train.batch_size=4", "train.log_every=1", "train.num_threads=1", "evaluate.chunk=64",
]  # fmt: skip


def empose(*args, tmp_path, env=None, **kw):
    cmd = [sys.executable, "-m", "empose_framework", *args]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=180, **kw)


def _sets(items):
    return [a for item in items for a in ("--set", item)]


def test_quickstart_trains_evaluates_and_skips_missing_cmu(tmp_path):
    done = empose("run", str(REPO / "recipes" / "quickstart.yaml"), *_sets(TINY_QUICKSTART),
                  *_sets(["train.max_steps=3", "train.eval_every=2", "data.test.cmu.motions={use: bvh, path: /no/such/cmu}",
                          "data.test.cmu.optional=true"]),
                  "--run-dir", "qs", tmp_path=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    run_dir = tmp_path / "qs"
    table = json.loads((run_dir / "eval" / "heldout.json").read_text())
    assert len(table["sequences"]) == 2 and set(table["overall"]) >= {"mpjpe", "pa_mpjpe", "mpjae", "jitter"}
    assert "Overall average" in done.stdout and "MPJPE [mm]" in done.stdout
    assert "skipping optional test set 'cmu'" in done.stdout and "/no/such/cmu" in done.stdout
    assert not (run_dir / "eval" / "cmu.csv").exists()


def test_ctrl_c_saves_and_resume_finishes(tmp_path):
    args = ["run", str(REPO / "recipes" / "quickstart.yaml"), *_sets(TINY_QUICKSTART),
            *_sets(["train.max_steps=100000", "train.eval_every=100000", "data.test={}"]),
            "--run-dir", "run"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "empose_framework", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    log = tmp_path / "run" / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and "step 2 " in log.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-3000:]
    assert "Resume with" in out and "--resume" in out
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    import torch

    step = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)["step"]
    assert step >= 2
    resumed = empose(*args[:-2], *_sets([f"train.max_steps={step + 2}"]), "--resume", "run", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:] + resumed.stdout[-3000:]
    assert f"resuming at step {step}" in resumed.stdout
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)["step"] == step + 2


def test_evaluate_task_reads_a_checkpoint(tmp_path):
    trained = empose("run", str(REPO / "recipes" / "quickstart.yaml"), *_sets(TINY_QUICKSTART),
                     *_sets(["train.max_steps=1", "data.test={}"]), "--run-dir", "t", tmp_path=tmp_path)  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "no test sets" in trained.stdout
    sets = TINY_QUICKSTART + ["task=evaluate", "evaluate.checkpoint=t/checkpoints/best.pt",
                              "data.test.cmu.motions={use: cmu_clips, include: [131_01.bvh]}"]
    done = empose("run", str(REPO / "recipes" / "quickstart.yaml"), *_sets(sets), "--run-dir", "e", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    table = json.loads((tmp_path / "e" / "eval" / "heldout.json").read_text())
    assert table["weights"].startswith("t/checkpoints/best.pt")
    missing = empose("run", str(REPO / "recipes" / "quickstart.yaml"), *_sets(["task=evaluate"]), tmp_path=tmp_path)
    assert missing.returncode == 2 and "evaluate.checkpoint" in missing.stderr
    cross = empose("run", str(REPO / "recipes" / "quickstart.yaml"), *_sets(sets), "--cross-subject", tmp_path=tmp_path)
    assert cross.returncode == 2 and "hold-out" in cross.stderr


@pytest.mark.parametrize("name", PAPER)
def test_paper_recipes_name_the_missing_data_and_the_embedded_alternative(name, monkeypatch):
    from empose_framework.errors import RecipeError
    from empose_framework.recipes import load_recipe

    for var in ("SMPL_MODELS", "EM_DATA_SYNTH", "EM_DATA_REAL"):
        monkeypatch.delenv(var, raising=False)
    recipe = load_recipe(REPO / "recipes" / f"{name}.yaml")  # validating needs no data; building the run does
    with pytest.raises(RecipeError, match=r"SMPL_MODELS is not set.*--set body_model=embedded"):
        _ = recipe.data
    monkeypatch.setenv("SMPL_MODELS", "/models")
    with pytest.raises(RecipeError, match=r"EM_DATA_(REAL|SYNTH) is not set"):
        _ = load_recipe(REPO / "recipes" / f"{name}.yaml").data


def test_paper_recipe_on_the_embedded_data_as_the_message_says(tmp_path):
    from empose_framework.recipes import load_recipe

    hint = load_recipe(REPO / "recipes" / "lgd_rnn_6.yaml", ["body_model.path=x", "data.train.offsets=x",
                       "data.valid.offsets=x", "data.train.motions.path=x", "data.valid.motions.path=x",
                       "data.test.real.path=x"]).data["missing_data_hint"]  # fmt: skip
    import shlex

    words = shlex.split(hint[hint.index("--set"):hint.index(" (or start")])
    sets = [w for w in words if w != "--set"]
    recipe = load_recipe(REPO / "recipes" / "lgd_rnn_6.yaml", sets)
    data = recipe.data
    assert data["body_model"]["use"] == "embedded" and data["data"]["train"]["motions"]["use"] == "embedded"
    assert data["estimator"]["hidden"] == 512 and data["train"]["lr"] == 5e-4  # the paper model itself
    # the smplh data is missing on this machine: the engine's error names the file and repeats the hint
    env = {"SMPL_MODELS": str(tmp_path / "smpl"), "EM_DATA_SYNTH": str(tmp_path), "EM_DATA_REAL": str(tmp_path)}
    done = empose("run", str(REPO / "recipes" / "lgd_rnn_6.yaml"), tmp_path=tmp_path, env=env)
    assert done.returncode == 2
    message = " ".join(done.stderr.split())
    assert str(tmp_path / "smpl") in message and "--set body_model=embedded" in message
