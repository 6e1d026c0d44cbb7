"""`empose preprocess amass` on a whole real corpus (JSON): wall time, peak memory, what it wrote.

    python bench/preprocess_corpus.py [SRC] [--joints]

SRC defaults to $EMPOSE_CMU_AMASS or ../shared/data/cmu-amass (the CMU corpus in the AMASS layout,
1,517 clips at 24 fps, 6.25 h). Each variant runs in a fresh process, as a user runs it, into a
temporary folder; `--joints` also measures the variant that stores FK joints (embedded body).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(src: Path, joints: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / "lmdb"
        cmd = [sys.executable, "-m", "empose_framework", "preprocess", "amass", str(src), str(dst),
               "--body-model", "embedded", "--joints" if joints else "--no-joints"]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:])
        size = sum(f.stat().st_size for f in dst.iterdir())
        lines = {ln.split("│")[1].strip(): ln.split("│")[2].strip() for ln in done.stdout.splitlines() if ln.count("│") == 3}
    return {
        "joints": joints,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
        "peak_rss_mb": round(after.ru_maxrss / 1024, 1),  # the largest child so far (Linux: KiB)
        "database_mb": round(size / 2**20, 1),
        "sequences": int(lines.get("sequences in the database", 0)),
        "frames_60fps": int(lines.get("frames (60 fps)", 0)),
        "skipped": int(lines.get("files skipped", 0)),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src", nargs="?", default=os.environ.get("EMPOSE_CMU_AMASS", "../shared/data/cmu-amass"))
    ap.add_argument("--joints", action="store_true", help="also measure storing FK joints")
    args = ap.parse_args()
    src = Path(args.src)
    if not src.is_dir():
        raise SystemExit(f"{src}: no corpus there; give its folder or set EMPOSE_CMU_AMASS.")
    import torch

    results = [run(src, False)] + ([run(src, True)] if args.joints else [])
    print(json.dumps({"bench": "preprocess_corpus", "src": str(src), "cores": os.cpu_count(),
                      "torch": torch.__version__, "results": results}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
