"""The `amass_lmdb` motion source: motions from an LMDB written by `empose preprocess` (or the original's)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from empose_framework.interfaces import Motion, MotionSource
from empose_motion import schema
from empose_motion.layout import BodyLayout, select_ids
from empose_motion.lmdb_store import MotionDB


class AmassLMDB(MotionSource):
    """Motions (AMASS, 3DPW) from an LMDB written by `empose preprocess amass|3dpw SRC DST`.

    Also reads the original EM-POSE databases. The database is opened lazily, read-only and lock-free in
    each process and the body model is not kept, so the source pickles cheaply into data-loader workers. `split` picks a deterministic
    80/10/10 subset by hashing each sequence id (crc32 mod 10: 0-7 train, 8 valid, 9 test), or each
    id's folder with `split_by: folder` (AMASS ids are dataset/subject/file, so that is a subject-wise
    split); the EM-POSE protocol itself uses all of AMASS for training and all of 3DPW for validation
    (`split: all`). `shape_std` gives corpora without per-subject shapes (all-zero betas, like the
    retargeted CMU corpus) a random body shape per sequence, the same on every read.
    """

    params = schema.AMASS_LMDB

    def __init__(self, *, path, split, split_by, include, exclude, max_sequences, min_frames, shape_std, body_model):
        self.path = Path(path).expanduser()
        self.layout = BodyLayout(body_model, f"amass_lmdb {self.path}")
        self.db = MotionDB(self.path)
        where = f"amass_lmdb {self.path}"
        self.shape_std = float(shape_std)
        keep = select_ids(self.db.ids, split, include, exclude, where, split_by)
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
        betas = self.layout.betas(s["betas"]) if self.shape_std == 0 else self._random_betas(s["id"])
        return Motion(id=s["id"], pose=pose, betas=betas, trans=s["trans"].astype(np.float32), fps=self.db.fps)

    def _random_betas(self, seq_id: str) -> np.ndarray:
        rng = np.random.default_rng(zlib.crc32(seq_id.encode("utf-8")))
        return np.clip(rng.normal(0.0, self.shape_std, self.layout.n_betas), -2.0, 2.0).astype(np.float32)
