"""The `amass_lmdb` motion source: motions from an LMDB written by `empose preprocess` (or the original's)."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import ClassVar

import numpy as np

from empose_framework.errors import EmposeError
from empose_framework.interfaces import Motion, MotionSource
from empose_framework.params import Param
from empose_motion.layout import SPLIT_KEYS, SPLITS, BodyLayout, select_ids
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

    params: ClassVar[tuple[Param, ...]] = (
        Param("path", str, doc="folder of the LMDB (the DST of `empose preprocess`)"),
        Param("split", str, "all", "subset by hashed sequence id: all, or train/valid/test (80/10/10)", choices=SPLITS),
        Param("split_by", str, "sequence", "what the split hashes: `sequence` ids, or their `folder` (the subject in AMASS)",
              choices=SPLIT_KEYS),
        Param("include", list[str] | None, None, "keep only ids matching one of these globs (e.g. 'CMU/*')"),
        Param("exclude", list[str] | None, None, "drop ids matching one of these globs"),
        Param("max_sequences", int | None, None, "use only the first N selected sequences (quick runs)", min=1),
        Param("min_frames", int, 1, "drop sequences shorter than this many frames", min=1),
        Param("shape_std", float, 0.0, "0: the stored betas; > 0: random betas ~ N(0, shape_std) clipped to +-2, "
              "fixed per sequence id (for corpora without per-subject shapes)", min=0),
    )

    def __init__(self, path, body_model, split="all", split_by="sequence", include=None, exclude=None,
                 max_sequences=None, min_frames=1, shape_std=0.0):
        self.path = Path(path).expanduser()
        self.layout = BodyLayout(body_model, f"amass_lmdb {self.path}")
        self.db = MotionDB(self.path)
        where = f"amass_lmdb {self.path}"
        if shape_std < 0:
            raise EmposeError(f"{where}: shape_std must be >= 0, not {shape_std}.")
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
