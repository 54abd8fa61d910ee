//! `{{id}}`: RangeCoverage — how much of each numeric column's real range the
//! synthetic values cover (SDMetrics' definition), and their mean. Replace the
//! statistic with your own; the shape stays the same.
//!
//! ```text
//! cargo test                                            # natively, no WASM
//! doppel plugin build                                   # dist/plugin.toml + .wasm
//! doppel plugin test . --input testdata/sample.csv      # in the real sandbox
//! ```

use doppel_sdk::*;

/// Smallest and largest value of one column in one table.
#[derive(Debug, Clone, Copy)]
struct Range {
    min: f64,
    max: f64,
}

impl Range {
    fn widen(slot: &mut Option<Range>, x: f64) {
        let r = slot.get_or_insert(Range { min: x, max: x });
        r.min = r.min.min(x);
        r.max = r.max.max(x);
    }
}

/// The metric: ranges per column, for the real and the synthetic table.
#[derive(Debug)]
pub struct {{type}} {
    columns: Option<Vec<String>>,
    /// (column, real range, synthetic range), in first-seen order.
    ranges: Vec<(String, Option<Range>, Option<Range>)>,
}

/// 1 − the parts of the real range the synthetic range misses, clipped to [0, 1].
pub fn range_coverage(real: Range, synthetic: Range) -> f64 {
    let width = real.max - real.min;
    if width <= 0.0 {
        return f64::NAN;
    }
    let below = ((synthetic.min - real.min) / width).max(0.0);
    let above = ((real.max - synthetic.max) / width).max(0.0);
    (1.0 - (below + above)).max(0.0)
}

impl Plugin for {{type}} {
    fn info() -> PluginInfo {
        PluginInfo::new("{{id}}", env!("CARGO_PKG_VERSION"), StageKind::Metric)
            .summary("RangeCoverage: how much of each numeric column's real range the synthetic table covers.")
            .reads(&[ColumnType::Integer, ColumnType::Float, ColumnType::Temporal])
            .tables(&[TableRole::Real, TableRole::Synthetic])
            .field(ConfigField::strings("columns", "Only these columns (default: every numeric one)."))
    }
}

impl Metric for {{type}} {
    fn create(config: &Config) -> Result<Self, StageError> {
        Ok({{type}} {
            columns: config.strings("columns")?.map(<[String]>::to_vec),
            ranges: Vec::new(),
        })
    }

    fn update(&mut self, role: TableRole, batch: &RecordBatch) -> Result<(), StageError> {
        let schema = batch.schema();
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            if self.columns.as_ref().is_some_and(|c| !c.contains(field.name())) {
                continue;
            }
            // `values::numbers` reads any numeric or temporal Arrow type as f64.
            let Some(numbers) = values::numbers(column.as_ref()) else { continue };
            let index = match self.ranges.iter().position(|r| &r.0 == field.name()) {
                Some(i) => i,
                None => {
                    self.ranges.push((field.name().clone(), None, None));
                    self.ranges.len() - 1
                }
            };
            let slot = match role {
                TableRole::Real => &mut self.ranges[index].1,
                TableRole::Synthetic => &mut self.ranges[index].2,
                TableRole::Holdout => continue,
            };
            for x in numbers.into_iter().flatten().filter(|x| x.is_finite()) {
                Range::widen(slot, x);
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<MetricValue>, StageError> {
        let mut out = Vec::new();
        let mut scores = Vec::new();
        for (column, real, synthetic) in &self.ranges {
            let value = match (real, synthetic) {
                (Some(r), Some(s)) => range_coverage(*r, *s),
                _ => f64::NAN,
            };
            let mut m = MetricValue::new("RangeCoverage", &[column.as_str()], value);
            if value.is_nan() {
                m = m.note("constant or empty column");
            } else {
                scores.push(value);
            }
            out.push(m);
        }
        #[allow(clippy::cast_precision_loss, reason = "a count of columns")]
        let mean = if scores.is_empty() { f64::NAN } else { scores.iter().sum::<f64>() / scores.len() as f64 };
        // The whole-table score first: reports and rules look for it by name.
        out.insert(0, MetricValue::new("RangeCoverage", &[], mean).extra("columns", scores.len() as f64));
        Ok(out)
    }
}

export_metric!({{type}});

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use doppel_sdk::arrow_array::{ArrayRef, Float64Array};

    use super::*;

    fn batch(values: Vec<f64>) -> RecordBatch {
        RecordBatch::try_from_iter([("x", Arc::new(Float64Array::from(values)) as ArrayRef)]).unwrap()
    }

    #[test]
    fn coverage_follows_sdmetrics() {
        let r = Range { min: 0.0, max: 10.0 };
        assert_eq!(range_coverage(r, Range { min: 0.0, max: 10.0 }), 1.0);
        assert_eq!(range_coverage(r, Range { min: -5.0, max: 20.0 }), 1.0, "wider is fully covered");
        assert!((range_coverage(r, Range { min: 2.0, max: 9.0 }) - 0.7).abs() < 1e-12);
        assert_eq!(range_coverage(r, Range { min: 11.0, max: 12.0 }), 0.0);
        assert!(range_coverage(Range { min: 1.0, max: 1.0 }, r).is_nan());
    }

    #[test]
    fn one_score_per_column_and_their_mean() {
        let mut m = {{type}}::create(&Config::new()).unwrap();
        m.update(TableRole::Real, &batch(vec![0.0, 5.0, 10.0])).unwrap();
        m.update(TableRole::Synthetic, &batch(vec![2.0, 9.0])).unwrap();
        let out = m.finish().unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].columns.is_empty() && (out[0].value - 0.7).abs() < 1e-12);
        assert_eq!(out[1].columns, ["x"]);
    }
}
