#!/usr/bin/env python3
"""How the quickstart scales with rows: Adult repeated k times with jitter,
each size run by the `doppel` binary in its own process, one table printed.

For every factor k the script writes Adult × k (every copy's numbers moved a
little, so rows are not exact duplicates: age ±1, fnlwgt ±2 %, hours ±2,
seeded), runs `doppel run pipelines/quickstart.toml` on it, and reads the
per-stage times from the run's report.json and the peak resident memory of
the process from the kernel (`wait4`'s `ru_maxrss`). The last column is each
run's total over the ×1 run's, from this same invocation — compare ratios,
not seconds, across machines.

    cargo build --release -p doppel-cli
    python3 cli/benches/scale.py --factors 1,10,100
    # Adult × 1000 too, its 3.5 GB CSV kept for the next run:
    python3 cli/benches/scale.py --factors 1,10,100,1000 --tables /tmp/adult-tables
    # PrivSyn counting on a Ballista scheduler + two executors (loopback):
    python3 cli/benches/scale.py --pipeline pipelines/dp.toml --engine standalone --factors 1,10

Only the standard library is needed.
"""

import argparse
import csv
import json
import os
import pathlib
import random
import subprocess
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]


def write_table(source: pathlib.Path, factor: int, out: pathlib.Path, seed: int = 7) -> int:
    """Adult × factor with jitter; returns the row count."""
    rng = random.Random(seed)
    with source.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    col = {name: i for i, name in enumerate(header)}
    jitter = {
        "age": lambda v: str(max(17, int(v) + rng.randint(-1, 1))),
        "fnlwgt": lambda v: str(max(1, round(int(v) * (1 + rng.uniform(-0.02, 0.02))))),
        "hours_per_week": lambda v: str(min(99, max(1, int(v) + rng.randint(-2, 2)))),
    }
    count = 0
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for copy in range(factor):
            for row in rows:
                if copy > 0:
                    row = list(row)
                    for name, move in jitter.items():
                        i = col.get(name)
                        if i is not None and row[i].strip().lstrip("-").isdigit():
                            row[i] = move(row[i])
                w.writerow(row)
                count += 1
    return count


def count_rows(source: pathlib.Path) -> int:
    """Data rows of a CSV (quoted line breaks understood)."""
    with source.open(newline="") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def run(binary: str, table: pathlib.Path, out: pathlib.Path, sets: list[str], pipeline: str, engine: str):
    """(wall seconds, peak RSS bytes, {stage: seconds}) of one run."""
    cmd = [binary, "run", str(REPO / pipeline), "--input", str(table), "--out", str(out), "--engine", engine]
    for s in sets:
        cmd += ["--set", s]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"doppel failed on {table.name}:\n{stderr[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    stages = {s["id"]: s["elapsed_ms"] / 1000 for s in report["stages"]}
    return wall, usage.ru_maxrss * 1024, stages


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(REPO / "target/release/doppel"))
    ap.add_argument("--factors", default="1,10", help="comma-separated copies of Adult")
    ap.add_argument("--set", action="append", default=[], help="passed to doppel run as --set (repeatable)")
    ap.add_argument("--json", help="also write every number here")
    ap.add_argument(
        "--tables",
        help="keep the written tables in this folder and reuse them on the next run "
        "(Adult × 1000 is a 3.5 GB CSV that takes minutes to write); by default they go to a "
        "temporary folder and are removed after their run",
    )
    ap.add_argument("--pipeline", default="pipelines/quickstart.toml", help="relative to the repository")
    ap.add_argument(
        "--engine",
        default="local",
        help="`local`, `ballista://host:port`, or `standalone`: a Ballista scheduler and two executors "
        "started by `doppel engine standalone` for this run",
    )
    args = ap.parse_args()
    factors = [int(f) for f in args.factors.split(",")]
    rows = []
    cluster = None
    if args.engine == "standalone":
        cluster = subprocess.Popen([args.binary, "engine", "standalone"], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
        args.engine = cluster.stdout.readline().strip()
        if not args.engine.startswith("ballista://"):
            raise SystemExit("doppel engine standalone did not print its URL")
    try:
        measure(args, factors, rows)
    finally:
        if cluster is not None:
            cluster.terminate()
            cluster.wait()


def measure(args, factors, rows):
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        kept = pathlib.Path(args.tables) if args.tables else None
        if kept is not None:
            kept.mkdir(parents=True, exist_ok=True)
        for k in factors:
            table = (kept or work) / f"adult-x{k}.csv"
            if kept is not None and table.exists():
                # Written by an earlier run: the same seed gives the same rows.
                n = k * count_rows(REPO / "data/adult.csv")
            else:
                partial = table.with_suffix(".partial")
                n = write_table(REPO / "data/adult.csv", k, partial)
                partial.rename(table)
            wall, rss, stages = run(args.binary, table, work / f"out-x{k}", args.set, args.pipeline, args.engine)
            if kept is None:
                table.unlink()
            row = {"factor": k, "rows": n, "seconds": wall, "peak_rss_bytes": rss, "stages": stages}
            rows.append(row)
            print(json.dumps(row), flush=True, file=__import__("sys").stderr)
    base = rows[0]["seconds"]
    print("| rows | total s | synth s | fidelity s | privacy s | quality s | peak RSS | time / first |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["stages"]
        print(f"| {r['rows']:,} | {r['seconds']:.1f} | {s.get('synth', 0):.1f} | {s.get('fidelity', 0):.1f} | "
              f"{s.get('privacy', 0):.1f} | {s.get('quality', 0):.1f} | {r['peak_rss_bytes'] / 2**30:.2f} GiB | "
              f"{r['seconds'] / base:.1f}× |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
