"""empose plugin "render": the `empose render` command and the `render_motion` hook.

Light on purpose (no torch, numpy or Pillow import): `empose list-plugins` imports it.
"""

from __future__ import annotations

from empose_framework import hookimpl


@hookimpl
def render_motion(prediction, truth, out, options):
    from empose_io.render import render_motion as draw

    return draw(prediction, truth, out, options)


@hookimpl
def register_commands(app):
    import typer

    @app.command("render")
    def render(
        motion: str = typer.Argument(..., help="empose motion file (.npz from `empose predict` or evaluate.render)"),
        out: str = typer.Option("motion.mp4", "-o", "--out", help=".mp4 video, .gif animation or .png contact sheet"),
        truth: str = typer.Option(None, "--truth", help="ground-truth motion file, drawn on the left"),
        body_model: str = typer.Option(None, "--body-model", help="body model to draw (default: the file's)"),
        sensors: str = typer.Option("auto", "--sensors", help="auto | readings | sites | both | none"),
        fps: float = typer.Option(None, "--fps", help="output frame rate (default 30 for MP4, 15 for GIF)"),
        size: int = typer.Option(None, "--size", help="panel height in pixels (default 640 MP4, 400 GIF, 360 PNG)"),
        frames: int = typer.Option(8, "--frames", help="PNG contact sheet: number of frames"),
        columns: int = typer.Option(None, "--columns", help="PNG contact sheet: frames per row"),
        start: float = typer.Option(None, "--start", help="first second to draw"),
        end: float = typer.Option(None, "--end", help="last second to draw"),
        overlay: bool = typer.Option(True, "--overlay/--no-overlay", help="true skeleton over the prediction"),
    ):
        """Draw a motion file (or a prediction beside its --truth) with the sensors on the body."""
        from empose_io.render import render_motion as draw

        written = draw(motion, truth, out, {"body_model": body_model, "sensors": sensors, "fps": fps, "size": size,
                                            "frames": frames, "columns": columns, "start": start, "end": end,
                                            "overlay": overlay})  # fmt: skip
        print(f"wrote {written}")
