"""Evaluation: whole sequences in chunks (docs/method.md §10.1), validation windows, and the tables.

Whole-sequence protocol: every sequence (root-normalised by its source) runs through the estimator in
consecutive chunks of `chunk` frames (the last one shorter; `null` = one chunk), recurrent state
carried from chunk to chunk; the shape used for the metrics of the whole sequence is the prediction's
first frame of the first chunk (the ground-truth shape when the estimator predicts none). Metric
errors are computed on the whole sequence, then the frames of `Batch.frame_mask()` are kept.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from empose_framework.engine.pooling import MetricInfo, Pool
from empose_framework.interfaces import Batch, BodyModel, BodyPose, Estimator, Metric, PosedBody, Prediction


@dataclass
class NamedMetric:
    name: str
    metric: Metric

    @property
    def info(self) -> MetricInfo:
        return MetricInfo(self.name, getattr(self.metric, "unit", ""))


def metric_pose(prediction: Prediction, batch: Batch) -> BodyPose:
    """The pose the metrics score: the ground-truth shape when the estimator predicts none (§10.1)."""
    pose = prediction.pose
    if not prediction.shape_estimated or pose.betas is None:
        return BodyPose(pose.pose, batch.target.betas, pose.trans)
    return pose


def _first_frame_shape(pose: BodyPose) -> torch.Tensor:
    """(B, K): the first frame's shape when the estimator predicts one per frame."""
    return pose.betas[:, 0] if pose.betas.dim() == pose.pose.dim() - 1 else pose.betas


def predict_sequence(estimator: Estimator, batch: Batch, chunk: int | None) -> BodyPose:
    """Predict whole sequences (one per batch entry, unpadded) for the metrics (§10.1): consecutive
    chunks through the estimator's streaming API (`reset()`, then `step(chunk)` carries the recurrent
    state); offline estimators run each chunk on its own. One shape per sequence: the first frame's."""
    n_frames = batch.sensors.pos.shape[1]
    if chunk is None or chunk >= n_frames:
        pose = metric_pose(estimator(batch.sensors, batch.seq_len, batch.offsets), batch)
        return BodyPose(pose.pose, _first_frame_shape(pose))
    streaming = bool(getattr(estimator, "streamable", False))
    if streaming:
        estimator.reset()
    poses, betas = [], None
    for start in range(0, n_frames, chunk):
        stop = min(start + chunk, n_frames)
        frames = batch.sensors.frames(start, stop)
        if streaming:
            out = estimator.step(frames, batch.offsets)
        else:
            out = estimator(frames, (batch.seq_len - start).clamp(0, stop - start), batch.offsets)
        pose = metric_pose(out, batch)
        poses.append(pose.pose)
        if betas is None:
            betas = _first_frame_shape(pose)
    if streaming:
        estimator.reset()
    return BodyPose(torch.cat(poses, dim=1), betas)


def metric_errors(metrics: list[NamedMetric], pred: BodyPose, batch: Batch, body_model: BodyModel) -> dict[str, list[np.ndarray]]:
    """Per metric and batch entry: the (n, E) errors of the selected frames (§9 frame selection). The
    prediction and the truth are posed through `body_model` once, for all metrics (`PosedBody`)."""
    mask = batch.frame_mask()
    bsz, n_frames = mask.shape
    posed, truth = PosedBody(pred, body_model), PosedBody(batch.target, body_model)
    out: dict[str, list[np.ndarray]] = {}
    for m in metrics:
        err = m.metric.errors(posed, truth).reshape(bsz, n_frames, -1)
        keep = mask
        support = int(m.metric.temporal_support)
        if support > 1:  # a frame counts only when every frame its error looks at counts
            padded = torch.cat([mask.new_zeros(bsz, support - 1), mask], dim=1).float()
            keep = padded.unfold(1, support, 1).min(dim=-1).values.bool()
        keep = keep & torch.isfinite(err).all(dim=-1)
        out[m.name] = [err[b][keep[b]].double().cpu().numpy() for b in range(bsz)]
    return out


