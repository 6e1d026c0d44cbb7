"""Small fake components and on-disk fake distributions for the core's tests.

`make_distribution` writes a real `*.dist-info` with `entry_points.txt` into a folder, so putting that
folder on PYTHONPATH exercises exactly the entry-point path an installed third-party package takes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from empose_framework import hookimpl
from empose_framework.interfaces import BodyModel, Estimator, Loss, SensorSource
from empose_framework.params import ComponentRef, Param


class FakeBody(BodyModel):
    """A body model that only carries sizes."""

    params = (Param("n_betas", int, 10, "shape components"),)

    def __init__(self, *, n_betas):
        self.n_betas, self.n_pose_joints = n_betas, 22

    def forward(self, pose, vertices=True):
        raise NotImplementedError

    def sensor_frames(self, pose, sites, offsets=None):
        raise NotImplementedError

    def to(self, device):
        return self


class FakeSource(SensorSource):
    """Sensor source with a nested motion spec."""

    params = (
        Param("motions", ComponentRef("sensor_source") , None, "nested spec (any kind works for the test)"),
        Param("sensors", str | list[str], "em12", "sensor set"),
        Param("path", str, doc="where the data lives"),
    )

    def __init__(self, *, motions, sensors, path, body_model=None):
        self.motions, self.sensors, self.path, self.body_model = motions, sensors, path, body_model

    def windows(self, batch_size, window, *, train, seed, device="cpu"):
        return iter(())

    def sequences(self, device="cpu"):
        return iter(())


class FakeEstimator(Estimator):
    """Learned gradient descent stand-in."""

    params = (
        Param("hidden", int, 512, "MLP width"),
        Param("step_size", float, 0.1, "update step"),
        Param("rnn_init", bool, True, "RNN initialiser"),
        Param("mode", str, "fast", "a choice", choices=("fast", "exact")),
    )

    def __init__(self, *, hidden, step_size, rnn_init, mode, body_model=None, sensor_names=()):
        super().__init__()
        self.hidden = hidden

    def forward(self, sensors, seq_len, offsets=None):
        raise NotImplementedError


class FakeLoss(Loss):
    """Pose loss stand-in."""

    params = ()

    def __init__(self, *, body_model=None):
        pass

    def __call__(self, prediction, batch):
        return 0.0


class FakePlugin:
    @hookimpl
    def register_body_models(self, register):
        register("fake_body", FakeBody)

    @hookimpl
    def register_sensor_sources(self, register):
        register("fake_source", FakeSource)

    @hookimpl
    def register_estimators(self, register):
        register("lgd", FakeEstimator)
        register("resnet", FakeEstimator, "frame-wise stand-in")

    @hookimpl
    def register_losses(self, register):
        register("pose", FakeLoss)


def fake_registry():
    from empose_framework.plugins import Registry

    return Registry(entry_points=False, extra_plugins=[("fake", FakePlugin())])


def make_distribution(root: Path, dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
    """Write modules and a dist-info declaring `entry_points` (name -> module) in group `empose`."""
    root.mkdir(parents=True, exist_ok=True)
    for name, code in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(code))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[empose]\n{lines}\n")
    return root


def run_empose(*args, pythonpath: Path | None = None, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (as a user would)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EMPOSE_")}
    full_env["COLUMNS"] = "200"  # rich wraps at the terminal width; keep messages on one line
    if pythonpath is not None:
        full_env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), full_env.get("PYTHONPATH", "")])
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "empose_framework", *map(str, args)],
        capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300,
    )
