//! `builtin:fidelity`: can a classifier tell the twin from the real table, and
//! is it as useful? The protocol TabSyn and TabDiff are scored on, next to
//! the SDMetrics shapes and trends of `doppel/quality` (which a table of
//! independently shuffled columns passes).
//!
//! Inputs: `[train, synthetic]`, optionally a `holdout` (real rows the
//! generator never saw; TSTR and the DCR share need it). Columns are encoded
//! as the privacy stage encodes them (numbers, and category codes in the
//! values' sort order). Metrics, each with the reference definition it
//! follows — `generators/benches/fidelity.py` computes the same numbers with
//! scikit-learn, and the golden test holds this stage to it:
//!
//! - **C2ST** (detection): a gradient-boosted classifier (forust, settings of
//!   scikit-learn's `HistGradientBoostingClassifier(max_depth=6)`) told real
//!   from synthetic on a balanced sample, 3-fold stratified ROC AUC; score
//!   `1 − 2·|AUC − ½|`, 1 = indistinguishable, 0 = told apart every time.
//! - **TSTR AUC** (ML efficacy): the classifier trained on the synthetic
//!   table predicts `target` on the holdout (ROC AUC; macro one-vs-rest with
//!   more than two classes), next to the same classifier trained on the real
//!   rows (`trtr_auc`). Without `target`, each categorical column with 2 to
//!   `MAX_AUTO_CLASSES` classes in turn, and the table-wide value is their mean.
//! - **AlphaPrecision / BetaRecall**: synthcity's naive definitions (Alaa et
//!   al. 2022) on min-max scaled numbers (nulls at the mean, with a null
//!   indicator) and one-hot categories: how much synthetic mass lies where
//!   real mass is, and how much of the real data the twin covers.
//! - **DCRShare**: SDMetrics' distance to closest record, to the training
//!   rows and to as many holdout rows, numbers scaled by the whole training
//!   table's ranges for both (SDMetrics scales by each reference's own range,
//!   which on long-tailed columns pushes the share of a twin that cannot
//!   memorise to 0.55); the share of synthetic rows strictly closer to
//!   training. 0.5 = no memorising, above it = memorising.
//!
//! Every sample is bounded by settings (`detection_rows`, `alpha_rows`,
//! `dcr_rows`, `test_rows`) so the stage's time does not grow with the table
//! past reading it; the DCR share's distances use the exact nearest-record
//! index (`crate::nearest`).

use std::sync::Arc;

use forust_ml::gradientbooster::GrowPolicy;
use forust_ml::{GradientBooster, Matrix};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::privacy::{Col, Meter, NULL, dcr_on_scale, encode_tables, len, parallel_map, subsample};
use crate::config::{ConfigField, ConfigValue, Settings, ValueType, field, get};
use crate::plugin::bindings::types::MetricValue;
use crate::table::Table;
use crate::{Error, Result};

/// Its name (`builtin:fidelity`).
pub const NAME: &str = "fidelity";
/// Most classes a column may have to be a TSTR target when none is named.
pub const MAX_AUTO_CLASSES: usize = 10;
/// Most classes a named target may have (one classifier per class).
pub const MAX_CLASSES: usize = 50;
/// Most columns scored in turn when no target is named.
const MAX_AUTO_TARGETS: usize = 8;

/// The `with` schema of `builtin:fidelity`.
pub fn schema() -> Vec<ConfigField> {
    let target = field(
        "target",
        ValueType::String,
        "The column a downstream model would predict (TSTR); default: each categorical column \
         with 2 to 10 classes in turn.",
    );
    let bounded = |name: &str, default: i64, lo: f64, hi: f64, what: &str| {
        let mut f = field(name, ValueType::Integer, what);
        f.default = Some(ConfigValue::Integer(default));
        f.minimum = Some(lo);
        f.maximum = Some(hi);
        f
    };
    let mut seed = field("seed", ValueType::Integer, "Seed of the samples and folds.");
    seed.default = Some(ConfigValue::Integer(0));
    seed.minimum = Some(0.0);
    vec![
        target,
        bounded(
            "detection_rows",
            10_000,
            100.0,
            200_000.0,
            "Rows of each table the detection and TSTR classifiers learn from.",
        ),
        bounded(
            "alpha_rows",
            4_000,
            100.0,
            20_000.0,
            "Rows of each table alpha-precision and beta-recall compare (quadratic).",
        ),
        bounded(
            "dcr_rows",
            2_000,
            100.0,
            50_000.0,
            "Synthetic rows whose distance to the training and holdout rows is measured.",
        ),
        bounded(
            "test_rows",
            20_000,
            1_000.0,
            1_000_000.0,
            "Holdout rows the TSTR classifiers are scored on (a random sample past this).",
        ),
        bounded("iterations", 100, 10.0, 500.0, "Boosting rounds of each classifier."),
        seed,
    ]
}

