//! `builtin:profile`: what each column holds — Arrow type, semantic type, nulls,
//! distinct values, range, quantiles, most frequent values.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use arrow::row::{RowConverter, SortField};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::Serialize;

use crate::Result;
use crate::config::{ConfigField, ConfigValue, Settings, ValueType, field, get};
use crate::table::Table;

/// The `with` schema of `builtin:profile`.
pub fn schema() -> Vec<ConfigField> {
    let mut top = field("top", ValueType::Integer, "Most frequent values listed per column.");
    top.default = Some(ConfigValue::Integer(10));
    top.minimum = Some(0.0);
    top.maximum = Some(1000.0);
    vec![top]
}

/// Numeric quantiles (linear interpolation, as numpy's default).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Quantiles {
    /// 1st percentile.
    pub p01: f64,
    /// 5th percentile.
    pub p05: f64,
    /// First quartile.
    pub p25: f64,
    /// Median.
    pub p50: f64,
    /// Third quartile.
    pub p75: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// Counts of a numeric column's values in equal-width bins between its
/// smallest and largest value (dates and timestamps as numbers).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Histogram {
    /// Lower edge of the first bin.
    pub lo: f64,
    /// Upper edge of the last bin.
    pub hi: f64,
    /// Values per bin.
    pub counts: Vec<u64>,
}

/// Bins of a [`Histogram`].
pub const HISTOGRAM_BINS: usize = 20;

fn histogram(sorted: &[f64]) -> Option<Histogram> {
    let (lo, hi) = (*sorted.first()?, *sorted.last()?);
    let mut counts = vec![0u64; HISTOGRAM_BINS];
    for x in sorted {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "clamped to the bins"
        )]
        let b = if hi > lo {
            (((x - lo) / (hi - lo)) * HISTOGRAM_BINS as f64) as usize
        } else {
            0
        };
        counts[b.min(HISTOGRAM_BINS - 1)] += 1;
    }
    Some(Histogram { lo, hi, counts })
}

/// A frequent value.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TopValue {
    /// The value as text (`null` for missing).
    pub value: String,
    /// Rows holding it.
    pub count: u64,
    /// Share of rows.
    pub share: f64,
}

/// One column's profile.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ColumnProfile {
    /// Name.
    pub name: String,
    /// Arrow type.
    pub data_type: String,
    /// Semantic type guess.
    pub semantic_type: String,
    /// Missing cells.
    pub nulls: u64,
    /// Share of missing cells.
    pub null_share: f64,
    /// Distinct values (null not counted).
    pub distinct: u64,
    /// Smallest value, as text.
    pub min: Option<String>,
    /// Largest value, as text.
    pub max: Option<String>,
    /// Mean (numeric columns).
    pub mean: Option<f64>,
    /// Standard deviation (numeric columns, population).
    pub std: Option<f64>,
    /// Quantiles (numeric columns).
    pub quantiles: Option<Quantiles>,
    /// The shape of the values (numeric, date and time columns).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Histogram>,
    /// Mean length in characters (text columns).
    pub mean_length: Option<f64>,
    /// Most frequent values.
    pub top: Vec<TopValue>,
}

/// A table's profile.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TableProfile {
    /// Rows.
    pub rows: u64,
    /// One entry per column, in order.
    pub columns: Vec<ColumnProfile>,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let pos = q * (sorted.len() - 1) as f64;
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "pos is within the slice"
    )]
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - pos.floor())
}

fn format_value(array: &dyn Array, i: usize) -> String {
    if array.is_null(i) {
        return "null".to_owned();
    }
    ArrayFormatter::try_new(array, &FormatOptions::default())
        .map(|f| f.value(i).to_string())
        .unwrap_or_default()
}

fn numeric(column: &ArrayRef) -> Option<Vec<f64>> {
    let dt = column.data_type();
    let as_number = match dt {
        DataType::Date32 => arrow::compute::cast(column, &DataType::Int32).ok()?,
        DataType::Date64 | DataType::Timestamp(_, _) => arrow::compute::cast(column, &DataType::Int64).ok()?,
        d if d.is_numeric() => ArrayRef::clone(column),
        _ => return None,
    };
    let floats = arrow::compute::cast(&as_number, &DataType::Float64).ok()?;
    Some(
        floats
            .as_primitive::<Float64Type>()
            .iter()
            .flatten()
            .filter(|v| v.is_finite())
            .collect(),
    )
}

/// How much of a profile to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// Everything `builtin:profile` reports.
    Full,
    /// What rule plugins are handed as facts (types, nulls, distinct
    /// values, min and max): no sort of the values for quantiles, no
    /// lengths, no top values. At Adult × 1000 the rest was most of the
    /// time each rule stage spent profiling its inputs.
    Facts,
}

