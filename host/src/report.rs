//! What a run leaves behind: the output tables (Parquet or CSV) and
//! `report.json` (profile, findings, scores, verdicts, per-stage timings, the
//! exact version and hash of every plugin used).
//!
//! `report.json` is the typed [`Report`] (Serialize + Deserialize, with a
//! [`REPORT_VERSION`]): what servers decide with — the privacy score a
//! listing is gated on, the failed rules — is read through its fields, never
//! by searching the JSON for a key, so renaming a field fails to compile or
//! to parse instead of silently letting a twin through.

use doppel_vocab::entity;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config;
use crate::model::{Output, Provenance, RunResult};
use crate::plan::{Operation, Plan};
use crate::plugin::bindings::types::VerdictStatus;
use crate::table::Table;
use crate::{Error, Result};

/// The version of [`Report`]'s shape; a reader refuses other versions.
pub const REPORT_VERSION: u32 = 1;

/// The name of the privacy score metric (`builtin:privacy`).
pub const PRIVACY_SCORE: &str = "Privacy Score";
/// The name of the overall quality metric (`doppel/quality`).
pub const QUALITY_SCORE: &str = "Quality Score";

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// [`REPORT_VERSION`] when written.
    pub report_version: u32,
    /// The doppel that wrote it.
    pub doppel: Producer,
    /// The pipeline that ran.
    pub pipeline: PipelineRef,
    /// RFC 3339, UTC.
    pub finished_at: String,
    /// Wall time of the run.
    pub elapsed_ms: f64,
    /// The table read (absent for a run that sampled a saved model).
    pub input: Option<InputRef>,
    /// Headline results.
    pub summary: Summary,
    /// Written tables by name.
    pub outputs: BTreeMap<String, OutputRef>,
    /// Per stage: id, uses, kind, settings, time and its result (each kind's
    /// result has its own shape, so it stays JSON).
    pub stages: Vec<Value>,
    /// Documents written beside the tables (`report.pdf`).
    #[serde(default)]
    pub documents: Vec<String>,
    /// The numbers the report's charts show (real-vs-synthetic shares per
    /// column, association matrices), for any page that draws them. Absent
    /// from runs without a report stage, and from reports written before
    /// doppel carried them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charts: Option<crate::model::Charts>,
}

/// Who wrote a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Producer {
    /// doppel's version.
    pub version: String,
}

/// A pipeline by name and file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineRef {
    /// `name` of the pipeline file.
    pub name: String,
    /// The file, as given.
    pub file: String,
}

/// The table a run read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputRef {
    /// The source stage.
    pub stage: String,
    /// Where it came from: the file for `doppel run`, the dataset's label
    /// (never a server path) for a server job.
    pub path: Option<String>,
    /// Rows read.
    pub rows: usize,
    /// Columns read.
    pub columns: usize,
}

/// One written table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputRef {
    /// File name.
    pub path: Option<String>,
    /// Rows written.
    pub rows: usize,
}

/// The headline results of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The privacy score (0–100) of the `builtin:privacy` stage, if any.
    pub privacy_score: Option<f64>,
    /// The overall quality score (0–1) of a metric stage, if any.
    pub quality_score: Option<f64>,
    /// Columns detectors flagged.
    pub pii_columns: Vec<PiiColumn>,
    /// Every table-wide metric, keyed `stage.metric`; `None` where the
    /// metric could not be measured on this table (NaN).
    pub scores: BTreeMap<String, Option<f64>>,
    /// Rules that failed.
    pub failed_rules: Vec<FailedRule>,
}

/// A column a detector flagged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PiiColumn {
    /// Detector stage.
    pub stage: String,
    /// Column.
    pub column: String,
    /// Entity (`EMAIL_ADDRESS`, `PERSON`, …).
    pub entity: String,
    /// 0–1.
    pub confidence: f64,
}

/// A rule that failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedRule {
    /// Rule stage.
    pub stage: String,
    /// Rule id (`HIPAA-SH-C`).
    pub rule: String,
    /// Its title.
    pub title: String,
}

