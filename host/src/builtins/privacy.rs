//! `builtin:privacy`: how much a synthetic table gives away about the real one.
//!
//! Inputs: `[real, synthetic]`, then optionally a holdout table (real rows kept
//! away from training) and/or the findings of a detector that scanned the real
//! table. Metrics follow SDMetrics' definitions (see
//! `../shared/research/mission-anchors.md` §2), computed natively on all rows,
//! multi-threaded:
//!
//! - **DCRBaselineProtection**: median distance to closest real record of the
//!   synthetic rows over that of uniformly random rows, capped at 1. At most
//!   [`RANDOM_ROWS`] random rows (a Monte Carlo sample either way); the 95 %
//!   interval of their median is reported with it.
//!
//! Closest records come from an exact index (`crate::nearest`), not a
//! cross join, so the distance metrics stay usable on millions of rows. Its
//! cost per lookup still grows with the table (about √n on Adult-like
//! tables), so past `max_queries` ([`MAX_QUERIES`] by default) synthetic and
//! holdout rows, the distance metrics look up a seeded sample of that many
//! — always against every training and holdout row, so a near-copy is still
//! near its source — and state the sample and a 95 % interval next to each
//! value (and a lower bound of the score). NewRowSynthesis and ExactCopyRate
//! are hash lookups and always read every synthetic row: a copied row is
//! found wherever it is.
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
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// Most random rows DCRBaselineProtection draws (SDMetrics draws as many as
/// the synthetic table has; below this doppel does too).
pub const RANDOM_ROWS: usize = 2_000;

/// Most synthetic (and holdout) rows whose closest record the distance
/// metrics look up, by default: at 50,000 the 95 % interval of a share is
/// within ±0.5 points and that of the median within ±0.44 percentile
/// points, and Adult × 100 takes seconds rather than a quarter of an hour.
pub const MAX_QUERIES: usize = 50_000;

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
    let mut queries = field(
        "max_queries",
        ValueType::Integer,
        "Most synthetic and holdout rows whose closest record is looked up (a seeded sample past it, \
         against every reference row, with 95 % intervals stated).",
    );
    queries.default = Some(ConfigValue::Integer(
        i64::try_from(MAX_QUERIES).expect("a small constant"),
    ));
    queries.minimum = Some(1000.0);
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
    vec![known, sensitive, subsample, queries, tolerance, bins, equal, seed]
}

/// One column, encoded for comparison across tables.
#[derive(Debug, Clone)]
pub(super) enum Col {
    /// Numbers (dates as days, timestamps in their unit); NaN for null.
    Num(Nums),
    /// Category codes shared by every table; `NULL` for null.
    Cat(Codes),
}

pub(super) const NULL: u32 = u32::MAX;

/// A column's numbers, held as `f32` when every one of them is exactly an
/// `f32` (ages, counts, weights below 2²⁴, most money in whole units): half
/// the memory, and each number reads back as the same `f64`, so every
/// distance and match is the one the `f64` column gives. At Adult × 100 the
/// privacy and fidelity stages each hold three tables of six such columns.
#[derive(Debug, Clone)]
pub(super) enum Nums {
    /// Every value (or NaN) exactly an `f32`.
    Narrow(Vec<f32>),
    /// As read.
    Wide(Vec<f64>),
}

impl From<Vec<f64>> for Nums {
    fn from(v: Vec<f64>) -> Nums {
        #[allow(clippy::cast_possible_truncation, reason = "kept only when the round trip is exact")]
        if v.iter().all(|x| x.is_nan() || f64::from(*x as f32) == *x) {
            Nums::Narrow(v.iter().map(|x| *x as f32).collect())
        } else {
            Nums::Wide(v)
        }
    }
}

impl Nums {
    pub(super) fn len(&self) -> usize {
        match self {
            Nums::Narrow(v) => v.len(),
            Nums::Wide(v) => v.len(),
        }
    }

    /// Value `r` (NaN for null).
    #[inline]
    pub(super) fn get(&self, r: usize) -> f64 {
        match self {
            Nums::Narrow(v) => f64::from(v[r]),
            Nums::Wide(v) => v[r],
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        (0..self.len()).map(|r| self.get(r))
    }

    /// Rows `rows`, in that order.
    pub(super) fn pick(&self, rows: &[usize]) -> Nums {
        match self {
            Nums::Narrow(v) => Nums::Narrow(rows.iter().map(|&r| v[r]).collect()),
            Nums::Wide(v) => Nums::Wide(rows.iter().map(|&r| v[r]).collect()),
        }
    }
}

/// A column's category codes in the narrowest unsigned type that holds
/// them with one value to spare for null (the type's largest): a byte for
/// fewer than 255 categories, as nearly every categorical column has,
/// instead of four.
#[derive(Debug, Clone)]
pub(super) enum Codes {
    /// Fewer than 255 categories.
    Byte(Vec<u8>),
    /// Fewer than 65,535.
    Short(Vec<u16>),
    /// Any.
    Wide(Vec<u32>),
}

impl From<Vec<u32>> for Codes {
    fn from(v: Vec<u32>) -> Codes {
        let top = v.iter().copied().filter(|c| *c != NULL).max().unwrap_or(0);
        let narrow = |max: u32| move |c: &u32| if *c == NULL { max } else { *c };
        if top < u32::from(u8::MAX) {
            Codes::Byte(v.iter().map(narrow(u32::from(u8::MAX))).map(|c| c as u8).collect())
        } else if top < u32::from(u16::MAX) {
            Codes::Short(v.iter().map(narrow(u32::from(u16::MAX))).map(|c| c as u16).collect())
        } else {
            Codes::Wide(v)
        }
    }
}

impl Codes {
    pub(super) fn len(&self) -> usize {
        match self {
            Codes::Byte(v) => v.len(),
            Codes::Short(v) => v.len(),
            Codes::Wide(v) => v.len(),
        }
    }

    /// Code `r` (`NULL` for null).
    #[inline]
    pub(super) fn get(&self, r: usize) -> u32 {
        match self {
            Codes::Byte(v) => {
                if v[r] == u8::MAX {
                    NULL
                } else {
                    u32::from(v[r])
                }
            }
            Codes::Short(v) => {
                if v[r] == u16::MAX {
                    NULL
                } else {
                    u32::from(v[r])
                }
            }
            Codes::Wide(v) => v[r],
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len()).map(|r| self.get(r))
    }

    /// Every code, widened.
    pub(super) fn to_vec(&self) -> Vec<u32> {
        self.iter().collect()
    }

