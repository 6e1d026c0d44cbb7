"""Motion-source timings (JSON): resampling, `empose preprocess`, LMDB reads, embedded motions, BVH.

    python bench/motion.py [--files 20] [--frames 2400] [--body-model embedded]

Synthetic AMASS-format files (120 fps) are written to a temporary folder; the CMU clips are used when
`../shared/data/cmu` (or $EMPOSE_CMU_DIR) exists.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def timed(fn, repeat=3):
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--frames", type=int, default=2400, help="frames per file at 120 fps")
    ap.add_argument("--body-model", default="embedded")
    args = ap.parse_args()

    from rich.console import Console

    from empose_framework.plugins import get_registry
    from empose_motion.embedded import EmbeddedMotions
    from empose_motion.lmdb_source import AmassLMDB
    from empose_motion.preprocess import run_preprocess
    from empose_motion.resample import resample_motion

    body = get_registry().load("body_model", args.body_model)()
    result = {"benchmark": "motion sources", "body_model": args.body_model}
    rng = np.random.default_rng(0)

    pose = rng.normal(scale=0.3, size=(args.frames, 22, 3))
    trans = rng.normal(size=(args.frames, 3))
    s = timed(lambda: resample_motion(pose, trans, 120.0, 60.0))
    result["resample_120_to_60_frames_per_s"] = round(args.frames / s)

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "amass"
        src.mkdir()
        for i in range(args.files):
            t = np.arange(args.frames) / 120.0
            poses = 0.4 * np.sin(t[:, None] * rng.uniform(1, 4, 156) + rng.uniform(0, 6, 156))
            np.savez(src / f"{i:03d}_poses.npz", poses=poses, betas=rng.normal(size=16), trans=np.zeros((args.frames, 3)),
                     mocap_framerate=np.array(120.0), gender=np.array("male"))
        quiet = Console(file=io.StringIO())
        for joints in (True, False):
            t0 = time.perf_counter()
            summary = run_preprocess("amass", src, Path(tmp) / f"db_{joints}", body_model=body if joints else None,
                                     body_model_name=args.body_model, console=quiet)
            dt = time.perf_counter() - t0
            result[f"preprocess_{'with' if joints else 'without'}_joints"] = {
                "files": args.files, "frames_out": summary.frames, "seconds": round(dt, 3),
                "frames_per_s": round(summary.frames / dt),
                "db_mib": round((Path(tmp) / f"db_{joints}" / "data.mdb").stat().st_size / 2**20, 1)}
        source = AmassLMDB(path=str(Path(tmp) / "db_True"), body_model=body)
        order = rng.permutation(len(source))
        t0 = time.perf_counter()
        for _ in range(5):
            for i in order:
                source[int(i)]
        result["lmdb_random_reads_per_s"] = round(5 * len(source) / (time.perf_counter() - t0))

    emb = EmbeddedMotions(body_model=body, count=16, seconds=10.0)
    t0 = time.perf_counter()
    for i in range(len(emb)):
        emb[i]
    result["embedded_ms_per_10s_motion"] = round(1000 * (time.perf_counter() - t0) / len(emb), 1)

    cmu = Path(os.environ.get("EMPOSE_CMU_DIR", Path(__file__).resolve().parents[2] / "shared/data/cmu"))
    if cmu.is_dir():
        from empose_motion.bvh import BVHMotions

        bvh = BVHMotions(path=str(cmu), body_model=body)
        t0 = time.perf_counter()
        frames = sum(len(bvh.load(i)[0]) for i in range(len(bvh)))
        result["bvh_load_retarget"] = {"clips": len(bvh), "frames_60fps": frames, "seconds": round(time.perf_counter() - t0, 3)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
