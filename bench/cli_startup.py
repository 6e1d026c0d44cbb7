"""How long the light commands take, end to end in a fresh process: `empose list-plugins` (the issue
asks < 1.5 s) and `empose validate recipes/quickstart.yaml` (schemas are read from the plugins'
torch-free `schema` modules, so neither should import torch).

Prints JSON per command: best and median wall time over N runs, and whether torch got imported.
"""

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

N = 7
REPO = Path(__file__).resolve().parents[1]
COMMANDS = (["list-plugins"], ["validate", "recipes/quickstart.yaml"])


def measure(args: list[str]) -> dict:
    times = []
    for _ in range(N):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "empose_framework", *args], cwd=REPO, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from empose_framework.cli import main\n"
         f"try: main({args!r})\nexcept SystemExit: pass\nprint('torch' in sys.modules, file=sys.stderr)"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    return {
        "benchmark": f"empose {' '.join(args)} (fresh process)",
        "runs": N,
        "best_s": round(min(times), 3),
        "median_s": round(statistics.median(times), 3),
        "imports_torch": probe.stderr.strip().splitlines()[-1] == "True",
    }


def main():
    for args in COMMANDS:
        print(json.dumps(measure(args)))


if __name__ == "__main__":
    main()