    /// Rows `rows`, in that order.
    pub(super) fn pick(&self, rows: &[usize]) -> Codes {
        match self {
            Codes::Byte(v) => Codes::Byte(rows.iter().map(|&r| v[r]).collect()),
            Codes::Short(v) => Codes::Short(rows.iter().map(|&r| v[r]).collect()),
            Codes::Wide(v) => Codes::Wide(rows.iter().map(|&r| v[r]).collect()),
        }
    }
}

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

/// Whether a column of this semantic type is compared (`Some`), as a number
/// (`Some(true)`) or as a category.
fn compared(semantic: &SemanticType) -> Option<bool> {
    match semantic {
        SemanticType::Numerical | SemanticType::Datetime => Some(true),
        SemanticType::Categorical | SemanticType::Boolean => Some(false),
        _ => None,
    }
}

/// Encode the columns the real table marks numerical, datetime, categorical or
/// boolean, for every table, batch by batch (no table is concatenated: at a
/// few million rows each copy of the real and synthetic tables is a
/// gigabyte).
///
/// `encoded(cells)` hears each column of each table as it is done.
fn encode(real: &Table, inputs: &[Arc<Table>], encoded: &dyn Fn(u64)) -> Result<Encoded> {
    let mut names = Vec::new();
    let mut tables: Vec<Vec<Col>> = vec![Vec::new(); inputs.len()];
    for (field, semantic) in real.schema.fields().iter().zip(real.semantics.iter()) {
        let Some(numeric) = compared(semantic) else {
            continue;
        };
        // Per table, its batches' arrays of this column in the real type.
        let columns: Vec<Vec<ArrayRef>> = inputs
            .iter()
            .map(|t| {
                t.batches
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
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        if numeric && (field.data_type().is_numeric() || field.data_type().is_temporal()) {
            for (t, arrays) in columns.iter().enumerate() {
                let mut values = Vec::with_capacity(arrays.iter().map(|a| a.len()).sum());
                for a in arrays {
                    values.extend(numbers(a)?);
                }
                encoded(values.len() as u64);
                tables[t].push(Col::Num(Nums::from(values)));
            }
        } else {
            let converter = RowConverter::new(vec![SortField::new(field.data_type().clone())])?;
            let mut dict: HashMap<Vec<u8>, u32> = HashMap::new();
            let mut coded: Vec<Vec<u32>> = Vec::with_capacity(columns.len());
            for arrays in &columns {
                let mut codes = Vec::with_capacity(arrays.iter().map(|a| a.len()).sum());
                for c in arrays {
                    let rows = converter.convert_columns(std::slice::from_ref(c))?;
                    codes.extend((0..c.len()).map(|r| {
                        if c.is_null(r) {
                            return NULL;
                        }
                        let key = rows.row(r).data();
                        if let Some(code) = dict.get(key) {
                            return *code;
                        }
                        let next = u32::try_from(dict.len()).unwrap_or(NULL - 1);
                        dict.insert(key.to_vec(), next);
                        next
                    }));
                }
                encoded(codes.len() as u64);
                coded.push(codes);
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
                let ranked: Vec<u32> = codes
                    .into_iter()
                    .map(|c| if c == NULL { NULL } else { rank[c as usize] })
                    .collect();
                tables[t].push(Col::Cat(Codes::from(ranked)));
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
                let present: Vec<f64> = v.iter().filter(|x| !x.is_nan()).collect();
                #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
                let null_rate = (v.len() - present.len()) as f64 / v.len().max(1) as f64;
                let (lo, hi) = present
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(*x), h.max(*x)));
                Col::Num(Nums::Wide(
                    (0..rows)
                        .map(|_| {
                            if present.is_empty() || rng.random::<f64>() < null_rate {
                                return f64::NAN;
                            }
                            let x = lo + rng.random::<f64>() * (hi - lo);
                            if whole { x.round().clamp(lo, hi) } else { x }
                        })
                        .collect(),
                ))
            }
            Col::Cat(v) => {
                let mut values: Vec<u32> = v
                    .iter()
                    .filter(|c| *c != NULL)
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                values.sort_unstable();
                #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
                let null_rate = v.iter().filter(|c| *c == NULL).count() as f64 / v.len().max(1) as f64;
                let random: Vec<u32> = (0..rows)
                    .map(|_| {
                        if values.is_empty() || rng.random::<f64>() < null_rate {
                            NULL
                        } else {
                            values[rng.random_range(0..values.len())]
                        }
                    })
                    .collect();
                Col::Cat(Codes::from(random))
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
#[cfg(test)]
pub(super) fn dcr(data: &[Col], reference: &[Col], meter: &Meter<'_>) -> Vec<f64> {
    dcr_on_scale(data, reference, reference, meter)
}

/// Distance to the closest reference row for every row of `data`, as
/// SDMetrics' `calculate_dcr` measures it (per column, numbers differ by
/// `|x − y| / range` capped at 1, categories by 0/1, one null by 1, two nulls
/// by 0; a row's distance is the mean over columns), with numbers scaled by
/// the ranges of `scale_of` (SDMetrics: the reference itself). Distances to
/// two references (training and holdout rows) are then measured in one
/// unit: each reference's own range would make the one with the narrower
/// range of a long-tailed column (a 6,500-row sample of Adult's `fnlwgt` or
/// `capital_gain`) look farther.
///
/// Exact, but not a full cross join: a k-d tree over the reference rows
/// (`crate::nearest`) skips every part of the table whose box is already
/// as far as the best row found, and returns the brute-force minimum bit for
/// bit.
pub(super) fn dcr_on_scale(data: &[Col], reference: &[Col], scale_of: &[Col], meter: &Meter<'_>) -> Vec<f64> {
    Closest::new(reference, scale_of).distances(data, meter)
}

/// Reference rows indexed once for [`dcr_on_scale`]'s lookups: synthetic, random and
/// holdout rows are all measured against the training rows, and building the
/// index over millions of rows again for each (a few seconds and a few
/// hundred MB at Adult × 100) bought nothing.
#[derive(Debug)]
pub(super) struct Closest {
    cats: Vec<usize>,
    nums: Vec<usize>,
    scale: Vec<(f64, f64, bool)>,
    /// `None` for a table without columns.
    index: Option<crate::nearest::Index>,
    /// Reference rows (for [`lookup_weight`]).
    rows: usize,
}

impl Closest {
    /// Index `reference`, numbers scaled by the ranges of `scale_of`.
    pub(super) fn new(reference: &[Col], scale_of: &[Col]) -> Closest {
        Closest::counted(reference, scale_of, &Meter::none())
    }

    /// [`Closest::new`], counting [`build_weight`] units on `meter` for
    /// each reference row as the index places it.
    fn counted(reference: &[Col], scale_of: &[Col], meter: &Meter<'_>) -> Closest {
        let d = reference.len();
        let cats: Vec<usize> = (0..d).filter(|&c| matches!(reference[c], Col::Cat(_))).collect();
        let nums: Vec<usize> = (0..d).filter(|&c| matches!(reference[c], Col::Num(_))).collect();
        // Numbers scaled by the reference range, so a difference of 1 is the
        // cap. A constant reference column maps equal values to 0 and others to
        // 2 (always capped to 1). NaN stays NaN.
        let scale: Vec<(f64, f64, bool)> = nums
            .iter()
            .map(|&c| {
                let Col::Num(v) = &scale_of[c] else {
                    unreachable!("numeric")
                };
                let (lo, hi) = v
                    .iter()
                    .filter(|x| !x.is_nan())
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(x), h.max(x)));
                if lo.is_finite() && hi > lo {
                    (lo, hi - lo, false)
                } else {
                    (lo, 1.0, true)
                }
            })
            .collect();
        let weight = build_weight(len(reference));
        let index = (d > 0).then(|| {
            crate::nearest::Index::build(&Scaled::new(reference, &cats, &nums, &scale), &|rows| {
                meter.add(rows as u64 * weight);
            })
        });
        Closest {
            cats,
            nums,
            scale,
            index,
            rows: len(reference),
        }
    }

    /// Distance to the closest reference row for every row of `data` (same
    /// columns as the reference).
    pub(super) fn distances(&self, data: &[Col], meter: &Meter<'_>) -> Vec<f64> {
        let n = len(data);
        let Some(index) = &self.index else {
            return vec![f64::NAN; n];
        };
        let data = Scaled::new(data, &self.cats, &self.nums, &self.scale);
        let (kc, kn) = (self.cats.len(), self.nums.len());
        #[allow(clippy::cast_precision_loss, reason = "column counts are small")]
        let d_f = (kc + kn) as f64;
        parallel_map_weighted(
            n,
            |i| {
                use crate::nearest::Source;
                let qc: Vec<u32> = (0..kc).map(|c| data.cat(i, c)).collect();
                let qn: Vec<f64> = (0..kn).map(|c| data.num(i, c)).collect();
                index.nearest(&qc, &qn) / d_f
            },
            meter,
            lookup_weight(self.rows),
        )
    }
}

/// Columns read as the nearest-record index reads rows: categorical codes
/// as they are, numbers scaled (see [`dcr_on_scale`]), without copying the
/// table into rows.
struct Scaled<'a> {
    cats: Vec<&'a Codes>,
    nums: Vec<&'a Nums>,
    scale: &'a [(f64, f64, bool)],
    rows: usize,
}

impl<'a> Scaled<'a> {
    fn new(cols: &'a [Col], cats: &[usize], nums: &[usize], scale: &'a [(f64, f64, bool)]) -> Self {
        Scaled {
            cats: cats
                .iter()
                .map(|&c| match &cols[c] {
                    Col::Cat(v) => v,
                    Col::Num(_) => unreachable!("a categorical column"),
                })
                .collect(),
            nums: nums
                .iter()
                .map(|&c| match &cols[c] {
                    Col::Num(v) => v,
                    Col::Cat(_) => unreachable!("a numeric column"),
                })
                .collect(),
            scale,
            rows: len(cols),
        }
    }
}

impl crate::nearest::Source for Scaled<'_> {
    fn len(&self) -> usize {
        self.rows
    }
    fn kc(&self) -> usize {
        self.cats.len()
    }
    fn kn(&self) -> usize {
        self.nums.len()
    }
    fn cat(&self, r: usize, c: usize) -> u32 {
        self.cats[c].get(r)
    }
    fn num(&self, r: usize, c: usize) -> f64 {
        let (lo, range, constant) = self.scale[c];
        let x = self.nums[c].get(r);
        if x.is_nan() {
            f64::NAN
        } else if constant {
            if x == lo { 0.0 } else { 2.0 }
        } else {
            (x - lo) / range
        }
    }
}

/// Rows measured out of all a stage will measure, reported as the stage's
/// progress at most once per mille (by whichever worker crosses the mark),
/// and the run's cancel flag, which stops the workers between blocks.
pub(super) struct Meter<'a> {
    done: AtomicU64,
    total: u64,
    report: Box<dyn Fn(u64, u64) + Sync + 'a>,
    cancel: Option<Arc<AtomicBool>>,
}