/// The classifier: scikit-learn's `HistGradientBoostingClassifier(max_iter=100,
/// learning_rate=0.1, max_depth=6)` in forust's terms (best-first growth, at
/// most 31 leaves, 256 bins, NaN as missing).
fn classifier(iterations: usize, seed: u64) -> GradientBooster {
    let mut model = GradientBooster::default()
        .set_iterations(iterations)
        .set_learning_rate(0.1)
        .set_max_depth(6)
        .set_max_leaves(31)
        .set_seed(seed)
        .set_parallel(true);
    model.grow_policy = GrowPolicy::LossGuide;
    model
}

/// Column-major features of `rows` of `cols`, without column `skip`:
/// numbers as they are, category codes as numbers, NaN for null.
fn features(cols: &[Col], rows: &[usize], skip: Option<usize>) -> (Vec<f64>, usize) {
    let mut out = Vec::with_capacity(rows.len() * cols.len());
    let mut width = 0;
    for (c, col) in cols.iter().enumerate() {
        if Some(c) == skip {
            continue;
        }
        width += 1;
        match col {
            Col::Num(v) => out.extend(rows.iter().map(|&r| v.get(r))),
            Col::Cat(v) => out.extend(rows.iter().map(|&r| match v.get(r) {
                NULL => f64::NAN,
                code => f64::from(code),
            })),
        }
    }
    (out, width)
}

/// ROC AUC of `scores` for `positive` labels (the Mann–Whitney statistic,
/// ties counted half, as scikit-learn's `roc_auc_score`). NaN when one class
/// is missing.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        // Ranks i+1..=j+1 share their mean.
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let mean = (i + j + 2) as f64 / 2.0;
        rank_sum += mean * idx[i..=j].iter().filter(|&&k| positive[k]).count() as f64;
        i = j + 1;
    }
    let pos = positive.iter().filter(|p| **p).count();
    let neg = positive.len() - pos;
    if pos == 0 || neg == 0 {
        return f64::NAN;
    }
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let (p, n) = (pos as f64, neg as f64);
    (rank_sum - p * (p + 1.0) / 2.0) / (p * n)
}

/// A random `n` of `0..rows` (all of them, shuffled, when `n ≥ rows`).
fn pick(rows: usize, n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..rows).collect();
    let n = n.min(rows);
    for i in 0..n {
        let j = rng.random_range(i..rows);
        idx.swap(i, j);
    }
    idx.truncate(n);
    idx
}

fn fit(x: &[f64], rows: usize, width: usize, y: &[f64], iterations: usize, seed: u64) -> Result<GradientBooster> {
    let mut model = classifier(iterations, seed);
    model
        .fit_unweighted(&Matrix::new(x, rows, width), y, None)
        .map_err(|e| Error::Stage {
            stage: NAME.to_owned(),
            message: format!("the classifier could not be trained: {e}"),
        })?;
    Ok(model)
}

