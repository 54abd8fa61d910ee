//! The run data model: what a stage produces ([`Output`]: tables with their
//! [`Provenance`], profiles, findings, metrics, verdicts, documents), what a
//! run returns ([`RunResult`]), and what stages that report on the pipeline
//! are told about it ([`PipelineInfo`]). Builtins and reports work with
//! these types; only the executor (`exec`) schedules stages.

use doppel_vocab::entity;
use std::sync::Arc;
use std::time::Duration;

use doppel_generators::ColumnModel;

use crate::builtins::profile::TableProfile;
use crate::builtins::protect::ColumnAction;
use crate::config::Settings;
use crate::plugin::bindings::types::{ColumnFinding, Finding, MetricValue, Verdict};
use crate::table::Table;

/// Cell findings kept per detector stage (the rest are counted).
pub const MAX_KEPT_FINDINGS: usize = 100_000;

/// What a generator stage learned, for the report.
#[derive(Debug, Clone)]
pub struct ModelSummary {
    /// Generator name.
    pub generator: String,
    /// How each column was modelled.
    pub columns: Vec<ColumnModel>,
    /// Remarks from the fit.
    pub notes: Vec<String>,
    /// Time to fit.
    pub fit: Duration,
    /// Time to sample.
    pub sample: Duration,
    /// Seed used.
    pub seed: u64,
    /// What a differentially private fit spent.
    pub privacy: Option<doppel_generators::PrivacySpend>,
    /// The fitted model as a file, when the stage asked (`save_model`):
    /// written next to the outputs.
    pub saved_model: Option<Arc<Document>>,
    /// File name of the saved model this table was sampled from
    /// (`builtin:sample`); the model was not fitted in this run.
    pub loaded_from: Option<String>,
}

/// What a detector stage found.
#[derive(Debug, Clone, Default)]
pub struct DetectorOutput {
    /// One verdict per column.
    pub columns: Vec<ColumnFinding>,
    /// Cell-level spans (the first [`MAX_KEPT_FINDINGS`]).
    pub findings: Vec<Finding>,
    /// All cell-level spans found, kept or not.
    pub total_findings: u64,
    /// Rows the detector looked at before it had enough.
    pub rows_scanned: u64,
}

/// Where a table came from, for the report.
#[derive(Debug, Clone)]
pub enum Provenance {
    /// Read from a file.
    Read,
    /// Sampled by a generator.
    Generated(Arc<ModelSummary>),
    /// Another table with personal data replaced.
    Protected(Arc<Vec<ColumnAction>>),
}

/// A stage's result.
#[derive(Debug, Clone)]
pub enum Output {
    /// A table, and where it came from.
    Table(Arc<Table>, Provenance),
    /// A profile.
    Profile(Arc<TableProfile>),
    /// A detector's findings.
    Findings(Arc<DetectorOutput>),
    /// A metric's scores.
    Metrics(Arc<Vec<MetricValue>>),
    /// A rule's verdicts.
    Verdicts(Arc<Vec<Verdict>>),
    /// A rendered document (written next to the output tables).
    Document(Arc<Document>),
}

/// A file a stage rendered.
#[derive(Debug, Clone)]
pub struct Document {
    /// File name in the output directory.
    pub file_name: String,
    /// Contents.
    pub bytes: Vec<u8>,
    /// Pages, for PDFs.
    pub pages: usize,
    /// The numbers the document's charts were drawn from (report.json
    /// carries them, so every other rendering draws the same charts).
    pub charts: Option<Arc<Charts>>,
}

/// What a report's charts show: per-column real-vs-synthetic shares and the
/// association matrices between columns.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Charts {
    /// The stage of the real table.
    pub real: String,
    /// The stage of the synthetic table.
    pub synthetic: String,
    /// One per charted column.
    pub distributions: Vec<Distribution>,
    /// Associations between columns, when a quality stage measured them.
    pub associations: Option<Associations>,
}

/// A column's shares of rows, real and synthetic: 16 equal-width bins over
/// both tables' range for numbers and dates, else the 8 most frequent real
/// categories.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Distribution {
    /// Column.
    pub column: String,
    /// Whether the bars are bins (with `labels` the range's ends) or categories.
    pub numeric: bool,
    /// Category names, or the lowest and highest value.
    pub labels: Vec<String>,
    /// Real shares per bar.
    pub real: Vec<f64>,
    /// Synthetic shares per bar.
    pub synthetic: Vec<f64>,
}

