//! `doppel/quality`: how faithful a synthetic table is to the real one, as
//! SDMetrics' `QualityReport` scores it, computed inside the WASM sandbox.
//!
//! - **Column Shapes**: the mean over columns of KSComplement (numerical and
//!   datetime columns) or TVComplement (categorical and boolean columns).
//! - **Column Pair Trends**: the mean over column pairs of
//!   CorrelationSimilarity (two continuous columns), ContingencySimilarity (two
//!   discrete columns, or a continuous column cut into 10 bins against a
//!   discrete one). In `current` mode (SDMetrics ≥ 0.27) only pairs whose real
//!   data shows a trend count: |ρ| > 0.5, Cramér's V > 0.3. `legacy` mode
//!   averages every pair (SDMetrics ≤ 0.26).
//! - **Quality Score**: the mean of the two.
//!
//! Column roles come from the `doppel.semantic-type` field metadata the host
//! attaches; id and free-text columns are skipped, as SDMetrics skips them.
//! Unlike SDMetrics, contingency tables use every row (no random 50,000-row
//! subsample), so the score is deterministic.

pub mod metrics;

use std::collections::HashMap;

use doppel_sdk::*;
use metrics::{NULL_CODE, PairScore};

/// How a column is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Continuous,
    Discrete,
}

#[derive(Debug, Default)]
struct Column {
    real_numbers: Vec<f64>,
    synthetic_numbers: Vec<f64>,
    real_codes: Vec<u32>,
    synthetic_codes: Vec<u32>,
}

/// The plugin: accumulates both tables, scores in `finish`.
#[derive(Debug)]
pub struct Quality {
    correlation_threshold: f64,
    association_threshold: f64,
    /// Column names with their shape, in the real table's order.
    columns: Vec<(String, Shape)>,
    data: HashMap<String, Column>,
    /// Category dictionary shared by both tables, so codes compare.
    dictionary: HashMap<String, u32>,
}

fn shape_of(field: &Field) -> Option<Shape> {
    match semantic_type(field) {
        Some("numerical" | "datetime") => Some(Shape::Continuous),
        Some("categorical" | "boolean") => Some(Shape::Discrete),
        // ids, free text and unknown roles are not compared (as in SDMetrics).
        Some(_) => None,
        None => {
            let dt = field.data_type();
            if dt.is_numeric() || dt.is_temporal() {
                Some(Shape::Continuous)
            } else {
                Some(Shape::Discrete)
            }
        }
    }
}

impl Plugin for Quality {
    fn info() -> PluginInfo {
        PluginInfo::new("doppel/quality", "0.1.0", StageKind::Metric)
            .summary("SDMetrics-compatible quality report: Column Shapes, Column Pair Trends, overall score.")
            .tables(&[TableRole::Real, TableRole::Synthetic])
            .field(
                ConfigField::string(
                    "mode",
                    "`current`: only pairs with a real trend count (SDMetrics ≥ 0.27); `legacy`: every pair.",
                )
                .allowed(&["current", "legacy"])
                .default(ConfigValue::String("current".into())),
            )
            .field(
                ConfigField::float(
                    "correlation_threshold",
                    "Override: |ρ_real| a continuous pair must exceed to count.",
                )
                .range(Some(0.0), Some(1.0)),
            )
            .field(
                ConfigField::float(
                    "association_threshold",
                    "Override: Cramér's V a discrete pair must exceed to count.",
                )
                .range(Some(0.0), Some(1.0)),
            )
    }

    fn check(_config: &Config, schemas: &[SchemaRef]) -> Result<(), StageError> {
        let [real, synthetic] = schemas else {
            return Err(StageError::InvalidInput(format!(
                "expected two tables (real, synthetic), got {}",
                schemas.len()
            )));
        };
        for field in real.fields() {
            if synthetic.field_with_name(field.name()).is_err() {
                return Err(StageError::UnsupportedSchema(format!(
                    "the synthetic table has no column `{}`",
                    field.name()
                )));
            }
        }
        Ok(())
    }
}

impl Quality {
    fn code(&mut self, value: Option<std::borrow::Cow<'_, str>>) -> u32 {
        match value {
            None => NULL_CODE,
            Some(v) => {
                let next = u32::try_from(self.dictionary.len()).unwrap_or(NULL_CODE - 1);
                *self.dictionary.entry(v.into_owned()).or_insert(next)
            }
        }
    }
}

impl Metric for Quality {
    fn create(config: &Config) -> Result<Self, StageError> {
        let legacy = config.string("mode")? == Some("legacy");
        let (c, a) = if legacy { (0.0, 0.0) } else { (0.5, 0.3) };
        Ok(Quality {
            correlation_threshold: config.float("correlation_threshold")?.unwrap_or(c),
            association_threshold: config.float("association_threshold")?.unwrap_or(a),
            columns: Vec::new(),
            data: HashMap::new(),
            dictionary: HashMap::new(),
        })
    }