/// C2ST: (score, AUC, rows per table).
fn c2st(real: &[Col], synthetic: &[Col], cap: usize, iterations: usize, seed: u64) -> Result<(f64, f64, usize)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6332_7374);
    let n = len(real).min(len(synthetic)).min(cap);
    let (ri, si) = (pick(len(real), n, &mut rng), pick(len(synthetic), n, &mut rng));
    // Stratified folds: each class shuffled and dealt round-robin.
    let mut fold = vec![0usize; 2 * n];
    for class in 0..2 {
        let order = pick(n, n, &mut rng);
        for (k, &i) in order.iter().enumerate() {
            fold[class * n + i] = k % 3;
        }
    }
    let mut aucs = Vec::new();
    for f in 0..3 {
        let (mut train_r, mut train_s, mut test_r, mut test_s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            if fold[i] == f { &mut test_r } else { &mut train_r }.push(ri[i]);
            if fold[n + i] == f { &mut test_s } else { &mut train_s }.push(si[i]);
        }
        let stack = |a: &[usize], b: &[usize]| -> (Vec<f64>, usize) {
            let (xa, w) = features(real, a, None);
            let (xb, _) = features(synthetic, b, None);
            // Column-major: interleave per column.
            let (na, nb) = (a.len(), b.len());
            let mut x = Vec::with_capacity(xa.len() + xb.len());
            for c in 0..w {
                x.extend_from_slice(&xa[c * na..(c + 1) * na]);
                x.extend_from_slice(&xb[c * nb..(c + 1) * nb]);
            }
            (x, w)
        };
        let (x, w) = stack(&train_r, &train_s);
        let y: Vec<f64> = std::iter::repeat_n(0.0, train_r.len())
            .chain(std::iter::repeat_n(1.0, train_s.len()))
            .collect();
        let model = fit(&x, y.len(), w, &y, iterations, seed)?;
        let (xt, _) = stack(&test_r, &test_s);
        let rows = test_r.len() + test_s.len();
        let scores = model.predict(&Matrix::new(&xt, rows, w), true);
        let labels: Vec<bool> = (0..rows).map(|i| i >= test_r.len()).collect();
        aucs.push(roc_auc(&scores, &labels));
    }
    #[allow(clippy::cast_precision_loss, reason = "three folds")]
    let auc = aucs.iter().sum::<f64>() / aucs.len() as f64;
    Ok((1.0 - 2.0 * (auc - 0.5).abs(), auc, n))
}

/// Macro one-vs-rest ROC AUC on `test` of a classifier per class trained on
/// `train` (one when there are two classes). `classes` are the target's codes.
#[allow(clippy::too_many_arguments, reason = "one call site per table pair")]
fn efficacy(
    train: &[Col],
    train_rows: &[usize],
    test: &[Col],
    test_rows: &[usize],
    target: usize,
    classes: &[u32],
    iterations: usize,
    seed: u64,
) -> Result<f64> {
    let code = |cols: &[Col], r: usize| match &cols[target] {
        Col::Cat(v) => v.get(r),
        Col::Num(_) => NULL,
    };
    let train_rows: Vec<usize> = train_rows.iter().copied().filter(|&r| code(train, r) != NULL).collect();
    let test_rows: Vec<usize> = test_rows.iter().copied().filter(|&r| code(test, r) != NULL).collect();
    let (x, w) = features(train, &train_rows, Some(target));
    let (xt, _) = features(test, &test_rows, Some(target));
    let scored: &[u32] = if classes.len() == 2 { &classes[1..] } else { classes };
    let mut aucs = Vec::new();
    for &class in scored {
        let truth: Vec<bool> = test_rows.iter().map(|&r| code(test, r) == class).collect();
        if truth.iter().all(|t| *t) || !truth.iter().any(|t| *t) {
            continue;
        }
        let y: Vec<f64> = train_rows
            .iter()
            .map(|&r| if code(train, r) == class { 1.0 } else { 0.0 })
            .collect();
        // A class the training table never shows scores every row alike
        // (scikit-learn: a zero probability column).
        let scores = if y.contains(&1.0) && y.contains(&0.0) {
            let model = fit(&x, train_rows.len(), w, &y, iterations, seed)?;
            model.predict(&Matrix::new(&xt, test_rows.len(), w), true)
        } else {
            vec![y.first().copied().unwrap_or(0.0); test_rows.len()]
        };
        aucs.push(roc_auc(&scores, &truth));
    }
    #[allow(clippy::cast_precision_loss, reason = "class counts are small")]
    Ok(if aucs.is_empty() {
        f64::NAN
    } else {
        aucs.iter().sum::<f64>() / aucs.len() as f64
    })
}

/// `np.quantile(v, q)` with linear interpolation.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let h = (sorted.len() - 1) as f64 * q;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "0 ≤ h < len")]
    let i = h.floor() as usize;
    let j = (i + 1).min(sorted.len() - 1);
    sorted[i] + (h - h.floor()) * (sorted[j] - sorted[i])
}

