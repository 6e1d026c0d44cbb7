"""Multi-process training: 2 CPU processes under torchrun (gloo) end with identical weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from engine_doubles import write_recipe

HERE = Path(__file__).resolve().parent


def test_two_cpu_ranks_end_with_identical_weights(tmp_path):
    recipe = write_recipe(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(HERE / "engine_ddp_worker.py"), str(recipe), str(tmp_path), "train.max_steps=3", "train.eval_every=100"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["step"] == r1["step"] == 3
    assert r0["state"].keys() == r1["state"].keys()
    for key in r0["state"]:
        assert torch.equal(r0["state"][key], r1["state"][key]), key
    # rank 0 alone wrote the run folder, and its checkpoint holds those same weights
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    assert all(torch.equal(saved["model"][k], r0["state"][k]) for k in r0["state"])
    assert "x 2 processes" in (tmp_path / "run" / "train.log").read_text()
