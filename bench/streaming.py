"""Streaming latency of the causal estimators and the LGD RNN 6 training step on CPU; prints JSON.

    python bench/streaming.py [--frames 600] [--train-steps 5] [--compile] [--quick]

- `streaming`: reset() then step() on 1, 4 or 8 frames per call (batch 1, eval, no_grad) at 1 and 2
  threads: frames/s and p50/p99 latency per call, for LGD RNN 6 (recipes/lgd_rnn_6.yaml's estimator),
  ResNet 6 and RNN 6 (the paper's sizes);
- `lgd_rnn_6_train_step_ms`: forward, the recipe's losses, backward and Adam on a 12 x 32 batch at 2
  threads;
each on the embedded body and on an SMPL-H-layout body (the embedded mesh with non-zero pose blend
shapes, so the pose-corrective path that real SMPL-H takes is timed too). `reference: true` times the
autograd gradient input instead of the body model's closed form, and the module path instead of the
folded inference path (what the estimators did before). `--compile` also times `compile_stream()`
(torch.compile of the whole step; `compile_s`: the first compile of each shape, cached on disk by inductor).
`floor` states the bandwidth bound at fp32: the weight bytes one frame reads (LGD's update nets once per
iteration), a large matrix-vector product's read rate on one thread now, and their quotient.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from empose_em.sensor_sets import EM6
from empose_estimators.lgd import LGD
from empose_estimators.resnet import ResNet
from empose_estimators.rnn import RNN
from empose_framework.interfaces import Batch
from empose_losses.losses import FKLoss, PoseLoss, SensorReconstructionLoss, ShapeLoss
from estimators import sensor_data

LGD_RNN_6 = dict(hidden=512, blocks=2, iterations=2, step_size=0.1, use_gradient=True, average_shape=True,
                 rnn_init=True, rnn_hidden=512, rnn_layers=2, batch_norm=True)  # fmt: skip
MODELS = {"lgd_rnn_6": (LGD, LGD_RNN_6), "resnet_6": (ResNet, {}), "rnn_6": (RNN, {})}


def bodies():
    """The embedded body and an SMPL-H-layout one (same mesh, random non-zero pose blend shapes)."""
    from empose_smplh.embedded import embedded_model_path
    from empose_smplh.model import EmbeddedBody, NpzBodyModel
    from empose_smplh.npz import load_model_npz

    arrays = dict(load_model_npz(embedded_model_path()))
    rng = np.random.default_rng(0)
    arrays["posedirs"] = (rng.normal(size=arrays["posedirs"].shape) * 0.002).astype(np.float32)
    return {"embedded": EmbeddedBody(), "smplh_layout": NpzBodyModel(arrays, 10, "SMPL-H layout (bench)")}


def build(name, body, reference=False):
    cls, params = MODELS[name]
    torch.manual_seed(0)
    est = cls(**params, body_model=body, sensor_names=EM6)
    if reference:
        est.reference = True
    return est


def weight_mb_per_frame(est) -> float:
    """Megabytes of parameters one streamed frame reads (LGD's update nets once per iteration)."""
    total = sum(p.numel() for p in est.parameters())
    if isinstance(est, LGD):
        nets = [est.pose_net_iter, est.shape_net_iter]
        total += (est.iterations - 1) * sum(p.numel() for n in nets for p in n.parameters())
    return 4 * total / 1e6


def read_rate_gb_s() -> float:
    """Single-thread read rate of a 256 MB matrix-vector product (weights from memory, not cache)."""
    torch.set_num_threads(1)
    w, x = torch.randn(1 << 17, 512), torch.randn(512)
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        w @ x
        times.append(time.perf_counter() - t0)
    return round(w.numel() * 4 / float(np.median(times)) / 1e9, 1)


def stream(est, seq, offsets, per_call: int, frames: int, compiled: bool = False) -> dict:
    est.eval()
    latencies, extra = [], {}
    if compiled:
        extra["compile_s"] = round(est.compile_stream(seq.frames(0, per_call), offsets), 1)
    with torch.no_grad():
        est.reset()
        for s in range(0, 3 * per_call, per_call):  # warm-up (lazy plans, allocator)
            est.step(seq.frames(s, s + per_call), offsets)
        est.reset()
        for s in range(0, frames - per_call + 1, per_call):
            part = seq.frames(s, s + per_call)
            t0 = time.perf_counter()
            est.step(part, offsets)
            latencies.append(time.perf_counter() - t0)
    est._compiled = None
    lat = np.asarray(latencies)
    return {**extra,
        "frames_per_s": round(per_call * len(lat) / lat.sum(), 1),
        "p50_ms": round(1e3 * float(np.percentile(lat, 50)), 3),
        "p99_ms": round(1e3 * float(np.percentile(lat, 99)), 3),
    }


def train_step_ms(est, body, steps: int) -> float:
    sensors, offsets, truth = sensor_data(body, 12, 32, torch.device("cpu"))
    sensors = sensors.select(EM6)
    idx = [list(sensors.names).index(n) for n in EM6]
    batch = Batch(sensors, truth, torch.full((12,), 32), [str(i) for i in range(12)],
                  type(offsets)(offsets.t[:, idx], offsets.r[:, idx]))  # fmt: skip
    losses = [(10.0, PoseLoss(body_model=body)), (1.0, ShapeLoss(body_model=body)),
              (0.01, SensorReconstructionLoss(body_model=body)), (0.1, FKLoss(body_model=body))]  # fmt: skip
    opt = torch.optim.Adam(est.parameters(), lr=5e-4)
    est.train()

    def step():
        opt.zero_grad(set_to_none=True)
        pred = est(batch.sensors, batch.seq_len, batch.offsets)
        sum(w * loss(pred, batch) for w, loss in losses).backward()
        opt.step()

    step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return round(1e3 * float(np.median(times)), 1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600, help="frames streamed per setting")
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--bodies", default="embedded,smplh_layout")
    parser.add_argument("--reference", action="store_true", help="also time the reference (autograd, module) path")
    parser.add_argument("--compile", action="store_true", help="also time compile_stream() (torch.compile)")
    parser.add_argument("--threads", default="1,2", help="torch threads to stream with")
    parser.add_argument("--per-call", default="1,4,8", help="frames per step() call")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.train_steps = 48, 1
    paths = [False, True] if args.reference else [False]
    rate = read_rate_gb_s()
    result = {"torch": torch.__version__, "load_average": os.getloadavg(), "frames": args.frames,
              "read_rate_gb_s": rate, "floor": {}, "streaming": {}, "lgd_rnn_6_train_step_ms": {}}  # fmt: skip
    for body_name, body in [(n, b) for n, b in bodies().items() if n in args.bodies.split(",")]:
        sensors, offsets, _ = sensor_data(body, 1, args.frames + 32, torch.device("cpu"), seed=1)
        idx = [list(sensors.names).index(n) for n in EM6]
        seq, off = sensors.select(EM6), type(offsets)(offsets.t[:, idx], offsets.r[:, idx])
        for name in [m for m in args.models.split(",") if m]:
            for reference in paths:
                if name != "lgd_rnn_6" and body_name != "embedded":
                    continue
                key = f"{body_name}/{name}" + ("/reference" if reference else "")
                entry = result["streaming"][key] = {}
                est = build(name, body, reference)
                mb = weight_mb_per_frame(est)
                result["floor"][name] = {"weight_mb_per_frame": round(mb, 1), "ms_per_frame": round(mb / rate, 2)}
                for threads in [int(n) for n in args.threads.split(",")]:
                    torch.set_num_threads(threads)
                    for per_call in [int(n) for n in args.per_call.split(",")]:
                        for compiled in [False, True] if args.compile and not reference else [False]:
                            setting = f"{threads}thr_{per_call}fpc" + ("_compiled" if compiled else "")
                            entry[setting] = stream(est, seq, off, per_call, args.frames, compiled)
        if not args.no_train and "lgd_rnn_6" in args.models:
            torch.set_num_threads(2)
            for reference in paths:
                key = body_name + ("/reference" if reference else "")
                result["lgd_rnn_6_train_step_ms"][key] = train_step_ms(
                    build("lgd_rnn_6", body, reference), body, args.train_steps
                )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
