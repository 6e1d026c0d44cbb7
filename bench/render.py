"""`empose render` speed: a generated motion of about 10 s (60 fps) drawn at 30 fps, alone and beside its truth.

Prints JSON: wall seconds per output (MP4 side by side, MP4 single, GIF single, PNG contact sheet), the
CPU seconds of this process (ffmpeg's own encoding runs in a child process and is not counted), frames,
milliseconds per frame, and the threads used. The "prediction" is the truth with a smooth pose error,
which costs the renderer the same as a real one.

    python bench/render.py [--seconds 10] [--fps 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def motion_files(folder: Path, seconds: float) -> tuple[Path, Path]:
    from empose_framework import motion_file
    from empose_framework.plugins import get_registry

    reg = get_registry()
    body = reg.build("body_model", {"use": "embedded"})
    spec = {"use": "virtual_em", "sensors": "em6", "motions": {"use": "embedded", "split": "test", "count": 1, "seconds": seconds}}
    batch = next(iter(reg.build("sensor_source", spec, body_model=body).sequences()))
    t = int(batch.seq_len[0])
    pose, betas = batch.target.pose[0, :t].numpy(), batch.target.betas[0].numpy().reshape(-1, body.n_betas)[0]
    s = batch.sensors
    sensors = {"names": s.names, "pos": s.pos[0, :t].numpy(), "ori": s.ori[0, :t].numpy(), "valid": s.valid[0, :t].numpy()}
    wobble = 0.1 * np.sin(np.linspace(0, 9, t))[:, None, None] * np.random.default_rng(0).normal(size=(1,) + pose.shape[1:])
    paths = folder / "truth.npz", folder / "pred.npz"
    for path, kind, p in zip(paths, ("truth", "prediction"), (pose, pose + wobble)):
        mf = motion_file.from_body_pose(p.astype(np.float32), betas, body, {"use": "embedded"}, 60.0, kind=kind, sensors=sensors)
        motion_file.write(mf, path)
    return paths


def _frames(path: Path) -> int:
    """Frames in the written file (read back), tiles for a contact sheet (8)."""
    if path.suffix == ".mp4":
        import imageio_ffmpeg

        return imageio_ffmpeg.count_frames_and_secs(str(path))[0]
    if path.suffix == ".gif":
        from PIL import Image

        with Image.open(path) as gif:
            return gif.n_frames
    return 8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from empose_io.render import render_motion

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        truth, pred = motion_files(folder, args.seconds)
        cases = {
            "mp4_side_by_side": (pred, truth, "pair.mp4", {}),
            "mp4_single": (pred, None, "single.mp4", {}),
            "gif_single": (pred, None, "single.gif", {}),
            "png_sheet_side_by_side_8": (pred, truth, "sheet.png", {"frames": 8}),
        }
        results = {}
        for name, (p, t, out, opts) in cases.items():
            start, cpu = time.perf_counter(), time.process_time()
            written = render_motion(p, t, folder / out, {"fps": args.fps, "quiet": True, **opts})
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            frames = _frames(written)
            results[name] = {"seconds": round(seconds, 2), "cpu_seconds_python": round(cpu, 2), "frames": frames,
                             "ms_per_frame": round(1000 * seconds / frames, 1), "bytes": written.stat().st_size}  # fmt: skip
    print(json.dumps({"clip_seconds": args.seconds, "fps": args.fps, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "results": results}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
