"""Start-up time: `ffctl --help` against `sqlite-utils --help`, measured in the same run.

    python bench/startup.py [--runs 20]

Both run as fresh processes from this interpreter's bin directory; the figure is the ratio of
medians (goal <= 1.5). sqlite-utils comes with `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def median_seconds(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    bindir = Path(sys.executable).parent
    ffctl = shutil.which("ffctl", path=str(bindir)) or shutil.which("ffctl")
    reference = shutil.which("sqlite-utils", path=str(bindir)) or shutil.which("sqlite-utils")
    if not ffctl or not reference:
        sys.exit("needs ffctl and sqlite-utils on PATH: pip install -e '.[bench]'")
    ours = median_seconds([ffctl, "--help"], runs)
    theirs = median_seconds([reference, "--help"], runs)
    light = median_seconds(
        [ffctl, "--config", str(Path(__file__).resolve().parent.parent / "config.example.toml"), "config", "check"],
        runs,
    )
    print(f"ffctl --help              {ours * 1000:7.1f} ms (median of {runs})")
    print(f"sqlite-utils --help       {theirs * 1000:7.1f} ms (reference)")
    print(f"ratio                     {ours / theirs:7.2f}x  (goal <= 1.5x)")
    print(f"ffctl config check        {light * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
