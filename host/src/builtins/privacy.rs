//! `builtin:privacy`: how much a synthetic table gives away about the real one.
//!
//! Inputs: `[real, synthetic]`, then optionally a holdout table (real rows kept
//! away from training) and/or the findings of a detector that scanned the real
//! table. Metrics follow SDMetrics' definitions (see
//! `../shared/research/mission-anchors.md` §2), computed natively on all rows,
//! multi-threaded:
//!
//! - **DCRBaselineProtection**: median distance to closest real record of the
//!   synthetic rows over that of uniformly random rows, capped at 1.
//! - **DCROverfittingProtection** (needs a holdout): `min(2·(1 − p), 1)`, p the
//!   share of synthetic rows closer to training than to holdout rows. By
//!   default the larger of the two is subsampled to the other's size, so that
//!   p is ½ for a generator that does not memorise, and both distances are
//!   scaled by the training table's ranges (SDMetrics compares against all
//!   rows, each scaled by its own ranges: `overfitting_equal_sizes = false`).
//! - **DCRHoldoutProtection** (needs a holdout): `max(1 − 2·D⁺, 0)`, D⁺ the
//!   largest excess, over any distance d, of the share of synthetic rows
//!   within d of a training row over the share of holdout rows within d of
//!   one (one-sided Kolmogorov–Smirnov on the two distance samples). 1 when
//!   the twin's rows are no nearer to the training people than unseen real
//!   people are; 0.4 when 30 % of them are near-copies; 0 for a copy.
//! - **NewRowSynthesis**: share of synthetic rows matching no real row (numbers
//!   within 1 % of the synthetic value, categories equal, null matching null).
//! - **DisclosureProtection** (with `known_columns` and `sensitive_columns`):
//!   CAP attacker's protection over the baseline `1 − 1/Π nunique(sensitive)`.
//! - **ExactCopyRate**: synthetic rows identical to a real row on every column.
//! - **PIICopyRate**: per column the detector flagged, the share of synthetic
//!   values that are real values of that column. Only identifier-like columns
//!   (at least half their real values distinct, dates excepted: a date space
//!   is small enough to hit by chance) count towards the score.
//! - **RareValueCopyRate**: per text column, flagged or not, the share of
//!   synthetic values that are rare real values (held by at most
//!   `release::RARE_ROWS` real rows; any real value of an identifier-like
//!   column). It measures what was released, not what was detected.
//!
//! # Privacy score
//! `Privacy Score` (0–100, higher is safer) is 100 × the weighted mean of the
//! available protections — DCRHoldout 0.25 (DCRBaseline in its place when
//! there is no holdout: it scores fidelity too), DCROverfitting 0.20,
//! NewRowSynthesis 0.20, DisclosureProtection 0.15, 1 − ExactCopyRate 0.10,
//! 1 − max PIICopyRate 0.10 — with three caps: any real personal value
//! copied caps it at 39, any rare real value released (RareValueCopyRate > 0,
//! the note names the columns) too, more than 5 % exact copies at 59. Levels: ≥ 80 low risk,
//! 60–79 medium, 40–59 high, < 40 critical.

use doppel_vocab::entity;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use arrow::row::{RowConverter, SortField};
use doppel_generators::SemanticType;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{ConfigField, ConfigValue, Settings, ValueType, field, get};
use crate::model::DetectorOutput;
use crate::plugin::bindings::types::MetricValue;
use crate::table::Table;
use crate::{Error, Result};

/// The `with` schema of `builtin:privacy`.
pub fn schema() -> Vec<ConfigField> {
    let known = field(
        "known_columns",
        ValueType::Strings,
        "Columns an attacker already knows (DisclosureProtection).",
    );
    let sensitive = field(
        "sensitive_columns",
        ValueType::Strings,
        "Columns an attacker wants to learn (DisclosureProtection).",
    );
    let mut subsample = field(
        "subsample",
        ValueType::Integer,
        "Rows drawn from each table for the distance metrics (default: all).",
    );
    subsample.minimum = Some(10.0);
    let mut tolerance = field(
        "match_tolerance",
        ValueType::Float,
        "Relative tolerance of a numeric match (NewRowSynthesis).",
    );
    tolerance.default = Some(ConfigValue::Float(0.01));
    tolerance.minimum = Some(0.0);
    let mut bins = field(
        "bins",
        ValueType::Integer,
        "Bins for continuous known / sensitive columns (DisclosureProtection).",
    );
    bins.default = Some(ConfigValue::Integer(10));
    bins.minimum = Some(2.0);
    let mut equal = field(
        "overfitting_equal_sizes",
        ValueType::Boolean,
        "Compare against equally many training and holdout rows (the larger is subsampled); \
         otherwise more reference rows alone look like overfitting.",
    );
    equal.default = Some(ConfigValue::Boolean(true));
    let mut seed = field(
        "seed",
        ValueType::Integer,
        "Seed of the random baseline and of subsampling.",
    );
    seed.default = Some(ConfigValue::Integer(0));
    seed.minimum = Some(0.0);
    vec![known, sensitive, subsample, tolerance, bins, equal, seed]
}

/// One column, encoded for comparison across tables.
#[derive(Debug, Clone)]
pub(super) enum Col {
    /// Numbers (dates as days, timestamps in their unit); NaN for null.
    Num(Vec<f64>),
    /// Category codes shared by every table; `NULL` for null.
    Cat(Vec<u32>),
}

pub(super) const NULL: u32 = u32::MAX;

/// The statistical columns of several tables, encoded alike.
pub(super) struct Encoded {
    pub(super) names: Vec<String>,
    /// `tables[t][c]`.
    pub(super) tables: Vec<Vec<Col>>,
}

