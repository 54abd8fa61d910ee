#!/usr/bin/env python3
"""doppel's DP generators next to smartnoise-synth's, from one run.

For each ε it fits doppel's `builtin:privsyn` (and, with `--dp-tvae`, the
DP-SGD `builtin:dp-tvae`) through `examples/dp_csv.rs` — the generators
`doppel run pipelines/dp.toml` / `dp-tvae.toml` run — and smartnoise's MST
(and AIM, DP-CTGAN, PATE-CTGAN when asked) at the same (ε, δ), and scores
every twin with SDMetrics' QualityReport against the real table using one
column metadata. With `--fidelity`, every tool learns from 80 % of the rows
and each twin also gets the fidelity protocol's columns (`fidelity.py`: C2ST
detection, TSTR AUC, α-precision, β-recall, DCR share) against the 20 % it
never saw. DP noise differs run to run, so each cell is the mean (± standard
deviation) over --repeat fits.

    python3 -m venv .venv-dp
    .venv-dp/bin/pip install -r generators/benches/requirements-dp.txt
    cargo build --release -p doppel-generators --example dp_csv          # add --features torch for --dp-tvae
    .venv-dp/bin/python generators/benches/compare_dp.py --epsilons 0.5 1 4 --repeat 3 [--aim]
    .venv-dp/bin/python generators/benches/compare_dp.py --epsilons 1 4 10 --repeat 1 --dp-tvae --fidelity

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
import sys
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


def run_doppel(binary, generator, data, epsilon, seed, categorical, work, epochs=None):
    out = work / f"doppel-{generator}-{epsilon}-{seed}.csv"
    cmd = [str(binary), generator, str(data), str(out), str(epsilon), str(seed)]
    cmd.append(",".join(categorical) if categorical is not None else "-")
    if epochs is not None:
        cmd.append(str(epochs))
    info = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    assert abs(info["epsilon"] - epsilon) < 1e-6, f"doppel spent ε={info['epsilon']}, asked {epsilon}"
    return info["fit_s"] + info["sample_s"], pd.read_csv(out), info["columns"]


def run_smartnoise(name, real, epsilon, categorical, continuous, epochs=None):
    from snsynth import Synthesizer

    kwargs = {"epsilon": epsilon, "verbose": False}
    if name in ("mst", "aim"):
        kwargs["delta"] = DELTA
    elif epochs is not None:
        kwargs["epochs"] = epochs
    synth = Synthesizer.create(name, **kwargs)
    started = time.perf_counter()
    synth.fit(real, categorical_columns=categorical, continuous_columns=continuous,
              preprocessor_eps=0.1 * epsilon, nullable=True)
    synthetic = synth.sample(len(real))
    return time.perf_counter() - started, synthetic


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO / "data/adult.csv"))
    parser.add_argument("--binary", default=str(REPO / "target/release/examples/dp_csv"))
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.5, 1.0, 4.0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--aim", action="store_true", help="also run AIM (slow: ~13 min per fit on Adult)")
    parser.add_argument("--dp-tvae", action="store_true", help="also run doppel's DP-SGD TVAE (a torch build)")
    parser.add_argument("--epochs", type=int, default=None, help="DP-TVAE's epochs (default: its own)")
    parser.add_argument("--gans", action="store_true",
                        help="also run smartnoise's DP-CTGAN and PATE-CTGAN (needs torch and opacus installed)")
    parser.add_argument("--gan-epochs", type=int, default=30,
                        help="smartnoise's GANs' epochs (their defaults, 300-500, take hours on a CPU)")
    parser.add_argument("--fidelity", action="store_true",
                        help="learn from 80 %% of the rows and add the fidelity protocol's columns on the rest")
    parser.add_argument("--target", default="income", help="the column TSTR predicts (--fidelity)")
    parser.add_argument("--public-categories", action="store_true",
                        help="let doppel assume the category sets are public, as smartnoise does")
    args = parser.parse_args()

    full = pd.read_csv(args.data)
    if args.fidelity:
        train = full.sample(frac=0.8, random_state=7)
        holdout = full.drop(train.index)
    else:
        train, holdout = full, None
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        data = work / "train.csv"
        train.to_csv(data, index=False)
        real = pd.read_csv(data)
        # The column roles come from doppel's profile; both tools and SDMetrics use them.
        _, _, columns = run_doppel(args.binary, "privsyn", data, 1.0, 0, None, work)
        sdtypes = {c["name"]: c["semantic_type"] for c in columns}
        continuous = [n for n, t in sdtypes.items() if t == "numerical"]
        categorical = [n for n in real.columns if n not in continuous]
        metadata = {"columns": {n: {"sdtype": "numerical" if n in continuous else "categorical"}
                                for n in real.columns}}
        kind = {n: ("numerical" if n in continuous else "categorical") for n in real.columns}
        tools = ["doppel privsyn"] + (["doppel dp-tvae"] if args.dp_tvae else []) + ["smartnoise mst"]
        tools += (["smartnoise aim"] if args.aim else []) + (["smartnoise dpctgan", "smartnoise patectgan"]
                                                            if args.gans else [])
        for epsilon in args.epsilons:
            for tool in tools:
                scores, times, extra = [], [], []
                for seed in range(args.repeat):
                    if tool.startswith("doppel"):
                        cats = categorical if args.public_categories else None
                        seconds, synthetic, _ = run_doppel(args.binary, tool.split()[1], data, epsilon, seed, cats,
                                                           work, args.epochs if tool == "doppel dp-tvae" else None)
                    else:
                        seconds, synthetic = run_smartnoise(tool.split()[1], real, epsilon, categorical, continuous,
                                                            args.gan_epochs)
                    synthetic = synthetic[real.columns]
                    scores.append(sdmetrics_quality(real, synthetic, metadata))
                    times.append(seconds)
                    line = f"ε={epsilon:<4} {tool:<20} run {seed}: quality {scores[-1]:.4f} in {seconds:.1f} s"
                    if args.fidelity:
                        sys.path.insert(0, str(REPO / "generators/benches"))
                        import fidelity

                        try:
                            f = fidelity.score(real, holdout, synthetic, args.target, kind, seed)
                        except ValueError as e:
                            # A twin can lose a class of the target (a DP model at small ε):
                            # TSTR is then undefined, which the table shows as nan.
                            print(f"  fidelity undefined for this twin: {e}", flush=True)
                            f = {c: float("nan") for c in ("quality", "c2st", "c2st_auc", "tstr_auc", "trtr_auc",
                                                           "alpha_precision", "beta_recall", "dcr_share")}
                        extra.append(f)
                        line += " | " + " ".join(f"{k} {v:.3f}" for k, v in f.items() if k != "quality")
                    print(line, flush=True)
                results[(epsilon, tool)] = (scores, times, extra)

    print()
    columns = ["c2st", "tstr_auc", "alpha_precision", "beta_recall", "dcr_share"] if args.fidelity else []
    header = f"{'ε':>5}  {'tool':<20} {'SDMetrics quality':>20} {'fit+sample s':>13} {'speed vs MST':>13}"
    print(header + "".join(f" {c:>15}" for c in columns))
    for epsilon in args.epsilons:
        mst_time = statistics.median(results[(epsilon, "smartnoise mst")][1])
        for tool in tools:
            scores, times, extra = results[(epsilon, tool)]
            sd = statistics.stdev(scores) if len(scores) > 1 else 0.0
            t = statistics.median(times)
            row = (f"{epsilon:>5}  {tool:<20} {statistics.mean(scores):>13.4f} ± {sd:.4f} {t:>13.1f} "
                   f"{mst_time / t:>12.1f}×")
            row += "".join(f" {statistics.mean(e[c] for e in extra):>15.3f}" for c in columns)
            print(row)
    if args.fidelity:
        trtr = fidelity.tstr(real, holdout, real, kind, args.target, 0)[1]
        print(f"\nTSTR's reference, trained on the real rows (TRTR): AUC {trtr:.3f}")


if __name__ == "__main__":
    main()
