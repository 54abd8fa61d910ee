#!/usr/bin/env python3
"""doppel's builtin:privacy next to SDMetrics' privacy metrics, from one run.

On one (real, synthetic, holdout) triple it computes DCRBaselineProtection,
DCROverfittingProtection, NewRowSynthesis and DisclosureProtection with both
tools, using the column metadata doppel inferred, and prints each number, the
difference and the wall times with their ratio.

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install -r generators/benches/requirements.txt
    cargo build --release -p doppel-cli
    .venv-bench/bin/python host/benches/compare_sdmetrics_privacy.py            # the committed fixture
    .venv-bench/bin/python host/benches/compare_sdmetrics_privacy.py --rows 8000 # a larger Adult sample

Without --rows it scores the committed fixture (host/tests/fixtures/privacy,
1,500 real rows); with --rows N it samples N Adult rows (3/4 real, 1/4
holdout) and trains doppel's copula on the real part. DCRBaselineProtection's
random baseline is drawn by each tool's own generator, so it agrees within
sampling error; the other metrics are deterministic and agree exactly.
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
REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = REPO / "host/tests/fixtures/privacy"
DOPPEL = REPO / "target/release/doppel"
KNOWN = ["age", "sex", "race"]
SENSITIVE = ["income"]


def doppel(args):
    subprocess.run([str(DOPPEL), *args, "--progress", "never", "--log-filter", "error"],
                   check=True, stdout=subprocess.DEVNULL)


def triple(rows, tmp):
    """Paths of real, synthetic and holdout CSVs."""
    if rows is None:
        return FIXTURE / "real.csv", FIXTURE / "synthetic.csv", FIXTURE / "holdout.csv"
    adult = pd.read_csv(REPO / "data/adult.csv").sample(rows, random_state=7).reset_index(drop=True)
    cut = rows * 3 // 4
    real, holdout = tmp / "real.csv", tmp / "holdout.csv"
    adult.iloc[:cut].to_csv(real, index=False)
    adult.iloc[cut:].to_csv(holdout, index=False)
    pipeline = tmp / "synth.toml"
    pipeline.write_text(
        'version = 1\n[stages.source]\nuses = "builtin:source"\nwith = { path = "real.csv" }\n'
        '[stages.synth]\nuses = "builtin:copula"\ninputs = ["source"]\nwith = { seed = 5 }\n'
        '[outputs]\nsynthetic = "synth"\n')
    doppel(["run", str(pipeline), "--out", str(tmp), "--format", "csv"])
    return real, tmp / "synthetic.csv", holdout


def run_doppel(real, synthetic, holdout, tmp):
    quote = lambda p: json.dumps(str(p))
    pipeline = tmp / "privacy.toml"
    pipeline.write_text(
        "version = 1\n"
        f'[stages.real]\nuses = "builtin:source"\nwith = {{ path = {quote(real)} }}\n'
        f'[stages.synthetic]\nuses = "builtin:source"\nwith = {{ path = {quote(synthetic)} }}\n'
        f'[stages.holdout]\nuses = "builtin:source"\nwith = {{ path = {quote(holdout)} }}\n'
        '[stages.privacy]\nuses = "builtin:privacy"\ninputs = ["real", "synthetic", "holdout"]\n'
        f"with = {{ known_columns = {json.dumps(KNOWN)}, sensitive_columns = {json.dumps(SENSITIVE)}, "
        "overfitting_equal_sizes = false }\n")
    out = tmp / "doppel-out"
    start = time.perf_counter()
    doppel(["run", str(pipeline), "--out", str(out)])
    wall = time.perf_counter() - start
    report = json.loads((out / "report.json").read_text())
    stages = {s["id"]: s for s in report["stages"]}
    metrics = {}
    for m in stages["privacy"]["result"]["metrics"]:
        metrics.setdefault(m["name"], m)  # the first of a name is the table-level one
    columns = stages["real"]["result"]["columns"]
    metadata = {"columns": {c["name"]: {"sdtype": c["semantic_type"]} for c in columns}}
    return metrics, metadata, wall, stages["privacy"]["elapsed_ms"] / 1e3


def run_sdmetrics(real, synthetic, holdout, metadata):
    from sdmetrics.single_table import (
        DCRBaselineProtection,
        DCROverfittingProtection,
        DisclosureProtection,
        NewRowSynthesis,
    )

    r, s, h = pd.read_csv(real), pd.read_csv(synthetic), pd.read_csv(holdout)
    md = {"tables": {"t": metadata}}
    start = time.perf_counter()
    scores = {
        "DCRBaselineProtection": DCRBaselineProtection.compute_breakdown(r, s, md, "t")["score"],
        "DCROverfittingProtection": DCROverfittingProtection.compute_breakdown(r, s, h, md, "t")["score"],
        "NewRowSynthesis": NewRowSynthesis.compute(r, s, metadata),
        "DisclosureProtection": DisclosureProtection.compute(
            r, s, known_column_names=KNOWN, sensitive_column_names=SENSITIVE,
            continuous_column_names=[c for c in KNOWN + SENSITIVE
                                     if metadata["columns"][c]["sdtype"] == "numerical"]),
    }
    return scores, time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, help="sample this many Adult rows instead of the fixture")
    args = ap.parse_args()
    if not DOPPEL.exists():
        sys.exit("build doppel first: cargo build --release -p doppel-cli")
    with tempfile.TemporaryDirectory() as t:
        tmp = pathlib.Path(t)
        real, synthetic, holdout = triple(args.rows, tmp)
        ours, metadata, wall, stage = run_doppel(real, synthetic, holdout, tmp)
        theirs, their_wall = run_sdmetrics(real, synthetic, holdout, metadata)
    n = len(pd.read_csv(real))
    print(f"real rows: {n}, synthetic rows: {len(pd.read_csv(synthetic))}, holdout rows: {len(pd.read_csv(holdout))}")
    print(f"{'metric':<26} {'doppel':>10} {'SDMetrics':>10} {'|diff|':>9}")
    for name, value in theirs.items():
        mine = ours[name]["value"]
        print(f"{name:<26} {mine:>10.4f} {value:>10.4f} {abs(mine - value):>9.4f}")
    print(f"doppel privacy stage: {stage:.2f} s (whole run incl. reading CSVs: {wall:.2f} s)")
    print(f"SDMetrics, the four metrics: {their_wall:.2f} s")
    print(f"ratio (SDMetrics / doppel stage): {their_wall / stage:.1f}x")
    print(f"doppel Privacy Score: {ours['Privacy Score']['value']:.1f} ({ours['Privacy Score']['note']})")


if __name__ == "__main__":
    main()
