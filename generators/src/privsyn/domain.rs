//! Turning columns into small discrete domains without leaking them.
//!
//! Marginal methods need every column discrete and its domain public. doppel
//! does not assume the domain is public (smartnoise and the PrivSyn reference
//! code read it off the data): numeric bounds come from declared bounds or a
//! noisy power-of-two histogram, and the categories released are chosen by
//! Gaussian partition selection — a category survives only if its noisy count
//! clears a threshold that a single person's category crosses with
//! probability at most δ_c. Everything else (nulls, rare values) falls into
//! one "missing" bin that decodes to null.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, UInt32Array};
use arrow::compute::{cast, take};
use arrow::datatypes::DataType;
use arrow::row::{RowConverter, SortField};
use rand::RngExt;

use super::noise::Noise;
use crate::Result;
use crate::counts::{BOUNDS_MIN_EXP, ValueCounts};

/// Chance that any empty bucket looks occupied, across all buckets.
const BOUNDS_FALSE_POSITIVE: f64 = 0.01;

/// Whole-number columns spanning at most this many values get a bin per value.
const EXACT_SPAN: f64 = 128.0;

/// How a numeric column's values map to bins.
#[derive(Debug, Clone)]
pub(crate) struct NumericBins {
    /// Bin edges: bin `k` (after the fixed bins) is `edges[k]..edges[k + 1]`.
    edges: Vec<f64>,
    /// Whether edges are spaced geometrically (decode log-uniformly).
    geometric: bool,
    /// Whether exact zero has its own bin (bin 1).
    zero_bin: bool,
    /// Integers, dates, timestamps: decode to whole units.
    whole: bool,
}

/// One column's discretisation and how to turn bins back into values.
#[derive(Debug, Clone)]
pub(crate) enum Codec {
    /// Bin `k < values.len()` is `values[k]`; the last bin is "missing or
    /// rare" and decodes to null.
    Categorical { values: ArrayRef },
    /// Bin 0 is null; then the zero bin if any; then the ranges.
    Numeric(NumericBins),
}

impl Codec {
    /// Number of bins.
    pub(crate) fn size(&self) -> usize {
        match self {
            Codec::Categorical { values } => values.len() + 1,
            Codec::Numeric(b) => 1 + usize::from(b.zero_bin) + b.edges.len() - 1,
        }
    }

    /// How rows map to this codec's bins, for a count source.
    pub(crate) fn binning(&self) -> crate::counts::Binning {
        match self {
            Codec::Categorical { values } => crate::counts::Binning::Values(Arc::clone(values)),
            Codec::Numeric(b) => b.binning(),
        }
    }

    /// Human-readable description for reports.
    pub(crate) fn describe(&self) -> String {
        match self {
            Codec::Categorical { values } => format!("{} released categories + missing/rare", values.len()),
            Codec::Numeric(b) => format!(
                "{} {} bins over [{}, {}]{}",
                b.edges.len() - 1,
                if b.geometric { "geometric" } else { "equal-width" },
                b.edges[0],
                b.edges[b.edges.len() - 1],
                if b.zero_bin { " + zero" } else { "" }
            ),
        }
    }

    /// Column values from bins, in the column's Arrow type.
    pub(crate) fn decode<R: rand::Rng + ?Sized>(
        &self,
        bins: &[u32],
        data_type: &DataType,
        rng: &mut R,
    ) -> Result<ArrayRef> {
        match self {
            Codec::Categorical { values } => {
                let k = u32::try_from(values.len()).expect("fewer than 2^32 categories");
                let idx: UInt32Array = bins.iter().map(|&b| (b < k).then_some(b)).collect();
                Ok(take(values.as_ref(), &idx, None)?)
            }
            Codec::Numeric(b) => {
                let first_range = 1 + usize::from(b.zero_bin);
                let values: Float64Array = bins
                    .iter()
                    .map(|&bin| {
                        let bin = bin as usize;
                        if bin == 0 {
                            return None;
                        }
                        if b.zero_bin && bin == 1 {
                            return Some(0.0);
                        }
                        let k = bin - first_range;
                        let (lo, hi) = (b.edges[k], b.edges[k + 1]);
                        let u: f64 = rng.random();
                        let x = if b.geometric && lo > 0.0 {
                            (lo.ln() + u * (hi.ln() - lo.ln())).exp()
                        } else {
                            lo + u * (hi - lo)
                        };
                        let x = if b.whole {
                            // Whole-unit bins are [lo, hi) on integers.
                            x.floor().clamp(lo.ceil(), (hi - 1.0).max(lo.ceil()))
                        } else {
                            x
                        };
                        Some(x)
                    })
                    .collect();
                let values: ArrayRef = Arc::new(values);
                Ok(match data_type {
                    DataType::Date32 => cast(&cast(&values, &DataType::Int32)?, data_type)?,
                    DataType::Date64 | DataType::Timestamp(_, _) => cast(&cast(&values, &DataType::Int64)?, data_type)?,
                    _ => cast(&values, data_type)?,
                })
            }
        }
    }
}

