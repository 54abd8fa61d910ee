#!/usr/bin/env python3
"""doppel's CTGAN/TVAE (libtorch, no Python in the loop) next to SDV's
CTGANSynthesizer/TVAESynthesizer, from one run, on the same device.

For each model it trains both tools for the same number of epochs on the same
table, then reports fit time, seconds per epoch (doppel's from its epoch
progress; SDV's as fit time / epochs, which includes its preprocessing — that
stall is part of what users wait for) and the SDMetrics QualityReport score of
each twin against the real table, with one column metadata for both.

    python3 -m venv .venv-torch
    .venv-torch/bin/pip install -r generators/benches/requirements-torch.txt
    LIBTORCH_USE_PYTORCH=1 PATH=$PWD/.venv-torch/bin:$PATH \\
        cargo build --release -p doppel-generators --features torch --example neural_csv
    .venv-torch/bin/python generators/benches/compare_ctgan.py --epochs 5 --device cpu

With --device cuda both tools train on the GPU (SDV's `enable_gpu`).
"""

import argparse
import json
import pathlib
import subprocess
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
    return report.get_score()


def run_doppel(binary, model, data, epochs, device, work):
    out = work / f"doppel-{model}.csv"
    cmd = [str(binary), model, str(data), str(out), str(epochs), "0", device]
    info = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return info, pd.read_csv(out)


def run_sdv(model, real, epochs, device):
    from sdv.metadata import Metadata
    from sdv.single_table import CTGANSynthesizer, TVAESynthesizer

    metadata = Metadata.detect_from_dataframes({"t": real})
    cls = CTGANSynthesizer if model == "ctgan" else TVAESynthesizer
    synth = cls(metadata, epochs=epochs, enable_gpu=device == "cuda")
    started = time.perf_counter()
    synth.fit({"t": real})
    fit = time.perf_counter() - started
    started = time.perf_counter()
    synthetic = synth.sample(num_rows=len(real))
    sample = time.perf_counter() - started
    if isinstance(synthetic, dict):
        synthetic = synthetic["t"]
    return {"fit_s": fit, "per_epoch_s": fit / epochs, "sample_s": sample}, synthetic, metadata


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO / "data/adult.csv"))
    parser.add_argument("--binary", default=str(REPO / "target/release/examples/neural_csv"))
    parser.add_argument("--models", nargs="+", default=["ctgan", "tvae"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()

    real = pd.read_csv(args.data)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        for model in args.models:
            sdv_info, sdv_twin, metadata = run_sdv(model, real, args.epochs, args.device)
            detected = metadata.to_dict()["tables"]["t"]
            ours, our_twin = run_doppel(args.binary, model, args.data, args.epochs, args.device, work)
            q_sdv = sdmetrics_quality(real, sdv_twin[real.columns], detected)
            q_ours = sdmetrics_quality(real, our_twin[real.columns], detected)
            rows.append((model, "sdv", sdv_info, q_sdv))
            rows.append((model, "doppel", ours, q_ours))
            print(f"{model}: sdv {sdv_info['per_epoch_s']:.2f} s/epoch quality {q_sdv:.4f}; "
                  f"doppel {ours['per_epoch_s']:.2f} s/epoch quality {q_ours:.4f}", flush=True)

    print()
    print(f"{args.epochs} epochs on {args.device}, {len(real)} rows")
    print(f"{'model':<6} {'tool':<7} {'fit s':>8} {'s/epoch':>8} {'sample s':>9} {'quality':>8} {'epoch speed-up':>15}")
    for model in args.models:
        sdv = next(r for r in rows if r[0] == model and r[1] == "sdv")
        for m, tool, info, q in rows:
            if m != model:
                continue
            ratio = sdv[2]["per_epoch_s"] / info["per_epoch_s"]
            print(f"{m:<6} {tool:<7} {info['fit_s']:>8.1f} {info['per_epoch_s']:>8.2f} {info['sample_s']:>9.2f} "
                  f"{q:>8.4f} {ratio:>14.1f}×")


if __name__ == "__main__":
    main()