/// The embedding of synthcity's naive α-precision: per numeric column the
/// value min-max scaled by the reference (null → the reference mean), plus a
/// null indicator when the reference has nulls; per categorical column a
/// one-hot over the reference's values (null is a value). Row-major.
fn embed(tables: &[&[Col]], reference: &[Col]) -> (Vec<Vec<f64>>, usize) {
    let mut out: Vec<Vec<f64>> = tables.iter().map(|_| Vec::new()).collect();
    let mut width = 0;
    // Build column blocks first, then interleave rows.
    let mut blocks: Vec<Vec<Vec<f64>>> = tables.iter().map(|_| Vec::new()).collect();
    for (c, col) in reference.iter().enumerate() {
        match col {
            Col::Num(v) => {
                let present: Vec<f64> = v.iter().filter(|x| !x.is_nan()).collect();
                let (lo, hi) = present
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(*x), h.max(*x)));
                let span = if hi > lo { hi - lo } else { 1.0 };
                #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
                let mean = present.iter().sum::<f64>() / present.len().max(1) as f64;
                let has_null = present.len() < v.len();
                for (t, cols) in tables.iter().enumerate() {
                    let Col::Num(x) = &cols[c] else { continue };
                    blocks[t].push(
                        x.iter()
                            .map(|x| ((if x.is_nan() { mean } else { x }) - lo) / span)
                            .collect(),
                    );
                    if has_null {
                        blocks[t].push(x.iter().map(|x| if x.is_nan() { 1.0 } else { 0.0 }).collect());
                    }
                }
                width += 1 + usize::from(has_null);
            }
            Col::Cat(v) => {
                let mut values: Vec<u32> = v.to_vec();
                values.sort_unstable();
                values.dedup();
                for (t, cols) in tables.iter().enumerate() {
                    let Col::Cat(x) = &cols[c] else { continue };
                    for value in &values {
                        blocks[t].push(x.iter().map(|x| if x == *value { 1.0 } else { 0.0 }).collect());
                    }
                }
                width += values.len();
            }
        }
    }
    for (t, cols) in tables.iter().enumerate() {
        let rows = len(cols);
        let block = &blocks[t];
        let o = &mut out[t];
        o.reserve(rows * width);
        for r in 0..rows {
            o.extend(block.iter().map(|b| b[r]));
        }
    }
    (out, width)
}

fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt()
}

