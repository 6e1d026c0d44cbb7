"""The `amass_lmdb` motion source: motions from an LMDB written by `empose preprocess` (or the original's)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from empose_framework.interfaces import Motion, MotionSource
from empose_framework.params import Param
from empose_motion.layout import SPLITS, BodyLayout, select_ids
from empose_motion.lmdb_store import MotionDB


class AmassLMDB(MotionSource):
    """Motions (AMASS, 3DPW) from an LMDB written by `empose preprocess amass|3dpw SRC DST`.

    Also reads the original EM-POSE databases. The database is opened lazily, read-only and lock-free in
    each process and the body model is not kept, so the source pickles cheaply into data-loader workers. `split` picks a deterministic
    80/10/10 subset by hashing each sequence id (crc32 mod 10: 0-7 train, 8 valid, 9 test); the EM-POSE
    protocol itself uses all of AMASS for training and all of 3DPW for validation (`split: all`).
    """

    params: ClassVar[tuple[Param, ...]] = (
        Param("path", str, doc="folder of the LMDB (the DST of `empose preprocess`)"),
        Param("split", str, "all", "subset by hashed sequence id: all, or train/valid/test (80/10/10)", choices=SPLITS),
        Param("include", list[str] | None, None, "keep only ids matching one of these globs (e.g. 'CMU/*')"),
        Param("exclude", list[str] | None, None, "drop ids matching one of these globs"),
        Param("max_sequences", int | None, None, "use only the first N selected sequences (quick runs)"),
        Param("min_frames", int, 1, "drop sequences shorter than this many frames"),
    )

    def __init__(self, path, body_model, split="all", include=None, exclude=None, max_sequences=None, min_frames=1):
        self.path = Path(path).expanduser()
        self.layout = BodyLayout(body_model, f"amass_lmdb {self.path}")
        self.db = MotionDB(self.path)
        where = f"amass_lmdb {self.path}"
        keep = select_ids(self.db.ids, split, include, exclude, where)
        if min_frames > 1:
            keep = [i for i in keep if self._n_frames(i) >= min_frames]
        self.indices = keep[:max_sequences] if max_sequences is not None else keep
        self.ids = [self.db.ids[i] for i in self.indices]

    def _n_frames(self, i: int) -> int:
        with self.db.env.begin() as txn:
            return int(txn.get(f"n_frames{i}".encode()))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Motion:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        s = self.db.read(self.indices[index])
        pose = self.layout.from_smpl(s["poses"].reshape(-1, 22, 3))
        return Motion(id=s["id"], pose=pose, betas=self.layout.betas(s["betas"]), trans=s["trans"].astype(np.float32), fps=self.db.fps)
