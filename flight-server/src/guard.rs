//! SQL functions whose output can be far larger than their input, bounded.
//!
//! DataFusion's memory pool tracks what operators hold (sorts, joins, hash
//! tables, aggregates), not what a scalar function allocates for its result:
//! `repeat('x', 2000000000)` or `replace(col, '', <a long literal>)` asks the
//! allocator for gigabytes in one call, and a failed allocation aborts the
//! process. Each such function is registered here behind [`Guarded`], which
//! computes the largest result a call could produce from its arguments —
//! before calling the real function — and refuses the call when one value or
//! one batch would exceed the limits. Everything else about the function
//! (name, aliases, signature, coercion, return type) is the original's.

use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// How a function's largest output is bounded from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bound {
    /// `repeat(s, n)`: |s| × n bytes.
    Repeat,
    /// `lpad(s, n[, fill])` / `rpad`: n characters (≤ 4 bytes each).
    Pad,
    /// `replace(s, from, to)`, `regexp_replace(s, pattern, to[, flags])`:
    /// every position of s may be replaced by `to` (an empty pattern
    /// matches between every character; `$0` repeats the match).
    Replace,
    /// `array_repeat(v, n)`: n elements.
    ArrayRepeat,
    /// `array_resize(a, n[, v])`: n elements.
    ArrayResize,
    /// `range(start, stop[, step])` / `generate_series` as an array function:
    /// (stop − start) / step elements.
    Range,
}

/// The functions guarded, with their bounds.
const GUARDED: &[(&str, Bound)] = &[
    ("repeat", Bound::Repeat),
    ("lpad", Bound::Pad),
    ("rpad", Bound::Pad),
    ("replace", Bound::Replace),
    ("regexp_replace", Bound::Replace),
    ("array_repeat", Bound::ArrayRepeat),
    ("array_resize", Bound::ArrayResize),
    ("range", Bound::Range),
    ("generate_series", Bound::Range),
];

/// The largest single value a guarded function may produce.
pub const MAX_VALUE_BYTES: u64 = 16 * 1024 * 1024;

/// Replace every guarded function of `ctx` by its guarded version; one
/// batch of results may hold at most `batch_bytes`.
pub fn install(ctx: &SessionContext, batch_bytes: u64) {
    for (name, bound) in GUARDED {
        if let Some(inner) = ctx.state().scalar_functions().get(*name).cloned() {
            let guarded = Guarded {
                inner: (*inner).clone(),
                bound: *bound,
                batch_bytes,
            };
            ctx.register_udf(ScalarUDF::new_from_impl(guarded));
        }
    }
}

/// A function behind an output-size check.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Guarded {
    inner: ScalarUDF,
    bound: Bound,
    batch_bytes: u64,
}

/// The longest string (or binary) value of an argument, in bytes.
fn longest(v: &ColumnarValue) -> u64 {
    match v {
        ColumnarValue::Scalar(s) => match s {
            ScalarValue::Utf8(Some(t)) | ScalarValue::LargeUtf8(Some(t)) | ScalarValue::Utf8View(Some(t)) => {
                t.len() as u64
            }
            ScalarValue::Binary(Some(b)) | ScalarValue::LargeBinary(Some(b)) | ScalarValue::BinaryView(Some(b)) => {
                b.len() as u64
            }
            other => other.size() as u64,
        },
        ColumnarValue::Array(a) => match a.data_type() {
            DataType::Utf8 => a.as_string::<i32>().iter().flatten().map(str::len).max().unwrap_or(0) as u64,
            DataType::LargeUtf8 => a.as_string::<i64>().iter().flatten().map(str::len).max().unwrap_or(0) as u64,
            DataType::Utf8View => a.as_string_view().iter().flatten().map(str::len).max().unwrap_or(0) as u64,
            // Anything else: no more than its whole buffer per value.
            _ => a.get_array_memory_size() as u64,
        },
    }
}

/// The largest absolute integer an argument holds (0 when it is not one).
fn largest_int(v: &ColumnarValue) -> u64 {
    let array = match v {
        ColumnarValue::Scalar(s) => match s.to_array() {
            Ok(a) => a,
            Err(_) => return 0,
        },
        ColumnarValue::Array(a) => Arc::clone(a),
    };
    if !array.data_type().is_integer() {
        return 0;
    }
    match arrow::compute::cast(&array, &DataType::Int64) {
        Ok(a) => a
            .as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .map(i64::unsigned_abs)
            .max()
            .unwrap_or(0),
        Err(_) => u64::MAX,
    }
}

