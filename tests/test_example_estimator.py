"""The example third-party estimator (examples/empose-plugin-example) trains through the engine with the
standard losses, and a loss that needs a Prediction field it does not provide says which."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import engine_doubles
from empose_framework import plugins
from empose_framework.engine import run
from empose_framework.errors import EmposeError
from empose_framework.interfaces import Batch
from empose_framework.recipes import load_recipe

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "empose-plugin-example"


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from empose_plugin_example import plugin

    registry = plugins.Registry(extra_plugins=[("engine_doubles", engine_doubles._Plugin()), ("example", plugin)])
    monkeypatch.setattr(plugins, "_REGISTRY", registry)
    return registry


def test_example_estimator_trains_with_pose_and_shape_losses(tmp_path, registry):
    path = engine_doubles.write_recipe(
        tmp_path, estimator={"use": "sensor_mlp", "hidden": 32, "layers": 1},
        losses=[{"use": "pose", "weight": 10}, {"use": "shape"}],
    )  # fmt: skip
    run_dir = run(load_recipe(path, ["train.max_steps=8", "train.eval_every=1", "train.lr=0.01"], registry=registry))
    history = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["resume"]["progress"]["history"]
    assert [h["step"] for h in history] == list(range(1, 9))
    first, last = history[0], history[-1]
    assert last["loss/total"] < first["loss/total"]  # it learns: validation loss falls over 8 steps
    assert last["loss/pose"] < first["loss/pose"] and last["loss/shape"] < first["loss/shape"]
    table = json.loads((run_dir / "eval" / "held.json").read_text())  # evaluated on 12-sensor data: it picks its 6
    assert table["overall"]["used_frames"] == 300 and table["overall"]["mpjpe"]["mean"] > 0


def test_a_loss_needing_a_field_the_estimator_lacks_names_loss_field_and_estimator(registry):
    body = registry.build("body_model", "embedded")
    source = registry.build("sensor_source", {"use": "virtual_em", "sensors": "em6",
                                              "motions": {"use": "sine_motions", "n": 2, "frames": 10}}, body_model=body)  # fmt: skip
    batch: Batch = next(iter(source.windows(2, 8, train=False, seed=0)))
    est = registry.build("estimator", {"use": "sensor_mlp", "hidden": 8, "layers": 1}, body_model=body,
                         sensor_names=source.sensor_names)  # fmt: skip
    prediction = est(batch.sensors, batch.seq_len, batch.offsets)
    assert prediction.estimator == "SensorMLP" and prediction.sensors is None
    loss = registry.build("loss", "sensor_reconstruction", body_model=body)
    with pytest.raises(EmposeError) as info:
        loss(prediction, batch)
    msg = str(info.value)
    assert "'sensor_reconstruction'" in msg and "Prediction.sensors" in msg and "SensorMLP" in msg