/// Symmetric matrices of association strength in [0, 1] (|Pearson ρ| for two
/// numeric columns, Cramér's V otherwise); `None` where not measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Associations {
    /// The columns, in matrix order.
    pub columns: Vec<String>,
    /// Real table.
    pub real: Vec<Vec<Option<f64>>>,
    /// Synthetic table.
    pub synthetic: Vec<Vec<Option<f64>>>,
}

impl Output {
    /// The table, if this is one.
    pub fn table(&self) -> Option<&Arc<Table>> {
        match self {
            Output::Table(t, _) => Some(t),
            _ => None,
        }
    }
}

/// One stage's run.
#[derive(Debug, Clone)]
pub struct StageRun {
    /// Stage id.
    pub id: String,
    /// Its `uses`.
    pub uses: String,
    /// Result.
    pub output: Output,
    /// Wall time.
    pub elapsed: Duration,
    /// Rows read from its inputs.
    pub rows_in: u64,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Pipeline name.
    pub pipeline: String,
    /// Stages in file order.
    pub stages: Vec<StageRun>,
    /// Wall time.
    pub elapsed: Duration,
}

impl RunResult {
    /// A stage's run by id.
    pub fn stage(&self, id: &str) -> Option<&StageRun> {
        self.stages.iter().find(|s| s.id == id)
    }
}

/// One stage of the pipeline, as reports describe it.
#[derive(Debug, Clone)]
pub struct StageInfo {
    /// Stage id.
    pub id: String,
    /// Its `uses`.
    pub uses: String,
    /// `id@version` and SHA-256 of its plugin, for plugin stages.
    pub plugin: Option<(String, String)>,
}

/// The pipeline a stage runs in, for stages that report on it.
#[derive(Debug, Clone)]
pub struct PipelineInfo {
    /// Pipeline name.
    pub name: String,
    /// Pipeline file.
    pub file: String,
    /// Every stage, in file order.
    pub stages: Vec<StageInfo>,
    /// Pipeline attributes.
    pub attributes: Settings,
}

/// One line on what a stage produced (as shown in progress and summaries).
pub fn summarize(output: &Output) -> String {
    match output {
        Output::Table(t, Provenance::Protected(actions)) => {
            let changed: Vec<String> = actions.iter().map(|a| format!("{}={}", a.column, a.action)).collect();
            if changed.is_empty() {
                format!(
                    "{} rows × {} columns, nothing to protect",
                    t.rows(),
                    t.schema.fields().len()
                )
            } else {
                format!("{} rows, protected {}", t.rows(), changed.join(", "))
            }
        }
        Output::Table(t, _) => format!("{} rows × {} columns", t.rows(), t.schema.fields().len()),
        Output::Profile(p) => format!("{} columns profiled", p.columns.len()),
        Output::Findings(d) => {
            let pii: Vec<String> = d
                .columns
                .iter()
                .filter(|c| c.entity != entity::NONE)
                .map(|c| format!("{}={}", c.column, c.entity))
                .collect();
            if pii.is_empty() {
                "no personal data found".to_owned()
            } else {
                format!("personal data in {}", pii.join(", "))
            }
        }
        Output::Metrics(m) if m.iter().any(|v| v.name == "C2ST") => {
            // The fidelity protocol: every table-wide number on one line.
            fn short(name: &str) -> &str {
                match name {
                    "C2ST" => "C2ST",
                    "TSTR AUC" => "TSTR AUC",
                    "AlphaPrecision" => "α-precision",
                    "BetaRecall" => "β-recall",
                    "DCRShare" => "DCR share",
                    other => other,
                }
            }
            m.iter()
                .filter(|v| v.columns.is_empty())
                .map(|v| match v.extra.iter().find(|(k, _)| k == "trtr_auc") {
                    Some((_, real)) => format!("{} {:.3} (real {real:.3})", short(&v.name), v.value),
                    None => format!("{} {:.3}", short(&v.name), v.value),
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
        Output::Metrics(m) => match m.iter().find(|v| v.columns.is_empty() && v.name.ends_with("Score")) {
            Some(score) if score.name == "Privacy Score" => {
                format!(
                    "{} = {:.1} ({})",
                    score.name,
                    score.value,
                    score.note.as_deref().unwrap_or("")
                )
            }
            Some(score) => format!("{} = {:.4}", score.name, score.value),
            None => format!("{} scores", m.len()),
        },
        Output::Verdicts(v) => {
            let failed = v
                .iter()
                .filter(|x| matches!(x.status, crate::plugin::bindings::types::VerdictStatus::Fail))
                .count();
            format!("{} verdicts, {failed} failed", v.len())
        }
        Output::Document(d) => format!(
            "{} ({} pages, {} KiB)",
            d.file_name,
            d.pages,
            d.bytes.len().div_ceil(1024)
        ),
    }
}
