#!/usr/bin/env python3
"""doppel's PrivSyn next to smartnoise-synth's MST (and AIM), from one run.

For each ε it fits doppel's `builtin:privsyn` (through the CLI, on a
two-stage pipeline) and smartnoise's MST/AIM on the same table at the same
(ε, δ) (`examples/privsyn_csv.rs` runs the same generator as
`doppel run pipelines/dp.toml`), and scores every twin with SDMetrics' QualityReport against the real
table using one column metadata. DP noise differs run to run, so each cell is
the mean (± standard deviation) over --repeat fits.

    python3 -m venv .venv-dp
    .venv-dp/bin/pip install -r generators/benches/requirements-dp.txt
    cargo build --release -p doppel-generators --example privsyn_csv
    .venv-dp/bin/python generators/benches/compare_dp.py --epsilons 0.5 1 4 --repeat 3 [--aim]

Both tools spend part of ε finding numeric bounds (doppel 5 % of ρ, smartnoise
`preprocessor_eps` = 10 % of ε); neither is told the bounds. smartnoise reads
its categories off the data (it treats them as public); doppel releases only
categories that pass DP partition selection, so it pays for what smartnoise
assumes. `--public-categories` gives doppel the same assumption.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import tempfile
import time
import warnings

import pandas as pd

warnings.filterwarnings("ignore")
REPO = pathlib.Path(__file__).resolve().parents[2]
DELTA = 1e-9

def sdmetrics_quality(real, synthetic, metadata):
    from sdmetrics.reports import QualityReport

    report = QualityReport()
    report.generate({"t": real}, {"t": synthetic}, {"tables": {"t": metadata}}, verbose=False)
    return report.get_score()


def run_doppel(binary, data, epsilon, seed, categorical, work):
    out = work / f"doppel-{epsilon}-{seed}.csv"
    cmd = [str(binary), str(data), str(out), str(epsilon), str(seed)]
    if categorical is not None:
        cmd.append(",".join(categorical))
    info = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    assert abs(info["epsilon"] - epsilon) < 1e-6, f"doppel spent ε={info['epsilon']}, asked {epsilon}"
    return info["fit_s"] + info["sample_s"], pd.read_csv(out), info["columns"]


def run_smartnoise(name, real, epsilon, categorical, continuous):
    from snsynth import Synthesizer

    synth = Synthesizer.create(name, epsilon=epsilon, delta=DELTA, verbose=False)
    started = time.perf_counter()
    synth.fit(real, categorical_columns=categorical, continuous_columns=continuous,
              preprocessor_eps=0.1 * epsilon, nullable=True)
    synthetic = synth.sample(len(real))
    return time.perf_counter() - started, synthetic


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO / "data/adult.csv"))
    parser.add_argument("--binary", default=str(REPO / "target/release/examples/privsyn_csv"))
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.5, 1.0, 4.0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--aim", action="store_true", help="also run AIM (slow: ~13 min per fit on Adult)")
    parser.add_argument("--public-categories", action="store_true",
                        help="let doppel assume the category sets are public, as smartnoise does")
    args = parser.parse_args()

    real = pd.read_csv(args.data)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        # The column roles come from doppel's profile; both tools and SDMetrics use them.
        _, _, columns = run_doppel(args.binary, args.data, 1.0, 0, None, work)
        sdtypes = {c["name"]: c["semantic_type"] for c in columns}
        continuous = [n for n, t in sdtypes.items() if t == "numerical"]
        categorical = [n for n in real.columns if n not in continuous]
        metadata = {"columns": {n: {"sdtype": "numerical" if n in continuous else "categorical"}
                                for n in real.columns}}
        tools = ["doppel privsyn", "smartnoise mst"] + (["smartnoise aim"] if args.aim else [])
        for epsilon in args.epsilons:
            for tool in tools:
                scores, times = [], []
                for seed in range(args.repeat):
                    if tool == "doppel privsyn":
                        cats = categorical if args.public_categories else None
                        seconds, synthetic, _ = run_doppel(args.binary, args.data, epsilon, seed, cats, work)
                    else:
                        seconds, synthetic = run_smartnoise(tool.split()[1], real, epsilon, categorical, continuous)
                    synthetic = synthetic[real.columns]
                    scores.append(sdmetrics_quality(real, synthetic, metadata))
                    times.append(seconds)
                    print(f"ε={epsilon:<4} {tool:<16} run {seed}: quality {scores[-1]:.4f} in {seconds:.1f} s",
                          flush=True)
                results[(epsilon, tool)] = (scores, times)

    print()
    print(f"{'ε':>5}  {'tool':<16} {'SDMetrics quality':>20} {'fit+sample s':>13} {'speed vs MST':>13}")
    for epsilon in args.epsilons:
        mst_time = statistics.median(results[(epsilon, "smartnoise mst")][1])
        for tool in tools:
            scores, times = results[(epsilon, tool)]
            sd = statistics.stdev(scores) if len(scores) > 1 else 0.0
            t = statistics.median(times)
            print(f"{epsilon:>5}  {tool:<16} {statistics.mean(scores):>13.4f} ± {sd:.4f} {t:>13.1f} "
                  f"{mst_time / t:>12.1f}×")


if __name__ == "__main__":
    main()