fn numbers(array: &ArrayRef) -> Result<Vec<f64>> {
    let dt = array.data_type();
    let widened = match dt {
        DataType::Date32 => arrow::compute::cast(array, &DataType::Int32)?,
        DataType::Date64 | DataType::Timestamp(_, _) => arrow::compute::cast(array, &DataType::Int64)?,
        _ => Arc::clone(array),
    };
    let f = arrow::compute::cast(&widened, &DataType::Float64)?;
    Ok(f.as_primitive::<Float64Type>()
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

/// Encode the columns the real table marks numerical, datetime, categorical or
/// boolean, for every table.
fn encode(real: &Table, batches: &[RecordBatch]) -> Result<Encoded> {
    let mut names = Vec::new();
    let mut tables: Vec<Vec<Col>> = vec![Vec::new(); batches.len()];
    for (field, semantic) in real.schema.fields().iter().zip(real.semantics.iter()) {
        let numeric = match semantic {
            SemanticType::Numerical | SemanticType::Datetime => true,
            SemanticType::Categorical | SemanticType::Boolean => false,
            _ => continue,
        };
        let columns: Vec<ArrayRef> = batches
            .iter()
            .map(|b| {
                let c = b.column_by_name(field.name()).cloned().ok_or_else(|| Error::Stage {
                    stage: String::new(),
                    message: format!("a compared table has no column `{}`", field.name()),
                })?;
                // Compare in the real table's type.
                if c.data_type() == field.data_type() {
                    Ok(c)
                } else {
                    Ok(arrow::compute::cast(&c, field.data_type())?)
                }
            })
            .collect::<Result<_>>()?;
        if numeric && (field.data_type().is_numeric() || field.data_type().is_temporal()) {
            for (t, c) in columns.iter().enumerate() {
                tables[t].push(Col::Num(numbers(c)?));
            }
        } else {
            let converter = RowConverter::new(vec![SortField::new(field.data_type().clone())])?;
            let mut dict: HashMap<Vec<u8>, u32> = HashMap::new();
            let mut coded: Vec<Vec<u32>> = Vec::with_capacity(columns.len());
            for c in &columns {
                let rows = converter.convert_columns(std::slice::from_ref(c))?;
                coded.push(
                    (0..c.len())
                        .map(|r| {
                            if c.is_null(r) {
                                return NULL;
                            }
                            let next = u32::try_from(dict.len()).unwrap_or(NULL - 1);
                            *dict.entry(rows.row(r).data().to_vec()).or_insert(next)
                        })
                        .collect(),
                );
            }
            // Codes in the values' sort order (row bytes sort as the values
            // do), so a classifier that splits codes as numbers sees the
            // order a reference tool sees (scikit-learn on sorted labels).
            let mut keys: Vec<(&Vec<u8>, u32)> = dict.iter().map(|(k, v)| (k, *v)).collect();
            keys.sort_unstable();
            let mut rank = vec![0u32; keys.len()];
            for (r, (_, code)) in keys.iter().enumerate() {
                rank[*code as usize] = u32::try_from(r).unwrap_or(NULL - 1);
            }
            for (t, codes) in coded.into_iter().enumerate() {
                tables[t].push(Col::Cat(
                    codes
                        .into_iter()
                        .map(|c| if c == NULL { NULL } else { rank[c as usize] })
                        .collect(),
                ));
            }
        }
        names.push(field.name().clone());
    }
    Ok(Encoded { names, tables })
}

/// Uniformly random rows within the real table's ranges and categories, with
/// each column's real null rate (SDMetrics' random baseline).
fn random_baseline(real: &[Col], integral: &[bool], rows: usize, rng: &mut ChaCha8Rng) -> Vec<Col> {
    real.iter()
        .zip(integral)
        .map(|(col, &whole)| match col {
            Col::Num(v) => {
                let present: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
                #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
                let null_rate = (v.len() - present.len()) as f64 / v.len().max(1) as f64;
                let (lo, hi) = present
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(*x), h.max(*x)));
                Col::Num(
                    (0..rows)
                        .map(|_| {
                            if present.is_empty() || rng.random::<f64>() < null_rate {
                                return f64::NAN;
                            }
                            let x = lo + rng.random::<f64>() * (hi - lo);
                            if whole { x.round().clamp(lo, hi) } else { x }
                        })
                        .collect(),
                )
            }
            Col::Cat(v) => {
                let mut values: Vec<u32> = v
                    .iter()
                    .copied()
                    .filter(|c| *c != NULL)
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                values.sort_unstable();
                #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
                let null_rate = v.iter().filter(|c| **c == NULL).count() as f64 / v.len().max(1) as f64;
                Col::Cat(
                    (0..rows)
                        .map(|_| {
                            if values.is_empty() || rng.random::<f64>() < null_rate {
                                NULL
                            } else {
                                values[rng.random_range(0..values.len())]
                            }
                        })
                        .collect(),
                )
            }
        })
        .collect()
}

pub(super) fn len(cols: &[Col]) -> usize {
    match cols.first() {
        Some(Col::Num(v)) => v.len(),
        Some(Col::Cat(v)) => v.len(),
        None => 0,
    }
}

/// Distance to the closest reference row for every row of `data` (SDMetrics'
/// `calculate_dcr`): per column, numbers differ by `|x − y| / range` capped at
/// 1 (range of the reference; 0/1 when the range is 0), categories by 0/1, one
/// null by 1, two nulls by 0; a row's distance is the mean over columns.
///
/// Exact, but not a full cross join: reference rows are grouped by their
/// categorical values, and a group whose categorical mismatches alone reach
/// the best distance found so far is skipped whole. Rows sharing a data row's
/// categories are scanned first, so the bound is tight early.
pub(super) fn dcr(data: &[Col], reference: &[Col]) -> Vec<f64> {
    dcr_on_scale(data, reference, reference)
}