@torch.no_grad()
def evaluate_sequences(
    estimator: Estimator, batches: Iterable[Batch], metrics: list[NamedMetric], chunk: int | None, progress=None, *,
    body_model: BodyModel,
) -> Pool:
    """The per-sequence table of one test set (`progress(seq_id)` is called after each sequence); the
    metrics pose bodies through `body_model`."""
    was_training = estimator.training
    estimator.eval()
    pool = Pool([m.info for m in metrics])
    try:
        for batch in batches:
            pred = predict_sequence(estimator, batch, chunk)
            per_metric = metric_errors(metrics, pred, batch, body_model)
            used = batch.frame_mask().sum(dim=1).tolist()
            for b, seq_id in enumerate(batch.ids):
                pool.add(seq_id, int(batch.seq_len[b]), int(used[b]), {k: v[b] for k, v in per_metric.items()})
                if progress is not None:
                    progress(seq_id)
    finally:
        estimator.train(was_training)
    return pool


# ---------------------------------------------------------------------------------- tables


def table_rows_for_json(pool: Pool) -> dict:
    rows = pool.rows()
    metrics = {m.name: {"unit": m.unit, "header": m.header} for m in pool.metrics}

    def clean(row):
        out = {"sequence": row["sequence"], "frames": row["frames"], "used_frames": row["used_frames"]}
        for m in pool.metrics:
            mean, std = row[f"{m.name}_mean"], row[f"{m.name}_std"]
            out[m.name] = {"mean": None if math.isnan(mean) else mean, "std": None if math.isnan(std) else std}
        return out

    return {"metrics": metrics, "sequences": [clean(r) for r in rows[:-1]], "overall": clean(rows[-1])}


def write_table(pool: Pool, folder: Path, name: str, extra: dict | None = None) -> tuple[Path, Path]:
    """`<folder>/<name>.csv` (one row per sequence, then `overall`) and `<name>.json`."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = pool.rows()
    csv_path, json_path = folder / f"{name}.csv", folder / f"{name}.json"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
    payload = {"set": name, **(extra or {}), **table_rows_for_json(pool)}
    json_path.write_text(json.dumps(payload, indent=2))
    return csv_path, json_path


def render_table(pool: Pool, title: str):
    """A rich Table: #, sequence, frames used, then "mean ± std" per metric; the overall row last."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("sequence", no_wrap=True)
    table.add_column("frames", justify="right")
    for m in pool.metrics:
        table.add_column(escape(m.header), justify="right", no_wrap=True)
    rows = pool.rows()
    for i, row in enumerate(rows):
        last = i == len(rows) - 1
        cells = ["" if last else str(i), "Overall average" if last else escape(row["sequence"]), str(row["used_frames"])]
        cells += [f"{row[f'{m.name}_mean']:.2f} ± {row[f'{m.name}_std']:.2f}" for m in pool.metrics]
        table.add_row(*cells, style="bold" if last else None, end_section=(i == len(rows) - 2))
    return table


# ---------------------------------------------------------------------------------- pictures

#: `evaluate.render` draws at most this many seconds of a sequence: the stretch with the largest error
RENDER_SECONDS = 20.0


def extremes(pool: Pool, metric: str, n: int) -> list[tuple[str, str]]:
    """(tag, sequence id) of the `n` best and `n` worst sequences by `<metric>_mean`, best first, worst
    last; tags `best1`, `best2`, ..., `worst1` (the worst), ...; each sequence once."""
    rows = [r for r in pool.rows()[:-1] if math.isfinite(r[f"{metric}_mean"])]
    rows.sort(key=lambda r: r[f"{metric}_mean"])
    best = [(f"best{k + 1}", r["sequence"]) for k, r in enumerate(rows[:n])]
    taken = {s for _, s in best}
    worst = [(f"worst{k + 1}", r["sequence"]) for k, r in enumerate(rows[::-1][:n]) if r["sequence"] not in taken]
    return best + worst