/// Why a `report.json` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadReportError {
    /// Not a report of any version.
    #[error("not a doppel report: {0}")]
    Malformed(String),
    /// A report of another version.
    #[error("report version {found}; this doppel reads version {REPORT_VERSION}")]
    Version {
        /// The version found.
        found: u64,
    },
}

impl Report {
    /// Parse `report.json`, refusing other versions and unknown shapes.
    pub fn from_slice(bytes: &[u8]) -> std::result::Result<Report, ReadReportError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| ReadReportError::Malformed(e.to_string()))?;
        match value.get("report_version").and_then(Value::as_u64) {
            Some(v) if v == u64::from(REPORT_VERSION) => {}
            Some(found) => return Err(ReadReportError::Version { found }),
            None => return Err(ReadReportError::Malformed("no `report_version`".into())),
        }
        serde_json::from_value(value).map_err(|e| ReadReportError::Malformed(e.to_string()))
    }
}

/// Cell-level findings written per detector stage (all are counted).
pub const REPORT_FINDINGS: usize = 1000;

/// File format of output tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TableFormat {
    /// Apache Parquet (snappy).
    #[default]
    Parquet,
    /// CSV with a header line.
    Csv,
}

impl TableFormat {
    fn extension(self) -> &'static str {
        match self {
            TableFormat::Parquet => "parquet",
            TableFormat::Csv => "csv",
        }
    }
}

/// A table written to disk.
#[derive(Debug, Clone)]
pub struct WrittenTable {
    /// Output name.
    pub name: String,
    /// File.
    pub path: PathBuf,
    /// Rows written.
    pub rows: usize,
}

fn write_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Write one table atomically (temporary file, then rename).
pub fn write_table(table: &Table, path: &Path, format: TableFormat) -> Result<()> {
    let tmp = path.with_extension(format!("{}.partial", format.extension()));
    let file = std::fs::File::create(&tmp).map_err(write_err(&tmp))?;
    match format {
        TableFormat::Parquet => {
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::SNAPPY)
                .build();
            let mut writer = parquet::arrow::ArrowWriter::try_new(file, Arc::clone(&table.schema), Some(props))?;
            for b in &table.batches {
                writer.write(b)?;
            }
            writer.close()?;
        }
        TableFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(file);
            for b in &table.batches {
                writer.write(b)?;
            }
        }
    }
    std::fs::rename(&tmp, path).map_err(write_err(path))
}

/// Write every `[outputs]` table into `dir`.
pub fn write_outputs(plan: &Plan, run: &RunResult, dir: &Path, format: TableFormat) -> Result<Vec<WrittenTable>> {
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    let mut written = Vec::new();
    for (name, index) in &plan.outputs {
        let stage = &run.stages[*index];
        let table = stage
            .output
            .table()
            .ok_or_else(|| Error::Internal(format!("output `{name}` is not a table")))?;
        let path = dir.join(format!("{name}.{}", format.extension()));
        write_table(table, &path, format)?;
        written.push(WrittenTable {
            name: name.clone(),
            path,
            rows: table.rows(),
        });
    }
    Ok(written)
}