/// [`dcr`] with numbers scaled by the ranges of `scale_of` rather than of the
/// reference: distances to two references (training and holdout rows) are
/// then measured in one unit. Each reference's own range would make the one
/// with the narrower range of a long-tailed column (a 6,500-row sample of
/// Adult's `fnlwgt` or `capital_gain`) look farther.
pub(super) fn dcr_on_scale(data: &[Col], reference: &[Col], scale_of: &[Col]) -> Vec<f64> {
    let (n, m, d) = (len(data), len(reference), data.len());
    if d == 0 {
        return vec![f64::NAN; n];
    }
    let cats: Vec<usize> = (0..d).filter(|&c| matches!(reference[c], Col::Cat(_))).collect();
    let nums: Vec<usize> = (0..d).filter(|&c| matches!(reference[c], Col::Num(_))).collect();
    let (kc, kn) = (cats.len(), nums.len());
    // Row-major categorical codes.
    let row_major_cats = |cols: &[Col], rows: usize| -> Vec<u32> {
        let mut out = Vec::with_capacity(rows * kc);
        for r in 0..rows {
            for &c in &cats {
                if let Col::Cat(v) = &cols[c] {
                    out.push(v[r]);
                }
            }
        }
        out
    };
    // Row-major numbers scaled by the reference range, so a difference of 1
    // is the cap. A constant reference column maps equal values to 0 and
    // others to 2 (always capped to 1). NaN stays NaN.
    let scale: Vec<(f64, f64, bool)> = nums
        .iter()
        .map(|&c| {
            let Col::Num(v) = &scale_of[c] else {
                unreachable!("numeric")
            };
            let (lo, hi) = v
                .iter()
                .filter(|x| !x.is_nan())
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(*x), h.max(*x)));
            if lo.is_finite() && hi > lo {
                (lo, hi - lo, false)
            } else {
                (lo, 1.0, true)
            }
        })
        .collect();
    let row_major_nums = |cols: &[Col], rows: usize| -> Vec<f64> {
        let mut out = Vec::with_capacity(rows * kn);
        for r in 0..rows {
            for (k, &c) in nums.iter().enumerate() {
                if let Col::Num(v) = &cols[c] {
                    let (lo, range, constant) = scale[k];
                    let x = v[r];
                    out.push(if x.is_nan() {
                        f64::NAN
                    } else if constant {
                        if x == lo { 0.0 } else { 2.0 }
                    } else {
                        (x - lo) / range
                    });
                }
            }
        }
        out
    };
    let (dc, rc) = (row_major_cats(data, n), row_major_cats(reference, m));
    let (dn, rn) = (row_major_nums(data, n), row_major_nums(reference, m));
    let mut groups: HashMap<&[u32], Vec<usize>> = HashMap::new();
    for j in 0..m {
        groups.entry(&rc[j * kc..(j + 1) * kc]).or_default().push(j);
    }
    let groups: Vec<(&[u32], Vec<usize>)> = groups.into_iter().collect();
    let index: HashMap<&[u32], usize> = groups.iter().enumerate().map(|(g, (k, _))| (*k, g)).collect();
    #[allow(clippy::cast_precision_loss, reason = "column counts are small")]
    let d_f = d as f64;
    let numeric_sum = |i: usize, j: usize, start: f64, limit: f64| -> f64 {
        let (a, b) = (&dn[i * kn..(i + 1) * kn], &rn[j * kn..(j + 1) * kn]);
        let mut sum = start;
        for (x, y) in a.iter().zip(b) {
            sum += if x.is_nan() || y.is_nan() {
                if x.is_nan() && y.is_nan() { 0.0 } else { 1.0 }
            } else {
                (x - y).abs().min(1.0)
            };
            if sum >= limit {
                return f64::INFINITY;
            }
        }
        sum
    };
    let row_distance = |i: usize| -> f64 {
        let key = &dc[i * kc..(i + 1) * kc];
        // Total distance so far, unscaled (sum over columns).
        let mut best = f64::INFINITY;
        let own = index.get(key).copied();
        if let Some(g) = own {
            for &j in &groups[g].1 {
                best = best.min(numeric_sum(i, j, 0.0, best));
                if best == 0.0 {
                    return 0.0;
                }
            }
        }
        for (g, (other, rows)) in groups.iter().enumerate() {
            if Some(g) == own {
                continue;
            }
            #[allow(clippy::cast_precision_loss, reason = "column counts are small")]
            let mismatches = key.iter().zip(other.iter()).filter(|(a, b)| a != b).count() as f64;
            if mismatches >= best {
                continue;
            }
            for &j in rows {
                best = best.min(numeric_sum(i, j, mismatches, best));
            }
        }
        best / d_f
    };
    parallel_map(n, row_distance)
}

/// `f(0..n)` on every core, in chunks, results in order.
pub(super) fn parallel_map(n: usize, f: impl Fn(usize) -> f64 + Sync) -> Vec<f64> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(n.max(1));
    let chunk = n.div_ceil(threads.max(1)).max(1);
    let mut out = vec![0.0; n];
    std::thread::scope(|s| {
        for (k, slot) in out.chunks_mut(chunk).enumerate() {
            let f = &f;
            s.spawn(move || {
                for (o, v) in slot.iter_mut().enumerate() {
                    *v = f(k * chunk + o);
                }
            });
        }
    });
    out
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// NewRowSynthesis: share of synthetic rows matching no real row.
fn new_row_synthesis(real: &[Col], synthetic: &[Col], tolerance: f64) -> (f64, usize) {
    let (n_real, n_syn) = (len(real), len(synthetic));
    if n_syn == 0 || real.is_empty() {
        return (f64::NAN, 0);
    }
    // Rows can only match within the same categorical tuple: bucket by it.
    let cats: Vec<usize> = (0..real.len()).filter(|&c| matches!(real[c], Col::Cat(_))).collect();
    let nums: Vec<usize> = (0..real.len()).filter(|&c| matches!(real[c], Col::Num(_))).collect();
    let key = |cols: &[Col], r: usize| -> Vec<u32> {
        cats.iter()
            .map(|&c| match &cols[c] {
                Col::Cat(v) => v[r],
                Col::Num(_) => NULL,
            })
            .collect()
    };
    let mut buckets: HashMap<Vec<u32>, Vec<usize>> = HashMap::new();
    for r in 0..n_real {
        buckets.entry(key(real, r)).or_default().push(r);
    }
    let matches = |s: usize| -> f64 {
        let Some(candidates) = buckets.get(&key(synthetic, s)) else {
            return 1.0;
        };
        let found = candidates.iter().any(|&r| {
            nums.iter().all(|&c| match (&real[c], &synthetic[c]) {
                (Col::Num(a), Col::Num(b)) => {
                    let (x, y) = (a[r], b[s]);
                    if y.is_nan() {
                        x.is_nan()
                    } else {
                        (x - y).abs() <= (tolerance * y).abs()
                    }
                }
                _ => false,
            })
        });
        if found { 0.0 } else { 1.0 }
    };
    let new: f64 = parallel_map(n_syn, matches).iter().sum();
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let share = new / n_syn as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a count of rows")]
    (share, new as usize)
}

