"""Replay a sensor recording at its real rate through the live API and print the per-frame latency.

    python examples/live_replay.py MODEL [SENSORS] [--fast] [--compile]

MODEL: a checkpoint or `pretrained:NAME`; SENSORS: a plain sensor file (default: the example CSV next to
this script). Each frame is handed to `model.feed()` when its time stamp comes due (as a tracker would
deliver it), and the time `feed()` takes is recorded. Prints JSON: frames, rate, latency p50/p99/max in
milliseconds, and whether the model kept up (p99 below the frame interval). `--fast` skips the waiting;
`--compile` compiles the step first (`api.load(..., compile=True)`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from empose_framework import api
from empose_io.sensor_file import read_sensor_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("sensors", nargs="?", default=str(Path(__file__).with_name("sensors_131_01.csv")))
    ap.add_argument("--fast", action="store_true", help="do not wait for the time stamps")
    ap.add_argument("--compile", action="store_true", help="torch.compile the streaming step before replaying")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (live use: 1 is typical)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    raw = read_sensor_file(args.sensors)
    live = api.load(args.model, offsets=None)
    missing = [n for n in live.sensor_names if n not in raw.names]
    if missing:
        raise SystemExit(f"{args.sensors} lacks the sensors {missing} that the model reads")
    idx = [raw.names.index(n) for n in live.sensor_names]
    pos, ori, valid = raw.pos[:, idx], raw.ori[:, idx], raw.valid[:, idx]
    offsets = None if raw.offset_t is None else (raw.offset_t[idx], raw.offset_r[idx])  # in the model's order
    if offsets is not None or args.compile:
        live = api.Live(live.model, offsets=offsets, compile=args.compile)
    live.feed(pos[0], ori[0], valid[0])  # warm-up (first call allocates)
    live.reset()
    lat = []
    start = time.perf_counter()
    for f in range(len(raw)):
        due = start + (raw.time[f] - raw.time[0])
        if not args.fast:
            while time.perf_counter() < due:
                time.sleep(max(0.0, min(0.002, due - time.perf_counter())))
        t0 = time.perf_counter()
        body = live.feed(pos[f], ori[f], valid[f])
        lat.append(time.perf_counter() - t0)
    lat_ms = np.array(lat) * 1000
    interval = 1000.0 / raw.fps
    print(json.dumps({
        "model": args.model, "sensors": str(args.sensors), "frames": len(raw), "fps": round(raw.fps, 3),
        "latency_ms": {"p50": round(float(np.percentile(lat_ms, 50)), 3), "p99": round(float(np.percentile(lat_ms, 99)), 3),
                       "max": round(float(lat_ms.max()), 3)},
        "frame_interval_ms": round(interval, 3), "keeps_up": bool(np.percentile(lat_ms, 99) < interval),
        "last_pose_joints": int(body.pose.shape[0]), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "compile_s": live.compile_seconds,
    }, indent=2))


if __name__ == "__main__":
    main()