/// `false` and `true`, the released values of a boolean column, in
/// `data_type` (null and anything else fall in the missing bin).
pub(crate) fn boolean_values(data_type: &DataType) -> Result<ArrayRef> {
    let values: ArrayRef = Arc::new(arrow::array::BooleanArray::from(vec![false, true]));
    Ok(cast(&values, data_type)?)
}

/// Lower and upper edge of bucket `b`.
fn bucket_edges(b: usize) -> (f64, f64) {
    let side = crate::counts::bounds_side();
    let exp = |k: usize| BOUNDS_MIN_EXP + i32::try_from(k).expect("small");
    match b.cmp(&side) {
        std::cmp::Ordering::Equal => (0.0, 0.0),
        std::cmp::Ordering::Greater => {
            let e = exp(b - side - 1);
            (2f64.powi(e), 2f64.powi(e + 1))
        }
        std::cmp::Ordering::Less => {
            let e = exp(side - 1 - b);
            (-(2f64.powi(e + 1)), -(2f64.powi(e)))
        }
    }
}

/// Private bounds: the outermost power-of-two buckets whose noisy count
/// clears a threshold no empty bucket reaches (all but 1 % of the time).
/// `counts` is the exact bounds histogram ([`crate::counts::bounds_bucket`]
/// cells). Costs `rho` (each row is in one bucket: sensitivity 1). `None`
/// when no bucket clears it (too few rows for the budget).
pub(crate) fn private_bounds(counts: &[u64], rho: f64, noise: &mut Noise) -> Option<(f64, f64)> {
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let mut counts: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
    let buckets = counts.len();
    let sigma = crate::accountant::gaussian_sigma(rho, 1.0);
    noise.gaussian(&mut counts, sigma);
    #[allow(clippy::cast_precision_loss, reason = "a few hundred buckets")]
    let per_bucket = BOUNDS_FALSE_POSITIVE / buckets as f64;
    let threshold = sigma * upper_normal_quantile(per_bucket);
    let first = counts.iter().position(|&c| c >= threshold)?;
    let last = counts.iter().rposition(|&c| c >= threshold)?;
    let lo = bucket_edges(first).0;
    let hi = bucket_edges(last).1;
    Some((lo, hi))
}

/// z with P(N(0,1) > z) = p, accurate far into the tail.
pub(crate) fn upper_normal_quantile(p: f64) -> f64 {
    std::f64::consts::SQRT_2 * statrs::function::erf::erfc_inv(2.0 * p)
}

