#!/usr/bin/env python3
"""doppel's quality plugin next to SDMetrics' QualityReport, in one run.

Scores one (real, synthetic) pair with both tools and prints the three
numbers of each, their differences, the seconds each took and the ratio.
doppel's time is the quality stage's own `elapsed_ms` in report.json (the
table reads are separate stages); SDMetrics' is `QualityReport.generate`
on DataFrames already in memory. Both use the same column roles: doppel's
profile decides them and the script hands them to SDMetrics as metadata.

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install -r generators/benches/requirements.txt
    cargo build --release -p doppel-cli
    .venv-bench/bin/python plugins/quality/benches/compare_sdmetrics.py
    .venv-bench/bin/python plugins/quality/benches/compare_sdmetrics.py --factor 10

Without `--synthetic`, the twin is doppel's quickstart CART twin of the real
table (made first, not timed). `--factor k` repeats both tables k times
(Adult × k), to see how each tool grows. Each tool runs `--repeat` times
(default 5) and its fastest run counts, the same for both: the first run of
a new binary compiles the plugin and caches it, which a server does once,
and a shared machine's noise only ever adds time.
"""

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time
import warnings

import pandas as pd

warnings.filterwarnings("ignore")
REPO = pathlib.Path(__file__).resolve().parents[3]

PIPELINE = """version = 1
[stages.real]
uses = "builtin:source"
with = {{ path = {real!r} }}
[stages.synthetic]
uses = "builtin:source"
with = {{ path = {synthetic!r} }}
[stages.quality]
uses = "doppel/quality@^0.1"
inputs = ["real", "synthetic"]
"""


def doppel_quality(binary, real, synthetic, work):
    """(seconds of the quality stage, its metrics, the real table's roles)."""
    spec = work / "quality.toml"
    spec.write_text(PIPELINE.format(real=str(real), synthetic=str(synthetic)).replace("'", '"'))
    out = work / "quality-out"
    subprocess.run([binary, "run", str(spec), "--out", str(out)], check=True, capture_output=True)
    report = json.loads((out / "report.json").read_text())
    stage = next(s for s in report["stages"] if s["id"] == "quality")
    metrics = {m["name"]: m["value"] for m in stage["result"]["metrics"] if not m.get("columns")}
    source = next(s for s in report["stages"] if s["id"] == "real")
    roles = {c["name"]: c["semantic_type"] for c in source["result"]["columns"]}
    return stage["elapsed_ms"] / 1000, metrics, roles


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", default=str(REPO / "data/adult.csv"))
    ap.add_argument("--synthetic")
    ap.add_argument("--binary", default=str(REPO / "target/release/doppel"))
    ap.add_argument("--factor", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5, help="runs of each tool; the fastest counts")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        real_path = pathlib.Path(args.real).resolve()
        if args.synthetic:
            synthetic_path = pathlib.Path(args.synthetic).resolve()
        else:
            twin = work / "twin"
            subprocess.run(
                [args.binary, "run", str(REPO / "pipelines/quickstart.toml"), "--input", str(real_path),
                 "--out", str(twin)],
                check=True,
                capture_output=True,
            )
            outputs = json.loads((twin / "report.json").read_text())["outputs"]
            synthetic_path = twin / outputs["synthetic"]["path"]
        real = pd.read_csv(real_path)
        synthetic = (pd.read_parquet(synthetic_path) if synthetic_path.suffix == ".parquet"
                     else pd.read_csv(synthetic_path))
        if args.factor > 1:
            real = pd.concat([real] * args.factor, ignore_index=True)
            synthetic = pd.concat([synthetic] * args.factor, ignore_index=True)
            real_path, synthetic_path = work / "real.csv", work / "synthetic.csv"
            real.to_csv(real_path, index=False)
            synthetic.to_csv(synthetic_path, index=False)
        # Both tools see the same columns.
        common = [c for c in real.columns if c in synthetic.columns]
        real, synthetic = real[common], synthetic[common]

        runs = [doppel_quality(args.binary, real_path, synthetic_path, work) for _ in range(args.repeat)]
        doppel_s = min(r[0] for r in runs)
        doppel_m, roles = runs[0][1], runs[0][2]

        from sdmetrics.reports import QualityReport

        sdtype = {"numerical": "numerical", "datetime": "datetime", "categorical": "categorical",
                  "boolean": "boolean"}
        columns = {}
        for c in common:
            role = roles.get(c)
            if role is None:
                role = "numerical" if pd.api.types.is_numeric_dtype(real[c]) else "categorical"
            columns[c] = {"sdtype": sdtype.get(role, "id" if role == "id" else "categorical")}
        sdm_runs = []
        for _ in range(args.repeat):
            report = QualityReport()
            start = time.perf_counter()
            report.generate({"t": real}, {"t": synthetic}, {"tables": {"t": {"columns": columns}}}, verbose=False)
            sdm_runs.append(time.perf_counter() - start)
        sdm_s = min(sdm_runs)
        props = report.get_properties().set_index("Property")["Score"]
        sdm = {"Quality Score": report.get_score(), "Column Shapes": props["Column Shapes"],
               "Column Pair Trends": props["Column Pair Trends"]}

    print(f"{len(real):,} real and {len(synthetic):,} synthetic rows, {len(common)} columns")
    print("| metric | doppel | SDMetrics | difference |")
    print("|---|---|---|---|")
    for k, v in sdm.items():
        d = doppel_m.get(k, float("nan"))
        print(f"| {k} | {d:.6f} | {v:.6f} | {d - v:+.1e} |")
    each = lambda xs: ", ".join(f"{x:.3f}" for x in xs)  # noqa: E731
    print(f"| seconds, fastest of {args.repeat} | {doppel_s:.3f} ({each(r[0] for r in runs)}) | {sdm_s:.3f} "
          f"({each(sdm_runs)}) | SDMetrics / doppel = {sdm_s / doppel_s:.1f}× |")


if __name__ == "__main__":
    sys.exit(main())
