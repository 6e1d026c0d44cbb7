"""How long `empose list-plugins` takes, end to end in a fresh process (the issue asks < 1.5 s).

Prints JSON: best and median wall time over N runs, and whether torch got imported.
"""

import json
import statistics
import subprocess
import sys
import time

N = 7


def main():
    times = []
    for _ in range(N):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "empose_framework", "list-plugins"], capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from empose_framework.cli import main\n"
         "try: main(['list-plugins'])\nexcept SystemExit: pass\nprint('torch' in sys.modules, file=sys.stderr)"],
        capture_output=True, text=True, check=True,
    )
    print(json.dumps({
        "benchmark": "empose list-plugins (fresh process)",
        "runs": N,
        "best_s": round(min(times), 3),
        "median_s": round(statistics.median(times), 3),
        "imports_torch": probe.stderr.strip().splitlines()[-1] == "True",
    }))


if __name__ == "__main__":
    main()