/// Discretize a numeric column with `bins` equal-width bins of the real range
/// (`pd.cut`, right-closed, outer edges ±∞); null stays null.
fn cut(real: &[f64], other: &[f64], bins: usize) -> (Vec<u32>, Vec<u32>) {
    let present: Vec<f64> = real.iter().copied().filter(|x| !x.is_nan()).collect();
    let (lo, hi) = present
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(*x), h.max(*x)));
    #[allow(clippy::cast_precision_loss, reason = "small bin counts")]
    let inner: Vec<f64> = (1..bins).map(|i| lo + (hi - lo) * i as f64 / bins as f64).collect();
    let bin = |x: f64| -> u32 {
        if x.is_nan() {
            return NULL;
        }
        // Right-closed: x on an edge belongs to the lower bin.
        u32::try_from(inner.partition_point(|e| *e < x)).expect("few bins")
    };
    (
        real.iter().map(|x| bin(*x)).collect(),
        other.iter().map(|x| bin(*x)).collect(),
    )
}

fn as_codes(col: &Col, other: &Col, bins: usize) -> (Vec<u32>, Vec<u32>) {
    match (col, other) {
        (Col::Cat(a), Col::Cat(b)) => (a.clone(), b.clone()),
        (Col::Num(a), Col::Num(b)) => cut(a, b, bins),
        _ => (Vec::new(), Vec::new()),
    }
}

/// DisclosureProtection with the CAP attacker.
fn disclosure(enc: &Encoded, known: &[usize], sensitive: &[usize], bins: usize) -> (f64, f64, f64) {
    let (r, s) = (&enc.tables[0], &enc.tables[1]);
    let mut real_codes: HashMap<usize, Vec<u32>> = HashMap::new();
    let mut syn_codes: HashMap<usize, Vec<u32>> = HashMap::new();
    for &c in known.iter().chain(sensitive) {
        let (a, b) = as_codes(&r[c], &s[c], bins);
        real_codes.insert(c, a);
        syn_codes.insert(c, b);
    }
    let tuple = |codes: &HashMap<usize, Vec<u32>>, cols: &[usize], row: usize| -> Vec<u32> {
        cols.iter().map(|c| codes[c][row]).collect()
    };
    // Synthetic rows by key: counts of each sensitive tuple, and in all.
    type Counts = (HashMap<Vec<u32>, f64>, f64);
    let mut by_key: HashMap<Vec<u32>, Counts> = HashMap::new();
    for row in 0..len(s) {
        let entry = by_key.entry(tuple(&syn_codes, known, row)).or_default();
        *entry.0.entry(tuple(&syn_codes, sensitive, row)).or_default() += 1.0;
        entry.1 += 1.0;
    }
    let (mut score, mut count) = (0.0, 0.0);
    for row in 0..len(r) {
        if let Some((counts, total)) = by_key.get(&tuple(&real_codes, known, row)) {
            score += counts.get(&tuple(&real_codes, sensitive, row)).copied().unwrap_or(0.0) / total;
            count += 1.0;
        }
    }
    let cap = if count == 0.0 { f64::NAN } else { 1.0 - score / count };
    // nunique(dropna=False) of each sensitive column in the real table.
    let product: f64 = sensitive
        .iter()
        .map(|c| {
            #[allow(clippy::cast_precision_loss, reason = "category counts are small")]
            let n = real_codes[c].iter().collect::<HashSet<_>>().len() as f64;
            n
        })
        .product();
    let baseline = 1.0 - 1.0 / product;
    let result = if baseline == 0.0 || cap.is_nan() {
        f64::NAN
    } else {
        (cap / baseline).min(1.0)
    };
    (result, cap, baseline)
}

pub(super) fn subsample(cols: &[Col], n: Option<usize>, rng: &mut ChaCha8Rng) -> Vec<Col> {
    let rows = len(cols);
    let Some(n) = n.filter(|n| *n < rows) else {
        return cols.to_vec();
    };
    let mut idx: Vec<usize> = (0..rows).collect();
    for i in 0..n {
        let j = rng.random_range(i..rows);
        idx.swap(i, j);
    }
    idx.truncate(n);
    cols.iter()
        .map(|c| match c {
            Col::Num(v) => Col::Num(idx.iter().map(|&i| v[i]).collect()),
            Col::Cat(v) => Col::Cat(idx.iter().map(|&i| v[i]).collect()),
        })
        .collect()
}

