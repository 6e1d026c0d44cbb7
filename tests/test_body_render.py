"""The body-model plugin's registration and the `render-body` command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from empose_framework.cli import build_app
from empose_framework.plugins import Registry


@pytest.fixture(scope="module")
def registry():
    return Registry()


def test_plugin_module_is_light():
    code = "import sys, empose_smplh.plugin; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_both_body_models_registered(registry):
    names = {e.name for e in registry.entries("body_model")}
    assert {"smplh", "embedded"} <= names
    body = registry.build("body_model", {"use": "embedded"})
    assert body.n_betas == 10 and len(body.sensor_sites) == 12


def test_render_body_writes_png(registry, tmp_path):
    app = build_app(registry)
    pose_file = tmp_path / "pose.npy"
    pose = np.zeros((4, 66))
    pose[:, 18 * 3 + 1] = 1.2  # left elbow bent
    np.save(pose_file, pose)
    out = tmp_path / "body.png"
    result = CliRunner().invoke(app, ["render-body", "embedded", str(out), "--pose", str(pose_file), "--betas", "1,0,-1"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_render_body_rejects_a_bad_pose_file(registry, tmp_path):
    pose_file = tmp_path / "pose.npy"
    np.save(pose_file, np.zeros((5, 7)))
    result = CliRunner().invoke(build_app(registry), ["render-body", "embedded", str(tmp_path / "b.png"), "--pose", str(pose_file)])
    assert result.exit_code != 0
    assert "is not a pose" in str(result.exception) + result.output
