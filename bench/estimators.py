"""Speed of the eight paper estimators: training steps/s and inference frames/s (windowed, streamed).

    python bench/estimators.py [--device cpu|cuda|all] [--models lgd_rnn_6,resnet_12] [--quick]

Training step = the paper's batch (12 windows x 32 frames): forward, the paper's losses (LGD: pose 10,
shape 1, sensor_reconstruction 0.01, fk 0.1; ResNet/RNN: pose, shape), backward, Adam step.
Windowed inference = one sequence under no_grad in eval mode, as `empose run` evaluates it (LGD: reset
+ step() per chunk of 256 frames, carried LSTM state; ResNet/RNN: the whole sequence at once).
Streamed inference = reset() then step() frame by frame (BiRNN cannot stream: null).
Inputs are sensors that the body model places for random poses. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from rich.console import Console
from rich.progress import Progress

from empose_em.sensor_sets import EM6, EM12
from empose_estimators.lgd import LGD
from empose_estimators.resnet import ResNet
from empose_estimators.rnn import RNN
from empose_framework.geometry import aa_to_rotmat
from empose_framework.interfaces import Batch, BodyPose, SensorFrames, SensorOffsets
from empose_losses.losses import FKLoss, PoseLoss, SensorReconstructionLoss, ShapeLoss

LGD_RNN = dict(hidden=512, blocks=2, iterations=2, use_gradient=True, average_shape=True, rnn_init=True, rnn_hidden=512)
LGD_MLP = dict(hidden=512, blocks=2, iterations=4, use_gradient=True, average_shape=True)
MODELS = {
    "lgd_rnn_6": (LGD, LGD_RNN, EM6), "lgd_rnn_12": (LGD, LGD_RNN, EM12),
    "lgd_6": (LGD, LGD_MLP, EM6), "lgd_12": (LGD, LGD_MLP, EM12),
    "birnn_6": (RNN, dict(bidirectional=True), EM6), "birnn_12": (RNN, dict(bidirectional=True), EM12),
    "resnet_6": (ResNet, {}, EM6), "resnet_12": (ResNet, {}, EM12),
}  # fmt: skip


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sensor_data(body, n_seq: int, n_frames: int, device, seed: int = 0):
    """Sensors at all 12 sites for random poses (plus the poses and per-sequence offsets)."""
    g = torch.Generator().manual_seed(seed)
    pose = BodyPose(torch.randn(n_seq, n_frames, body.n_pose_joints, 3, generator=g) * 0.3,
                    torch.randn(n_seq, body.n_betas, generator=g) * 0.5)  # fmt: skip
    offsets = SensorOffsets(torch.randn(n_seq, 12, 3, generator=g) * 0.02, aa_to_rotmat(torch.randn(n_seq, 12, 3, generator=g) * 0.1))
    pose, offsets = pose.to(device), offsets.to(device)
    with torch.no_grad():
        pos, ori = body.sensor_frames(pose, EM12, offsets)
    sensors = SensorFrames(pos, ori, torch.ones(pos.shape[:3], dtype=torch.bool, device=device), EM12)
    return sensors, offsets, pose


def timed(fn, repeats: int, device) -> float:
    """Seconds per call after one warm-up call."""
    fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def bench_model(name, body, device, args, progress, task):
    cls, params, names = MODELS[name]
    torch.manual_seed(0)
    est = cls(**params, body_model=body, sensor_names=names).to(device)
    out = {"parameters": sum(p.numel() for p in est.parameters())}

    sensors, offsets, truth = sensor_data(body, 12, 32, device)
    batch = Batch(sensors, truth, torch.full((12,), 32, device=device), [str(i) for i in range(12)], offsets)
    losses = [(10.0, PoseLoss(body_model=body)), (1.0, ShapeLoss(body_model=body))]
    if cls is LGD:
        losses += [(0.01, SensorReconstructionLoss(body_model=body)), (0.1, FKLoss(body_model=body))]
    opt = torch.optim.Adam(est.parameters(), lr=5e-4)

    def train_step():
        est.train()
        opt.zero_grad(set_to_none=True)
        pred = est(batch.sensors, batch.seq_len, batch.offsets)
        sum(w * loss(pred, batch) for w, loss in losses).backward()
        opt.step()

    out["train_steps_per_s"] = 1.0 / timed(train_step, args.train_steps, device)
    progress.advance(task)

    seq, seq_off, _ = sensor_data(body, 1, args.frames, device, seed=1)
    seq_len = torch.tensor([args.frames], device=device)
    est.eval()

    def windowed():
        with torch.no_grad():
            if cls is LGD:
                est.reset()
                for s in range(0, args.frames, 256):
                    est.step(seq.frames(s, min(s + 256, args.frames)), seq_off)
            else:
                est(seq, seq_len, seq_off)

    out["infer_windowed_frames_per_s"] = args.frames / timed(windowed, args.repeats, device)
    progress.advance(task)

    if est.streamable:
        def streamed():
            with torch.no_grad():
                est.reset()
                for f in range(args.stream_frames):
                    est.step(seq.frames(f, f + 1), seq_off)

        out["infer_stream_frames_per_s"] = args.stream_frames / timed(streamed, 1, device)
    else:
        out["infer_stream_frames_per_s"] = None
    progress.advance(task)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="all", help="cpu, cuda, or all (every available one)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS))
    parser.add_argument("--body", default="embedded", choices=("embedded", "smplh"), help="body model ($SMPL_MODELS for smplh)")
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--frames", type=int, default=1024, help="frames of the windowed-inference sequence")
    parser.add_argument("--stream-frames", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_steps, args.frames, args.stream_frames, args.repeats = 1, 64, 8, 1
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this torch build sees no CUDA device")
    devices = [d for d in devices if d != "cuda" or torch.cuda.is_available()]

    from empose_smplh.model import SMPLH, EmbeddedBody

    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "body_model": args.body,
              "train_batch": "12 x 32 frames", "windowed_frames": args.frames, "stream_frames": args.stream_frames,
              "devices": {}}  # fmt: skip
    with Progress(transient=True, console=Console(stderr=True)) as progress:
        for dev in devices:
            device = torch.device(dev)
            body = (EmbeddedBody() if args.body == "embedded" else SMPLH()).to(device)
            entry = {"name": torch.cuda.get_device_name(device) if dev == "cuda" else "cpu", "models": {}}
            task = progress.add_task(f"{dev}", total=3 * len(models))
            for name in models:
                progress.update(task, description=f"{dev}: {name}")
                entry["models"][name] = bench_model(name, body, device, args, progress, task)
            result["devices"][dev] = entry
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