fn profile_column(name: &str, semantic: &str, column: &ArrayRef, top_n: usize, depth: Depth) -> Result<ColumnProfile> {
    let rows = column.len();
    let nulls = column.null_count();
    let converter = RowConverter::new(vec![SortField::new(column.data_type().clone())])?;
    let encoded = converter.convert_columns(std::slice::from_ref(column))?;
    // foldhash: several times faster than SipHash on short keys (SipHash
    // was most of this loop's time) and still seeded per process, so a
    // table crafted to collide cannot make the counting quadratic.
    let mut counts: foldhash::HashMap<&[u8], (usize, u64)> = foldhash::HashMap::default();
    for (i, row) in encoded.iter().enumerate() {
        counts.entry(row.data()).or_insert((i, 0)).1 += 1;
    }
    let distinct = counts.len() - usize::from(nulls > 0);
    // The row encoding orders values the way Arrow sorts them, so the
    // smallest and largest encodings are the column's min and max for every
    // type; one pass over the distinct values finds them.
    let present = || counts.iter().filter(|(_, (i, _))| !column.is_null(*i));
    let min = present()
        .min_by_key(|(k, _)| **k)
        .map(|(_, (i, _))| format_value(column.as_ref(), *i));
    let max = present()
        .max_by_key(|(k, _)| **k)
        .map(|(_, (i, _))| format_value(column.as_ref(), *i));
    let mut frequent: Vec<(usize, u64)> = if top_n == 0 {
        Vec::new()
    } else {
        counts.values().copied().collect()
    };
    frequent.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let top = frequent
        .iter()
        .take(top_n)
        .map(|(i, c)| TopValue {
            value: format_value(column.as_ref(), *i),
            count: *c,
            share: *c as f64 / rows.max(1) as f64,
        })
        .collect();
    let numbers = match depth {
        Depth::Full => numeric(column),
        Depth::Facts => None,
    };
    let (mean, std, quantiles, histogram) = match numbers {
        Some(mut v) if !v.is_empty() => {
            v.sort_by(f64::total_cmp);
            #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
            let q = Quantiles {
                p01: quantile(&v, 0.01),
                p05: quantile(&v, 0.05),
                p25: quantile(&v, 0.25),
                p50: quantile(&v, 0.5),
                p75: quantile(&v, 0.75),
                p95: quantile(&v, 0.95),
                p99: quantile(&v, 0.99),
            };
            (Some(mean), Some(std), Some(q), histogram(&v))
        }
        _ => (None, None, None, None),
    };
    let mean_length = match column.data_type() {
        DataType::Utf8 if depth == Depth::Full => {
            let s = column.as_string::<i32>();
            let present = rows - nulls;
            #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
            (present > 0).then(|| s.iter().flatten().map(|v| v.chars().count()).sum::<usize>() as f64 / present as f64)
        }
        _ => None,
    };
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    Ok(ColumnProfile {
        name: name.to_owned(),
        data_type: column.data_type().to_string(),
        semantic_type: semantic.to_owned(),
        nulls: nulls as u64,
        null_share: nulls as f64 / rows.max(1) as f64,
        distinct: distinct as u64,
        min,
        max,
        mean,
        std,
        quantiles,
        histogram,
        mean_length,
        top,
    })
}

/// Profile a table.
pub fn profile(table: &Table, settings: &Settings) -> Result<TableProfile> {
    let top_n = match get(settings, "top") {
        Some(ConfigValue::Integer(n)) => usize::try_from(*n).unwrap_or(10),
        _ => 10,
    };
    profile_to(table, top_n, Depth::Full)
}

/// The part of a profile rule plugins see as facts: rows, and each column's
/// types, null share, distinct values, min and max (the other fields are
/// empty). The same numbers [`profile`] gives for those fields.
pub fn facts(table: &Table) -> Result<TableProfile> {
    profile_to(table, 0, Depth::Facts)
}

fn profile_to(table: &Table, top_n: usize, depth: Depth) -> Result<TableProfile> {
    let all: RecordBatch = table.concat()?;
    let mut columns = Vec::with_capacity(all.num_columns());
    for ((f, c), s) in table
        .schema
        .fields()
        .iter()
        .zip(all.columns())
        .zip(table.semantics.iter())
    {
        columns.push(profile_column(f.name(), s.as_str(), c, top_n, depth)?);
    }
    Ok(TableProfile {
        rows: all.num_rows() as u64,
        columns,
    })
}

