"""Motion LMDBs: the layout of docs/method.md §6.1, a resumable writer and a lazy, fork-safe reader.

Keys (ASCII, running sample index i): `poses{i}` float32 (F, 66), `betas{i}` float32 (10,),
`trans{i}` float32 (F, 3), optional `joints{i}` float32 (F, 66), `n_frames{i}` decimal, `id{i}` UTF-8,
`gender{i}`, and `__len__` (decimal). So the original's databases read as they are. Additions that the
original's reader ignores: `__meta__` (JSON: format, fps, source, options) and `__done__/{id}` -> i.

Fixes over the original (docs/method.md §13 items 11, 12, 20): `__len__` is the number of samples written,
ids are unique, each sample is committed in one transaction together with `__len__` and its done key
(an interrupted run leaves whole samples only and a rerun skips finished ids), the folder is the one
given.

Only one writer at a time (`empose preprocess` holds the folder's lock). A database that two writers
filled at once before that lock existed has done keys whose sample was overwritten: the reader detects
it (`check_done_keys`) and the writer repairs it by forgetting those ids, so rerunning the same command
writes them again. Non-finite values in a sample are reported with the sample and frame.

LMDB maps its file into memory, so reading a truncated `data.mdb` kills the process with SIGBUS instead
of raising; `check_data_file` compares the file size with the size the database header declares before
anything is mapped.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from empose_framework.errors import DataError

LEN_KEY = b"__len__"
META_KEY = b"__meta__"
DONE_PREFIX = b"__done__/"
FORMAT = "empose-motion-lmdb"
FORMAT_VERSION = 1

_MAGIC = 0xBEEFC0DE


def encode_array(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype=np.float32).tobytes()


def check_data_file(folder: Path) -> None:
    """Raise DataError if `folder/data.mdb` is missing, not an LMDB file, or shorter than its header says.

    Reads the two meta pages (little-endian, 64-bit LMDB): magic at byte 16 of each page, page size
    in the free-list db record, last used page and transaction id after the two db records."""
    data = folder / "data.mdb"
    if not data.is_file():
        raise DataError(
            f"{folder} is not a motion LMDB: {data.name} is missing. Point `path` at the folder written by "
            "`empose preprocess amass|3dpw SRC DST` (the DST folder), or run that command first."
        )
    size = data.stat().st_size
    with open(data, "rb") as fh:
        head = fh.read(2 * 65536)
    metas = []
    offset = 0
    while len(metas) < 2 and offset + 160 <= len(head):
        magic, _version = struct.unpack_from("<II", head, offset + 16)
        if magic != _MAGIC:
            break
        page_size = struct.unpack_from("<I", head, offset + 16 + 24)[0]
        last_pg, txnid = struct.unpack_from("<QQ", head, offset + 16 + 120)
        metas.append((txnid, last_pg, page_size))
        offset += page_size if page_size >= 512 else 4096
    if not metas:
        raise DataError(
            f"{data} is not an LMDB database (no LMDB header; {size} bytes). The file is corrupt or something "
            "else; rerun `empose preprocess` into a new folder."
        )
    _txnid, last_pg, page_size = max(metas)
    needed = (last_pg + 1) * page_size
    if len(metas) < 2 or size < needed:
        raise DataError(
            f"{data} is truncated: the database header needs {needed} bytes but the file has {size} (an "
            "incomplete copy or download). Copy the folder again, or rerun `empose preprocess` into it; "
            "reading it as it is would crash."
        )


#: Read-only environments of this process by folder: py-lmdb refuses to open one environment twice in
#: a process, and several sources (e.g. train and valid splits) may read the same database.
_READERS: dict[tuple[str, int], object] = {}


def open_env(folder: Path, *, write: bool = False, map_size: int = 1 << 30):
    """Open an LMDB environment; readers get a shared read-only, lock-free, no-readahead handle."""
    import lmdb

    folder = Path(folder)
    key = (str(folder.resolve()), os.getpid())
    if not write and key in _READERS:
        return _READERS[key]
    for other in [k for k in _READERS if k[0] == key[0] and (write or k[1] != key[1])]:
        # py-lmdb refuses a second handle on a folder, also one inherited through fork (a data-loader
        # worker) and a writer next to a reader; drop the old handle (only this process's copy of it).
        _READERS.pop(other).close()
    data = folder / "data.mdb"
    if not write or (data.exists() and data.stat().st_size > 0):  # an empty file: killed before LMDB wrote its header
        check_data_file(folder)
    try:
        if write:
            return lmdb.open(str(folder), map_size=map_size, subdir=True, max_dbs=0)
        env = lmdb.open(str(folder), readonly=True, lock=False, readahead=False, subdir=True, max_readers=512)
        _READERS[key] = env
        return env
    except lmdb.Error as exc:
        raise DataError(
            f"cannot open the LMDB in {folder}: {exc}. Check that it is a folder written by `empose "
            "preprocess` and readable; rerun that command into a new folder if the files are damaged."
        ) from exc


def check_done_keys(txn, folder: Path, length: int) -> list[bytes]:
    """The done keys whose sample is gone (overwritten by a concurrent writer, or past `__len__`); raises
    DataError for damage a rerun cannot repair (a sample missing its keys, or an id stored twice)."""
    where: dict[str, int] = {}
    for i in range(length):
        raw_id, raw_n = txn.get(f"id{i}".encode()), txn.get(f"n_frames{i}".encode())
        if raw_n is None:
            raise DataError(f"{folder}: sample {i} (key n_frames{i}) is missing although `__len__` is {length}; the database "
                            "is damaged. Delete the folder and run `empose preprocess` into it again.")
        if raw_id is None:
            continue  # the original's databases have no ids
        seq_id = bytes(raw_id).decode("utf-8", errors="replace")
        if seq_id in where:
            raise DataError(f"{folder}: sequence {seq_id!r} is stored twice (samples {where[seq_id]} and {i}); the database "
                            "was written by two processes at once. Delete the folder and run `empose preprocess` again.")
        where[seq_id] = i
    stale = []
    with txn.cursor() as cursor:
        if cursor.set_range(DONE_PREFIX):
            for key, value in cursor:
                if not bytes(key).startswith(DONE_PREFIX):
                    break
                seq_id = bytes(key)[len(DONE_PREFIX):].decode("utf-8", errors="replace")
                try:
                    ok = where.get(seq_id) == int(value)
                except ValueError:
                    ok = False
                if not ok:
                    stale.append(bytes(key))
    return stale


class MotionWriter:
    """Append motions to an LMDB, one transaction per sample; skips ids already in the database."""

    def __init__(self, folder: Path, meta: dict, map_size: int, log=None):
        import lmdb

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lmdb = lmdb
        self.env = open_env(self.folder, write=True, map_size=map_size)
        with self.env.begin() as txn:
            raw_len = txn.get(LEN_KEY)
            raw_meta = txn.get(META_KEY)
        if raw_len is not None and raw_meta is None:
            self.env.close()
            raise DataError(
                f"{self.folder} already holds an LMDB that empose did not write (no __meta__ key, e.g. one of "
                "the original's databases). Write into a new folder."
            )
        if raw_meta is not None:
            old = json.loads(raw_meta)
            clash = {k: (old.get(k), v) for k, v in meta.items() if old.get(k) != v}
            if clash:
                self.env.close()
                desc = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in clash.items())
                raise DataError(
                    f"{self.folder} was started with different options ({desc}); resuming would mix them. "
                    "Rerun with the same options, or write into a new folder."
                )
        self.length = int(raw_len) if raw_len is not None else 0
        self.meta = meta
        try:
            with self.env.begin(write=True) as txn:
                stale = check_done_keys(txn, self.folder, self.length)
                for key in stale:  # forget them: this run writes those sequences again
                    txn.delete(key)
        except DataError:
            self.env.close()
            raise
        if stale and log is not None:
            log(f"repaired {self.folder}: {len(stale)} sequence(s) were marked done but their samples had been overwritten "
                "(two writers at once); they are written again now.")

    def is_done(self, seq_id: str) -> bool:
        with self.env.begin() as txn:
            return txn.get(DONE_PREFIX + seq_id.encode("utf-8")) is not None

    def add(self, seq_id: str, poses: np.ndarray, betas: np.ndarray, trans: np.ndarray,
            joints: np.ndarray | None, gender: str) -> int:
        """Write one sample, `__len__`, `__meta__` and its done key atomically; returns its index."""
        i = self.length
        items = [
            (f"poses{i}", poses), (f"betas{i}", betas), (f"trans{i}", trans),
            (f"n_frames{i}", str(int(poses.shape[0])).encode()), (f"id{i}", seq_id.encode("utf-8")),
            (f"gender{i}", gender.encode("utf-8")),
        ]
        if joints is not None:
            items.append((f"joints{i}", joints))
        try:
            with self.env.begin(write=True) as txn:
                for key, value in items:
                    txn.put(key.encode(), value if isinstance(value, bytes) else encode_array(value))
                txn.put(DONE_PREFIX + seq_id.encode("utf-8"), str(i).encode())
                txn.put(META_KEY, json.dumps(self.meta, sort_keys=True).encode())
                txn.put(LEN_KEY, str(i + 1).encode())
        except self._lmdb.MapFullError as exc:
            raise DataError(
                f"the LMDB in {self.folder} is full (map size {self.env.info()['map_size'] / 2**30:.2f} GiB) "
                f"while writing {seq_id!r}. Rerun with a larger --map-size-gb; the run resumes after the "
                f"{i} samples already written."
            ) from exc
        self.length = i + 1
        return i

    def close(self) -> None:
        self.env.sync()
        self.env.close()


class MotionDB:
    """Read access to a motion LMDB, opened lazily in each process (holds no handle, so it pickles cheaply
    into data-loader workers)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(
                f"motion LMDB folder {self.folder} does not exist. Create it with `empose preprocess "
                "amass|3dpw SRC DST` and set `path` to DST."
            )
        with self.env.begin() as txn:
            raw_len = txn.get(LEN_KEY)
            raw_meta = txn.get(META_KEY)
            if raw_len is None:
                raise DataError(
                    f"{self.folder} holds an LMDB without the `__len__` key, so it is not a motion database (or "
                    "its writing never committed a sample). Rerun `empose preprocess` into it."
                )
            try:
                stated = int(raw_len)
            except ValueError:
                raise DataError(f"{self.folder}: key `__len__` holds {raw_len[:20]!r}, not a number; the database is corrupt.") from None
            # The original's 3DPW databases state fewer samples than they hold (§13 item 11): count them.
            n = stated
            while txn.get(f"n_frames{n}".encode()) is not None:
                n += 1
            if stated > 0 and txn.get(f"n_frames{stated - 1}".encode()) is None:
                raise DataError(
                    f"{self.folder}: `__len__` says {stated} samples but sample {stated - 1} (key n_frames{stated - 1}) "
                    "is missing; the database is incomplete. Rerun `empose preprocess` into it to finish it."
                )
            self.length = n
            if raw_meta is not None:  # written by empose: its done keys must agree with the samples
                stale = check_done_keys(txn, self.folder, n)
                if stale:
                    raise DataError(
                        f"{self.folder}: the database is damaged: {len(stale)} sequence(s) are marked done but their "
                        "samples were overwritten (two `empose preprocess` wrote into it at once). Rerun the same "
                        "`empose preprocess` command: it repairs the database and writes those sequences again."
                    )
            self.meta = json.loads(raw_meta) if raw_meta is not None else {}
            self.ids = [self._text(txn, f"id{i}", default=str(i)) for i in range(n)]
        self.fps = float(self.meta.get("fps", 60.0))

    @property
    def env(self):
        """This process's read-only environment (opened on first use in each process)."""
        return open_env(self.folder)

    def __len__(self) -> int:
        return self.length

    def _text(self, txn, key: str, default: str | None = None) -> str:
        raw = txn.get(key.encode())
        if raw is None:
            if default is not None:
                return default
            raise DataError(f"{self.folder}: key `{key}` is missing; the database is incomplete or corrupt. Rerun `empose preprocess`.")
        return bytes(raw).decode("utf-8", errors="replace")

    def _array(self, txn, key: str, shape: tuple[int, ...]) -> np.ndarray:
        raw = txn.get(key.encode())
        if raw is None:
            raise DataError(f"{self.folder}: key `{key}` is missing; the database is incomplete or corrupt. Rerun `empose preprocess`.")
        want = int(np.prod(shape)) * 4
        if len(raw) != want:
            raise DataError(
                f"{self.folder}: key `{key}` holds {len(raw)} bytes but {shape} float32 needs {want}; the sample is "
                "corrupt. Rerun `empose preprocess` into a new folder."
            )
        return np.frombuffer(raw, dtype=np.float32).reshape(shape).copy()

    def read(self, i: int) -> dict:
        """Sample i as numpy arrays: poses (F, 66), betas (B,), trans (F, 3), id, gender."""
        with self.env.begin() as txn:
            try:
                n = int(self._text(txn, f"n_frames{i}"))
            except ValueError:
                raise DataError(f"{self.folder}: key `n_frames{i}` is not a number; the database is corrupt.") from None
            raw_betas = txn.get(f"betas{i}".encode())
            n_betas = len(raw_betas) // 4 if raw_betas is not None else 10
            sample = {
                "id": self.ids[i],
                "poses": self._array(txn, f"poses{i}", (n, 66)),
                "betas": self._array(txn, f"betas{i}", (n_betas,)),
                "trans": self._array(txn, f"trans{i}", (n, 3)),
                "gender": self._text(txn, f"gender{i}", default="neutral"),
            }
        for key in ("poses", "trans", "betas"):
            bad = ~np.isfinite(sample[key])
            if bad.any():
                at = f"frame {int(np.nonzero(bad)[0][0])}" if key != "betas" else f"index {int(np.nonzero(bad)[0][0])}"
                raise DataError(
                    f"{self.folder}: sample {i} ({sample['id']!r}) has NaN or infinite values in `{key}{i}` at {at}. "
                    "Fix or remove that source file and preprocess into a new folder, or leave the sequence out with "
                    f"`exclude: [{sample['id']!r}]`."
                )
        return sample