/// α-precision and β-recall (synthcity's `AlphaPrecision`, naive variant).
fn alpha_beta(real: &[Col], synthetic: &[Col]) -> (f64, f64) {
    let (emb, w) = embed(&[real, synthetic], real);
    let (x, s) = (&emb[0], &emb[1]);
    let (n, m) = (len(real), len(synthetic));
    if n < 2 || m == 0 || w == 0 {
        return (f64::NAN, f64::NAN);
    }
    let row = |v: &[f64], i: usize| -> Vec<f64> { v[i * w..(i + 1) * w].to_vec() };
    let center_of = |v: &[f64], rows: usize| -> Vec<f64> {
        let mut c = vec![0.0; w];
        for i in 0..rows {
            for (k, x) in v[i * w..(i + 1) * w].iter().enumerate() {
                c[k] += x;
            }
        }
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        c.iter_mut().for_each(|x| *x /= rows as f64);
        c
    };
    let center = center_of(x, n);
    let synth_center = center_of(s, m);
    let alphas: Vec<f64> = (0..30).map(|i| f64::from(i) / 29.0).collect();
    let mut real_radius: Vec<f64> = (0..n).map(|i| distance(&row(x, i), &center)).collect();
    real_radius.sort_by(f64::total_cmp);
    let radii: Vec<f64> = alphas.iter().map(|a| quantile(&real_radius, *a)).collect();
    let synth_to_center: Vec<f64> = (0..m).map(|i| distance(&row(s, i), &center)).collect();
    // Nearest other real row, and nearest synthetic row (lowest index on ties).
    let real_to_real = parallel_map(n, |i| {
        let xi = &x[i * w..(i + 1) * w];
        (0..n)
            .filter(|&j| j != i)
            .map(|j| distance(xi, &x[j * w..(j + 1) * w]))
            .fold(f64::INFINITY, f64::min)
    });
    #[allow(clippy::cast_precision_loss, reason = "indices are far below 2^52")]
    let nearest = parallel_map(n, |i| {
        let xi = &x[i * w..(i + 1) * w];
        let (mut best, mut arg) = (f64::INFINITY, 0usize);
        for j in 0..m {
            let d = distance(xi, &s[j * w..(j + 1) * w]);
            if d < best {
                (best, arg) = (d, j);
            }
        }
        arg as f64
    });
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "an index")]
    let args: Vec<usize> = nearest.iter().map(|a| *a as usize).collect();
    let real_to_synth: Vec<f64> = (0..n).map(|i| distance(&row(x, i), &row(s, args[i]))).collect();
    let closest_d: Vec<f64> = args.iter().map(|&j| distance(&row(s, j), &synth_center)).collect();
    let mut sorted_closest = closest_d.clone();
    sorted_closest.sort_by(f64::total_cmp);
    let closest_radii: Vec<f64> = alphas.iter().map(|a| quantile(&sorted_closest, *a)).collect();
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let precision: Vec<f64> = radii
        .iter()
        .map(|r| synth_to_center.iter().filter(|d| **d <= *r).count() as f64 / m as f64)
        .collect();
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let coverage: Vec<f64> = closest_radii
        .iter()
        .map(|r| {
            (0..n)
                .filter(|&i| real_to_synth[i] <= real_to_real[i] && closest_d[i] <= *r)
                .count() as f64
                / n as f64
        })
        .collect();
    let total: f64 = alphas.iter().sum();
    let a = 1.0 - alphas.iter().zip(&precision).map(|(a, p)| (a - p).abs()).sum::<f64>() / total;
    let b = 1.0 - alphas.iter().zip(&coverage).map(|(a, p)| (a - p).abs()).sum::<f64>() / total;
    (a, b)
}

fn classes_of(col: &Col, rows: &[usize]) -> Vec<u32> {
    let Col::Cat(v) = col else { return Vec::new() };
    let mut c: Vec<u32> = rows.iter().map(|&r| v.get(r)).filter(|c| *c != NULL).collect();
    c.sort_unstable();
    c.dedup();
    c
}