/// The smallest absolute non-zero step of a `range` call (1 when absent).
fn smallest_step(v: Option<&ColumnarValue>) -> u64 {
    let Some(v) = v else { return 1 };
    let array = match v {
        ColumnarValue::Scalar(s) => match s.to_array() {
            Ok(a) => a,
            Err(_) => return 1,
        },
        ColumnarValue::Array(a) => Arc::clone(a),
    };
    match arrow::compute::cast(&array, &DataType::Int64) {
        Ok(a) if array.data_type().is_integer() => a
            .as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .map(i64::unsigned_abs)
            .filter(|s| *s > 0)
            .min()
            .unwrap_or(1),
        // Date and timestamp ranges step by intervals: bounded by the span
        // in the smallest unit, checked as integers where they are.
        _ => 1,
    }
}

impl Guarded {
    /// The largest value one call could produce, in bytes.
    fn per_value(&self, args: &[ColumnarValue]) -> u64 {
        let arg = |i: usize| args.get(i);
        match self.bound {
            Bound::Repeat => arg(0)
                .map(longest)
                .unwrap_or(0)
                .saturating_mul(arg(1).map(largest_int).unwrap_or(0)),
            Bound::Pad => arg(1).map(largest_int).unwrap_or(0).saturating_mul(4),
            Bound::Replace => {
                let s = arg(0).map(longest).unwrap_or(0);
                let to = arg(2).map(longest).unwrap_or(0);
                s.saturating_add(1).saturating_mul(to.saturating_add(1))
            }
            Bound::ArrayRepeat => arg(1)
                .map(largest_int)
                .unwrap_or(0)
                .saturating_mul(arg(0).map(longest).unwrap_or(0).saturating_add(16)),
            Bound::ArrayResize => arg(1).map(largest_int).unwrap_or(0).saturating_mul(16),
            Bound::Range => {
                // One argument is `range(stop)`; else (start, stop[, step]).
                let (start, stop, step) = match args.len() {
                    1 => (0, arg(0).map(largest_int).unwrap_or(0), 1),
                    _ => (
                        arg(0).map(largest_int).unwrap_or(0),
                        arg(1).map(largest_int).unwrap_or(0),
                        smallest_step(arg(2)),
                    ),
                };
                (start.saturating_add(stop) / step).saturating_mul(8)
            }
        }
    }
}

impl ScalarUDFImpl for Guarded {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs<'_>) -> Result<arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let per_value = self.per_value(&args.args);
        let rows = if args.args.iter().any(|a| matches!(a, ColumnarValue::Array(_))) {
            args.number_rows.max(1) as u64
        } else {
            1
        };
        if per_value > MAX_VALUE_BYTES || per_value.saturating_mul(rows) > self.batch_bytes {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}() could produce {} MiB per value here; at most {} MiB per value and {} MiB per batch \
                 (limits.sql_memory_mb) are allowed",
                self.inner.name(),
                per_value >> 20,
                MAX_VALUE_BYTES >> 20,
                self.batch_bytes >> 20
            )));
        }
        self.inner.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(ctx: &SessionContext, sql: &str) -> Result<usize> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(batches.iter().map(|b| b.num_rows()).sum())
    }

    #[tokio::test]
    async fn amplifying_calls_are_refused_and_small_ones_run() {
        let ctx = SessionContext::new();
        install(&ctx, 64 << 20);
        for sql in [
            "SELECT repeat('x', 2000000000)",
            "SELECT lpad('x', 2000000000)",
            "SELECT replace(repeat('ab', 5000), '', repeat('y', 5000))",
            "SELECT array_repeat(1, 100000000)",
            "SELECT range(1, 10000000000)",
            "SELECT generate_series(1, 10000000000)",
            "SELECT array_resize(make_array(1), 100000000)",
            "SELECT regexp_replace(repeat('ab', 5000), '', repeat('y', 5000), 'g')",
        ] {
            let e = run(&ctx, sql).await.unwrap_err().to_string();
            assert!(e.contains("limits.sql_memory_mb"), "{sql}: {e}");
        }
        for sql in [
            "SELECT repeat('ab', 3), lpad('7', 3, '0'), replace('a-b', '-', '+')",
            "SELECT range(1, 10), array_repeat('x', 3), regexp_replace('aXb', 'X', 'y')",
        ] {
            assert_eq!(run(&ctx, sql).await.unwrap(), 1, "{sql}");
        }
    }
}