impl<'a> Meter<'a> {
    /// A meter over `total` rows.
    pub(super) fn new(total: u64, report: impl Fn(u64, u64) + Sync + 'a, cancel: Option<Arc<AtomicBool>>) -> Self {
        Meter {
            done: AtomicU64::new(0),
            total,
            report: Box::new(report),
            cancel,
        }
    }

    /// No progress, no cancelling.
    pub(super) fn none() -> Meter<'static> {
        Meter::new(0, |_, _| {}, None)
    }

    fn add(&self, n: u64) {
        let before = self.done.fetch_add(n, Ordering::Relaxed);
        let after = (before + n).min(self.total);
        if self.total > 0 && before * 1000 / self.total != after * 1000 / self.total {
            (self.report)(after, self.total);
        }
    }

    pub(super) fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// `f(0..n)` on every core, in chunks, results in order.
pub(super) fn parallel_map(n: usize, f: impl Fn(usize) -> f64 + Sync) -> Vec<f64> {
    parallel_map_metered(n, f, &Meter::none())
}

/// [`parallel_map`] counting rows on `meter`; once the run is cancelled the
/// remaining rows are NaN (the caller returns the cancellation instead).
pub(super) fn parallel_map_metered(n: usize, f: impl Fn(usize) -> f64 + Sync, meter: &Meter<'_>) -> Vec<f64> {
    parallel_map_weighted(n, f, meter, 1)
}

// The privacy stage's progress counts work, not rows: each step in units of
// about the same time, so the time left does not take one step's pace for
// the next one's (the fast hashing at the end for the lookups before it, or
// the encoding at the start for anything). Measured on Adult × 100 (release,
// 2 cores; `doppel --log-filter doppel_host=debug run …` logs each step's time).

/// Units of one row bucketed or matched by NewRowSynthesis (twice: with
/// its tolerance, and exactly for the exact-copy rate).
const HASH_WEIGHT: u64 = 8;
/// Units of one cell encoded (a category looked up, a number widened).
const ENCODE_WEIGHT: u64 = 1;

/// What one closest-record lookup against `reference_rows` rows costs: the
/// k-d tree visits about √n rows a lookup (on Adult × 100 a lookup against
/// 2.6 M training rows took about as long as hashing 300 rows).
pub(super) fn lookup_weight(reference_rows: usize) -> u64 {
    (reference_rows.isqrt() as u64 * HASH_WEIGHT / 6).max(1)
}

/// What placing one of `reference_rows` rows in the nearest-record index
/// costs: a box per column on each of the tree's ~log₂(n / 24) levels.
fn build_weight(reference_rows: usize) -> u64 {
    u64::from((reference_rows / 24).max(1).ilog2()) + 1
}

