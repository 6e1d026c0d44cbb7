"""Test doubles for the engine's tests: smooth random motions (fast, deterministic) and a tiny
LGD RNN recipe on the embedded body model, so the engine's mechanics are tested on real components
without waiting for a real data set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from empose_framework import hookimpl, plugins
from empose_framework.interfaces import Motion, MotionSource
from empose_framework.params import Param


class SineMotions(MotionSource):
    """Sums of sines per joint angle: smooth, varied, reproducible from `seed`."""

    params = (Param("n", int, 8, "motions"), Param("frames", int, 120, "frames each"), Param("seed", int, 0, "seed"))

    def __init__(self, *, n, frames, seed, body_model):
        rng = np.random.default_rng(seed)
        t = np.arange(frames) / 60.0
        j = body_model.n_pose_joints
        self.items = []
        for i in range(n):
            amp, freq, phase = rng.normal(scale=0.3, size=(j, 3)), rng.uniform(0.2, 1.0, (j, 3)), rng.uniform(0, 6.3, (j, 3))
            pose = (amp * np.sin(2 * np.pi * freq * t[:, None, None] + phase)).astype(np.float32)
            betas = (rng.normal(size=body_model.n_betas) * 0.5).astype(np.float32)
            self.items.append(Motion(f"sine{seed}_{i}", pose, betas, np.zeros((frames, 3), np.float32)))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class _Plugin:
    @hookimpl
    def register_motion_sources(self, register):
        register("sine_motions", SineMotions, "test double: random sine motions")


def install_registry(monkeypatch=None):
    """Make the process-wide registry include the doubles (the engine calls get_registry())."""
    registry = plugins.Registry(extra_plugins=[("engine_doubles", _Plugin())])
    if monkeypatch is not None:
        monkeypatch.setattr(plugins, "_REGISTRY", registry)
    else:
        plugins._REGISTRY = registry
    return registry


TINY = {
    "name": "tiny",
    "task": "train",
    "seed": 7,
    "device": "cpu",
    "body_model": "embedded",
    "data": {
        "train": {"use": "virtual_em", "sensors": "em6", "motions": {"use": "sine_motions", "n": 12, "seed": 1}},
        "valid": {"use": "virtual_em", "sensors": "em6", "motions": {"use": "sine_motions", "n": 4, "seed": 2}},
        "test": {"held": {"use": "virtual_em", "sensors": "em12", "motions": {"use": "sine_motions", "n": 2, "seed": 3, "frames": 150}}},
    },
    "estimator": {"use": "lgd", "hidden": 32, "blocks": 1, "iterations": 1, "use_gradient": True, "average_shape": True,
                  "rnn_init": True, "rnn_hidden": 32, "rnn_layers": 1, "hidden_dropout": 0.1},
    "losses": [{"use": "pose", "weight": 10}, {"use": "shape"}, {"use": "sensor_reconstruction", "weight": 0.01},
               {"use": "fk", "weight": 0.1}],
    "metrics": ["mpjpe", "pa_mpjpe", "mpjae"],
    "train": {"batch_size": 4, "window": 24, "epochs": 3, "lr": 1.0e-3, "eval_every": 4, "log_every": 1, "num_threads": 1},
    "evaluate": {"chunk": 64},
}  # fmt: skip


def write_recipe(folder: Path, **changes) -> Path:
    """The tiny recipe with top-level `changes`, written to `folder/tiny.yaml`, output under folder."""
    data = {**TINY, "output": str(folder / "runs"), **changes}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_recipe(path, registry, *overrides, **kw):
    """Load the recipe at `path` with `--set`-style overrides against `registry` and run it."""
    from empose_framework.engine import run
    from empose_framework.recipes import load_recipe

    return run(load_recipe(path, list(overrides), registry=registry), **kw)


def last_weights(run_dir):
    """The model weights of a run's last checkpoint."""
    import torch

    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["model"]
