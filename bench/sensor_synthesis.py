"""Virtual-EM sensor synthesis throughput: frames per second for batches of 12 windows x 32 frames x
12 sensors on the `embedded` body model, on CPU and (when present) CUDA.

Three measurements per device:
- `sensor_frames`: the body model's sparse sensor path alone (posing + frames + offsets);
- `windows`: a full `virtual_em` training pass (crop, collate, root normalisation, per-sequence offset
  draws, synthesis) over in-memory motions, i.e. what the trainer waits for per batch;
- `windows_noise`: the same with per-frame offset draws, spherical and suppression noise;
- `position_last_batch`: time to the last batch of a pass with `windows(start=k)` vs replaying k batches.

Prints one JSON object. Usage: python bench/sensor_synthesis.py [--seconds 2] [--threads N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time

import numpy as np
import torch

from empose_em.sensor_sets import EM12
from empose_em.virtual import VirtualEM
from empose_framework.interfaces import BodyPose, Motion, MotionSource, SensorOffsets

B, T, S = 12, 32, 12


class MemoryMotions(MotionSource):
    """Random smooth motions held in memory, so that only synthesis is timed."""

    def __init__(self, n: int, frames: int, n_joints: int, n_betas: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        t = np.arange(frames)[:, None, None]
        self.items = []
        for i in range(n):
            amp, freq = rng.uniform(0.05, 0.4, (n_joints, 3)), rng.uniform(0.02, 0.1, (n_joints, 3))
            phase = rng.uniform(0, 6, (n_joints, 3))
            pose = amp * np.sin(freq * t + phase)
            trans = np.cumsum(rng.normal(scale=0.01, size=(frames, 3)), 0)
            betas = rng.normal(size=n_betas).astype(np.float32)
            self.items.append(Motion(f"m{i}", pose.astype(np.float32), betas, trans.astype(np.float32)))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(fn, frames_per_call: int, seconds: float, device) -> dict:
    """Time repeated calls; best and median frames/s (the best is the least disturbed by other load)."""
    fn()  # warm-up (caches, kernels)
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 5:
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    best, median = min(times), statistics.median(times)
    return {
        "frames_per_s_best": round(frames_per_call / best),
        "frames_per_s_median": round(frames_per_call / median),
        "ms_per_batch_median": round(1000 * median * B * T / frames_per_call, 2),
        "calls": len(times),
    }


def bench_device(body, motions, device, seconds: float) -> dict:
    body.to(device)
    rng = np.random.default_rng(1)
    pose = BodyPose(
        torch.as_tensor(rng.normal(scale=0.3, size=(B, T, body.n_pose_joints, 3)), dtype=torch.float32, device=device),
        torch.as_tensor(rng.normal(size=(B, body.n_betas)), dtype=torch.float32, device=device),
    )
    off = SensorOffsets(torch.full((B, S, 3), 0.01, device=device), torch.eye(3, device=device).expand(B, S, 3, 3))
    out = {"sensor_frames": _rate(lambda: body.sensor_frames(pose, EM12, off), B * T, seconds, device)}
    n_frames = len(motions) * T

    def one_pass(src):
        for _ in src.windows(B, T, train=True, seed=0, device=device):
            pass

    plain = VirtualEM(motions=motions, sensors="em12", offset_noise=0, body_model=body)
    out["windows"] = _rate(lambda: one_pass(plain), n_frames, seconds, device)
    noisy = VirtualEM(motions=motions, sensors="em12", offset_noise=1, spherical_noise_strength=0.5, spherical_noise_length=0.3,
                      suppression_noise_length=0.2, noise_sensors=2, body_model=body)  # fmt: skip
    out["windows_noise"] = _rate(lambda: one_pass(noisy), n_frames, seconds, device)
    out["position_last_batch"] = _positioning(plain, len(motions) // B - 1, device)
    return out


def _positioning(src, k: int, device, repeats: int = 5) -> dict:
    """Milliseconds until batch k of a training pass is ready: `windows(start=k)` (what a resume does
    with a seekable source) against replaying the k batches before it (what it did before)."""

    def first(it):
        next(it)
        _sync(device)

    def timed(fn):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return round(1000 * statistics.median(times), 2)

    seek = timed(lambda: first(src.windows(B, T, train=True, seed=0, device=device, start=k)))
    replay = timed(lambda: first(itertools.islice(src.windows(B, T, train=True, seed=0, device=device), k, None)))
    return {"batch": k, "start_ms": seek, "replay_ms": replay}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from empose_smplh.model import EmbeddedBody

    body = EmbeddedBody()
    motions = MemoryMotions(n=10 * B, frames=200, n_joints=body.n_pose_joints, n_betas=body.n_betas)
    result = {
        "benchmark": f"virtual_em synthesis, batch {B} windows x {T} frames x {S} sensors, embedded body",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu": bench_device(body, motions, torch.device("cpu"), args.seconds),
    }
    if torch.cuda.is_available():
        result["cuda_device"] = torch.cuda.get_device_name(0)
        result["cuda"] = bench_device(body, motions, torch.device("cuda"), args.seconds)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
