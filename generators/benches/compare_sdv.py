#!/usr/bin/env python3
"""doppel's Gaussian copula next to SDV's GaussianCopulaSynthesizer, from one run.

For one real table it measures, for both tools, fit+sample wall time and the
SDMetrics QualityReport score of the synthetic table, scoring both with the
same column metadata (doppel's semantic types) so the numbers compare. It also
checks doppel's own quality plugin against SDMetrics on the same pair.

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install -r generators/benches/requirements.txt
    cargo build --release -p doppel-cli
    .venv-bench/bin/python generators/benches/compare_sdv.py --repeat 3

Times are medians over --repeat runs; the machine's load shows in them, so
compare the ratio, which both tools share.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import pandas as pd

warnings.filterwarnings("ignore")
REPO = pathlib.Path(__file__).resolve().parents[2]


def sdmetrics_quality(real, synthetic, metadata):
    from sdmetrics.reports import QualityReport

    report = QualityReport()
    report.generate({"t": real}, {"t": synthetic}, {"tables": {"t": metadata}}, verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    return report.get_score(), props["Column Shapes"], props["Column Pair Trends"]


def run_doppel(binary, data, out):
    cmd = [str(binary), "run", str(REPO / "pipelines/quickstart.toml"), "--input", str(data),
           "--out", str(out), "--progress", "never", "--log-filter", "error"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    report = json.loads((out / "report.json").read_text())
    stages = {s["id"]: s for s in report["stages"]}
    model = stages["synth"]["result"]["model"]
    seconds = (model["fit_ms"] + model["sample_ms"]) / 1000.0
    own = {m["name"]: m["value"] for m in stages["quality"]["result"]["metrics"] if not m["columns"]}
    columns = stages["source"]["result"]["columns"]
    return seconds, own, columns


def metadata_from(columns):
    """SDMetrics metadata from doppel's semantic types (id and text are skipped by both)."""
    mapping = {"numerical": "numerical", "categorical": "categorical", "boolean": "boolean",
               "datetime": "datetime", "id": "id", "text": "id"}
    return {"columns": {c["name"]: {"sdtype": mapping[c["semantic_type"]]} for c in columns}}


def run_sdv(real):
    from sdv.metadata import Metadata
    from sdv.single_table import GaussianCopulaSynthesizer

    metadata = Metadata.detect_from_dataframes({"t": real})
    synthesizer = GaussianCopulaSynthesizer(metadata)
    started = time.perf_counter()
    synthesizer.fit({"t": real})
    synthetic = synthesizer.sample(num_rows=len(real))
    seconds = time.perf_counter() - started
    if isinstance(synthetic, dict):  # SDV 2.0 returns {table: frame}
        synthetic = synthetic["t"]
    detected = metadata.to_dict()["tables"]["t"]
    return seconds, synthetic, detected


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO / "data/adult.csv"))
    parser.add_argument("--binary", default=str(REPO / "target/release/doppel"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = pathlib.Path(args.data).resolve()
    binary = pathlib.Path(args.binary)
    if not binary.exists():
        sys.exit(f"{binary} not found: run `cargo build --release -p doppel-cli` first")
    real = pd.read_csv(data)

    doppel_times, sdv_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            out = pathlib.Path(tmp) / f"run{i}"
            seconds, own, columns = run_doppel(binary, data, out)
            doppel_times.append(seconds)
        doppel_synth = pd.read_parquet(out / "synthetic.parquet")
    for _ in range(args.repeat):
        seconds, sdv_synth, sdv_detected = run_sdv(real)
        sdv_times.append(seconds)

    ours = metadata_from(columns)
    d_score, d_shapes, d_trends = sdmetrics_quality(real, doppel_synth, ours)
    s_score, s_shapes, s_trends = sdmetrics_quality(real, sdv_synth, ours)
    s_own_score, _, _ = sdmetrics_quality(real, sdv_synth, sdv_detected)
    dt, st = statistics.median(doppel_times), statistics.median(sdv_times)

    print(f"table: {data.name}, {len(real)} rows x {len(real.columns)} columns; median of {args.repeat} runs")
    print()
    print(f"{'':32} {'doppel copula':>14} {'SDV GaussianCopula':>19}")
    print(f"{'fit + sample (s)':32} {dt:14.3f} {st:19.3f}")
    print(f"{'SDMetrics Quality Score':32} {d_score:14.4f} {s_score:19.4f}")
    print(f"{'  Column Shapes':32} {d_shapes:14.4f} {s_shapes:19.4f}")
    print(f"{'  Column Pair Trends':32} {d_trends:14.4f} {s_trends:19.4f}")
    print(f"{'SDV score, SDV-detected metadata':32} {'':14} {s_own_score:19.4f}")
    print()
    print(f"speed: doppel is {st / dt:.1f}x faster; quality: {d_score - s_score:+.4f}")
    print()
    agree = own["Quality Score"] - d_score
    print("doppel/quality plugin vs SDMetrics on the same pair:")
    print(f"  Quality Score {own['Quality Score']:.4f} vs {d_score:.4f} (delta {agree:+.5f})")
    print(f"  Column Shapes {own['Column Shapes']:.4f} vs {d_shapes:.4f} (delta {own['Column Shapes'] - d_shapes:+.5f})")
    print(f"  Column Pair Trends {own['Column Pair Trends']:.4f} vs {d_trends:.4f} (delta {own['Column Pair Trends'] - d_trends:+.5f})")


if __name__ == "__main__":
    main()