/// Bins for a numeric column with (public or private) bounds.
pub(crate) fn numeric_bins(lo: f64, hi: f64, bins: usize, whole: bool) -> NumericBins {
    let (lo, hi) = if whole { (lo.floor(), hi.ceil() + 1.0) } else { (lo, hi) };
    let hi = if hi > lo { hi } else { lo + 1.0 };
    let zero_bin = lo <= 0.0 && hi >= 0.0;
    // Heavy-tailed positive columns (incomes, counts) are better served by
    // bins of equal ratio than equal width.
    let floor = if lo > 0.0 { lo } else { 1.0_f64.min(hi / 1024.0) };
    // Whole numbers over a short span (hours a week, ages) keep one bin per
    // value: their spikes (40 hours) are the shape users check.
    let exact = whole && hi - lo <= EXACT_SPAN;
    let geometric = !exact && lo >= 0.0 && hi / floor > 64.0;
    let mut edges = Vec::with_capacity(bins + 1);
    if geometric {
        let (a, b) = (floor.ln(), hi.ln());
        for i in 0..=bins {
            #[allow(clippy::cast_precision_loss, reason = "a few hundred bins")]
            let t = i as f64 / bins as f64;
            edges.push((a + t * (b - a)).exp());
        }
        edges[0] = lo.max(f64::MIN_POSITIVE);
        if lo == 0.0 {
            edges[0] = f64::MIN_POSITIVE;
        }
    } else {
        #[allow(clippy::cast_precision_loss, reason = "integer spans are far below 2^52")]
        let count = if exact {
            (hi - lo) as usize
        } else if whole {
            bins.min((hi - lo) as usize).max(1)
        } else {
            bins
        };
        for i in 0..=count {
            #[allow(clippy::cast_precision_loss, reason = "a few hundred bins")]
            let t = i as f64 / count as f64;
            let e = lo + t * (hi - lo);
            edges.push(if whole { e.round() } else { e });
        }
        edges.dedup();
    }
    if let Some(last) = edges.last_mut() {
        *last = hi;
    }
    NumericBins {
        edges,
        geometric,
        zero_bin,
        whole,
    }
}

impl NumericBins {
    /// The bin of `x` (null and non-finite → 0; out of range → clipped).
    #[cfg(test)]
    pub(crate) fn bin(&self, x: Option<f64>) -> u32 {
        crate::counts::Binning::numeric_bin(&self.edges, self.zero_bin, x)
    }

    /// The same rule, for a [`crate::counts::CountSource`].
    pub(crate) fn binning(&self) -> crate::counts::Binning {
        crate::counts::Binning::Numeric {
            edges: self.edges.clone(),
            zero_bin: self.zero_bin,
        }
    }
}

/// The distinct values of a column with each row's index into them and each
/// value's count; null, if present, is one of the values.
#[cfg_attr(
    not(feature = "torch"),
    allow(dead_code, reason = "per-row codes are read by the neural transformer")
)]
pub(crate) struct Distinct {
    pub(crate) values: ArrayRef,
    pub(crate) counts: Vec<f64>,
    pub(crate) codes: Vec<u32>,
}

pub(crate) fn distinct(array: &ArrayRef) -> Result<Distinct> {
    let converter = RowConverter::new(vec![SortField::new(array.data_type().clone())])?;
    let rows = converter.convert_columns(std::slice::from_ref(array))?;
    let mut index: HashMap<&[u8], u32> = HashMap::new();
    let mut first: Vec<u32> = Vec::new();
    let mut counts: Vec<f64> = Vec::new();
    let mut codes = Vec::with_capacity(array.len());
    for (i, row) in rows.iter().enumerate() {
        let next = u32::try_from(first.len()).expect("fewer than 2^32 categories");
        let code = *index.entry(row.data()).or_insert(next);
        if code == next {
            first.push(u32::try_from(i).expect("fewer than 2^32 rows"));
            counts.push(0.0);
        }
        counts[code as usize] += 1.0;
        codes.push(code);
    }
    let values = take(array.as_ref(), &UInt32Array::from(first), None)?;
    Ok(Distinct { values, counts, codes })
}