/// How much more of the synthetic rows than of the holdout rows lie within
/// some distance of a training row, at the distance where the excess is
/// largest: the one-sided Kolmogorov–Smirnov statistic D⁺ of the two
/// distance-to-closest-record samples, and that distance. About 0 for a
/// generator whose rows are no nearer to the training rows than unseen real
/// rows are; the share of memorised rows for one that copies or perturbs
/// some. Ties (whole groups of rows at distance 0 in all-categorical tables)
/// are compared as groups, so they cancel out between the two samples.
fn excess_near_share(synthetic: &[f64], holdout: &[f64]) -> (f64, f64) {
    if synthetic.is_empty() || holdout.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut s: Vec<f64> = synthetic.iter().copied().filter(|x| !x.is_nan()).collect();
    let mut h: Vec<f64> = holdout.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() || h.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    s.sort_by(f64::total_cmp);
    h.sort_by(f64::total_cmp);
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let (ns, nh) = (s.len() as f64, h.len() as f64);
    let (mut i, mut j, mut best, mut at) = (0, 0, 0.0, 0.0);
    // Walk the distinct distances in order; after every value at d is
    // consumed from both samples, compare the two empirical CDFs at d.
    while i < s.len() || j < h.len() {
        let d = match (s.get(i), h.get(j)) {
            (Some(a), Some(b)) => a.min(*b),
            (Some(a), None) => *a,
            (None, Some(b)) => *b,
            (None, None) => break,
        };
        while i < s.len() && s[i] <= d {
            i += 1;
        }
        while j < h.len() && h[j] <= d {
            j += 1;
        }
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let excess = i as f64 / ns - j as f64 / nh;
        if excess > best {
            (best, at) = (excess, d);
        }
    }
    (best, at)
}

/// The privacy level of a score.
pub fn level(score: f64) -> &'static str {
    match score {
        s if s >= 80.0 => "low risk",
        s if s >= 60.0 => "medium risk",
        s if s >= 40.0 => "high risk",
        _ => "critical risk",
    }
}

/// Every table as one batch and encoded against the first (the real one),
/// for a stage comparing tables row by row; an error names the stage, and a
/// real table with nothing comparable is one.
pub(super) fn encode_tables(stage: &str, tables: &[Arc<Table>]) -> Result<(Vec<RecordBatch>, Encoded)> {
    let fail = |message: String| Error::Stage {
        stage: stage.to_owned(),
        message,
    };
    let batches = tables.iter().map(|t| t.concat()).collect::<Result<Vec<_>>>()?;
    let enc = encode(&tables[0], &batches).map_err(|e| match e {
        Error::Stage { message, .. } => fail(message),
        other => other,
    })?;
    if enc.names.is_empty() {
        return Err(fail(
            "the real table has no numerical, datetime, categorical or boolean column to compare".to_owned(),
        ));
    }
    Ok((batches, enc))
}

