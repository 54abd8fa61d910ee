//! The counting rules of [`doppel_generators::counts`] as DataFusion
//! expressions.
//!
//! Only comparisons, `CASE`, casts, `abs` and `isnan`: no logarithm or
//! division whose rounding could differ from the Rust rule, so a row lands
//! in the same cell on every engine. Arrow compares floats in total order
//! (−0.0 < +0.0, NaN above +∞) where Rust follows IEEE; the expressions
//! are written so that both orders give the same answer: NaN and infinities
//! are tested first, zero is the closed range [−0.0, +0.0], and a zero edge
//! is compared as −0.0.

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::DataType;
use datafusion::functions::math::expr_fn::{abs, isnan};
use std::ops::Not;

use datafusion::logical_expr::{Expr, case, cast, lit, when};
use datafusion::scalar::ScalarValue;
use doppel_generators::counts::{BOUNDS_MAX_EXP, BOUNDS_MIN_EXP, bounds_buckets};

/// `count(*)`.
pub(crate) fn count_rows() -> Expr {
    datafusion::functions_aggregate::count::count_all()
}

/// A column read as `f64` the way the generators read it (dates as days,
/// timestamps in their unit).
pub(crate) fn as_f64(column: Expr, data_type: &DataType) -> Expr {
    match data_type {
        DataType::Date32 => cast(cast(column, DataType::Int32), DataType::Float64),
        DataType::Date64 | DataType::Timestamp(_, _) => cast(cast(column, DataType::Int64), DataType::Float64),
        _ => cast(column, DataType::Float64),
    }
}

/// A literal to compare `x ≥ e` with: a zero edge as −0.0, so that both
/// zeros of `x` are at or above it in Arrow's total order as in IEEE.
fn edge(e: f64) -> Expr {
    lit(if e == 0.0 { -0.0 } else { e })
}

/// `x` is exactly zero (either sign).
fn is_zero(x: &Expr) -> Expr {
    x.clone().gt_eq(lit(-0.0)).and(x.clone().lt_eq(lit(0.0)))
}

/// Not null, not NaN, not infinite.
fn finite(x: Expr) -> Expr {
    x.clone()
        .is_not_null()
        .and(isnan(x.clone()).not())
        .and(x.clone().lt(lit(f64::INFINITY)))
        .and(x.gt(lit(f64::NEG_INFINITY)))
}

/// The bounds-histogram cell of `x`, or −1 when it is null, NaN or
/// infinite (not counted).
pub(crate) fn bounds_bucket_or_minus_one(x: Expr) -> Expr {
    when(finite(x.clone()), bounds_bucket(x))
        .otherwise(lit(-1i64))
        .expect("a CASE with branches")
}

/// The bounds-histogram cell of a finite `x`
/// ([`doppel_generators::counts::bounds_bucket`]).
fn bounds_bucket(x: Expr) -> Expr {
    let side = i64::try_from((bounds_buckets() - 1) / 2).expect("small");
    // k = how many of 2^(MIN+1) … 2^MAX are ≤ |x|: a flat CASE from the top.
    let a = abs(x.clone());
    let mut k = when(
        a.clone().gt_eq(lit(2f64.powi(BOUNDS_MAX_EXP))),
        lit(i64::from(BOUNDS_MAX_EXP - BOUNDS_MIN_EXP)),
    );
    for e in (BOUNDS_MIN_EXP + 1..BOUNDS_MAX_EXP).rev() {
        k = k.when(a.clone().gt_eq(lit(2f64.powi(e))), lit(i64::from(e - BOUNDS_MIN_EXP)));
    }
    let k = k.otherwise(lit(0i64)).expect("a CASE with branches");
    when(is_zero(&x), lit(side))
        .when(x.gt(lit(0.0)), lit(side + 1) + k.clone())
        .otherwise(lit(side - 1) - k)
        .expect("a CASE with branches")
}

/// The bin of `x` under [`doppel_generators::counts::Binning::Numeric`].
pub(crate) fn numeric_bin(x: Expr, edges: &[f64], zero_bin: bool) -> Expr {
    let mut b = when(x.clone().is_null(), lit(0i64))
        .when(isnan(x.clone()), lit(0i64))
        .when(x.clone().gt_eq(lit(f64::INFINITY)), lit(0i64))
        .when(x.clone().lt_eq(lit(f64::NEG_INFINITY)), lit(0i64));
    if zero_bin {
        b = b.when(is_zero(&x), lit(1i64));
    }
    let first = 1 + i64::from(zero_bin);
    let inner = &edges[1..edges.len().saturating_sub(1).max(1)];
    for (k, &e) in inner.iter().enumerate().rev() {
        let bin = first + i64::try_from(k + 1).expect("few bins");
        b = b.when(x.clone().gt_eq(edge(e)), lit(bin));
    }
    b.otherwise(lit(first)).expect("a CASE with branches")
}

/// The bin of a value under [`doppel_generators::counts::Binning::Values`]:
/// its position among `values`, or `values.len()` for anything else.
pub(crate) fn value_bin(column: Expr, values: &ArrayRef) -> datafusion::error::Result<Expr> {
    let missing = lit(i64::try_from(values.len()).expect("few values"));
    let mut released = (0..values.len()).filter(|&i| values.is_valid(i));
    let Some(first) = released.next() else {
        return Ok(missing);
    };
    let at = |i: usize| -> datafusion::error::Result<Expr> { Ok(lit(ScalarValue::try_from_array(values, i)?)) };
    let mut b = case(column).when(at(first)?, lit(i64::try_from(first).expect("few values")));
    for i in released {
        b = b.when(at(i)?, lit(i64::try_from(i).expect("few values")));
    }
    b.otherwise(missing)
}