    fn update(&mut self, role: TableRole, batch: &RecordBatch) -> Result<(), StageError> {
        let schema = batch.schema();
        if role == TableRole::Real && self.columns.is_empty() {
            self.columns = schema
                .fields()
                .iter()
                .filter_map(|f| shape_of(f).map(|s| (f.name().clone(), s)))
                .collect();
        }
        let real = match role {
            TableRole::Real => true,
            TableRole::Synthetic => false,
            TableRole::Holdout => return Ok(()),
        };
        for (name, shape) in self.columns.clone() {
            let Ok(index) = schema.index_of(&name) else {
                return Err(StageError::InvalidInput(format!("a batch has no column `{name}`")));
            };
            let array = batch.column(index);
            match shape {
                Shape::Continuous => {
                    let Some(values) = values::numbers(array.as_ref()) else {
                        return Err(StageError::UnsupportedSchema(format!(
                            "column `{name}` is {} but marked numerical",
                            array.data_type()
                        )));
                    };
                    let col = self.data.entry(name).or_default();
                    let target = if real {
                        &mut col.real_numbers
                    } else {
                        &mut col.synthetic_numbers
                    };
                    target.extend(values.into_iter().map(|v| v.unwrap_or(f64::NAN)));
                }
                Shape::Discrete => {
                    let codes: Vec<u32> = (0..array.len())
                        .map(|i| self.code(values::text(array.as_ref(), i)))
                        .collect();
                    let col = self.data.entry(name).or_default();
                    let target = if real {
                        &mut col.real_codes
                    } else {
                        &mut col.synthetic_codes
                    };
                    target.extend(codes);
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<MetricValue>, StageError> {
        let mut out = Vec::new();
        let mut shape_scores = Vec::new();
        for (name, shape) in &self.columns {
            let col = &self.data[name];
            let (metric, score) = match shape {
                Shape::Continuous => (
                    "KSComplement",
                    metrics::ks_complement(&col.real_numbers, &col.synthetic_numbers),
                ),
                Shape::Discrete => (
                    "TVComplement",
                    metrics::tv_complement(&col.real_codes, &col.synthetic_codes),
                ),
            };
            if !score.is_nan() {
                shape_scores.push(score);
            }
            out.push(MetricValue::new(metric, &[name], score));
        }
        // Binned versions of continuous columns, each table with its own edges.
        let binned: HashMap<&str, (Vec<u32>, Vec<u32>)> = self
            .columns
            .iter()
            .filter(|(_, s)| *s == Shape::Continuous)
            .map(|(n, _)| {
                let col = &self.data[n];
                (
                    n.as_str(),
                    (
                        metrics::discretize(&col.real_numbers),
                        metrics::discretize(&col.synthetic_numbers),
                    ),
                )
            })
            .collect();
        let mut pair_scores = Vec::new();
        for i in 0..self.columns.len() {
            for j in i + 1..self.columns.len() {
                let ((a, sa), (b, sb)) = (&self.columns[i], &self.columns[j]);
                let (ca, cb) = (&self.data[a], &self.data[b]);
                fn discrete<'a>(
                    binned: &'a HashMap<&str, (Vec<u32>, Vec<u32>)>,
                    name: &str,
                    col: &'a Column,
                    shape: Shape,
                ) -> (&'a [u32], &'a [u32]) {
                    match shape {
                        Shape::Discrete => (&col.real_codes, &col.synthetic_codes),
                        Shape::Continuous => {
                            let (r, s) = &binned[name];
                            (r, s)
                        }
                    }
                }
                let (metric, r): (&str, PairScore) = if *sa == Shape::Continuous && *sb == Shape::Continuous {
                    (
                        "CorrelationSimilarity",
                        metrics::correlation_similarity(
                            (&ca.real_numbers, &cb.real_numbers),
                            (&ca.synthetic_numbers, &cb.synthetic_numbers),
                            self.correlation_threshold,
                        ),
                    )
                } else {
                    let (ra, sa_) = discrete(&binned, a, ca, *sa);
                    let (rb, sb_) = discrete(&binned, b, cb, *sb);
                    (
                        "ContingencySimilarity",
                        metrics::contingency_similarity((ra, rb), (sa_, sb_), self.association_threshold),
                    )
                };
                if r.meets_threshold && !r.score.is_nan() {
                    pair_scores.push(r.score);
                }
                let mut v = MetricValue::new(metric, &[a, b], r.score)
                    .extra("meets_threshold", if r.meets_threshold { 1.0 } else { 0.0 });
                if metric == "CorrelationSimilarity" {
                    v = v
                        .extra("real_correlation", r.real_correlation)
                        .extra("synthetic_correlation", r.synthetic_correlation);
                } else {
                    v = v
                        .extra("real_association", r.real_association)
                        .extra("synthetic_association", r.synthetic_association);
                }
                if let Some(note) = r.note {
                    v = v.note(note);
                } else if !r.meets_threshold {
                    v = v.note("no real trend: excluded from Column Pair Trends");
                }
                out.push(v);
            }
        }
        let mean = |xs: &[f64]| {
            #[allow(clippy::cast_precision_loss, reason = "column counts are small")]
            if xs.is_empty() {
                f64::NAN
            } else {
                xs.iter().sum::<f64>() / xs.len() as f64
            }
        };
        let shapes = mean(&shape_scores);
        let trends = mean(&pair_scores);
        let properties: Vec<f64> = [shapes, trends].into_iter().filter(|v| !v.is_nan()).collect();
        let overall = mean(&properties);
        log(
            LogLevel::Debug,
            &format!("{} columns, {} pairs counted", shape_scores.len(), pair_scores.len()),
        );
        let mut head = vec![
            MetricValue::new("Quality Score", &[], overall),
            MetricValue::new("Column Shapes", &[], shapes),
            MetricValue::new("Column Pair Trends", &[], trends)
                .extra("pairs_counted", pair_scores.len() as f64)
                .extra("correlation_threshold", self.correlation_threshold)
                .extra("association_threshold", self.association_threshold),
        ];
        head.append(&mut out);
        Ok(head)
    }
}

export_metric!(Quality);
