"""Write examples/sensors_131_01.csv: a plain sensor file (README, "Using a trained model") made from
the shipped CMU clip 131_01 (a walk): 12 virtual EM sensors on the embedded body, 4 s at 60 fps, placed
in a room frame (turned 90 degrees about the vertical and walking along the clip's own path), as a
user's own trackers would record them.

    python examples/make_sensor_csv.py [OUT.csv] [--frames 240]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from empose_framework.interfaces import BodyPose
from empose_framework.plugins import get_registry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=str(Path(__file__).with_name("sensors_131_01.csv")))
    ap.add_argument("--frames", type=int, default=240)
    args = ap.parse_args()

    reg = get_registry()
    body = reg.build("body_model", {"use": "embedded"})
    motions = reg.build("motion_source", {"use": "cmu_clips", "include": ["131_01*"]}, body_model=body)
    source = reg.build("sensor_source", {"use": "virtual_em", "sensors": "em12", "motions": "cmu_clips"}, body_model=body)
    source.motions = motions
    batch = next(source.sequences())
    n = min(args.frames, int(batch.seq_len[0]))
    pos = batch.sensors.pos[0, :n].double().numpy()  # normalised frame: first root = identity, no translation
    ori = batch.sensors.ori[0, :n].double().numpy()
    # into a room: turn 90 degrees about y (the pelvis as pivot) and follow the clip's ground path
    rest = BodyPose(torch.zeros(1, body.n_pose_joints, 3), torch.zeros(1, body.n_betas))
    j0 = body.forward(rest, vertices=False).joints[0, 0].double().numpy()
    yaw = Rotation.from_euler("y", 90, degrees=True).as_matrix()
    trans = motions[0].trans[:n].astype(np.float64)
    trans = trans + np.array([1.0 - trans[0, 0], 0.0, 2.0 - trans[0, 2]])  # start at x=1, z=2; keep the floor
    pos_w = (pos - j0) @ yaw.T + j0 + trans[:, None]
    ori_w = yaw @ ori
    quat = Rotation.from_matrix(ori_w.reshape(-1, 3, 3)).as_quat().reshape(n, -1, 4)
    off_t = batch.offsets.t[0].double().numpy()
    off_q = Rotation.from_matrix(batch.offsets.r[0].double().numpy()).as_quat()
    with open(args.out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "site", "x", "y", "z", "qx", "qy", "qz", "qw",
                    "offset_x", "offset_y", "offset_z", "offset_qx", "offset_qy", "offset_qz", "offset_qw"])
        for f in range(n):
            for s, name in enumerate(batch.sensors.names):
                w.writerow([f"{f / 60:.5f}", name, *(f"{v:.4f}" for v in pos_w[f, s]), *(f"{v:.5f}" for v in quat[f, s]),
                            *(f"{v:.4f}" for v in off_t[s]), *(f"{v:.4f}" for v in off_q[s])])
    print(f"wrote {args.out}: {n} frames x {len(batch.sensors.names)} sensors")


if __name__ == "__main__":
    main()
