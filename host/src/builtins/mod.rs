//! Native stages. Each `builtin:<name>` is one type implementing
//! [`Builtin`] in one file of this module — its name, `with` schema, the
//! keys a server job may set, the inputs it takes and how it runs — and
//! [`all`] lists them. Adding a builtin is a new file and one line there; the
//! planner and the executor only call the trait.
//!
//! - `source` ([`source`]): reads a CSV, Parquet or NDJSON file.
//! - `profile`, `split`, `protect`, `privacy`, `report-pdf`.
//! - `fidelity` ([`fidelity`]): detection (C2ST), train-synthetic-test-real,
//!   α-precision / β-recall and the DCR share against a holdout.
//! - one `builtin:<generator>` per [`Generator`] compiled in ([`generator`]).
//! - `sample` ([`sample`]): rows from a model a generator stage saved.

pub mod fidelity;
pub mod generator;
pub mod privacy;
pub mod profile;
pub mod protect;
pub mod report_pdf;
pub mod sample;
pub mod source;
pub mod split;

use std::sync::Arc;

use doppel_generators::{Generator, ParamValue};

use crate::Result;
use crate::config::{ConfigField, ConfigValue, Settings, ValueType, field};
use crate::model::Output;
use crate::stage::{InputCheck, Produces, StageContext};

pub use source::SourceError;

/// What kind of stage a builtin is (report.json's `kind`, `doppel plugin list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reads a table from a file.
    Source,
    /// Profiles a table.
    Profile,
    /// Replaces what a detector found.
    Protect,
    /// Sets rows aside.
    Split,
    /// Produces a synthetic table (generators and `sample`).
    Generator,
    /// Scores tables.
    Metric,
    /// Renders a document.
    Report,
}

impl Kind {
    /// The word report.json uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Profile => "profile",
            Kind::Protect => "protect",
            Kind::Split => "split",
            Kind::Generator => "generator",
            Kind::Metric => "metric",
            Kind::Report => "report",
        }
    }

    /// What a stage of this kind hands to its consumers.
    pub fn produces(self) -> Produces {
        match self {
            Kind::Source | Kind::Protect | Kind::Split | Kind::Generator => Produces::Table,
            Kind::Profile => Produces::Profile,
            Kind::Metric => Produces::Metrics,
            Kind::Report => Produces::Document,
        }
    }
}

/// A native stage, `builtin:<name>`.
pub trait Builtin: std::fmt::Debug + Send + Sync {
    /// `<name>` in `builtin:<name>`.
    fn name(&self) -> &str;

    /// One line for `doppel plugin list`.
    fn summary(&self) -> &str;

    /// What kind of stage it is.
    fn kind(&self) -> Kind;

    /// The `with` schema.
    fn schema(&self) -> Vec<ConfigField>;

    /// The `with` keys a remote caller may set on this stage (a server job's
    /// overrides): tuning within the schema's bounds. Never a path, a file
    /// name, a format, a model, a limit, a secret, or anything that weakens
    /// protection or the privacy measurement a listing is judged by (those
    /// stay as the shipped pipeline has them). None unless a builtin says so.
    fn user_settable(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// The `with` key naming the file this stage reads instead of inputs
    /// (`path`, `model`). Such a stage takes no inputs, and a runner that
    /// binds the input itself names it by a label in reports.
    fn file_setting(&self) -> Option<&'static str> {
        None
    }

    /// The file this stage writes next to the outputs, if any (two stages may
    /// not write the same one).
    fn output_file(&self, _settings: &Settings) -> Option<String> {
        None
    }

    /// Check the kinds and count of the stage's inputs (default: one table).
    /// Not called for stages with a [`Builtin::file_setting`].
    fn check_inputs(&self, check: &mut InputCheck<'_>) {
        check.tables(1, "");
    }

    /// The generator behind a generator stage (its privacy cost, its
    /// parameters).
    fn generator(&self) -> Option<&Arc<dyn Generator>> {
        None
    }

    /// Run the stage.
    fn run(&self, ctx: &StageContext) -> Result<Output>;
}

/// Every builtin, with one generator stage per generator given.
pub fn all(generators: &[Arc<dyn Generator>]) -> Vec<Arc<dyn Builtin>> {
    let mut out: Vec<Arc<dyn Builtin>> = vec![
        Arc::new(source::Source),
        Arc::new(profile::Profile),
        Arc::new(protect::Protect),
        Arc::new(split::Split),
        Arc::new(privacy::Privacy),
        Arc::new(fidelity::Fidelity),
        Arc::new(report_pdf::ReportPdf),
        Arc::new(sample::Sample),
    ];
    out.extend(
        generators
            .iter()
            .map(|g| Arc::new(generator::GeneratorStage(Arc::clone(g))) as Arc<dyn Builtin>),
    );
    out
}

pub(crate) fn convert(value: &ParamValue) -> ConfigValue {
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

pub(crate) fn seed_field() -> ConfigField {
    let mut seed = field(
        "seed",
        ValueType::Integer,
        "Seed: the same seed and input give the same table.",
    );
    seed.default = Some(ConfigValue::Integer(0));
    seed.minimum = Some(0.0);
    seed
}

/// The most rows one stage may be asked to sample; servers cap lower
/// (`limits.max_synthetic_rows`).
pub const MAX_ROWS: f64 = 1e9;
