//! Exact counts: all that a count-based generator reads from the real rows.
//!
//! PrivSyn touches real rows only to count them — power-of-two buckets for
//! its private bounds, each category's frequency, and the 1- and 2-way
//! contingency tables of binned columns. [`CountSource`] is that interface,
//! so the same fit runs on rows held in memory ([`LocalCounts`]) or as
//! aggregate plans on an engine (DataFusion here, Ballista on a cluster: the
//! `doppel-engine` crate). Counts are exact integers, so every source agrees
//! bit for bit, and the fit adds the DP noise to them once, where it runs:
//! the privacy accounting does not depend on where the counting happened.
//!
//! The bin rules are written so that an engine can reproduce them with
//! comparisons only (no logarithms, no division): [`bounds_bucket`] finds a
//! power of two by comparing against exact powers of two, and
//! [`Binning::Numeric`] counts the edges at or below a value.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

use crate::semantic::SemanticType;
use crate::{Error, Result};

/// Smallest power of two the bounds histogram tells apart: 2^-20 ≈ 1e-6.
pub const BOUNDS_MIN_EXP: i32 = -20;
/// Largest: 2^70 ≈ 1e21.
pub const BOUNDS_MAX_EXP: i32 = 70;

/// Cells of the bounds histogram: one per power of two on each side of zero,
/// and one for zero. Fixed in advance, so a cell reveals nothing by existing.
pub fn bounds_buckets() -> usize {
    2 * bounds_side() + 1
}

/// Cells on each side of zero.
pub(crate) fn bounds_side() -> usize {
    usize::try_from(BOUNDS_MAX_EXP - BOUNDS_MIN_EXP + 1).expect("positive")
}

/// The bounds-histogram cell of a finite `x`: zero is the middle cell;
/// positive `x` in `[2^e, 2^(e+1))` is `side + 1 + (e − MIN)` and negative
/// ones mirror it, with `e` clamped to `[MIN, MAX]`. `e` is found by
/// comparison with exact powers of two, never by a logarithm, so an engine
/// counting `|x| ≥ 2^e` gets the same cell.
pub fn bounds_bucket(x: f64) -> usize {
    let side = bounds_side();
    if x == 0.0 {
        return side;
    }
    // The logarithm is only a guess, within one of the true exponent; the
    // comparisons with exact powers of two decide.
    let a = x.abs();
    #[allow(clippy::cast_possible_truncation, reason = "clamped to a small range")]
    let mut e = (a
        .log2()
        .floor()
        .clamp(f64::from(BOUNDS_MIN_EXP), f64::from(BOUNDS_MAX_EXP))) as i32;
    if e > BOUNDS_MIN_EXP && a < 2f64.powi(e) {
        e -= 1;
    } else if e < BOUNDS_MAX_EXP && a >= 2f64.powi(e + 1) {
        e += 1;
    }
    let k = usize::try_from(e - BOUNDS_MIN_EXP).expect("clamped above the minimum");
    if x > 0.0 { side + 1 + k } else { side - 1 - k }
}

/// How one column's values map to bins of a contingency table.
#[derive(Debug, Clone)]
pub enum Binning {
    /// Bin 0: null, NaN or infinite; bin 1: exactly zero when `zero_bin`;
    /// then `first + (number of inner edges ≤ x)`, where the inner edges are
    /// `edges[1..len − 1]` (values outside the outer edges are clipped into
    /// the first or last range). The column is read as `f64` (dates as days,
    /// timestamps in their unit).
    Numeric {
        /// Range edges, ascending.
        edges: Vec<f64>,
        /// Whether exact zero has its own bin.
        zero_bin: bool,
    },
    /// `values[k]` is bin `k`; anything else (null, a value not released) is
    /// bin `values.len()`.
    Values(ArrayRef),
}

impl Binning {
    /// Number of bins.
    pub fn size(&self) -> usize {
        match self {
            Binning::Numeric { edges, zero_bin } => 1 + usize::from(*zero_bin) + edges.len() - 1,
            Binning::Values(values) => values.len() + 1,
        }
    }

    /// The bin of a numeric value (see [`Binning::Numeric`]).
    pub fn numeric_bin(edges: &[f64], zero_bin: bool, x: Option<f64>) -> u32 {
        let Some(x) = x.filter(|v| v.is_finite()) else {
            return 0;
        };
        if zero_bin && x == 0.0 {
            return 1;
        }
        let first = 1 + u32::from(zero_bin);
        let inner = &edges[1..edges.len() - 1];
        first + u32::try_from(inner.partition_point(|&e| e <= x)).expect("fewer than 2^32 bins")
    }
}

