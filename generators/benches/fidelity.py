#!/usr/bin/env python3
"""The fidelity protocol, written with numpy and scikit-learn: the reference
doppel's `builtin:fidelity` stage is checked against, and the scorer of
`side_by_side.py`.

Every metric compares a synthetic table with the real rows it was learned
from (`train`) and with real rows it never saw (`holdout`):

- quality: SDMetrics' QualityReport (column shapes and pair trends);
- C2ST (detection): a gradient-boosted classifier told real from synthetic on
  a balanced sample, 3-fold cross-validated ROC AUC; score 1 - 2|AUC - 1/2|
  (1 = indistinguishable);
- TSTR: a gradient-boosted classifier trained on the synthetic table predicts
  `target` on the holdout (ROC AUC; macro one-vs-rest for more than two
  classes), next to the same classifier trained on the real rows;
- alpha-precision / beta-recall: synthcity's "naive" definitions (Alaa et al.
  2022) on an embedding of min-max scaled numbers and one-hot categories;
- DCR share: SDMetrics' distance to closest record, to the training rows and
  to as many holdout rows, numbers scaled by the training table's ranges for
  both; the share of synthetic rows strictly closer to training (0.5 = no
  memorising).

    python generators/benches/fidelity.py --train t.csv --holdout h.csv --synthetic s.csv --target income
"""

import argparse
import json

import numpy as np
import pandas as pd


def kinds(real: pd.DataFrame, semantic: dict | None = None):
    """numerical / categorical per column (semantic types from doppel when given)."""
    out = {}
    for c in real.columns:
        if semantic and c in semantic:
            s = semantic[c]
            if s in ("numerical", "datetime"):
                out[c] = "numerical"
            elif s in ("categorical", "boolean"):
                out[c] = "categorical"
            continue
        out[c] = "numerical" if pd.api.types.is_numeric_dtype(real[c]) and real[c].nunique() > 10 else "categorical"
    return out


def _codes(frames, kind):
    """Shared numeric features: numbers as they are, categories as codes of a shared dictionary."""
    out = [pd.DataFrame(index=f.index) for f in frames]
    for c, k in kind.items():
        if k == "numerical":
            for o, f in zip(out, frames):
                o[c] = pd.to_numeric(f[c], errors="coerce").astype(float)
        else:
            values = pd.concat([f[c].astype("string") for f in frames]).dropna().unique()
            index = {v: i for i, v in enumerate(sorted(values))}
            for o, f in zip(out, frames):
                o[c] = f[c].astype("string").map(index).astype(float)
    return out


def _classifier(seed):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, max_depth=6, random_state=seed)


def c2st(train, synthetic, kind, seed=0, cap=10_000):
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    n = min(len(train), len(synthetic), cap)
    real = train.sample(n, random_state=seed)
    syn = synthetic.sample(n, random_state=seed + 1)
    xr, xs = _codes([real, syn], kind)
    x = pd.concat([xr, xs]).to_numpy()
    y = np.r_[np.zeros(n), np.ones(n)]
    aucs = []
    for fit, test in StratifiedKFold(3, shuffle=True, random_state=seed).split(x, y):
        model = _classifier(seed).fit(x[fit], y[fit])
        aucs.append(roc_auc_score(y[test], model.predict_proba(x[test])[:, 1]))
    auc = float(np.mean(aucs))
    return 1.0 - 2.0 * abs(auc - 0.5), auc


def _auc(model, x, y, classes):
    from sklearn.metrics import roc_auc_score

    p = model.predict_proba(x)
    known = list(model.classes_)
    if len(classes) == 2:
        pos = classes[1]
        score = p[:, known.index(pos)] if pos in known else np.zeros(len(x))
        return roc_auc_score(y == pos, score)
    aucs = []
    for c in classes:
        if (y == c).all() or not (y == c).any():
            continue
        score = p[:, known.index(c)] if c in known else np.zeros(len(x))
        aucs.append(roc_auc_score(y == c, score))
    return float(np.mean(aucs))


def tstr(train, holdout, synthetic, kind, target, seed=0):
    feats = {c: k for c, k in kind.items() if c != target}
    xt, xh, xs = _codes([train, holdout, synthetic], feats)
    # A missing target (MST's nullable output) is a class of its own.
    yt, yh, ys = (f[target].astype("string").fillna("\x00null").to_numpy(dtype=object) for f in (train, holdout, synthetic))
    classes = sorted(pd.Series(yt).dropna().unique())
    real = _auc(_classifier(seed).fit(xt.to_numpy(), yt), xh.to_numpy(), yh, classes)
    syn = _auc(_classifier(seed).fit(xs.to_numpy(), ys), xh.to_numpy(), yh, classes)
    return syn, real


