"""empose plugin: the `smplh` and `embedded` body models and the `render-body` command.

Light on purpose (no torch import): `empose list-plugins` imports it.
"""

from __future__ import annotations

from empose_framework import hookimpl
from empose_smplh import schema


@hookimpl
def register_body_models(register):
    register("smplh", "empose_smplh.model:SMPLH", "SMPL-H (neutral, licensed AMASS file from $SMPL_MODELS) through smplx's skinning",
             params=schema.SMPLH)
    register("embedded", "empose_smplh.model:EmbeddedBody", "Built-in SMPL-H-compatible body (generated, no licensed data)",
             params=schema.EMBEDDED)


@hookimpl
def register_commands(app):
    import typer

    @app.command("render-body")
    def render_body(
        model: str = typer.Argument("embedded", help="body model name (embedded, smplh or any installed one)"),
        out: str = typer.Argument("body.png", help="PNG file to write"),
        pose: str = typer.Option(None, "--pose", help=".npy file with a pose (J, 3) or (J*3,) axis-angle"),
        random_pose: int = typer.Option(None, "--random-pose", help="seed of a random plausible pose"),
        betas: str = typer.Option(None, "--betas", help="comma-separated shape coefficients, e.g. 2,0,-1"),
        path: str = typer.Option(None, "--path", help="smplh only: the model.npz (default $SMPL_MODELS/...)"),
    ):
        """Draw a body model in rest pose and in a given pose (front and side) with its sensor sites."""
        from empose_framework.plugins import get_registry
        from empose_smplh.render import render_command

        body = get_registry().build("body_model", {"use": model, **({"path": path} if path is not None else {})})
        render_command(body, model, out, pose_file=pose, random_seed=random_pose, betas=betas)
