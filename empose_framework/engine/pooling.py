"""Pooling of per-(frame, joint) errors into the evaluation table: the one place that does it.

As the original (docs/method.md §9–§10): a sequence's mean is the plain mean over its selected frames and
evaluated joints, its STD the population STD (ddof 0) of those same entries; the overall row pools
every entry of every sequence (frame-weighted, not a mean of sequence means).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class MetricInfo:
    name: str
    unit: str

    @property
    def header(self) -> str:
        return f"{self.name.upper().replace('_', '-')} [{self.unit}]" if self.unit else self.name.upper()


def _stats(values: list[np.ndarray]) -> tuple[float, float]:
    flat = np.concatenate([v.reshape(-1) for v in values]) if values else np.zeros(0)
    if flat.size == 0:
        return math.nan, math.nan
    flat = flat.astype(np.float64)
    return float(flat.mean()), float(flat.std())


@dataclass
class Pool:
    """Collects errors per sequence; `rows()` gives the table (sequences, then the overall row)."""

    metrics: list[MetricInfo]
    _seqs: list[tuple[str, int, int, dict[str, np.ndarray]]] = field(default_factory=list)

    def add(self, seq_id: str, frames: int, used: int, errors: dict[str, np.ndarray]) -> None:
        """`errors[name]`: (n, E) errors of the selected frames of one sequence (n may differ per metric)."""
        self._seqs.append((seq_id, frames, used, errors))

    def __len__(self) -> int:
        return len(self._seqs)

    def rows(self) -> list[dict]:
        rows = []
        for seq_id, frames, used, errors in self._seqs:
            row = {"sequence": seq_id, "frames": frames, "used_frames": used}
            for m in self.metrics:
                row[f"{m.name}_mean"], row[f"{m.name}_std"] = _stats([errors[m.name]])
            rows.append(row)
        overall = {
            "sequence": "overall",
            "frames": sum(s[1] for s in self._seqs),
            "used_frames": sum(s[2] for s in self._seqs),
        }
        for m in self.metrics:
            overall[f"{m.name}_mean"], overall[f"{m.name}_std"] = _stats([s[3][m.name] for s in self._seqs])
        rows.append(overall)
        return rows

    def overall(self) -> dict:
        return self.rows()[-1]