/// `builtin:profile`.
#[derive(Debug, Clone, Copy)]
pub struct Profile;

impl super::Builtin for Profile {
    fn name(&self) -> &str {
        "profile"
    }

    fn summary(&self) -> &str {
        "Per-column types, nulls, distinct values, ranges, quantiles, top values."
    }

    fn kind(&self) -> super::Kind {
        super::Kind::Profile
    }

    fn schema(&self) -> Vec<ConfigField> {
        schema()
    }

    fn run(&self, ctx: &crate::stage::StageContext) -> Result<crate::model::Output> {
        let table = ctx.table(0)?;
        profile(&table, ctx.settings()).map(|p| crate::model::Output::Profile(std::sync::Arc::new(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Date32Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn profiles_numbers_text_and_dates() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("d", DataType::Date32, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), Some(2), Some(3), None, Some(3)])),
                Arc::new(StringArray::from(vec![
                    Some("b"),
                    Some("a"),
                    Some("b"),
                    Some("b"),
                    None,
                ])),
                Arc::new(Date32Array::from(vec![Some(0), Some(365), None, Some(1), Some(2)])),
            ],
        )
        .unwrap();
        let t = Table::infer(schema, vec![batch]).unwrap();
        let p = profile(&t, &vec![]).unwrap();
        let n = &p.columns[0];
        assert_eq!((n.nulls, n.distinct), (1, 3));
        assert_eq!(n.min.as_deref(), Some("1"));
        assert_eq!(n.max.as_deref(), Some("3"));
        assert_eq!(n.quantiles.as_ref().unwrap().p50, 2.5);
        let s = &p.columns[1];
        assert_eq!(s.top[0].value, "b");
        assert_eq!(s.top[0].count, 3);
        assert_eq!(s.min.as_deref(), Some("a"));
        let d = &p.columns[2];
        assert_eq!(d.semantic_type, "datetime");
        assert_eq!(d.min.as_deref(), Some("1970-01-01"));
        assert_eq!(d.max.as_deref(), Some("1971-01-01"));
    }

    #[test]
    fn facts_are_the_profiles_fields_rules_read() {
        use arrow::array::Float64Array;
        // Signed zeros, NaN and infinities, repeated and null values, text
        // whose byte order is not its length order, dates before 1970.
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("born", DataType::Date32, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let xs = [
            Some(-0.0),
            Some(0.0),
            None,
            Some(f64::NAN),
            Some(f64::NEG_INFINITY),
            Some(2.5),
            Some(2.5),
        ];
        let names = [
            Some("zoë"),
            Some("Zoe"),
            Some(""),
            None,
            Some("zo"),
            Some("Zoe"),
            Some("a b"),
        ];
        let born = [Some(-4000), None, Some(12), Some(-4000), Some(20_000), None, Some(0)];
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Float64Array::from(xs.to_vec())),
                Arc::new(StringArray::from(names.to_vec())),
                Arc::new(Date32Array::from(born.to_vec())),
                Arc::new(Int64Array::from(vec![5, -3, 5, 7, 7, 7, -3])),
            ],
        )
        .unwrap();
        let t = Table::infer(schema, vec![batch]).unwrap();
        let full = profile(&t, &vec![]).unwrap();
        let facts = facts(&t).unwrap();
        assert_eq!(facts.rows, full.rows);
        for (f, p) in facts.columns.iter().zip(&full.columns) {
            let read = |c: &ColumnProfile| {
                (
                    c.name.clone(),
                    c.data_type.clone(),
                    c.semantic_type.clone(),
                    c.nulls,
                    c.null_share,
                    c.distinct,
                    c.min.clone(),
                    c.max.clone(),
                )
            };
            assert_eq!(read(f), read(p));
            assert!(f.quantiles.is_none() && f.top.is_empty() && f.mean_length.is_none());
        }
        let x = &full.columns[0];
        // -0.0 and 0.0 are two values in Arrow's order; NaN sorts last.
        assert_eq!((x.nulls, x.distinct), (1, 5));
        assert_eq!(x.min.as_deref(), Some("-inf"));
        assert_eq!(x.max.as_deref(), Some("NaN"));
        let name = &full.columns[1];
        assert_eq!(
            (name.distinct, name.min.as_deref(), name.max.as_deref()),
            (5, Some(""), Some("zoë"))
        );
        let n = &full.columns[3];
        assert_eq!(
            (n.distinct, n.min.as_deref(), n.max.as_deref()),
            (3, Some("-3"), Some("7"))
        );
        assert_eq!(n.top[0].value, "7");
    }
}