@torch.no_grad()
def render_extremes(estimator: Estimator, batches: Iterable[Batch], pool: Pool, metrics: list[NamedMetric], n: int,
                    chunk: int | None, folder: Path, body_model, body_model_spec: dict, fps: float = 60.0,
                    log=print, options: dict | None = None) -> list[Path]:  # fmt: skip
    """Write prediction and truth motion files of the `n` best and `n` worst sequences (by `mpjpe`, else
    the first metric) into `folder` and draw each pair as MP4 through the `render_motion` hook: at most
    RENDER_SECONDS, the stretch with the largest mean error (`options` go to the renderer). Returns the
    videos written."""
    from empose_framework import motion_file
    from empose_framework.drawing import render_motion_file

    if not metrics or len(pool) == 0:
        return []
    by = next((m for m in metrics if m.name == "mpjpe"), metrics[0])
    chosen = dict((sid, tag) for tag, sid in extremes(pool, by.name, n))
    written = []
    was_training = estimator.training
    estimator.eval()
    try:
        for batch in batches:
            for b, seq_id in enumerate(batch.ids):
                if seq_id not in chosen:
                    continue
                one = _entry(batch, b)
                pred = predict_sequence(estimator, one, chunk)
                t = int(one.seq_len[0])
                err = by.metric.errors(PosedBody(pred, body_model), PosedBody(one.target, body_model))
                err = err.reshape(1, one.sensors.pos.shape[1], -1)[0, :t]
                frame_err = torch.nan_to_num(err.double().mean(-1)).cpu().numpy() * one.frame_mask()[0, :t].cpu().numpy()
                start = _worst_window(frame_err, int(RENDER_SECONDS * fps))
                stem = f"{chosen[seq_id]}_{_safe(seq_id)}"
                sensors = one.sensors
                sens = {"names": sensors.names, "pos": sensors.pos[0, :t].cpu().numpy(), "ori": sensors.ori[0, :t].cpu().numpy(),
                        "valid": sensors.valid[0, :t].cpu().numpy()}  # fmt: skip
                valid = one.frame_mask()[0, :t].cpu().numpy()
                paths = {}
                for kind, pose in (("prediction", pred), ("truth", one.target)):
                    betas = pose.betas[0].reshape(-1, pose.betas.shape[-1])[0].cpu().numpy()
                    mf = motion_file.from_body_pose(pose.pose[0, :t].cpu().numpy(), betas, body_model, body_model_spec, fps,
                                                    kind=kind, frame_valid=valid, sensors=sens)  # fmt: skip
                    paths[kind] = motion_file.write(mf, folder / f"{stem}_{'pred' if kind == 'prediction' else 'truth'}.npz")
                options = {"start": start / fps, "end": (start + RENDER_SECONDS * fps) / fps,
                           "title": f"{seq_id} ({chosen[seq_id]} by {by.name})", **(options or {})}  # fmt: skip
                video = render_motion_file(paths["prediction"], paths["truth"], folder / f"{stem}.mp4", options)
                log(f"drew {seq_id} ({chosen[seq_id]} by {by.name}) into {video}")
                written.append(video)
    finally:
        estimator.train(was_training)
    return written


def _entry(batch: Batch, b: int) -> Batch:
    """Batch entry `b` as a batch of one."""
    if len(batch.ids) == 1:
        return batch
    s = batch.sensors
    pick = lambda x: None if x is None else x[b:b + 1]  # noqa: E731
    sensors = type(s)(s.pos[b:b + 1], s.ori[b:b + 1], s.valid[b:b + 1], s.names)
    target = BodyPose(batch.target.pose[b:b + 1], batch.target.betas[b:b + 1], pick(batch.target.trans))
    offsets = None if batch.offsets is None else type(batch.offsets)(batch.offsets.t[b:b + 1], batch.offsets.r[b:b + 1])
    return Batch(sensors, target, batch.seq_len[b:b + 1], [batch.ids[b]], offsets, pick(batch.frame_valid))


def _worst_window(frame_err: np.ndarray, length: int) -> int:
    """First frame of the `length`-frame stretch with the largest summed error (0 when shorter)."""
    if len(frame_err) <= length:
        return 0
    c = np.concatenate([[0.0], np.cumsum(frame_err)])
    return int(np.argmax(c[length:] - c[:-length]))


def _safe(seq_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in seq_id)[-80:]