/// Write every rendered document (reports) into `dir`, atomically.
pub fn write_documents(run: &RunResult, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    let mut written = Vec::new();
    for stage in &run.stages {
        let document = match &stage.output {
            Output::Document(d) => Some(d),
            Output::Table(_, Provenance::Generated(m)) => m.saved_model.as_ref(),
            _ => None,
        };
        if let Some(d) = document {
            let path = dir.join(&d.file_name);
            let tmp = dir.join(format!("{}.partial", d.file_name));
            std::fs::write(&tmp, &d.bytes).map_err(write_err(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(write_err(&path))?;
            written.push(path);
        }
    }
    Ok(written)
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Now, as RFC 3339 UTC.
pub fn rfc3339_now() -> String {
    rfc3339(SystemTime::now())
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-11-22T23:42:00Z`).
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = doppel_generators::fake::civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn columns_json(batch_schema: &arrow::datatypes::Schema, table: &Table) -> Value {
    Value::Array(
        batch_schema
            .fields()
            .iter()
            .zip(table.semantics.iter())
            .map(|(f, s)| json!({"name": f.name(), "type": f.data_type().to_string(), "semantic_type": s.as_str()}))
            .collect(),
    )
}

fn output_json(output: &Output) -> Result<Value> {
    Ok(match output {
        Output::Table(t, provenance) => {
            let mut v = json!({
                "rows": t.rows(),
                "columns": columns_json(&t.schema, t),
            });
            if let Provenance::Protected(actions) = provenance {
                v["protected"] = serde_json::to_value(actions.as_ref()).map_err(|e| Error::Internal(e.to_string()))?;
            }
            if let Provenance::Generated(m) = provenance {
                v["model"] = json!({
                    "generator": m.generator,
                    "seed": m.seed,
                    "fit_ms": ms(m.fit),
                    "sample_ms": ms(m.sample),
                    "columns": m.columns.iter().map(|c| json!({
                        "column": c.column, "semantic_type": c.semantic.as_str(), "model": c.model,
                    })).collect::<Vec<_>>(),
                    "notes": m.notes,
                });
                if let Some(saved) = &m.saved_model {
                    v["model"]["saved_model"] = json!({ "file": saved.file_name, "bytes": saved.bytes.len() });
                }
                if let Some(file) = &m.loaded_from {
                    v["model"]["loaded_from"] = json!(file);
                }
                if let Some(dp) = &m.privacy {
                    v["model"]["privacy"] = json!({
                        "epsilon": dp.epsilon,
                        "delta": dp.delta,
                        "rho": dp.rho,
                        "steps": dp.steps.iter().map(|(step, rho)| json!({"step": step, "rho": rho})).collect::<Vec<_>>(),
                        "notes": dp.notes,
                    });
                    if let Some(sgd) = &dp.sgd {
                        v["model"]["privacy"]["sgd"] = json!({
                            "steps": sgd.steps,
                            "sampling_rate": sgd.sampling_rate,
                            "noise_multiplier": sgd.noise_multiplier,
                            "clip": sgd.clip,
                        });
                    }
                }
            }
            v
        }
        Output::Profile(p) => serde_json::to_value(p.as_ref()).map_err(|e| Error::Internal(e.to_string()))?,
        Output::Findings(d) => {
            let shown = &d.findings[..d.findings.len().min(REPORT_FINDINGS)];
            json!({
                "rows_scanned": d.rows_scanned,
                "columns": d.columns,
                "cell_findings": d.total_findings,
                "findings": shown,
                "findings_truncated": (shown.len() as u64) < d.total_findings,
            })
        }
        Output::Metrics(m) => json!({ "metrics": m.as_ref() }),
        Output::Verdicts(v) => json!({ "verdicts": v.as_ref() }),
        Output::Document(d) => json!({ "file": d.file_name, "bytes": d.bytes.len(), "pages": d.pages }),
    })
}

/// The report of a run.
pub fn report(plan: &Plan, run: &RunResult, written: &[WrittenTable], finished: SystemTime) -> Result<Report> {
    let mut stages = Vec::with_capacity(run.stages.len());
    let mut pii = Vec::new();
    let mut scores = BTreeMap::new();
    let mut failed_rules = Vec::new();
    let (mut privacy_score, mut quality_score) = (None, None);
    for (planned, stage) in plan.stages.iter().zip(&run.stages) {
        // The input's location is the runner's business: with a label (a
        // server job), the file setting of the input stage shows the label.
        let input_key = planned.operation.builtin().and_then(|b| b.file_setting());
        let settings: serde_json::Map<_, _> = planned
            .settings
            .iter()
            .map(|(k, v)| match (&plan.input_label, input_key) {
                (Some(label), Some(key)) if k == key => (k.clone(), json!(label)),
                _ => (k.clone(), config::to_json(v)),
            })
            .collect();
        let mut s = json!({
            "id": stage.id,
            "uses": stage.uses,
            "kind": planned.operation.kind(),
            "elapsed_ms": ms(stage.elapsed),
            "rows_in": stage.rows_in,
            "settings": settings,
            "result": output_json(&stage.output)?,
        });
        if let Operation::Plugin(p) = &planned.operation {
            s["plugin"] = json!({
                "id": p.manifest.id,
                "version": p.manifest.version.to_string(),
                "sha256": p.sha256,
                "contract": format!("doppel:plugin@{}", p.contract),
                "origin": p.origin,
            });
            s["limits"] = serde_json::to_value(planned.limits).map_err(|e| Error::Internal(e.to_string()))?;
        }
        match &stage.output {
            Output::Findings(d) => {
                for c in d.columns.iter().filter(|c| c.entity != entity::NONE) {
                    pii.push(PiiColumn {
                        stage: stage.id.clone(),
                        column: c.column.clone(),
                        entity: c.entity.clone(),
                        confidence: f64::from(c.confidence),
                    });
                }
            }
            Output::Metrics(m) => {
                for v in m.iter().filter(|v| v.columns.is_empty()) {
                    let value = v.value.is_finite().then_some(v.value);
                    scores.insert(format!("{}.{}", stage.id, v.name), value);
                    let privacy_stage = planned
                        .operation
                        .builtin()
                        .is_some_and(|b| b.name() == crate::builtins::privacy::NAME);
                    if privacy_stage && v.name == PRIVACY_SCORE {
                        privacy_score = value;
                    }
                    if !privacy_stage && v.name == QUALITY_SCORE && quality_score.is_none() {
                        quality_score = value;
                    }
                }
            }
            Output::Verdicts(v) => {
                failed_rules.extend(
                    v.iter()
                        .filter(|x| matches!(x.status, VerdictStatus::Fail))
                        .map(|x| FailedRule {
                            stage: stage.id.clone(),
                            rule: x.rule_id.clone(),
                            title: x.title.clone(),
                        }),
                );
            }
            _ => {}
        }
        stages.push(s);
    }
    let input = plan
        .stages
        .iter()
        .zip(&run.stages)
        .find(|(p, _)| {
            p.operation
                .builtin()
                .is_some_and(|b| b.name() == crate::builtins::source::NAME)
        })
        .and_then(|(p, r)| {
            let t = r.output.table()?;
            let path = match (&plan.input_label, config::get(&p.settings, "path")) {
                (Some(label), _) => Some(label.clone()),
                (None, Some(config::ConfigValue::String(s))) => Some(plan.base_dir.join(s).display().to_string()),
                _ => None,
            };
            Some(InputRef {
                stage: p.id.clone(),
                path,
                rows: t.rows(),
                columns: t.schema.fields().len(),
            })
        });
    Ok(Report {
        report_version: REPORT_VERSION,
        doppel: Producer {
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
        pipeline: PipelineRef {
            name: plan.name.clone(),
            file: plan.file.name.clone(),
        },
        finished_at: rfc3339(finished),
        elapsed_ms: ms(run.elapsed),
        input,
        summary: Summary {
            privacy_score,
            quality_score,
            pii_columns: pii,
            scores,
            failed_rules,
        },
        outputs: written
            .iter()
            .map(|w| {
                let path = w.path.file_name().map(|n| n.to_string_lossy().into_owned());
                (w.name.clone(), OutputRef { path, rows: w.rows })
            })
            .collect(),
        stages,
        documents: Vec::new(),
        charts: run.stages.iter().find_map(|s| match &s.output {
            Output::Document(d) => d.charts.as_deref().cloned(),
            _ => None,
        }),
    })
}

/// Write the outputs and `report.json` (last, so a report means a complete run).
pub fn write_all(
    plan: &Plan,
    run: &RunResult,
    dir: &Path,
    format: TableFormat,
) -> Result<(Vec<WrittenTable>, PathBuf)> {
    let written = write_outputs(plan, run, dir, format)?;
    let documents = write_documents(run, dir)?;
    let mut value = report(plan, run, &written, SystemTime::now())?;
    value.documents = documents
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let path = dir.join("report.json");
    let tmp = dir.join("report.json.partial");
    let text = serde_json::to_string_pretty(&value).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(&tmp, text).map_err(write_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(write_err(&path))?;
    Ok((written, path))
}

#[cfg(test)]
mod tests {
    use super::rfc3339;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_390_920)),
            "2026-11-22T23:42:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }
}