def embed(frames, kind, reference):
    """Min-max scaled numbers (nulls at the mean, plus an indicator) and one-hot categories."""
    parts = [[] for _ in frames]
    for c, k in kind.items():
        if k == "numerical":
            ref = pd.to_numeric(reference[c], errors="coerce").astype(float)
            lo, hi = ref.min(), ref.max()
            span = hi - lo if hi > lo else 1.0
            has_null = ref.isna().any()
            for p, f in zip(parts, frames):
                v = pd.to_numeric(f[c], errors="coerce").astype(float)
                p.append(((v.fillna(ref.mean()) - lo) / span).to_numpy()[:, None])
                if has_null:
                    p.append(v.isna().to_numpy(float)[:, None])
        else:
            values = sorted(reference[c].astype("string").fillna("\x00null").unique())
            for p, f in zip(parts, frames):
                s = f[c].astype("string").fillna("\x00null").to_numpy()
                p.append(np.stack([(s == v).astype(float) for v in values], axis=1))
    return [np.concatenate(p, axis=1) for p in parts]


def alpha_beta(train, synthetic, kind, seed=0, cap=4000):
    """synthcity's AlphaPrecision, naive variant (no one-class embedding)."""
    from sklearn.neighbors import NearestNeighbors

    real = train.sample(min(cap, len(train)), random_state=seed)
    syn = synthetic.sample(min(cap, len(synthetic)), random_state=seed + 1)
    x, xs = embed([real, syn], kind, real)
    center = x.mean(axis=0)
    alphas = np.linspace(0, 1, 30)
    radii = np.quantile(np.sqrt(((x - center) ** 2).sum(1)), alphas)
    synth_center = xs.mean(axis=0)
    synth_to_center = np.sqrt(((xs - center) ** 2).sum(1))
    real_to_real = NearestNeighbors(n_neighbors=2).fit(x).kneighbors(x)[0][:, 1]
    real_to_synth, args = NearestNeighbors(n_neighbors=1).fit(xs).kneighbors(x)
    real_to_synth, args = real_to_synth[:, 0], args[:, 0]
    closest = xs[args]
    closest_d = np.sqrt(((closest - synth_center) ** 2).sum(1))
    closest_radii = np.quantile(closest_d, alphas)
    precision = [np.mean(synth_to_center <= r) for r in radii]
    coverage = [np.mean((real_to_synth <= real_to_real) & (closest_d <= r)) for r in closest_radii]
    a = 1 - np.abs(alphas - precision).sum() / alphas.sum()
    b = 1 - np.abs(alphas - coverage).sum() / alphas.sum()
    return float(a), float(b)


def dcr(data, reference, kind, scale_of=None):
    """SDMetrics' DCR of every row of `data` to `reference`, numbers scaled by
    the ranges of `scale_of` (default: the reference, as SDMetrics does)."""
    cols = list(kind)
    num = [c for c in cols if kind[c] == "numerical"]
    cat = [c for c in cols if kind[c] != "numerical"]
    out = np.empty(len(data))
    rn = reference[num].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    dn = data[num].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    sn = rn if scale_of is None else scale_of[num].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    span = np.nanmax(sn, axis=0) - np.nanmin(sn, axis=0)
    rc = reference[cat].astype("string").fillna("\x00null").to_numpy()
    dc = data[cat].astype("string").fillna("\x00null").to_numpy()
    for i in range(len(data)):
        with np.errstate(invalid="ignore"):
            d = np.abs(rn - dn[i]) / np.where(span > 0, span, 1.0)
        d = np.where(span > 0, np.minimum(d, 1.0), (rn != dn[i]).astype(float))
        both = np.isnan(rn) & np.isnan(dn[i])
        one = np.isnan(rn) ^ np.isnan(dn[i])
        d = np.where(both, 0.0, np.where(one, 1.0, d))
        total = d.sum(1) + (rc != dc[i]).sum(1)
        out[i] = total.min() / len(cols)
    return out


def dcr_share(train, holdout, synthetic, kind, seed=0, cap=2000):
    n = min(len(train), len(holdout))
    tr = train.sample(n, random_state=seed)
    ho = holdout.sample(n, random_state=seed + 1)
    syn = synthetic.sample(min(cap, len(synthetic)), random_state=seed + 2)
    # One unit for both distances (the whole training table's ranges): each
    # reference's own range would make the narrower one look farther.
    return float(np.mean(dcr(syn, tr, kind, train) < dcr(syn, ho, kind, train)))


def quality(train, synthetic, kind):
    from sdmetrics.reports import QualityReport

    meta = {"columns": {c: {"sdtype": k} for c, k in kind.items()}}
    report = QualityReport()
    report.generate({"t": train[list(kind)]}, {"t": synthetic[list(kind)]}, {"tables": {"t": meta}}, verbose=False)
    return float(report.get_score())


def score(train, holdout, synthetic, target, kind=None, seed=0):
    kind = kind or kinds(train)
    out = {"quality": quality(train, synthetic, kind)}
    out["c2st"], out["c2st_auc"] = c2st(train, synthetic, kind, seed)
    out["tstr_auc"], out["trtr_auc"] = tstr(train, holdout, synthetic, kind, target, seed)
    out["alpha_precision"], out["beta_recall"] = alpha_beta(train, synthetic, kind, seed)
    out["dcr_share"] = dcr_share(train, holdout, synthetic, kind, seed)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True)
    ap.add_argument("--holdout", required=True)
    ap.add_argument("--synthetic", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    train, holdout, syn = (pd.read_csv(p) for p in (a.train, a.holdout, a.synthetic))
    print(json.dumps(score(train, holdout, syn, a.target, seed=a.seed), indent=1))


if __name__ == "__main__":
    main()