/// Compute every metric. `tables` is `[train, synthetic]` or `[train, synthetic, holdout]`.
pub fn fidelity(stage: &str, tables: &[Arc<Table>], settings: &Settings) -> Result<Vec<MetricValue>> {
    let fail = |message: String| Error::Stage {
        stage: stage.to_owned(),
        message,
    };
    let enc = encode_tables(stage, tables)?;
    let int = |k: &str, d: i64| match get(settings, k) {
        Some(ConfigValue::Integer(i)) => usize::try_from(*i).unwrap_or(0),
        _ => usize::try_from(d).unwrap_or(0),
    };
    let seed = int("seed", 0) as u64;
    let (detection_rows, alpha_rows, dcr_rows, test_rows, iterations) = (
        int("detection_rows", 10_000),
        int("alpha_rows", 4_000),
        int("dcr_rows", 2_000),
        int("test_rows", 20_000),
        int("iterations", 100),
    );
    let (train, synthetic) = (&enc.tables[0], &enc.tables[1]);
    if len(train) < 10 || len(synthetic) < 10 {
        return Err(fail(
            "the fidelity protocol needs at least 10 real and 10 synthetic rows".to_owned(),
        ));
    }
    let mut out = Vec::new();

    let (score, auc, n) = c2st(train, synthetic, detection_rows, iterations, seed)?;
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    out.push(MetricValue {
        name: "C2ST".into(),
        columns: vec![],
        value: score,
        note: Some(format!(
            "a boosted classifier separates real from synthetic rows with ROC AUC {auc:.3} (0.5 = chance)"
        )),
        extra: vec![("auc".into(), auc), ("rows_per_table".into(), n as f64)],
    });

    // ML efficacy needs real rows the generator never saw.
    if let Some(holdout) = enc.tables.get(2) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7473_7472);
        let tr = pick(len(train), detection_rows, &mut rng);
        let sy = pick(len(synthetic), detection_rows, &mut rng);
        // Every holdout row up to `test_rows`, a random sample past it: an
        // AUC on 20,000 rows is within about ±0.005, and scoring millions
        // with sixteen classifiers would make the stage grow with the table.
        let ho: Vec<usize> = if len(holdout) <= test_rows {
            (0..len(holdout)).collect()
        } else {
            pick(len(holdout), test_rows, &mut rng)
        };
        let targets: Vec<usize> = match get(settings, "target") {
            Some(ConfigValue::String(name)) => {
                let Some(t) = enc.names.iter().position(|c| c == name) else {
                    return Err(fail(format!(
                        "`target` names `{name}`, which is not a numerical, categorical or boolean column of the real table"
                    )));
                };
                if !matches!(train[t], Col::Cat(_)) {
                    return Err(fail(format!(
                        "`target` column `{name}` is numerical; name a categorical or boolean column \
                         (TSTR here scores classifiers)"
                    )));
                }
                let k = classes_of(&train[t], &tr).len();
                if !(2..=MAX_CLASSES).contains(&k) {
                    return Err(fail(format!(
                        "`target` column `{name}` has {k} classes; TSTR needs 2 to {MAX_CLASSES}"
                    )));
                }
                vec![t]
            }
            _ => (0..train.len())
                .filter(|&c| (2..=MAX_AUTO_CLASSES).contains(&classes_of(&train[c], &tr).len()))
                .take(MAX_AUTO_TARGETS)
                .collect(),
        };
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let test_n = ho.len() as f64;
        let (mut syn_sum, mut real_sum, mut scored) = (0.0, 0.0, Vec::new());
        for &t in &targets {
            let classes = classes_of(&train[t], &tr);
            let syn = efficacy(synthetic, &sy, holdout, &ho, t, &classes, iterations, seed)?;
            let base = efficacy(train, &tr, holdout, &ho, t, &classes, iterations, seed)?;
            if syn.is_nan() || base.is_nan() {
                continue;
            }
            syn_sum += syn;
            real_sum += base;
            scored.push(enc.names[t].clone());
            out.push(MetricValue {
                name: "TSTR AUC".into(),
                columns: vec![enc.names[t].clone()],
                value: syn,
                note: None,
                extra: vec![
                    ("trtr_auc".into(), base),
                    ("ratio".into(), syn / base),
                    ("test_rows".into(), test_n),
                ],
            });
        }
        if !scored.is_empty() {
            #[allow(clippy::cast_precision_loss, reason = "few targets")]
            let k = scored.len() as f64;
            out.push(MetricValue {
                name: "TSTR AUC".into(),
                columns: vec![],
                value: syn_sum / k,
                note: Some(format!(
                    "a classifier trained on the twin predicts {} on unseen real rows; trained on the real rows: {:.3}",
                    scored.join(", "),
                    real_sum / k
                )),
                extra: vec![("trtr_auc".into(), real_sum / k), ("ratio".into(), syn_sum / real_sum)],
            });
        }

        // DCR share against as many holdout rows as training rows.
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6463_7273);
        let m = len(train).min(len(holdout));
        let (t_s, h_s) = (
            subsample(train, Some(m), &mut rng),
            subsample(holdout, Some(m), &mut rng),
        );
        let s_s = subsample(synthetic, Some(dcr_rows), &mut rng);
        // One unit for both distances: the whole training table's ranges.
        let (to_train, to_holdout) = (
            dcr_on_scale(&s_s, &t_s, train, &Meter::none()),
            dcr_on_scale(&s_s, &h_s, train, &Meter::none()),
        );
        let closer = to_train.iter().zip(&to_holdout).filter(|(a, b)| a < b).count();
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let share = closer as f64 / to_train.len().max(1) as f64;
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        out.push(MetricValue {
            name: "DCRShare".into(),
            columns: vec![],
            value: share,
            note: Some(format!(
                "{:.1} % of synthetic rows are closer to a training row than to any of {m} unseen real rows (50 % = no memorising)",
                100.0 * share
            )),
            extra: vec![("synthetic_rows".into(), to_train.len() as f64), ("reference_rows".into(), m as f64)],
        });
    }

    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x616c_7068);
    let (r_a, s_a) = (
        subsample(train, Some(alpha_rows), &mut rng),
        subsample(synthetic, Some(alpha_rows), &mut rng),
    );
    let (alpha, beta) = alpha_beta(&r_a, &s_a);
    out.push(MetricValue {
        name: "AlphaPrecision".into(),
        columns: vec![],
        value: alpha,
        note: Some("how much of the twin lies where real rows are (1 = all of it, at the right density)".into()),
        extra: vec![],
    });
    out.push(MetricValue {
        name: "BetaRecall".into(),
        columns: vec![],
        value: beta,
        note: Some(
            "how much of the real table the twin covers (a second sample of real rows scores about 0.5 here)".into(),
        ),
        extra: vec![],
    });
    Ok(out)
}