/// A column's distinct values and how often each occurs, in the canonical
/// order every source agrees on (Arrow's ascending sort, null first).
#[derive(Debug, Clone)]
pub struct ValueCounts {
    /// The distinct values (null included when the column has nulls).
    pub values: ArrayRef,
    /// How many rows hold each.
    pub counts: Vec<u64>,
}

impl ValueCounts {
    /// Put `values` and `counts` (in any order, each value once) in the
    /// canonical order.
    pub fn canonical(values: &ArrayRef, counts: &[u64]) -> Result<ValueCounts> {
        let converter = RowConverter::new(vec![SortField::new(values.data_type().clone())])?;
        let rows = converter.convert_columns(std::slice::from_ref(values))?;
        let mut order: Vec<u32> = (0..u32::try_from(values.len()).expect("fewer than 2^32 values")).collect();
        order.sort_by(|&a, &b| rows.row(a as usize).cmp(&rows.row(b as usize)));
        let values = arrow::compute::take(values.as_ref(), &arrow::array::UInt32Array::from(order.clone()), None)?;
        let counts = order.iter().map(|&i| counts[i as usize]).collect();
        Ok(ValueCounts { values, counts })
    }

    /// The index of the null value, if the column has nulls.
    pub fn null_index(&self) -> Option<usize> {
        (0..self.values.len()).find(|&i| self.values.is_null(i))
    }
}

/// Exact counts of a table's rows, however they are computed.
///
/// Implementations must agree exactly with [`LocalCounts`]: same buckets,
/// same bins, same integers.
pub trait CountSource: Send + Sync {
    /// The table's columns.
    fn schema(&self) -> SchemaRef;
    /// The semantic type of each column, in schema order.
    fn semantics(&self) -> &[SemanticType];
    /// For each of `columns` (numeric, read as `f64`), how many finite values
    /// fall in each [`bounds_bucket`] cell ([`bounds_buckets`] cells each).
    fn bucket_counts(&self, columns: &[usize]) -> Result<Vec<Vec<u64>>>;
    /// Each of `columns`' distinct values with their counts, in canonical
    /// order ([`ValueCounts::canonical`]).
    fn value_counts(&self, columns: &[usize]) -> Result<Vec<ValueCounts>>;
    /// Contingency tables: `binned` says how each column taking part is
    /// binned (column index, binning); each of `sets` lists positions in
    /// `binned` (one or two). Each table is row-major over its set's bins.
    fn tables(&self, binned: &[(usize, Binning)], sets: &[Vec<usize>]) -> Result<Vec<Vec<u64>>>;
}

/// Counts of rows held in memory.
#[derive(Debug)]
pub struct LocalCounts<'a> {
    batch: &'a RecordBatch,
    semantics: &'a [SemanticType],
}

impl<'a> LocalCounts<'a> {
    /// Count `batch`, whose columns have `semantics`.
    pub fn new(batch: &'a RecordBatch, semantics: &'a [SemanticType]) -> LocalCounts<'a> {
        LocalCounts { batch, semantics }
    }
}

impl CountSource for LocalCounts<'_> {
    fn schema(&self) -> SchemaRef {
        self.batch.schema()
    }

    fn semantics(&self) -> &[SemanticType] {
        self.semantics
    }

    fn bucket_counts(&self, columns: &[usize]) -> Result<Vec<Vec<u64>>> {
        columns
            .iter()
            .map(|&c| {
                let mut counts = vec![0u64; bounds_buckets()];
                for v in self.numbers(c)?.iter().flatten().filter(|v| v.is_finite()) {
                    counts[bounds_bucket(v)] += 1;
                }
                Ok(counts)
            })
            .collect()
    }

    fn value_counts(&self, columns: &[usize]) -> Result<Vec<ValueCounts>> {
        columns
            .iter()
            .map(|&c| {
                let d = crate::privsyn::domain::distinct(self.batch.column(c))?;
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "exact counts")]
                let counts: Vec<u64> = d.counts.iter().map(|&c| c as u64).collect();
                ValueCounts::canonical(&d.values, &counts)
            })
            .collect()
    }

    fn tables(&self, binned: &[(usize, Binning)], sets: &[Vec<usize>]) -> Result<Vec<Vec<u64>>> {
        let bins: Vec<Vec<u32>> = binned.iter().map(|(c, b)| self.bins(*c, b)).collect::<Result<_>>()?;
        Ok(sets
            .iter()
            .map(|set| match set.as_slice() {
                [a] => {
                    let mut t = vec![0u64; binned[*a].1.size()];
                    for &x in &bins[*a] {
                        t[x as usize] += 1;
                    }
                    t
                }
                [a, b] => {
                    let nb = binned[*b].1.size();
                    let mut t = vec![0u64; binned[*a].1.size() * nb];
                    for (&x, &y) in bins[*a].iter().zip(&bins[*b]) {
                        t[x as usize * nb + y as usize] += 1;
                    }
                    t
                }
                _ => unreachable!("tables are over one or two columns"),
            })
            .collect())
    }
}