/// [`parallel_map_metered`] with each row counted as `weight` units.
fn parallel_map_weighted(n: usize, f: impl Fn(usize) -> f64 + Sync, meter: &Meter<'_>, weight: u64) -> Vec<f64> {
    const BLOCK: usize = 1024;
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(n.max(1));
    let chunk = n.div_ceil(threads.max(1)).max(1);
    let mut out = vec![0.0; n];
    std::thread::scope(|s| {
        for (k, slot) in out.chunks_mut(chunk).enumerate() {
            let f = &f;
            s.spawn(move || {
                for (b, block) in slot.chunks_mut(BLOCK).enumerate() {
                    if meter.cancelled() {
                        block.fill(f64::NAN);
                        continue;
                    }
                    for (o, v) in block.iter_mut().enumerate() {
                        *v = f(k * chunk + b * BLOCK + o);
                    }
                    meter.add(block.len() as u64 * weight);
                }
            });
        }
    });
    out
}

/// Wilson's 95 % interval of a share `k / n` (sound near 0 and 1, unlike the
/// normal approximation).
fn wilson_interval(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let (k, n) = (k as f64, n as f64);
    let z = 1.959_963_984_540_054_f64;
    let p = k / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Distribution-free 95 % interval of the median: the order statistics
/// `n/2 ∓ 1.96·√n/2` (normal approximation of the binomial).
fn median_interval(v: &[f64]) -> (f64, f64) {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    s.sort_by(f64::total_cmp);
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let n = s.len() as f64;
    let half = 0.98 * n.sqrt();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a rank within 0..n"
    )]
    let rank = |r: f64| (r.clamp(1.0, n) as usize).saturating_sub(1);
    (s[rank((n / 2.0 - half).floor())], s[rank((n / 2.0 + half).ceil())])
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

/// Whether real `x` matches synthetic `y` (NewRowSynthesis): within
/// `tolerance` of `y`, relatively; a null matches only a null.
fn numbers_match(x: f64, y: f64, tolerance: f64) -> bool {
    if y.is_nan() {
        x.is_nan()
    } else {
        (x - y).abs() <= (tolerance * y).abs()
    }
}

/// NewRowSynthesis: share of synthetic rows matching no real row.
fn new_row_synthesis(real: &[Col], synthetic: &[Col], tolerance: f64, meter: &Meter<'_>) -> (f64, usize) {
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
                Col::Cat(v) => v.get(r),
                Col::Num(_) => NULL,
            })
            .collect()
    };
    // Within a bucket, rows sorted by the numeric column with the most
    // distinct values: a synthetic value's tolerance window is then two
    // binary searches, not a scan of the bucket (Adult × 10 puts thousands
    // of rows in one bucket).
    let lead = nums.iter().copied().max_by_key(|&c| match &real[c] {
        Col::Num(v) => {
            let mut present: Vec<u64> = v.iter().filter(|x| !x.is_nan()).map(f64::to_bits).collect();
            present.sort_unstable();
            present.dedup();
            present.len()
        }
        Col::Cat(_) => 0,
    });
    let lead_of = |cols: &[Col], r: usize| -> f64 {
        match lead.map(|c| &cols[c]) {
            Some(Col::Num(v)) => v.get(r),
            _ => f64::NAN,
        }
    };
    /// A bucket: rows with the lead value, sorted by it, and rows without.
    #[derive(Default)]
    struct Bucket {
        present: Vec<(f64, usize)>,
        null: Vec<usize>,
    }
    let mut buckets: HashMap<Vec<u32>, Bucket> = HashMap::new();
    for r in 0..n_real {
        if r % 65_536 == 65_535 {
            meter.add(65_536 * HASH_WEIGHT);
        }
        let b = buckets.entry(key(real, r)).or_default();
        let x = lead_of(real, r);
        if x.is_nan() {
            b.null.push(r);
        } else {
            b.present.push((x, r));
        }
    }
    for b in buckets.values_mut() {
        b.present.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    }
    let same = |r: usize, s: usize| -> bool {
        nums.iter().all(|&c| match (&real[c], &synthetic[c]) {
            (Col::Num(a), Col::Num(b)) => numbers_match(a.get(r), b.get(s), tolerance),
            _ => false,
        })
    };
    let matches = |s: usize| -> f64 {
        let Some(bucket) = buckets.get(&key(synthetic, s)) else {
            return 1.0;
        };
        let y = lead_of(synthetic, s);
        let found = if y.is_nan() {
            // Also every row when there is no numeric column.
            bucket.null.iter().any(|&r| same(r, s))
        } else if y.is_infinite() {
            bucket.present.iter().any(|&(_, r)| same(r, s))
        } else {
            // A window wider than the tolerance (rounding), then the exact
            // test on every row inside it.
            let reach = 2.0 * (tolerance * y).abs() + 1e-9 * y.abs() + 1e-300;
            let (lo, hi) = (y - reach, y + reach);
            let from = bucket.present.partition_point(|(x, _)| *x < lo);
            let to = bucket.present.partition_point(|(x, _)| *x <= hi);
            bucket.present[from..to.max(from)].iter().any(|&(_, r)| same(r, s))
        };
        if found { 0.0 } else { 1.0 }
    };
    meter.add((n_real % 65_536) as u64 * HASH_WEIGHT);
    let new: f64 = parallel_map_weighted(n_syn, matches, meter, HASH_WEIGHT).iter().sum();
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
        (Col::Cat(a), Col::Cat(b)) => (a.to_vec(), b.to_vec()),
        (Col::Num(a), Col::Num(b)) => cut(&a.iter().collect::<Vec<_>>(), &b.iter().collect::<Vec<_>>(), bins),
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

/// `n` random rows of `cols`, or `cols` itself (not a copy: the tables can
/// be millions of rows) when there are no more than `n` or `n` is `None`.
pub(super) fn subsample<'a>(cols: &'a [Col], n: Option<usize>, rng: &mut ChaCha8Rng) -> Cow<'a, [Col]> {
    let rows = len(cols);
    let Some(n) = n.filter(|n| *n < rows) else {
        return Cow::Borrowed(cols);
    };
    let mut idx: Vec<usize> = (0..rows).collect();
    for i in 0..n {
        let j = rng.random_range(i..rows);
        idx.swap(i, j);
    }
    idx.truncate(n);
    cols.iter()
        .map(|c| match c {
            Col::Num(v) => Col::Num(v.pick(&idx)),
            Col::Cat(v) => Col::Cat(v.pick(&idx)),
        })
        .collect::<Vec<_>>()
        .into()
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

/// Every table encoded against the first (the real one), for a stage
/// comparing tables row by row; an error names the stage, and a real table
/// with nothing comparable is one.
pub(super) fn encode_tables(stage: &str, tables: &[Arc<Table>]) -> Result<Encoded> {
    encode_tables_counted(stage, tables, &|_| {})
}

/// [`encode_tables`], telling `encoded` how many cells each column of each
/// table held once it is encoded (compared columns × rows in all).
fn encode_tables_counted(stage: &str, tables: &[Arc<Table>], encoded: &dyn Fn(u64)) -> Result<Encoded> {
    let fail = |message: String| Error::Stage {
        stage: stage.to_owned(),
        message,
    };
    let enc = encode(&tables[0], tables, encoded).map_err(|e| match e {
        Error::Stage { message, .. } => fail(message),
        other => other,
    })?;
    if enc.names.is_empty() {
        return Err(fail(
            "the real table has no numerical, datetime, categorical or boolean column to compare".to_owned(),
        ));
    }
    Ok(enc)
}

