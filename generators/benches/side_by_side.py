#!/usr/bin/env python3
"""doppel's generators next to SDV and smartnoise on three public tables, in
one run, scored by one protocol (`fidelity.py`: SDMetrics quality, C2ST,
train-synthetic-test-real AUC, alpha-precision / beta-recall, DCR share).

Tables: UCI Adult (`data/adult.csv`, target `income`), Fair's affairs survey
(statsmodels' bundled `fair`, 6,366 rows; target: had an affair), and the
Wisconsin breast-cancer table (scikit-learn's bundled copy, 569 rows; target:
diagnosis). Each is split 80/20 (seed 7); every tool learns from the same
80 % and is scored on the 20 % it never saw.

Tools: doppel `cart` (the quickstart's default), `copula` and `privsyn`
(epsilon 1) through `examples/fit_csv.rs`; SDV 2.0's GaussianCopula and CTGAN
(`--ctgan-epochs`, default 30: SDV's default of 300 takes most of an hour
on Adult on two cores); smartnoise's MST at epsilon 1, run by the Python of a
second environment (`--dp-python`; smartnoise and SDV pin different
libraries). Time is fit + sample in each tool's own process; the ratio column
is each tool's time over doppel cart's on the same table, from this run.

    python3 -m venv .venv-bench && .venv-bench/bin/pip install -r generators/benches/requirements.txt scikit-learn==1.9.1 statsmodels
    python3 -m venv .venv-dp && .venv-dp/bin/pip install -r generators/benches/requirements-dp.txt
    cargo build --release -p doppel-generators --example fit_csv
    .venv-bench/bin/python generators/benches/side_by_side.py --dp-python .venv-dp/bin/python
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
sys.path.insert(0, str(REPO / "generators/benches"))
import fidelity  # noqa: E402

EPSILON, DELTA = 1.0, 1e-9


def load(name):
    """(table, target column)."""
    if name == "adult":
        return pd.read_csv(REPO / "data/adult.csv"), "income"
    if name == "fair":
        from statsmodels.datasets import fair

        t = fair.load_pandas().data
        t["affair"] = (t.pop("affairs") > 0).map({True: "yes", False: "no"})
        for c in ("rate_marriage", "religious", "educ", "occupation", "occupation_husb"):
            t[c] = t[c].astype(int)
        return t, "affair"
    if name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        t = load_breast_cancer(as_frame=True).frame
        t["target"] = t["target"].map({0: "malignant", 1: "benign"})
        t.columns = [c.replace(" ", "_") for c in t.columns]
        return t, "target"
    raise SystemExit(f"unknown table {name}")


def doppel(binary, generator, train_csv, out_csv, params=()):
    cmd = [str(binary), generator, str(train_csv), str(out_csv), "42", *params]
    info = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return info["fit_s"] + info["sample_s"], pd.read_csv(out_csv)


def sdv(kind, train, epochs):
    from sdv.metadata import Metadata
    from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer

    metadata = Metadata.detect_from_dataframes({"t": train})
    if kind == "ctgan":
        model = CTGANSynthesizer(metadata, epochs=epochs, enable_gpu=False)
    else:
        model = GaussianCopulaSynthesizer(metadata)
    started = time.perf_counter()
    model.fit({"t": train})  # SDV 2.0 takes {table: frame}
    synthetic = model.sample(num_rows=len(train))
    if isinstance(synthetic, dict):  # and returns one
        synthetic = synthetic["t"]
    return time.perf_counter() - started, synthetic


MST_WORKER = r"""
import sys, time, warnings, pandas as pd
warnings.filterwarnings("ignore")
from snsynth import Synthesizer
train, out, categorical, continuous = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
real = pd.read_csv(train)
categorical = [c for c in categorical.split(",") if c]
continuous = [c for c in continuous.split(",") if c]
synth = Synthesizer.create("mst", epsilon=float(sys.argv[5]), delta=float(sys.argv[6]), verbose=False)
started = time.perf_counter()
synth.fit(real, categorical_columns=categorical, continuous_columns=continuous,
          preprocessor_eps=0.1 * float(sys.argv[5]), nullable=True)
synthetic = synth.sample(len(real))
print(time.perf_counter() - started)
synthetic.to_csv(out, index=False)
"""


def mst(python, train_csv, out_csv, kind):
    categorical = [c for c, k in kind.items() if k != "numerical"]
    continuous = [c for c, k in kind.items() if k == "numerical"]
    done = subprocess.run([python, "-c", MST_WORKER, str(train_csv), str(out_csv), ",".join(categorical),
                           ",".join(continuous), str(EPSILON), str(DELTA)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no message"]
        raise RuntimeError(lines[-1][:200])
    return float(done.stdout.strip().splitlines()[-1]), pd.read_csv(out_csv)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", default="adult,fair,breast_cancer")
    ap.add_argument("--binary", default=str(REPO / "target/release/examples/fit_csv"))
    ap.add_argument("--dp-python", help="Python with smartnoise-synth (skips MST when absent)")
    ap.add_argument("--ctgan-epochs", type=int, default=30)
    ap.add_argument("--skip", default="", help="comma-separated tools to leave out")
    ap.add_argument("--json", help="also write every number here")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        for name in args.tables.split(","):
            table, target = load(name)
            holdout = table.sample(frac=0.2, random_state=7)
            train = table.drop(holdout.index).reset_index(drop=True)
            holdout = holdout.reset_index(drop=True)
            train_csv = work / f"{name}-train.csv"
            train.to_csv(train_csv, index=False)
            kind = fidelity.kinds(train)
            tools = {
                "doppel cart": lambda: doppel(args.binary, "cart", train_csv, work / "cart.csv"),
                "doppel copula": lambda: doppel(args.binary, "copula", train_csv, work / "copula.csv"),
                "doppel privsyn e=1": lambda: doppel(args.binary, "privsyn", train_csv, work / "privsyn.csv",
                                                     [f"epsilon={EPSILON}", f"delta={DELTA}"]),
                "SDV GaussianCopula": lambda: sdv("copula", train, args.ctgan_epochs),
                f"SDV CTGAN ({args.ctgan_epochs} ep.)": lambda: sdv("ctgan", train, args.ctgan_epochs),
            }
            if args.dp_python:
                tools["smartnoise MST e=1"] = lambda: mst(args.dp_python, train_csv, work / "mst.csv", kind)
            base = None
            for tool, run in tools.items():
                if any(tool.startswith(s) for s in skip):
                    continue
                try:
                    seconds, synthetic = run()
                except Exception as e:  # one peer failing must not lose the others' rows
                    row = {"table": name, "tool": tool, "failed": f"{type(e).__name__}: {e}"}
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
                    continue
                synthetic = synthetic[train.columns]
                scores = fidelity.score(train, holdout, synthetic, target, kind)
                base = base or seconds
                row = {"table": name, "tool": tool, "seconds": seconds, "ratio": seconds / base, **scores}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    print("| table | tool | SDMetrics quality | C2ST | TSTR AUC (real-trained) | α-precision | β-recall "
          "| DCR share | fit + sample s | time / doppel cart |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "failed" in r:
            print(f"| {r['table']} | {r['tool']} | failed: {r['failed']} |||||||||")
            continue
        print(f"| {r['table']} | {r['tool']} | {r['quality']:.3f} | {r['c2st']:.3f} | "
              f"{r['tstr_auc']:.3f} ({r['trtr_auc']:.3f}) | {r['alpha_precision']:.3f} | {r['beta_recall']:.3f} | "
              f"{r['dcr_share']:.3f} | {r['seconds']:.2f} | {r['ratio']:.1f}× |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