impl LocalCounts<'_> {
    /// A column read as `f64`, or the error naming it.
    fn numbers(&self, column: usize) -> Result<arrow::array::Float64Array> {
        crate::copula::as_f64(self.batch.column(column))?.ok_or_else(|| {
            let field = self.batch.schema().field(column).clone();
            Error::UnsupportedType {
                generator: "privsyn",
                column: field.name().clone(),
                data_type: field.data_type().clone(),
            }
        })
    }

    /// Every row's bin of `column` under `binning`.
    pub(crate) fn bins(&self, column: usize, binning: &Binning) -> Result<Vec<u32>> {
        match binning {
            Binning::Numeric { edges, zero_bin } => Ok(self
                .numbers(column)?
                .iter()
                .map(|v| Binning::numeric_bin(edges, *zero_bin, v))
                .collect()),
            Binning::Values(values) => {
                let missing = u32::try_from(values.len()).expect("fewer than 2^32 categories");
                let converter = RowConverter::new(vec![SortField::new(values.data_type().clone())])?;
                let keys = converter.convert_columns(std::slice::from_ref(values))?;
                let mut index: HashMap<&[u8], u32> = HashMap::with_capacity(values.len());
                for (bin, row) in keys.iter().enumerate() {
                    if values.is_valid(bin) {
                        index.insert(row.data(), u32::try_from(bin).expect("small"));
                    }
                }
                let column = arrow::compute::cast(self.batch.column(column), values.data_type())?;
                let rows = converter.convert_columns(std::slice::from_ref(&column))?;
                Ok(rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        if column.is_null(i) {
                            missing
                        } else {
                            index.get(r.data()).copied().unwrap_or(missing)
                        }
                    })
                    .collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn bounds_bucket_is_the_count_of_powers_at_or_below(x in prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL) {
            // What an engine computes: Σ [|x| ≥ 2^e] over the exponents above the smallest.
            let k = (BOUNDS_MIN_EXP + 1..=BOUNDS_MAX_EXP).filter(|&e| x.abs() >= 2f64.powi(e)).count();
            let side = bounds_side();
            prop_assert_eq!(bounds_bucket(x), if x > 0.0 { side + 1 + k } else { side - 1 - k });
        }

        #[test]
        fn bounds_bucket_at_powers_of_two(e in BOUNDS_MIN_EXP - 5..BOUNDS_MAX_EXP + 5, below in any::<bool>()) {
            let p = 2f64.powi(e);
            let x = if below { p * (1.0 - f64::EPSILON) } else { p };
            let k = (BOUNDS_MIN_EXP + 1..=BOUNDS_MAX_EXP).filter(|&e| x >= 2f64.powi(e)).count();
            prop_assert_eq!(bounds_bucket(x), bounds_side() + 1 + k);
        }

        #[test]
        fn numeric_bins_count_the_edges_at_or_below(x in -1e6f64..1e6, zero in any::<bool>()) {
            let edges = [-1000.0, -10.0, 0.0, 5.0, 5000.0];
            let bin = Binning::numeric_bin(&edges, zero, Some(x));
            if zero && x == 0.0 {
                prop_assert_eq!(bin, 1);
            } else {
                let first = 1 + u32::from(zero);
                let below = edges[1..4].iter().filter(|&&e| e <= x).count() as u32;
                prop_assert_eq!(bin, first + below);
            }
        }
    }

    #[test]
    fn powers_of_two_open_their_bucket() {
        let side = bounds_side();
        assert_eq!(bounds_bucket(0.0), side);
        assert_eq!(bounds_bucket(1.0), side + 1 + 20);
        assert_eq!(bounds_bucket(1.999_999), side + 1 + 20);
        assert_eq!(bounds_bucket(2.0), side + 1 + 21);
        assert_eq!(bounds_bucket(-2.0), side - 1 - 21);
        assert_eq!(bounds_bucket(1e-30), side + 1);
        assert_eq!(bounds_bucket(1e30), bounds_buckets() - 1);
    }

    #[test]
    fn value_counts_are_sorted_with_null_first() {
        let values: ArrayRef = std::sync::Arc::new(arrow::array::StringArray::from(vec![Some("b"), None, Some("a")]));
        let v = ValueCounts::canonical(&values, &[3, 1, 2]).unwrap();
        assert_eq!(v.counts, vec![1, 2, 3]);
        assert_eq!(v.null_index(), Some(0));
    }
}