/// Compute every metric. `tables` is `[real, synthetic]` or `[real, synthetic, holdout]`.
///
/// `report(done, total)` hears how many of the rows the distance metrics
/// compare are done; `cancel` stops them (the result is then
/// [`Error::Cancelled`]).
pub fn privacy(
    stage: &str,
    tables: &[Arc<Table>],
    findings: Option<&DetectorOutput>,
    settings: &Settings,
    report: &(dyn Fn(u64, u64) + Sync),
    cancel: Option<Arc<AtomicBool>>,
) -> Result<Vec<MetricValue>> {
    let fail = |message: String| Error::Stage {
        stage: stage.to_owned(),
        message,
    };
    let real = &tables[0];
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
    let max_queries = match get(settings, "max_queries") {
        Some(ConfigValue::Integer(i)) => usize::try_from(*i).unwrap_or(MAX_QUERIES),
        _ => MAX_QUERIES,
    };
    let tolerance = match get(settings, "match_tolerance") {
        Some(ConfigValue::Float(f)) => *f,
        _ => 0.01,
    };
    let equal_sizes = !matches!(
        get(settings, "overfitting_equal_sizes"),
        Some(ConfigValue::Boolean(false))
    );

    // All the stage will count (see `HASH_WEIGHT`), from the tables' sizes
    // before anything is encoded: every cell encoded; the training rows
    // indexed, and the synthetic, random and holdout rows looked up there;
    // with a holdout the (by default equal-size) training and holdout samples
    // indexed and the synthetic rows looked up in both; NewRowSynthesis and
    // exact copies bucketing the training rows and matching the synthetic
    // ones, each once.
    let sized = |rows: usize| sample.map_or(rows, |n| n.min(rows));
    let (real_rows, syn_rows) = (sized(real.rows()), sized(tables[1].rows()));
    let query_rows = syn_rows.min(max_queries);
    let random_rows = sized(tables[1].rows().min(RANDOM_ROWS));
    let held_rows = tables.get(2).map_or(0, |h| sized(h.rows()));
    let held = held_rows.min(max_queries);
    let cells = real.semantics.iter().filter(|s| compared(s).is_some()).count() as u64
        * tables.iter().map(|t| t.rows() as u64).sum::<u64>();
    let indexed = |rows: usize| rows as u64 * build_weight(rows);
    let overfitting = if tables.get(2).is_none() {
        0
    } else if equal_sizes {
        let m = real_rows.min(held_rows);
        2 * indexed(m) + query_rows as u64 * 2 * lookup_weight(m)
    } else {
        indexed(real_rows)
            + indexed(held_rows)
            + query_rows as u64 * (lookup_weight(real_rows) + lookup_weight(held_rows))
    };
    let hashed = if tables[1].rows() == 0 {
        0
    } else {
        2 * HASH_WEIGHT * (real.rows() + tables[1].rows()) as u64
    };
    let total = cells * ENCODE_WEIGHT
        + indexed(real_rows)
        + (query_rows + random_rows + held) as u64 * lookup_weight(real_rows)
        + overfitting
        + hashed;
    let meter = &Meter::new(total, report, cancel);
    let clock = std::time::Instant::now();
    let lap = |what: &str| {
        tracing::debug!(
            stage,
            elapsed_ms = clock.elapsed().as_millis() as u64,
            "privacy: {what} done"
        )
    };

    let enc = encode_tables_counted(stage, tables, &|cells| meter.add(cells * ENCODE_WEIGHT))?;
    lap("encoding");
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
    // The random rows are a Monte Carlo sample whatever their number: past
    // RANDOM_ROWS their median is as good as it needs to be (its 95 %
    // interval is reported), and a random row, far from every real one,
    // is the one the nearest-record index cannot prune for.
    let random = random_baseline(real_cols, &integral, len(syn_cols).min(RANDOM_ROWS), &mut rng);
    let (r_s, s_s, x_s) = (
        subsample(real_cols, sample, &mut rng),
        subsample(syn_cols, sample, &mut rng),
        subsample(&random, sample, &mut rng),
    );
    // The synthetic rows whose closest records are looked up: past
    // `max_queries` a seeded sample, from a stream of its own so that the
    // reference rows (and every number of a smaller table) stay as they were.
    let mut query_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7175_6572_6965_7321);
    let s_q = subsample(&s_s, Some(max_queries), &mut query_rng);
    let sampled = len(&s_q) < len(&s_s);
    // The sizes the total was worked out from.
    debug_assert_eq!(
        (len(&r_s), len(&s_s), len(&s_q), len(&x_s)),
        (real_rows, syn_rows, query_rows, random_rows)
    );
    let to_training = Closest::counted(&r_s, &r_s, meter);
    lap("training index");
    let syn_to_train = to_training.distances(&s_q, meter);
    lap("synthetic → training DCR");
    let dcr_syn = median(&syn_to_train);
    let (syn_low, syn_high) = if sampled {
        median_interval(&syn_to_train)
    } else {
        (dcr_syn, dcr_syn)
    };
    let random_dcr = to_training.distances(&x_s, meter);
    lap("random → training DCR");
    let dcr_random = median(&random_dcr);
    let random_sampled = len(&x_s) < len(syn_cols);
    let (random_low, random_high) = if random_sampled {
        median_interval(&random_dcr)
    } else {
        (dcr_random, dcr_random)
    };
    let ratio = |syn: f64, random: f64| {
        if random == 0.0 || random.is_nan() {
            f64::NAN
        } else {
            (syn / random).min(1.0)
        }
    };
    let baseline = ratio(dcr_syn, dcr_random);
    let baseline_low = ratio(syn_low, random_high);
    let query_note = |rows: usize, of: usize, what: &str| {
        format!("closest records of a seeded sample of {rows} of {of} {what} rows, against every reference row")
    };
    let mut baseline_note = Vec::new();
    if random_sampled {
        baseline_note.push(format!("random baseline: {} uniformly random rows", len(&x_s)));
    }
    if sampled {
        baseline_note.push(query_note(len(&s_q), len(&s_s), "synthetic"));
    }
    if !baseline_note.is_empty() {
        baseline_note.push(format!(
            "95 % interval of the score {:.3}–{:.3}",
            baseline_low,
            ratio(syn_high, random_low)
        ));
    }
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    out.push(MetricValue {
        name: "DCRBaselineProtection".into(),
        columns: vec![],
        value: baseline,
        note: (!baseline_note.is_empty()).then(|| baseline_note.join("; ")),
        extra: vec![
            ("median_dcr_synthetic".into(), dcr_syn),
            ("median_dcr_random".into(), dcr_random),
            ("median_dcr_random_low".into(), random_low),
            ("median_dcr_random_high".into(), random_high),
            ("random_rows".into(), len(&x_s) as f64),
            ("query_rows".into(), len(&s_q) as f64),
        ],
    });

    // DCROverfittingProtection.
    let mut holdout_protection = None;
    let mut sampled_low: Vec<(&str, f64)> = Vec::new();
    let overfitting = if let Some(holdout) = enc.tables.get(2) {
        let h_s = subsample(holdout, sample, &mut rng);
        let h_q = subsample(&h_s, Some(max_queries), &mut query_rng);
        let held_sampled = len(&h_q) < len(&h_s);
        // Against every training row: a near-copy is near only to its own
        // source row, which an equal-size subsample would mostly leave out.
        let holdout_to_train = to_training.distances(&h_q, meter);
        // The overfitting comparison below indexes samples of its own.
        drop(to_training);
        let (h_q_rows, h_rows) = (len(&h_q), len(&h_s));
        lap("holdout → training DCR");
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
        let (train_scale, held_scale): (&[Col], &[Col]) = if equal_sizes {
            (real_cols, real_cols)
        } else {
            (&r_s, &h_s)
        };
        let to_train = Closest::counted(&r_s, train_scale, meter).distances(&s_q, meter);
        let to_holdout = Closest::counted(&h_s, held_scale, meter).distances(&s_q, meter);
        lap("overfitting DCRs");
        let closer = to_train.iter().zip(&to_holdout).filter(|(a, b)| a < b).count();
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let p = closer as f64 / to_train.len().max(1) as f64;
        let protection_of = |p: f64| (2.0 * (1.0 - p)).min(1.0);
        let score = protection_of(p);
        let note = sampled.then(|| {
            let (p_low, p_high) = wilson_interval(closer, to_train.len());
            sampled_low.push(("dcr_overfitting", protection_of(p_high)));
            format!(
                "{}; 95 % interval {:.3}–{:.3}",
                query_note(len(&s_q), len(&s_s), "synthetic"),
                protection_of(p_high),
                protection_of(p_low)
            )
        });
        out.push(MetricValue {
            name: "DCROverfittingProtection".into(),
            columns: vec![],
            value: score,
            note,
            extra: vec![("closer_to_training".into(), p), ("closer_to_holdout".into(), 1.0 - p)],
        });
        // DCRHoldoutProtection: the synthetic rows' distances to the training
        // rows against those of real people the generator never saw, both to
        // the same training rows.
        let (excess, at) = excess_near_share(&syn_to_train, &holdout_to_train);
        let protection_of = |excess: f64| (1.0 - 2.0 * excess).max(0.0);
        let protection = protection_of(excess);
        // Dvoretzky–Kiefer–Wolfowitz: each sampled side's empirical CDF is
        // within √(ln(2/α)/2n) of the whole table's everywhere with
        // probability 1 − α; α = 2.5 % per side bounds the excess at 95 %.
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let dkw = |n: usize| (80f64.ln() / (2.0 * n.max(1) as f64)).sqrt();
        let slack = if sampled { dkw(len(&s_q)) } else { 0.0 } + if held_sampled { dkw(h_q_rows) } else { 0.0 };
        let note = (sampled || held_sampled).then(|| {
            let low = protection_of(excess + slack);
            sampled_low.push(("dcr_holdout", low));
            format!(
                "closest records of a seeded sample of {} of {} synthetic and {} of {} holdout rows, against every \
                 training row; 95 % interval {:.3}–{:.3}",
                len(&s_q),
                len(&s_s),
                h_q_rows,
                h_rows,
                low,
                protection_of((excess - slack).max(0.0))
            )
        });
        out.push(MetricValue {
            name: "DCRHoldoutProtection".into(),
            columns: vec![],
            value: protection,
            note,
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
    let (new_share, new_rows) = new_row_synthesis(real_cols, syn_cols, tolerance, meter);
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
        let (exact_share, _) = new_row_synthesis(real_cols, syn_cols, 0.0, meter);
        1.0 - exact_share
    };
    lap("new rows and exact copies");
    if meter.cancelled() {
        return Err(Error::Cancelled);
    }
    // The total was worked out before any lookup; a size it missed would end
    // the bar early or short.
    debug_assert!(
        real_cols.is_empty() || meter.done.load(Ordering::Relaxed) == total,
        "privacy progress: {} units counted of {total}",
        meter.done.load(Ordering::Relaxed)
    );
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
        for verdict in f
            .columns
            .iter()
            .filter(|c| c.entity != entity::NONE && c.entity != entity::MIXED)
        {
            // The column as text, batch by batch; `None` when a table lacks it.
            let as_text = |t: &Table| -> Result<Option<Vec<ArrayRef>>> {
                let mut out = Vec::with_capacity(t.batches.len());
                for b in &t.batches {
                    let Some(a) = b.column_by_name(&verdict.column) else {
                        return Ok(None);
                    };
                    out.push(arrow::compute::cast(a, &DataType::Utf8)?);
                }
                Ok(Some(out))
            };
            let (Some(r), Some(s)) = (as_text(&tables[0])?, as_text(&tables[1])?) else {
                continue;
            };
            fn strings(arrays: &[ArrayRef]) -> Vec<&str> {
                arrays
                    .iter()
                    .flat_map(|a| a.as_string::<i32>().iter().flatten())
                    .collect()
            }
            let real_list = strings(&r);
            let real_values: HashSet<&str> = real_list.iter().copied().collect();
            let syn = strings(&s);
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
    let rare_copies = rare_value_metrics(&tables[0].batches, &tables[1].batches, &mut out);

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
        if sampled {
            sampled_low.push(("dcr_baseline", baseline_low));
        }
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
    let weighted = |parts: &[(&str, f64, f64)]| 100.0 * parts.iter().map(|p| p.1 * p.2).sum::<f64>() / weight;
    // The caps come from every row (copies found by hashing), never from a
    // sample: they bound the score and its lower end alike.
    let mut cap = 100.0f64;
    let mut caps = Vec::new();
    if worst_copy.is_some_and(|w| w > 0.0) {
        cap = cap.min(39.0);
        caps.push("real personal values were copied");
    }
    if exact > 0.05 {
        cap = cap.min(59.0);
        caps.push("more than 5% of rows are exact copies");
    }
    let rare_note = (!rare_copies.is_empty()).then(|| {
        cap = cap.min(39.0);
        format!(
            "real rare values were released in {}",
            rare_copies
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    let round = |score: f64| (score.min(cap) * 10.0).round() / 10.0;
    let point = round(weighted(&parts));
    // With the distance metrics on a sample, the score is taken at the low
    // ends of their 95 % intervals: a gate or a listing threshold then holds
    // for the whole table, not only for the rows that were looked up.
    let low = (!sampled_low.is_empty()).then(|| {
        let lows: Vec<(&str, f64, f64)> = parts
            .iter()
            .map(|&(name, value, w)| {
                let low = sampled_low.iter().find(|(n, _)| *n == name).map_or(value, |(_, l)| *l);
                (name, low, w)
            })
            .collect();
        round(weighted(&lows))
    });
    let score = low.unwrap_or(point);
    let caps: Vec<&str> = caps.into_iter().chain(rare_note.as_deref()).collect();
    let mut note = if caps.is_empty() {
        level(score).to_owned()
    } else {
        format!("{}: {}", level(score), caps.join("; "))
    };
    if low.is_some() {
        note.push_str(&format!(
            " (the low end of a 95 % interval: the distance metrics looked up seeded samples of rows, \
             stated in their notes; {point:.1} at their point estimates)"
        ));
    }
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

/// [`RareCopies`] of every text column `real` and `released` share (each
/// table as its batches).
pub fn rare_value_copies(real: &[RecordBatch], released: &[RecordBatch]) -> Vec<RareCopies> {
    use crate::release::{RARE_ROWS, UNIQUE_SHARE};
    let mut out = Vec::new();
    let Some(first) = real.first() else {
        return out;
    };
    // A column's arrays across the batches, if every batch has it as text.
    let text = |batches: &[RecordBatch], name: &str| -> Option<Vec<ArrayRef>> {
        batches
            .iter()
            .map(|b| {
                b.column_by_name(name)
                    .filter(|c| c.data_type() == &DataType::Utf8)
                    .cloned()
            })
            .collect()
    };
    for field in first.schema().fields() {
        let (Some(r), Some(s)) = (text(real, field.name()), text(released, field.name())) else {
            continue;
        };
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for v in r.iter().flat_map(|a| a.as_string::<i32>().iter().flatten()) {
            *counts.entry(v).or_default() += 1;
        }
        let non_null: usize = counts.values().sum();
        if non_null == 0 {
            continue;
        }
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let identifier = counts.len() as f64 >= UNIQUE_SHARE * non_null as f64;
        let values: Vec<&str> = s.iter().flat_map(|a| a.as_string::<i32>().iter().flatten()).collect();
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
fn rare_value_metrics(real: &[RecordBatch], synthetic: &[RecordBatch], out: &mut Vec<MetricValue>) -> Vec<String> {
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
        let metrics = privacy(
            ctx.id(),
            &tables,
            findings,
            ctx.settings(),
            // Weighted units, not rows (see `lookup_weight`): shown as a share.
            &|done, total| ctx.progress(done * 1000 / total.max(1), 1000, "‰"),
            Some(ctx.cancel_flag()),
        )?;
        Ok(crate::model::Output::Metrics(Arc::new(metrics)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(v: &[f64]) -> Col {
        Col::Num(Nums::from(v.to_vec()))
    }
    fn cat(v: &[u32]) -> Col {
        Col::Cat(Codes::from(v.to_vec()))
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
        let d = dcr(&data, &reference, &Meter::none());
        assert_eq!(d[0], 0.0); // exact copy of row 0
        assert!((d[1] - 0.25).abs() < 1e-12, "{}", d[1]); // |5−10|/10 = 0.5, category equal → 0.25
        assert_eq!(d[2], 0.0); // nulls match nulls
        assert!((d[3] - 0.65).abs() < 1e-12, "{}", d[3]); // 0.3 + 1 over 2
    }

    fn table(rows: std::ops::Range<i64>, salt: i64) -> Arc<Table> {
        use arrow::array::{Int64Array, StringArray};
        use arrow::datatypes::{Field, Schema};
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, true),
            Field::new("c", DataType::Utf8, true),
        ]));
        let x: Int64Array = rows.clone().map(|i| Some((i * 7919 + salt) % 1000)).collect();
        let c: StringArray = rows.map(|i| Some(format!("k{}", (i + salt) % 5))).collect();
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(x), Arc::new(c)]).unwrap();
        Arc::new(Table::infer(schema, vec![batch]).unwrap())
    }

    /// Progress counts every step by its weight — encoding, index builds,
    /// lookups, hashing — and ends exactly at its total, with and without a
    /// holdout (an empty one too), sampled or not: the total is worked out
    /// before the stage runs, from the same sizes it then uses.
    #[test]
    fn progress_ends_exactly_at_its_weighted_total() {
        let (real, synthetic, holdout) = (table(0..3000, 0), table(0..2500, 3), table(0..1200, 11));
        let all = vec![Arc::clone(&real), Arc::clone(&synthetic), Arc::clone(&holdout)];
        for (tables, queries, equal, subsample) in [
            (all.clone(), 1000, true, None),
            (all.clone(), 100_000, false, None),
            (all.clone(), 1000, true, Some(2000)),
            (all.clone(), 100_000, false, Some(1100)),
            (
                vec![Arc::clone(&real), Arc::clone(&synthetic), table(0..0, 1)],
                1000,
                true,
                None,
            ),
            (vec![Arc::clone(&real), Arc::clone(&synthetic)], 1000, true, None),
        ] {
            let seen = std::sync::Mutex::new(Vec::new());
            let mut settings = vec![
                ("max_queries".to_owned(), ConfigValue::Integer(queries)),
                ("overfitting_equal_sizes".to_owned(), ConfigValue::Boolean(equal)),
            ];
            if let Some(n) = subsample {
                settings.push(("subsample".to_owned(), ConfigValue::Integer(n)));
            }
            privacy(
                "p",
                &tables,
                None,
                &settings,
                &|d, t| seen.lock().unwrap().push((d, t)),
                None,
            )
            .unwrap();
            // (`privacy` itself asserts, in debug builds, that the units
            // counted are exactly the total; reports from parallel workers
            // may arrive out of order.)
            let seen = seen.into_inner().unwrap();
            let total = seen[0].1;
            assert!(seen.iter().all(|r| r.1 == total && r.0 <= total));
            assert_eq!(
                seen.iter().map(|r| r.0).max(),
                Some(total),
                "{queries} {equal} {subsample:?}"
            );
            // Counting starts with the encoding, before the first index or
            // lookup, so the time left is known from the stage's first
            // seconds.
            let rows: u64 = tables.iter().map(|t| t.rows() as u64).sum();
            assert!(seen.iter().any(|r| r.0 <= 2 * rows * ENCODE_WEIGHT), "{seen:?}");
        }
        assert_eq!(lookup_weight(0), 1);
        assert_eq!(lookup_weight(2_604_880), 2150);
    }

    /// One index over the training rows answers every later set of rows
    /// exactly as an index built for that set alone (and the definition).
    #[test]
    fn one_reference_index_serves_every_lookup() {
        let reference = vec![num(&[0.0, 10.0, f64::NAN, 4.0]), cat(&[1, 2, NULL, 2])];
        let closest = Closest::new(&reference, &reference);
        for data in [
            vec![num(&[0.0, 5.0, f64::NAN, 3.0]), cat(&[1, 2, NULL, 9])],
            vec![num(&[12.0, 4.0]), cat(&[2, 2])],
            vec![num(&[]), cat(&[])],
        ] {
            assert_eq!(
                closest.distances(&data, &Meter::none()),
                dcr(&data, &reference, &Meter::none())
            );
        }
        let d = closest.distances(&[num(&[0.0, 5.0]), cat(&[1, 2])], &Meter::none());
        assert_eq!(d[0], 0.0);
        assert!((d[1] - 0.05).abs() < 1e-12, "{}", d[1]); // |5−4|/10 over 2 columns
        assert_eq!(Closest::new(&[], &[]).distances(&[], &Meter::none()), Vec::<f64>::new());
    }

    #[test]
    fn new_rows_use_relative_tolerance_and_null_matching() {
        let real = vec![num(&[100.0, f64::NAN]), cat(&[1, 1])];
        let syn = vec![num(&[100.9, 102.0, f64::NAN, 100.0]), cat(&[1, 1, 1, 2])];
        let (share, new) = new_row_synthesis(&real, &syn, 0.01, &Meter::none());
        assert_eq!(new, 2); // 102 is 1.96 % off; the last row's category differs
        assert_eq!(share, 0.5);
    }

    /// Every real row against every synthetic row: the definition.
    fn new_rows_brute(real: &[Col], synthetic: &[Col], tolerance: f64) -> usize {
        (0..len(synthetic))
            .filter(|&s| {
                !(0..len(real)).any(|r| {
                    real.iter().zip(synthetic).all(|pair| match pair {
                        (Col::Cat(a), Col::Cat(b)) => a.get(r) == b.get(s),
                        (Col::Num(a), Col::Num(b)) => numbers_match(a.get(r), b.get(s), tolerance),
                        _ => false,
                    })
                })
            })
            .count()
    }

    fn mixed_table(rows: usize) -> impl proptest::strategy::Strategy<Value = Vec<Col>> {
        use proptest::prelude::*;
        (
            proptest::collection::vec(prop_oneof![6 => 0u32..3, 1 => Just(NULL)], rows),
            proptest::collection::vec(
                prop_oneof![6 => (-20i32..20).prop_map(|v| f64::from(v) * 0.5), 1 => Just(f64::NAN)],
                rows,
            ),
            proptest::collection::vec(
                prop_oneof![6 => (90i32..110).prop_map(f64::from), 1 => Just(f64::NAN), 1 => Just(f64::INFINITY)],
                rows,
            ),
        )
            .prop_map(|(c, a, b)| {
                vec![
                    Col::Cat(Codes::from(c)),
                    Col::Num(Nums::from(a)),
                    Col::Num(Nums::from(b)),
                ]
            })
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        #[test]
        fn new_rows_match_the_definition(
            real in (0usize..120).prop_flat_map(mixed_table),
            synthetic in (1usize..60).prop_flat_map(mixed_table),
            tolerance in proptest::prop_oneof![proptest::strategy::Just(0.0), proptest::strategy::Just(0.01), 0.0f64..0.2],
        ) {
            let (_, new) = new_row_synthesis(&real, &synthetic, tolerance, &Meter::none());
            proptest::prop_assert_eq!(new, new_rows_brute(&real, &synthetic, tolerance));
        }

        /// Compact columns read back exactly what was stored: every number
        /// bit for bit (narrowed only when that holds), every code and null,
        /// in the narrowest type with room for null.
        #[test]
        fn compact_columns_read_back_what_was_stored(
            numbers in proptest::collection::vec(proptest::prop_oneof![
                proptest::num::f64::ANY,
                (-1_000_000i32..1_000_000).prop_map(f64::from),
                (0u16..1000).prop_map(|x| f64::from(x) / 4.0),
            ], 0..200),
            top in proptest::prop_oneof![0u32..300, 0u32..70_000, proptest::num::u32::ANY],
            picks in proptest::collection::vec(0usize..1000, 0..50),
        ) {
            let nums = Nums::from(numbers.clone());
            proptest::prop_assert_eq!(nums.len(), numbers.len());
            for (r, x) in numbers.iter().enumerate() {
                // NaN stays NaN (null); everything else keeps its bits.
                proptest::prop_assert!(nums.get(r).to_bits() == x.to_bits() || (x.is_nan() && nums.get(r).is_nan()));
            }
            let narrow = numbers.iter().all(|x| x.is_nan() || f64::from(*x as f32) == *x);
            proptest::prop_assert_eq!(matches!(nums, Nums::Narrow(_)), narrow);

            let codes: Vec<u32> = (0..numbers.len() as u32)
                // Below `top` (at most u32::MAX), so never NULL by accident.
                .map(|i| if i % 7 == 3 { NULL } else { i.wrapping_mul(2_654_435_761) % top.max(1) })
                .collect();
            let compact = Codes::from(codes.clone());
            proptest::prop_assert_eq!(compact.to_vec(), codes.clone());
            let most = codes.iter().copied().filter(|c| *c != NULL).max().unwrap_or(0);
            let expected = if most < 255 { 1 } else if most < 65_535 { 2 } else { 4 };
            let width = match compact { Codes::Byte(_) => 1, Codes::Short(_) => 2, Codes::Wide(_) => 4 };
            proptest::prop_assert_eq!(width, expected);

            let rows: Vec<usize> = picks.iter().filter(|&&p| p < codes.len()).copied().collect();
            proptest::prop_assert_eq!(compact.pick(&rows).to_vec(), rows.iter().map(|&r| codes[r]).collect::<Vec<_>>());
            let picked = nums.pick(&rows);
            for (i, &r) in rows.iter().enumerate() {
                proptest::prop_assert!(picked.get(i).to_bits() == nums.get(r).to_bits());
            }
        }
    }

    #[test]
    fn wilson_interval_matches_statsmodels() {
        // statsmodels.stats.proportion.proportion_confint(k, n, method="wilson")
        let (lo, hi) = wilson_interval(10, 100);
        assert!(
            (lo - 0.055_229_13).abs() < 1e-7 && (hi - 0.174_365_66).abs() < 1e-7,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson_interval(0, 50);
        assert!(lo == 0.0 && (hi - 0.071_347_60).abs() < 1e-7, "{lo} {hi}");
        assert!(wilson_interval(0, 0).0.is_nan());
    }

    #[test]
    fn the_median_interval_brackets_the_median() {
        let v: Vec<f64> = (0..2_000).map(|i| f64::from(i) / 2_000.0).collect();
        let (lo, hi) = median_interval(&v);
        assert!(lo < median(&v) && median(&v) < hi);
        // ±0.98·√2000 ≈ 44 ranks either side.
        assert!((hi - lo - 89.0 / 2_000.0).abs() < 2.0 / 2_000.0, "{lo} {hi}");
        assert_eq!(median_interval(&[0.3]), (0.3, 0.3));
        assert!(median_interval(&[]).0.is_nan());
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
