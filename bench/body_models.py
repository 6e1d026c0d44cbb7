"""Body-model timings (JSON): embedded build (cold/cached), FK, and the sensor fast path vs the full mesh.

    python bench/body_models.py [--frames 384] [--device cpu|cuda] [--smplh PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch


def timed(fn, repeat=5):
    fn()  # warm-up (builds caches)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=384, help="B*T frames per call (LGD: 12 x 32)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--smplh", default=None, help="also time the licensed model at this path")
    args = ap.parse_args()

    from empose_framework.interfaces import BodyPose
    from empose_smplh import embedded
    from empose_smplh.model import SMPLH, EmbeddedBody
    from empose_smplh.render import random_pose

    result = {"device": args.device, "frames": args.frames}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[embedded.CACHE_ENV] = tmp
        t = time.perf_counter()
        EmbeddedBody()
        result["embedded_build_cold_s"] = time.perf_counter() - t
        t = time.perf_counter()
        EmbeddedBody()
        result["embedded_build_cached_s"] = time.perf_counter() - t
    del os.environ[embedded.CACHE_ENV]

    models = {"embedded": EmbeddedBody()}
    if args.smplh:
        models["smplh"] = SMPLH(path=args.smplh)
    import numpy as np

    n = args.frames
    pose0 = torch.tensor(np.stack([random_pose(22, s) for s in range(n)]), dtype=torch.float32, device=args.device)
    for name, model in models.items():
        model.to(args.device)
        betas = torch.randn(n, model.n_betas, device=args.device)
        bp = BodyPose(pose0, betas)
        r = {"vertices": model.n_vertices}
        with torch.no_grad():
            r["forward_vertices_ms"] = 1e3 * timed(lambda: model.forward(bp, vertices=True))
            r["forward_joints_ms"] = 1e3 * timed(lambda: model.forward(bp, vertices=False))
            em6 = ["back", "head", "r_forearm", "r_shank", "l_forearm", "l_shank"]
            for sites_name, sites in (("em12", list(model.sensor_sites)), ("em6", em6)):
                r[f"sensor_fast_{sites_name}_ms"] = 1e3 * timed(lambda: model.sensor_frames(bp, sites))
            r["sensor_full_em12_ms"] = 1e3 * timed(lambda: model.sensor_frames(bp, list(model.sensor_sites), full_mesh=True))

        def fast_grad():
            p = pose0.clone().requires_grad_(True)
            b = betas.clone().requires_grad_(True)
            pos, rot = model.sensor_frames(BodyPose(p, b), list(model.sensor_sites))
            torch.autograd.grad(pos.sum() + rot.sum(), (p, b))

        def full_grad():
            p = pose0.clone().requires_grad_(True)
            b = betas.clone().requires_grad_(True)
            pos, rot = model.sensor_frames(BodyPose(p, b), list(model.sensor_sites), full_mesh=True)
            torch.autograd.grad(pos.sum() + rot.sum(), (p, b))

        r["sensor_fast_em12_fwd_bwd_ms"] = 1e3 * timed(fast_grad)
        r["sensor_full_em12_fwd_bwd_ms"] = 1e3 * timed(full_grad, repeat=2)
        r["fast_path_vertices"] = int(model._sparse(tuple(model.sensor_sites), torch.device(args.device)).v_template.shape[0])
        result[name] = r
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
