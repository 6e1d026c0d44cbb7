"""empose plugin: motion sources (`amass_lmdb`, `bvh`, `embedded`) and `empose preprocess`.

Imported by `empose list-plugins`: nothing heavy at module level.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from empose_framework import hookimpl
from empose_motion import schema


@hookimpl
def register_motion_sources(register):
    register("amass_lmdb", "empose_motion.lmdb_source:AmassLMDB",
             "AMASS/3DPW motions from an LMDB written by `empose preprocess` (or the original's)", params=schema.AMASS_LMDB)
    register("bvh", "empose_motion.bvh:BVHMotions",
             "BVH motion capture (e.g. CMU) resampled to 60 fps and retargeted onto the body model", params=schema.BVH)
    register("cmu_clips", "empose_motion.bvh:CMUClips",
             "The three real CMU motion-capture clips shipped with empose (01_01, 131_01, 131_02)", params=schema.CMU_CLIPS)
    register("embedded", "empose_motion.embedded:EmbeddedMotions",
             "Generated EM-POSE-style activities (no download), deterministic from seed and split", params=schema.EMBEDDED)


class Dataset(str, Enum):
    amass = "amass"
    threedpw = "3dpw"


@hookimpl
def register_commands(app):
    import typer

    @app.command("preprocess")
    def preprocess(
        dataset: Dataset = typer.Argument(..., help="`amass` (SMPL-H *.npz, resampled to 60 fps) or `3dpw` (*.pkl)."),
        src: Path = typer.Argument(..., help="Folder with the downloaded files (searched recursively)."),
        dst: Path = typer.Argument(..., help="LMDB folder to write; an existing one is resumed."),
        body_model: str = typer.Option("smplh", "--body-model", help="Body model for the stored FK joints."),
        joints: bool = typer.Option(True, "--joints/--no-joints",
                                    help="Store FK joints (the original's `joints{i}`); training recomputes them."),
        map_size_gb: float = typer.Option(None, "--map-size-gb", help="LMDB map size (default 16 for amass, 1 for 3dpw)."),
        strict: bool = typer.Option(False, "--strict", help="Stop at the first unreadable file instead of skipping it."),
        device: str = typer.Option("cpu", "--device", help="Device for the FK joints (cpu, cuda, ...)."),
    ):
        """Convert AMASS or 3DPW to a 60 fps motion LMDB (resumable: rerun to continue)."""
        from empose_motion.preprocess import build_body_model, run_preprocess

        model = build_body_model(body_model, device) if joints else None
        run_preprocess(dataset.value, src, dst, body_model=model, body_model_name=body_model,
                       map_size_gb=map_size_gb, strict=strict, device=device)
