//! Native stages: `builtin:source`, `profile`, `protect`, `split`,
//! `privacy`, `report-pdf`, `sample` (rows from a saved model), and one
//! `builtin:<generator>` per generator compiled in.

pub mod privacy;
pub mod profile;
pub mod protect;
pub mod report_pdf;
pub mod source;
pub mod split;

use std::sync::Arc;

use doppel_generators::{Generator, ParamType, ParamValue};

use crate::config::{ConfigField, ConfigValue, ValueType, field};

pub use source::SourceError;

/// A native stage.
#[derive(Debug, Clone)]
pub enum Builtin {
    /// Reads a file.
    Source,
    /// Profiles a table.
    Profile,
    /// Fakes, hashes or drops what a detector found.
    Protect,
    /// Splits off holdout rows.
    Split,
    /// Privacy metrics and the privacy score.
    Privacy,
    /// Renders the run as a PDF report.
    ReportPdf,
    /// Learns a table and samples a synthetic one.
    Generator(Arc<dyn Generator>),
    /// Samples a model a generator stage saved (`save_model = true`): no
    /// training and no real data.
    Sample,
}

impl Builtin {
    /// The `with` schema.
    pub fn schema(&self) -> Vec<ConfigField> {
        match self {
            Builtin::Source => source::schema(),
            Builtin::Profile => profile::schema(),
            Builtin::Protect => protect::schema(),
            Builtin::Split => split::schema(),
            Builtin::Privacy => privacy::schema(),
            Builtin::ReportPdf => report_pdf::schema(),
            Builtin::Generator(g) => generator_schema(g.as_ref()),
            Builtin::Sample => sample_schema(),
        }
    }

    /// The `with` keys a remote caller may set on this stage (a server job's
    /// overrides): tuning within the schema's bounds. Never a path, a file
    /// name, a format, a model, a limit, a secret, or anything that weakens
    /// protection or the privacy measurement a listing is judged by (those
    /// stay as the shipped pipeline has them).
    pub fn user_settable(&self) -> Vec<&'static str> {
        match self {
            Builtin::Source | Builtin::Profile | Builtin::Privacy => Vec::new(),
            Builtin::Split => vec!["holdout", "seed"],
            // Stronger protection only: `keep`, `min_confidence` and `salt` stay fixed.
            Builtin::Protect => vec!["seed", "action", "text", "drop", "hash"],
            Builtin::ReportPdf => vec!["title"],
            Builtin::Sample => vec!["rows", "seed"],
            Builtin::Generator(g) => {
                let mut keys: Vec<&'static str> = HOST_SETTINGS.to_vec();
                keys.extend(g.params().iter().filter(|p| p.user_settable).map(|p| p.name));
                keys
            }
        }
    }

    /// `builtin:<name>`.
    pub fn name(&self) -> &str {
        match self {
            Builtin::Source => "source",
            Builtin::Profile => "profile",
            Builtin::Protect => "protect",
            Builtin::Split => "split",
            Builtin::Privacy => "privacy",
            Builtin::ReportPdf => "report-pdf",
            Builtin::Generator(g) => g.name(),
            Builtin::Sample => "sample",
        }
    }

    /// One line for `doppel plugins list`.
    pub fn summary(&self) -> &str {
        match self {
            Builtin::Source => "Read a CSV, Parquet or NDJSON file.",
            Builtin::Profile => "Per-column types, nulls, distinct values, ranges, quantiles, top values.",
            Builtin::Protect => "Replace what a detector found with realistic fakes, pseudonyms or nothing.",
            Builtin::Split => "Set real rows aside (train / holdout parts), deterministically.",
            Builtin::Privacy => {
                "DCR baseline and overfitting protection, new rows, disclosure (CAP), copies; privacy score 0-100."
            }
            Builtin::ReportPdf => {
                "PDF for reviewers: scores, personal data, charts, heatmaps, privacy, compliance checklist, versions."
            }
            Builtin::Generator(g) => g.summary(),
            Builtin::Sample => "Sample rows from a model a generator stage saved (`save_model = true`); no training.",
        }
    }
}

fn convert(value: &ParamValue) -> ConfigValue {
    match value {
        ParamValue::String(s) => ConfigValue::String(s.clone()),
        ParamValue::Integer(i) => ConfigValue::Integer(*i),
        ParamValue::Float(f) => ConfigValue::Float(*f),
        ParamValue::Boolean(b) => ConfigValue::Boolean(*b),
        ParamValue::Strings(s) => ConfigValue::Strings(s.clone()),
    }
}

/// Convert a config value back to a generator parameter.
pub(crate) fn to_param(value: &ConfigValue) -> ParamValue {
    match value {
        ConfigValue::String(s) => ParamValue::String(s.clone()),
        ConfigValue::Integer(i) => ParamValue::Integer(*i),
        ConfigValue::Float(f) => ParamValue::Float(*f),
        ConfigValue::Boolean(b) => ParamValue::Boolean(*b),
        ConfigValue::Strings(s) => ParamValue::Strings(s.clone()),
    }
}

fn seed_field() -> ConfigField {
    let mut seed = field(
        "seed",
        ValueType::Integer,
        "Seed: the same seed and input give the same table.",
    );
    seed.default = Some(ConfigValue::Integer(0));
    seed.minimum = Some(0.0);
    seed
}

/// `builtin:sample`: the model file, and how many rows with which seed.
fn sample_schema() -> Vec<ConfigField> {
    let mut model = field(
        "model",
        ValueType::String,
        "Saved model file (`model-<stage>.safetensors` from a run with `save_model = true`); `--input` sets it.",
    );
    model.required = true;
    let mut rows = field(
        "rows",
        ValueType::Integer,
        "Rows to sample (default: as many as the table the model learned from).",
    );
    rows.minimum = Some(1.0);
    rows.maximum = Some(MAX_ROWS);
    vec![model, rows, seed_field()]
}

/// The most rows one stage may be asked to sample; servers cap lower
/// (`limits.max_synthetic_rows`).
pub const MAX_ROWS: f64 = 1e9;

/// Settings every generator stage takes besides its own parameters.
pub(crate) const HOST_SETTINGS: &[&str] = &["rows", "seed", "save_model"];

/// Every generator stage takes `rows` and `seed` (and `save_model` where the
/// generator can save), then its own parameters.
fn generator_schema(g: &dyn Generator) -> Vec<ConfigField> {
    let mut rows = field(
        "rows",
        ValueType::Integer,
        "Rows to sample (default: as many as the real table, counting rows a split set aside).",
    );
    rows.minimum = Some(1.0);
    rows.maximum = Some(MAX_ROWS);
    let mut out = vec![rows, seed_field()];
    if g.saves_models() {
        let mut save = field(
            "save_model",
            ValueType::Boolean,
            "Also write the fitted model (`model-<stage>.safetensors`) for `builtin:sample` to reuse.",
        );
        save.default = Some(ConfigValue::Boolean(false));
        out.push(save);
    }
    for p in g.params() {
        let ty = match p.ty {
            ParamType::String => ValueType::String,
            ParamType::Integer => ValueType::Integer,
            ParamType::Float => ValueType::Float,
            ParamType::Boolean => ValueType::Boolean,
            ParamType::Strings => ValueType::Strings,
        };
        let mut f = field(p.name, ty, p.description);
        f.default = p.default.as_ref().map(convert);
        f.allowed = p.allowed.iter().map(|s| (*s).to_owned()).collect();
        f.minimum = p.minimum;
        f.maximum = p.maximum;
        out.push(f);
    }
    out
}
