"""The empose_em plugin: registration through the entry point, a light plugin module, documented
params, and construction through the registry the way a recipe does it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from em_doubles import TinyBody, random_offsets, write_offsets
from empose_em.recordings import EMPoseRecordings
from empose_em.virtual import VirtualEM
from empose_framework.errors import EmposeError, PluginError
from empose_framework.plugins import Registry


def test_plugin_module_does_not_import_torch():
    code = "import sys, empose_em.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture(scope="module")
def registry():
    return Registry()


def test_sources_registered_and_documented(registry):
    entries = {e.name: e for e in registry.entries("sensor_source")}
    assert entries["virtual_em"].plugin == "em" and entries["empose_recordings"].plugin == "em"
    assert registry.load("sensor_source", "virtual_em") is VirtualEM
    assert registry.load("sensor_source", "empose_recordings") is EMPoseRecordings
    for cls in (VirtualEM, EMPoseRecordings):
        assert all(p.doc for p in cls.params), cls
        assert cls.summary()


def test_build_recordings_through_registry(registry, monkeypatch):
    monkeypatch.delenv("EM_DATA_REAL", raising=False)
    with pytest.raises(EmposeError, match="environment variable EM_DATA_REAL, which is not set"):
        registry.build("sensor_source", {"use": "empose_recordings"}, body_model=TinyBody(n_betas=10))


def _upright(b):
    """Head above the pelvis/back sensor, which is above the supporting (lower) shank sensor, in every
    valid frame (y is up): what a standing or walking person looks like in the normalised frame."""
    y = {n: b.sensors.pos[..., b.sensors.names.index(n), 1] for n in ("head", "back", "l_shank", "r_shank")}
    m = b.frame_mask()
    return bool(((y["head"] > y["back"] + 0.2) & (y["back"] > torch.minimum(y["l_shank"], y["r_shank"]) + 0.2))[m].all())


@pytest.fixture(scope="module")
def embedded_body(registry):
    try:
        return registry.build("body_model", "embedded")
    except PluginError as exc:
        pytest.skip(f"embedded body model not available: {exc}")


def test_build_virtual_em_through_registry(registry, embedded_body, tmp_path):
    try:
        registry.load("motion_source", "embedded")
    except PluginError as exc:
        pytest.skip(f"embedded motion source not available: {exc}")
    means, covs, r = random_offsets(np.random.default_rng(0))
    write_offsets(tmp_path / "X_offsets.npz", means, covs, r)
    spec = {"use": "virtual_em", "sensors": "em12", "offsets": str(tmp_path),
            "motions": {"use": "embedded", "count": 3, "seconds": 1.0, "activities": ["walking", "arms_slow"]}}  # fmt: skip
    src = registry.build("sensor_source", spec, body_model=embedded_body)
    b = next(src.windows(3, 16, train=True, seed=0))
    assert b.sensors.pos.shape[:3] == (3, 16, 12) and b.sensors.valid.all()
    assert b.target.pose.shape[-2] == embedded_body.n_pose_joints
    assert _upright(b)


def test_virtual_sensors_on_real_cmu_walking(registry, embedded_body):
    from empose_motion.bvh import CMU_CLIPS as cmu  # shipped with empose

    try:
        registry.load("motion_source", "bvh")
    except PluginError as exc:
        pytest.skip(f"bvh motion source not available: {exc}")
    spec = {"use": "virtual_em", "motions": {"use": "bvh", "path": str(cmu / "131_01.bvh.gz")}}
    b = next(registry.build("sensor_source", spec, body_model=embedded_body).sequences())
    assert b.sensors.pos.shape[1] > 300 and torch.isfinite(b.sensors.pos).all()
    assert _upright(b)  # a walking person stays upright in the first-frame-canonical frame