/// Compute every metric. `tables` is `[real, synthetic]` or `[real, synthetic, holdout]`.
pub fn privacy(
    stage: &str,
    tables: &[Arc<Table>],
    findings: Option<&DetectorOutput>,
    settings: &Settings,
) -> Result<Vec<MetricValue>> {
    let fail = |message: String| Error::Stage {
        stage: stage.to_owned(),
        message,
    };
    let real = &tables[0];
    let (batches, enc) = encode_tables(stage, tables)?;
    let int = |k: &str, d: i64| match get(settings, k) {
        Some(ConfigValue::Integer(i)) => *i,
        _ => d,
    };
    let seed = u64::try_from(int("seed", 0)).unwrap_or(0);
    let bins = usize::try_from(int("bins", 10)).unwrap_or(10);
    let sample = match get(settings, "subsample") {
        Some(ConfigValue::Integer(i)) => usize::try_from(*i).ok(),
        _ => None,
    };
    let tolerance = match get(settings, "match_tolerance") {
        Some(ConfigValue::Float(f)) => *f,
        _ => 0.01,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7072_6976_6163_7921);
    let mut out = Vec::new();
    let (real_cols, syn_cols) = (&enc.tables[0], &enc.tables[1]);

    // DCRBaselineProtection.
    let integral: Vec<bool> = real
        .schema
        .fields()
        .iter()
        .filter(|f| enc.names.contains(f.name()))
        .map(|f| f.data_type().is_integer() || f.data_type().is_temporal())
        .collect();
    let random = random_baseline(real_cols, &integral, len(syn_cols), &mut rng);
    let (r_s, s_s, x_s) = (
        subsample(real_cols, sample, &mut rng),
        subsample(syn_cols, sample, &mut rng),
        subsample(&random, sample, &mut rng),
    );
    let syn_to_train = dcr(&s_s, &r_s);
    let dcr_syn = median(&syn_to_train);
    let dcr_random = median(&dcr(&x_s, &r_s));
    let baseline = if dcr_random == 0.0 || dcr_random.is_nan() {
        f64::NAN
    } else {
        (dcr_syn / dcr_random).min(1.0)
    };
    out.push(MetricValue {
        name: "DCRBaselineProtection".into(),
        columns: vec![],
        value: baseline,
        note: None,
        extra: vec![
            ("median_dcr_synthetic".into(), dcr_syn),
            ("median_dcr_random".into(), dcr_random),
        ],
    });

    // DCROverfittingProtection.
    let equal_sizes = !matches!(
        get(settings, "overfitting_equal_sizes"),
        Some(ConfigValue::Boolean(false))
    );
    let mut holdout_protection = None;
    let overfitting = if let Some(holdout) = enc.tables.get(2) {
        let h_s = subsample(holdout, sample, &mut rng);
        // Against every training row: a near-copy is near only to its own
        // source row, which an equal-size subsample would mostly leave out.
        let holdout_to_train = dcr(&h_s, &r_s);
        // A nearest neighbour among more rows is nearer by chance: compare
        // against as many training rows as there are holdout rows.
        let r_s = if equal_sizes {
            subsample(&r_s, Some(len(&h_s)), &mut rng)
        } else {
            r_s.clone()
        };
        let h_s = if equal_sizes {
            subsample(&h_s, Some(len(&r_s)), &mut rng)
        } else {
            h_s
        };
        // In doppel's mode both distances are in one unit, the training
        // rows' ranges (as in builtin:fidelity's DCR share): each reference's
        // own range, SDMetrics' rule and kept for `overfitting_equal_sizes =
        // false`, makes the one with the narrower range of a long-tailed
        // column look farther — 56 % of a copula twin of Adult, which cannot
        // memorise, came out closer to training.
        let (to_train, to_holdout) = if equal_sizes {
            (dcr_on_scale(&s_s, &r_s, real_cols), dcr_on_scale(&s_s, &h_s, real_cols))
        } else {
            (dcr(&s_s, &r_s), dcr(&s_s, &h_s))
        };
        let closer = to_train.iter().zip(&to_holdout).filter(|(a, b)| a < b).count();
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let p = closer as f64 / to_train.len().max(1) as f64;
        let score = (2.0 * (1.0 - p)).min(1.0);
        out.push(MetricValue {
            name: "DCROverfittingProtection".into(),
            columns: vec![],
            value: score,
            note: None,
            extra: vec![("closer_to_training".into(), p), ("closer_to_holdout".into(), 1.0 - p)],
        });
        // DCRHoldoutProtection: the synthetic rows' distances to the training
        // rows against those of real people the generator never saw, both to
        // the same training rows.
        let (excess, at) = excess_near_share(&syn_to_train, &holdout_to_train);
        let protection = (1.0 - 2.0 * excess).max(0.0);
        out.push(MetricValue {
            name: "DCRHoldoutProtection".into(),
            columns: vec![],
            value: protection,
            note: None,
            extra: vec![
                ("excess_share_near_training".into(), excess),
                ("at_distance".into(), at),
                ("median_dcr_synthetic".into(), dcr_syn),
                ("median_dcr_holdout".into(), median(&holdout_to_train)),
            ],
        });
        holdout_protection = Some(protection);
        Some(score)
    } else {
        out.push(MetricValue {
            name: "DCROverfittingProtection".into(),
            columns: vec![],
            value: f64::NAN,
            note: Some("needs a holdout table (a third input split off before training)".into()),
            extra: vec![],
        });
        out.push(MetricValue {
            name: "DCRHoldoutProtection".into(),
            columns: vec![],
            value: f64::NAN,
            note: Some("needs a holdout table (a third input split off before training)".into()),
            extra: vec![],
        });
        None
    };

    // NewRowSynthesis and exact copies.
    let (new_share, new_rows) = new_row_synthesis(real_cols, syn_cols, tolerance);
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    out.push(MetricValue {
        name: "NewRowSynthesis".into(),
        columns: vec![],
        value: new_share,
        note: None,
        extra: vec![
            ("new_rows".into(), new_rows as f64),
            ("synthetic_rows".into(), len(syn_cols) as f64),
        ],
    });
    let exact = {
        let (exact_share, _) = new_row_synthesis(real_cols, syn_cols, 0.0);
        1.0 - exact_share
    };
    out.push(MetricValue {
        name: "ExactCopyRate".into(),
        columns: vec![],
        value: exact,
        note: None,
        extra: vec![],
    });

    // DisclosureProtection.
    let names = |key: &str| -> Result<Vec<usize>> {
        let list = match get(settings, key) {
            Some(ConfigValue::Strings(s)) => s.clone(),
            _ => Vec::new(),
        };
        list.iter()
            .map(|n| {
                enc.names.iter().position(|x| x == n).ok_or_else(|| {
                    fail(format!("`{key}` names `{n}`, which is not a numerical, datetime, categorical or boolean column of the real table"))
                })
            })
            .collect()
    };
    let (known, sensitive) = (names("known_columns")?, names("sensitive_columns")?);
    let disclosure_score = if known.is_empty() || sensitive.is_empty() {
        out.push(MetricValue {
            name: "DisclosureProtection".into(),
            columns: vec![],
            value: f64::NAN,
            note: Some("set `known_columns` and `sensitive_columns` to measure attribute disclosure".into()),
            extra: vec![],
        });
        None
    } else {
        let (score, cap, base) = disclosure(&enc, &known, &sensitive, bins);
        out.push(MetricValue {
            name: "DisclosureProtection".into(),
            columns: known.iter().chain(&sensitive).map(|&c| enc.names[c].clone()).collect(),
            value: score,
            note: None,
            extra: vec![("cap_protection".into(), cap), ("baseline_protection".into(), base)],
        });
        Some(score).filter(|s| !s.is_nan())
    };

    // Real personal values copied into the output.
    let mut worst_copy: Option<f64> = None;
    if let Some(f) = findings {
        let (rb, sb) = (&batches[0], &batches[1]);
        for verdict in f
            .columns
            .iter()
            .filter(|c| c.entity != entity::NONE && c.entity != entity::MIXED)
        {
            let (Some(r), Some(s)) = (rb.column_by_name(&verdict.column), sb.column_by_name(&verdict.column)) else {
                continue;
            };
            let as_text = |a: &ArrayRef| arrow::compute::cast(a, &DataType::Utf8);
            let (r, s) = (as_text(r)?, as_text(s)?);
            let real_list: Vec<&str> = r.as_string::<i32>().iter().flatten().collect();
            let real_values: HashSet<&str> = real_list.iter().copied().collect();
            let syn: Vec<&str> = s.as_string::<i32>().iter().flatten().collect();
            let copied = syn.iter().filter(|v| real_values.contains(*v)).count();
            #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
            let share = if syn.is_empty() {
                0.0
            } else {
                copied as f64 / syn.len() as f64
            };
            // Only identifier-like columns count against the score: values
            // mostly distinct, from a space too large to hit by chance. A town
            // or a (shifted) birth date that equals a real one is a
            // coincidence, an e-mail is not.
            #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
            let identifying =
                verdict.entity != entity::DATE_TIME && real_values.len() as f64 >= 0.5 * real_list.len().max(1) as f64;
            if identifying {
                worst_copy = Some(worst_copy.unwrap_or(0.0).max(share));
            }
            out.push(MetricValue {
                name: "PIICopyRate".into(),
                columns: vec![verdict.column.clone()],
                value: share,
                note: Some(if identifying {
                    verdict.entity.clone()
                } else {
                    format!("{} (not identifying alone; not scored)", verdict.entity)
                }),
                extra: vec![],
            });
        }
    }

    // Rare real values released, in every text column, flagged or not: what
    // the twin gives away whatever a detector found.
    let rare_copies = rare_value_metrics(&batches[0], &batches[1], &mut out);

    // The score.
    let mut parts: Vec<(&str, f64, f64)> = Vec::new();
    // With a holdout, distance is judged against real people the generator
    // never saw. The random baseline scores a faithful twin low for being
    // faithful: 60/20/20 splits of Adult gave unseen real rows — which tell
    // nothing about the training people — a DCRBaselineProtection of 0.03,
    // the same as a twin's; their DCRHoldoutProtection is about 1, and that
    // of a twin holding near-copies of 30 % of the training rows about 0.4
    // (tests/privacy.rs).
    if let Some(h) = holdout_protection {
        parts.push(("dcr_holdout", h, 0.25));
    } else if !baseline.is_nan() {
        parts.push(("dcr_baseline", baseline, 0.25));
    }
    if let Some(o) = overfitting {
        parts.push(("dcr_overfitting", o, 0.20));
    }
    if !new_share.is_nan() {
        parts.push(("new_rows", new_share, 0.20));
    }
    if let Some(d) = disclosure_score {
        parts.push(("disclosure", d, 0.15));
    }
    parts.push(("no_exact_copies", 1.0 - exact, 0.10));
    if let Some(w) = worst_copy {
        parts.push(("no_pii_copies", 1.0 - w, 0.10));
    }
    let weight: f64 = parts.iter().map(|p| p.2).sum();
    let mut score = 100.0 * parts.iter().map(|p| p.1 * p.2).sum::<f64>() / weight;
    let mut caps = Vec::new();
    if worst_copy.is_some_and(|w| w > 0.0) {
        score = score.min(39.0);
        caps.push("real personal values were copied");
    }
    if exact > 0.05 {
        score = score.min(59.0);
        caps.push("more than 5% of rows are exact copies");
    }
    let rare_note = (!rare_copies.is_empty()).then(|| {
        score = score.min(39.0);
        format!(
            "real rare values were released in {}",
            rare_copies
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    let score = (score * 10.0).round() / 10.0;
    let caps: Vec<&str> = caps.into_iter().chain(rare_note.as_deref()).collect();
    let note = if caps.is_empty() {
        level(score).to_owned()
    } else {
        format!("{}: {}", level(score), caps.join("; "))
    };
    out.insert(
        0,
        MetricValue {
            name: "Privacy Score".into(),
            columns: vec![],
            value: score,
            note: Some(note),
            extra: parts.iter().map(|(n, v, _)| ((*n).to_owned(), *v)).collect(),
        },
    );
    Ok(out)
}

/// What one text column released of its rare real values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RareCopies {
    /// The column.
    pub column: String,
    /// Released values that are rare real values: held by at most
    /// [`crate::release::RARE_ROWS`] real rows, or any real value of an
    /// identifier-like column.
    pub copies: usize,
    /// Non-null values released.
    pub released: usize,
    /// Whether the real column is identifier-like (mostly distinct).
    pub identifier: bool,
}

/// [`RareCopies`] of every text column `real` and `released` share.
pub fn rare_value_copies(real: &RecordBatch, released: &RecordBatch) -> Vec<RareCopies> {
    use crate::release::{RARE_ROWS, UNIQUE_SHARE};
    let mut out = Vec::new();
    for field in real.schema().fields() {
        let (Some(r), Some(s)) = (real.column_by_name(field.name()), released.column_by_name(field.name())) else {
            continue;
        };
        if r.data_type() != &DataType::Utf8 || s.data_type() != &DataType::Utf8 {
            continue;
        }
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for v in r.as_string::<i32>().iter().flatten() {
            *counts.entry(v).or_default() += 1;
        }
        let non_null: usize = counts.values().sum();
        if non_null == 0 {
            continue;
        }
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let identifier = counts.len() as f64 >= UNIQUE_SHARE * non_null as f64;
        let values: Vec<&str> = s.as_string::<i32>().iter().flatten().collect();
        let copies = values
            .iter()
            .filter(|v| counts.get(*v).is_some_and(|c| identifier || *c <= RARE_ROWS))
            .count();
        out.push(RareCopies {
            column: field.name().clone(),
            copies,
            released: values.len(),
            identifier,
        });
    }
    out
}

/// `RareValueCopyRate` for every text column (see [`rare_value_copies`]);
/// returns the columns that released any.
fn rare_value_metrics(real: &RecordBatch, synthetic: &RecordBatch, out: &mut Vec<MetricValue>) -> Vec<String> {
    let mut leaking = Vec::new();
    for c in rare_value_copies(real, synthetic) {
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let (copied, share) = (
            c.copies as f64,
            if c.released == 0 {
                0.0
            } else {
                c.copies as f64 / c.released as f64
            },
        );
        let what = if c.identifier {
            "real values of an identifier-like column".to_owned()
        } else {
            format!("real values held by at most {} rows", crate::release::RARE_ROWS)
        };
        out.push(MetricValue {
            name: "RareValueCopyRate".into(),
            columns: vec![c.column.clone()],
            value: share,
            note: Some(format!("{} released value(s) are {what}", c.copies)),
            extra: vec![("copies".into(), copied)],
        });
        if c.copies > 0 {
            leaking.push(c.column);
        }
    }
    leaking
}

/// `builtin:privacy`.
#[derive(Debug, Clone, Copy)]
pub struct Privacy;

/// Its name (`builtin:privacy`): report.json takes the privacy score from it.
pub const NAME: &str = "privacy";

impl super::Builtin for Privacy {
    fn name(&self) -> &str {
        NAME
    }

    fn summary(&self) -> &str {
        "DCR baseline and overfitting protection, new rows, disclosure (CAP), copies; privacy score 0-100."
    }

    fn kind(&self) -> super::Kind {
        super::Kind::Metric
    }

    fn schema(&self) -> Vec<ConfigField> {
        schema()
    }

    /// `[real, synthetic]`, optionally a holdout, optionally the findings of a
    /// detector that scanned the real table.
    fn check_inputs(&self, check: &mut crate::stage::InputCheck<'_>) {
        use crate::spec::Diagnostic;
        use crate::stage::Produces;
        let kinds = check.kinds();
        let tables = kinds.iter().take_while(|k| **k == Produces::Table).count();
        let rest = &kinds[tables..];
        let fits = (2..=3).contains(&tables) && (rest.is_empty() || rest == [Produces::Findings]);
        if !fits {
            let d = Diagnostic::at(
                check.at(),
                format!(
                    "stage `{}` (builtin:privacy) takes `[real, synthetic]`, optionally a holdout table, \
                     optionally the findings of a detector that scanned the real table",
                    check.id()
                ),
            )
            .label("wrong inputs");
            check.push(d);
        } else if rest == [Produces::Findings] && !check.scanned(tables, 0) {
            let d = Diagnostic::at(
                check.input_span(tables),
                format!(
                    "`{}` scanned a different table than the real one (`{}`)",
                    check.input_id(tables),
                    check.input_id(0)
                ),
            )
            .label("findings about another table");
            check.push(d);
        }
    }

    fn run(&self, ctx: &crate::stage::StageContext) -> Result<crate::model::Output> {
        let tables = ctx.leading_tables()?;
        let findings = ctx.inputs.iter().find_map(|(_, o)| match o {
            crate::model::Output::Findings(f) => Some(f.as_ref()),
            _ => None,
        });
        let metrics = privacy(ctx.id(), &tables, findings, ctx.settings())?;
        Ok(crate::model::Output::Metrics(Arc::new(metrics)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(v: &[f64]) -> Col {
        Col::Num(v.to_vec())
    }
    fn cat(v: &[u32]) -> Col {
        Col::Cat(v.to_vec())
    }

    #[test]
    fn excess_near_share_is_one_sided_ks_with_ties() {
        let h: Vec<f64> = (0..100).map(|i| f64::from(i) / 100.0).collect();
        // The same distances: no excess.
        assert_eq!(excess_near_share(&h, &h).0, 0.0);
        // Farther than the holdout: still none (one-sided).
        let far: Vec<f64> = h.iter().map(|d| d + 0.5).collect();
        assert_eq!(excess_near_share(&far, &h).0, 0.0);
        // 30 % at distance 0, the rest spread like the holdout: 0.29 from
        // d = 0 (the holdout has one row of 100 there) on the first steps.
        let mut mixed = vec![0.0; 30];
        mixed.extend((1..=70).map(|i| f64::from(i) / 70.0 * 0.99));
        let (excess, at) = excess_near_share(&mixed, &h);
        assert!((excess - 0.3).abs() < 0.02, "{excess}");
        assert!(at < 0.05, "{at}");
        // Ties on both sides cancel: half of both samples at 0.
        let tied: Vec<f64> = [0.0; 50].iter().copied().chain(h[50..].iter().copied()).collect();
        assert_eq!(excess_near_share(&tied, &tied).0, 0.0);
        // Nothing to compare.
        assert!(excess_near_share(&[], &h).0.is_nan());
        assert!(excess_near_share(&[f64::NAN], &h).0.is_nan());
    }

    #[test]
    fn dcr_follows_sdmetrics_rules() {
        // reference range of x is 10; y categorical.
        let reference = vec![num(&[0.0, 10.0, f64::NAN]), cat(&[1, 2, NULL])];
        let data = vec![num(&[0.0, 5.0, f64::NAN, 3.0]), cat(&[1, 2, NULL, 9])];
        let d = dcr(&data, &reference);
        assert_eq!(d[0], 0.0); // exact copy of row 0
        assert!((d[1] - 0.25).abs() < 1e-12, "{}", d[1]); // |5−10|/10 = 0.5, category equal → 0.25
        assert_eq!(d[2], 0.0); // nulls match nulls
        assert!((d[3] - 0.65).abs() < 1e-12, "{}", d[3]); // 0.3 + 1 over 2
    }

    #[test]
    fn new_rows_use_relative_tolerance_and_null_matching() {
        let real = vec![num(&[100.0, f64::NAN]), cat(&[1, 1])];
        let syn = vec![num(&[100.9, 102.0, f64::NAN, 100.0]), cat(&[1, 1, 1, 2])];
        let (share, new) = new_row_synthesis(&real, &syn, 0.01);
        assert_eq!(new, 2); // 102 is 1.96 % off; the last row's category differs
        assert_eq!(share, 0.5);
    }

    #[test]
    fn cut_is_right_closed_with_open_outer_bins() {
        let (r, s) = cut(&[0.0, 10.0, 5.0, f64::NAN], &[-3.0, 1.0, 11.0], 10);
        assert_eq!(r, vec![0, 9, 4, NULL]);
        assert_eq!(s, vec![0, 0, 9]);
    }

    #[test]
    fn levels() {
        assert_eq!(level(85.0), "low risk");
        assert_eq!(level(60.0), "medium risk");
        assert_eq!(level(39.9), "critical risk");
    }
}
