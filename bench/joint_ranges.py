"""Real versus generated joint ranges (JSON): where the `embedded` motion generator is blind.

    python bench/joint_ranges.py [--lmdb $EMPOSE_CMU_LMDB] [--stride 6] [--count 256]

Every motion is converted to the generator's per-joint Euler angles (`JOINT_LIMITS` sequences, degrees,
SMPL rest frame) and summarised per joint and angle by percentiles, for three sources: a real corpus
(an `amass_lmdb`, e.g. the retargeted CMU corpus, `split: train, split_by: folder`), the three shipped CMU
clips (`cmu_clips`) and the generated training motions (`embedded`, split train). `coverage` is the
fraction of real frames (per joint) whose rotation lies within 15 / 30 degrees (geodesic) of some
generated frame of that joint: the real poses the generator never shows a model. `arms_down` and
`squat` summarise two poses the brief singled out: the shoulder's sideways angle (z) while the upper
arm hangs within 30 degrees of the body's down direction, and the deepest hip flexion / knee flexion.
Notes: in the retargeted CMU corpus spine2, collars, feet and hands never move (a retargeting artefact),
so its collar and toe rows say nothing about people; its root is Z-up (AMASS) while the generated and BVH
motions are Y-up, so the root rows are not comparable and the mean coverage leaves the root out.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from scipy.spatial.transform import Rotation

PCTS = (1, 5, 25, 50, 75, 95, 99)


def euler_frames(motions, layout_columns, stride: int, max_frames: int, rng) -> dict[str, np.ndarray]:
    """Per SMPL joint: (N, 3) Euler angles (degrees) and (N, 4) quaternions of every `stride`-th frame."""
    from empose_framework.joints import SMPL_BODY_JOINTS
    from empose_motion.embedded import JOINT_LIMITS

    poses = []
    for i in range(len(motions)):
        m = motions[i]
        poses.append(np.asarray(m.pose)[::stride][:, layout_columns])
    pose = np.concatenate(poses).astype(np.float64)  # (N, 22, 3) SMPL order
    if len(pose) > max_frames:
        pose = pose[np.sort(rng.choice(len(pose), max_frames, replace=False))]
    out = {"_n": len(pose), "_pose": pose}
    for k, name in enumerate(SMPL_BODY_JOINTS):
        rot = Rotation.from_rotvec(pose[:, k])
        out[name] = (rot.as_euler(JOINT_LIMITS[name][0], degrees=True), rot.as_quat())
    return out


def arm_and_squat(pose: np.ndarray, rest: np.ndarray) -> dict:
    """Shoulder z while the upper arm hangs down (in the pelvis frame), and the deepest hip/knee flexion."""
    from empose_framework.joints import SMPL_BODY_JOINTS
    from empose_motion.embedded import JOINT_LIMITS, fk_smpl

    j = {n: i for i, n in enumerate(SMPL_BODY_JOINTS)}
    p = pose.copy()
    p[:, 0] = 0.0  # pelvis frame
    pos = fk_smpl(p, rest)
    out = {}
    for side in "lr":
        arm = pos[:, j[f"{side}_elbow"]] - pos[:, j[f"{side}_shoulder"]]
        arm /= np.linalg.norm(arm, axis=-1, keepdims=True)
        down = np.degrees(np.arccos(np.clip(-arm[:, 1], -1, 1)))  # 0 = straight down
        z = Rotation.from_rotvec(pose[:, j[f"{side}_shoulder"]]).as_euler(JOINT_LIMITS[f"{side}_shoulder"][0], degrees=True)[:, 2]
        hang = down < 30
        out[f"{side}_arm_down_fraction"] = round(float(hang.mean()), 4)
        out[f"{side}_arm_angle_from_down_deg"] = pct(down)
        if hang.any():
            out[f"{side}_shoulder_z_when_arm_down"] = pct(z[hang])
        hip = Rotation.from_rotvec(pose[:, j[f"{side}_hip"]]).as_euler("XZY", degrees=True)[:, 0]
        knee = Rotation.from_rotvec(pose[:, j[f"{side}_knee"]]).as_euler("XYZ", degrees=True)[:, 0]
        out[f"{side}_hip_flexion_p1_p0.1"] = [round(float(np.percentile(hip, 1)), 1), round(float(np.percentile(hip, 0.1)), 1)]
        out[f"{side}_knee_flexion_p99_p99.9"] = [round(float(np.percentile(knee, 99)), 1), round(float(np.percentile(knee, 99.9)), 1)]
        deep = (hip < -90) & (knee > 90)
        out[f"{side}_deep_squat_fraction"] = round(float(deep.mean()), 4)
    return out


def pct(x: np.ndarray) -> list[float]:
    return [round(float(v), 1) for v in np.percentile(x, PCTS)]


def coverage(real_q: np.ndarray, gen_q: np.ndarray, chunk: int = 2048) -> dict:
    """Fraction of real rotations within 15 / 30 degrees of the nearest generated one."""
    best = np.empty(len(real_q))
    for a in range(0, len(real_q), chunk):
        best[a : a + chunk] = np.abs(real_q[a : a + chunk] @ gen_q.T).max(axis=1)
    ang = np.degrees(2 * np.arccos(np.clip(best, -1, 1)))
    return {"within_15deg": round(float((ang <= 15).mean()), 4), "within_30deg": round(float((ang <= 30).mean()), 4),
            "nearest_p95_deg": round(float(np.percentile(ang, 95)), 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lmdb", default=os.environ.get("EMPOSE_CMU_LMDB", "/work/data/cmu_lmdb"),
                    help="an amass_lmdb of real motion (default: $EMPOSE_CMU_LMDB)")
    ap.add_argument("--stride", type=int, default=6, help="use every n-th frame (60 fps -> 10 fps)")
    ap.add_argument("--count", type=int, default=256, help="generated motions (split train)")
    ap.add_argument("--max-frames", type=int, default=40000, help="random subset of frames per source")
    ap.add_argument("--coverage-frames", type=int, default=6000)
    args = ap.parse_args()

    from empose_framework.joints import SMPL_BODY_JOINTS
    from empose_framework.plugins import get_registry
    from empose_motion.embedded import JOINT_LIMITS
    from empose_motion.layout import BodyLayout

    reg = get_registry()
    body = reg.build("body_model", {"use": "embedded"})
    cols = BodyLayout(body, "bench").columns
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    sources = {
        "cmu_lmdb": reg.build("motion_source", {"use": "amass_lmdb", "path": args.lmdb, "split": "train", "split_by": "folder"},
                              body_model=body),
        "cmu_clips": reg.build("motion_source", {"use": "cmu_clips"}, body_model=body),
        "embedded": reg.build("motion_source", {"use": "embedded", "split": "train", "count": args.count}, body_model=body),
    }
    gen_t = time.perf_counter()
    data = {k: euler_frames(s, cols, args.stride, args.max_frames, rng) for k, s in sources.items()}
    gen_t = time.perf_counter() - gen_t
    rest = sources["embedded"]._rest0

    result = {"benchmark": "joint ranges, real vs generated", "lmdb": args.lmdb, "stride": args.stride,
              "frames": {k: d["_n"] for k, d in data.items()}, "percentiles": list(PCTS), "joints": {}}
    for name in SMPL_BODY_JOINTS:
        seq, lo, hi = JOINT_LIMITS[name]
        row = {"sequence": seq, "limits": [list(lo), list(hi)]}
        for k, d in data.items():
            e = d[name][0]
            row[k] = {ax: pct(e[:, i]) for i, ax in enumerate(seq.lower())}
            row[k]["angle"] = pct(np.degrees(Rotation.from_quat(d[name][1]).magnitude()))
        real = data["cmu_lmdb"][name][0]
        inside = np.all((real >= np.array(lo)) & (real <= np.array(hi)), axis=1)
        row["cmu_lmdb_inside_limits"] = round(float(inside.mean()), 4)
        sel = rng.choice(len(real), min(args.coverage_frames, len(real)), replace=False)
        row["coverage_cmu_lmdb"] = coverage(data["cmu_lmdb"][name][1][sel], data["embedded"][name][1])
        row["coverage_cmu_clips"] = coverage(data["cmu_clips"][name][1], data["embedded"][name][1])
        result["joints"][name] = row
    result["poses"] = {k: arm_and_squat(d["_pose"], rest) for k, d in data.items()}
    for k in ("cmu_lmdb", "cmu_clips"):
        cov = [result["joints"][n][f"coverage_{k}"]["within_15deg"] for n in SMPL_BODY_JOINTS if n != "root"]
        result[f"mean_coverage_{k}_within_15deg"] = round(float(np.mean(cov)), 4)
    result["seconds"] = {"total": round(time.perf_counter() - t0, 1), "reading_and_generating": round(gen_t, 1)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
