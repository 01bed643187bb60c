"""Benchmark of the command line's start-up: ``glacierwatch --help`` and ``glacierwatch VERB --help``.

Each command runs ``--repeat`` times in a fresh interpreter; the median wall time is compared with
that of a bare ``python -c pass`` measured in the same run (the ratio says what glacierwatch adds,
whatever the machine's load), and the heavy libraries each one imported are listed.

    .venv/bin/python benchmarks/bench_cli.py --repeat 3 --json bench_cli.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "statsmodels", "matplotlib", "dask", "geopandas", "pandas", "rasterio", "duckdb", "scipy")
PROBE = """
import json, sys
from glacierwatch.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.stderr.write(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)) + "\\n")
"""


def _time(args: list[str], repeat: int) -> tuple[float, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    times, loaded = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True, env=env, check=True)
        times.append(time.perf_counter() - start)
        lines = done.stderr.strip().splitlines()
        loaded = json.loads(lines[-1]) if lines and lines[-1].startswith("[") else []
    return statistics.median(times), loaded


def main() -> int:
    from glacierwatch.cli import VERBS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    bare, _ = _time(["pass"], args.repeat)
    rows = []
    for verb in [None, *VERBS]:
        argv = ["--help"] if verb is None else [verb, "--help"]
        seconds, loaded = _time([PROBE.format(heavy=HEAVY), *argv], args.repeat)
        rows.append({"command": "glacierwatch " + " ".join(argv), "seconds": round(seconds, 3),
                     "ratio_to_bare_python": round(seconds / bare, 1), "heavy_imports": loaded})
    print(f"bare python: {bare:.3f} s (median of {args.repeat})")
    for row in rows:
        print(f"{row['command']:<36} {row['seconds']:7.3f} s  x{row['ratio_to_bare_python']:<5} "
              f"{', '.join(row['heavy_imports']) or '-'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"bare_python_s": bare, "commands": rows}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
