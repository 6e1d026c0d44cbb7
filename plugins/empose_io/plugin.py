"""Registers `empose predict` and the `sensor_file` sensor source. Light on purpose: no torch import here."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from empose_framework import hookimpl
from empose_io import schema


@hookimpl
def register_sensor_sources(register):
    register("sensor_file", "empose_io.sensor_file:SensorFileSource",
             "Your own trackers: a plain sensor file (.npz or .csv), root-normalised on the back sensor",
             params=schema.SENSOR_FILE)


@hookimpl
def register_commands(app):
    import typer

    @app.command("predict")
    def predict(
        model: str = typer.Argument(..., help="Checkpoint file (best.pt, checkpoint.pt) or `pretrained:NAME`."),
        input: str = typer.Argument(..., help="EM-POSE recording (*_clean.npz or folder), plain sensor file "
                                              "(.npz/.csv or folder), YAML sensor-source spec or recipe, or `source:NAME`."),
        out: Path = typer.Option(..., "-o", "--out", help="Output folder (created)."),
        set_: List[str] = typer.Option([], "--set", help="KEY=VALUE for a YAML spec, recipe or source:NAME (repeatable)."),
        data: Optional[str] = typer.Option(None, "--data", help="With a recipe: the test set to use (default: all)."),
        chunk: int = typer.Option(256, "--chunk", help="Frames per streaming step (0: whole sequence at once)."),
        bvh: bool = typer.Option(True, "--bvh/--no-bvh", help="Write <id>.bvh."),
        joints: bool = typer.Option(True, "--joints/--no-joints", help="Write <id>_joints.npz."),
        bvh_units: str = typer.Option("m", "--bvh-units", help="BVH lengths: m (metres) or cm."),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda, ..."),
        render: bool = typer.Option(False, "--render", help="Also render <id>.mp4 (needs a plugin that renders)."),
    ):
        """Run a trained model on sensor data; write the motion (npz, BVH, joints) per sequence."""
        from empose_io.predict import run_predict

        run_predict(model, input, out, set_, data, chunk or None, bvh, joints, bvh_units, device, render)