/// `builtin:fidelity`.
#[derive(Debug, Clone, Copy)]
pub struct Fidelity;

impl super::Builtin for Fidelity {
    fn name(&self) -> &str {
        NAME
    }

    fn summary(&self) -> &str {
        "Detection (C2ST), train-synthetic-test-real AUC, alpha-precision / beta-recall, DCR share vs a holdout."
    }

    fn kind(&self) -> super::Kind {
        super::Kind::Metric
    }

    fn schema(&self) -> Vec<ConfigField> {
        schema()
    }

    fn user_settable(&self) -> Vec<&'static str> {
        vec!["target", "seed"]
    }

    /// `[train, synthetic]`, optionally a holdout.
    fn check_inputs(&self, check: &mut crate::stage::InputCheck<'_>) {
        use crate::spec::Diagnostic;
        use crate::stage::Produces;
        let kinds = check.kinds();
        let fits = (2..=3).contains(&kinds.len()) && kinds.iter().all(|k| *k == Produces::Table);
        if !fits {
            let d = Diagnostic::at(
                check.at(),
                format!(
                    "stage `{}` (builtin:fidelity) takes `[train, synthetic]` and, for TSTR and the DCR share, \
                     a holdout table the generator never saw",
                    check.id()
                ),
            )
            .label("wrong inputs");
            check.push(d);
        }
    }

    fn run(&self, ctx: &crate::stage::StageContext) -> Result<crate::model::Output> {
        let tables = ctx.leading_tables()?;
        let metrics = fidelity(ctx.id(), &tables, ctx.settings())?;
        Ok(crate::model::Output::Metrics(Arc::new(metrics)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::privacy::{Codes, Nums};

    #[test]
    fn auc_counts_ties_half_like_scikit_learn() {
        // sklearn.metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
        assert!((roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]) - 0.75).abs() < 1e-12);
        // roc_auc_score([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.9]) == 0.75
        assert!((roc_auc(&[0.5, 0.5, 0.5, 0.9], &[false, true, false, true]) - 0.75).abs() < 1e-12);
        assert!(roc_auc(&[0.1, 0.2], &[true, true]).is_nan());
    }

    #[test]
    fn quantile_interpolates_like_numpy() {
        // np.quantile([1, 2, 4, 8], [0, 0.5, 0.9, 1]) == [1, 3, 6.8, 8]
        let v = [1.0, 2.0, 4.0, 8.0];
        let got: Vec<f64> = [0.0, 0.5, 0.9, 1.0].iter().map(|q| quantile(&v, *q)).collect();
        for (g, w) in got.iter().zip([1.0, 3.0, 6.8, 8.0]) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
    }

    #[test]
    fn a_copy_of_the_real_rows_is_precise_and_covers() {
        let real = vec![
            Col::Num(Nums::from((0..200).map(|i| f64::from(i % 37)).collect::<Vec<_>>())),
            Col::Cat(Codes::from((0..200).map(|i| i % 3).collect::<Vec<_>>())),
        ];
        let (a, b) = alpha_beta(&real, &real);
        assert!((a - 1.0).abs() < 0.05, "{a}");
        assert!(b > 0.9, "{b}");
        // A twin squeezed into one corner is neither.
        let corner = vec![
            Col::Num(Nums::from(vec![0.0; 200])),
            Col::Cat(Codes::from(vec![0; 200])),
        ];
        let (a, b) = alpha_beta(&real, &corner);
        assert!(a < 0.6 && b < 0.2, "{a} {b}");
    }
}