/// Gaussian partition selection on a column's categories.
///
/// Measures every observed non-null value's count with noise σ and keeps the
/// values whose noisy count reaches `1 + σ·z(δ_c)`: a value that exists only
/// because of one person has count 1 and survives with probability ≤ δ_c.
/// Returns the released codec and the noisy 1-way marginal over its bins
/// (the missing bin sums the null count and every dropped value, each with
/// its own noise).
pub(crate) fn select_categories(
    d: &ValueCounts,
    sigma: f64,
    delta_c: f64,
    noise: &mut Noise,
) -> Result<(Codec, Vec<f64>)> {
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let mut noisy: Vec<f64> = d.counts.iter().map(|&c| c as f64).collect();
    noise.gaussian(&mut noisy, sigma);
    let null_value = d.null_index();
    let threshold = 1.0 + sigma * upper_normal_quantile(delta_c);
    // Keep released values in a data-independent order would be nicer, but
    // the order carries no information beyond the released set: sort by
    // noisy count, most frequent first.
    let mut kept: Vec<u32> = (0..d.counts.len())
        .filter(|&v| Some(v) != null_value && noisy[v] >= threshold)
        .map(|v| u32::try_from(v).expect("small"))
        .collect();
    kept.sort_by(|&a, &b| noisy[b as usize].total_cmp(&noisy[a as usize]).then(a.cmp(&b)));
    let missing = u32::try_from(kept.len()).expect("small");
    let mut map = vec![missing; d.counts.len()];
    for (bin, &v) in kept.iter().enumerate() {
        map[v as usize] = u32::try_from(bin).expect("small");
    }
    let values = take(d.values.as_ref(), &UInt32Array::from(kept.clone()), None)?;
    let mut marginal = vec![0.0; kept.len() + 1];
    for (v, &count) in noisy.iter().enumerate() {
        marginal[map[v] as usize] += count;
    }
    // The null bin always exists, measured even when the column has no nulls,
    // so that its presence says nothing.
    if null_value.is_none() {
        let mut zero = [0.0];
        noise.gaussian(&mut zero, sigma);
        marginal[missing as usize] += zero[0];
    }
    Ok((Codec::Categorical { values }, marginal))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_cover_the_line_in_order() {
        let xs = [-1e9, -3.0, -1.0, -0.5, 0.0, 1e-9, 0.5, 1.0, 3.0, 1e9];
        let bucket = crate::counts::bounds_bucket;
        let bs: Vec<usize> = xs.iter().map(|&x| bucket(x)).collect();
        assert!(bs.windows(2).all(|w| w[0] <= w[1]), "{bs:?}");
        for &x in &xs {
            let (lo, hi) = bucket_edges(bucket(x));
            if x != 0.0 && x.abs() >= 2f64.powi(BOUNDS_MIN_EXP) && x.abs() < 2f64.powi(crate::counts::BOUNDS_MAX_EXP) {
                assert!(lo <= x && x <= hi, "{x} not in [{lo}, {hi}]");
            }
        }
    }

    #[test]
    fn private_bounds_find_the_occupied_range() {
        let mut counts = vec![0u64; crate::counts::bounds_buckets()];
        for i in 0..20_000 {
            counts[crate::counts::bounds_bucket(17.0 + f64::from(i % 74))] += 1;
        }
        let mut noise = Noise::seeded(1);
        let (lo, hi) = private_bounds(&counts, 1.0, &mut noise).unwrap();
        assert_eq!((lo, hi), (16.0, 128.0));
    }

    #[test]
    fn whole_bins_round_trip_integers() {
        let b = numeric_bins(17.0, 90.0, 32, true);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for x in 17..=90 {
            let bin = b.bin(Some(f64::from(x)));
            let codec = Codec::Numeric(b.clone());
            let out = codec.decode(&[bin], &DataType::Float64, &mut rng).unwrap();
            let v = out.as_any().downcast_ref::<Float64Array>().unwrap().value(0);
            let k = bin as usize - 1;
            assert!(v >= b.edges[k] && v < b.edges[k + 1], "{x} → bin {bin} → {v}");
            assert_eq!(v.fract(), 0.0);
        }
        assert_eq!(b.bin(None), 0);
    }

    use rand::SeedableRng;

    proptest! {
        #[test]
        fn every_value_lands_in_a_bin_that_decodes_near_it(
            lo in -1e6f64..1e6, span in 1e-3f64..1e7, t in 0.0f64..1.0, bins in 2usize..64, whole: bool
        ) {
            let hi = lo + span;
            let b = numeric_bins(lo, hi, bins, whole);
            let x = if whole { (lo + t * span).round() } else { lo + t * span };
            let bin = b.bin(Some(x));
            prop_assert!((bin as usize) < Codec::Numeric(b.clone()).size());
            prop_assert!(bin > 0);
            if !(b.zero_bin && x == 0.0) {
                let k = bin as usize - 1 - usize::from(b.zero_bin);
                let (a, c) = (b.edges[k], b.edges[k + 1]);
                prop_assert!(x >= a - 1e-9 * a.abs().max(1.0) || k == 0, "{x} below [{a}, {c})");
                prop_assert!(x < c + 1e-9 * c.abs().max(1.0) || k + 2 == b.edges.len(), "{x} above [{a}, {c})");
            }
        }
    }
}
