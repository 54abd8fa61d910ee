//! Pipeline files: TOML with named stages, parsed with every value's position
//! kept so that each problem can be reported at `file:line:col`.
//!
//! ```toml
//! version = 1
//! name = "quickstart"
//!
//! [stages.source]
//! uses = "builtin:source"
//!
//! [stages.pii]
//! uses = "doppel/pii@^0.1"
//! inputs = ["source"]
//! with = { sample_rows = 2000 }
//! limits = { memory_mb = 128, timeout_ms = 5000 }
//!
//! [outputs]
//! synthetic = "synth"
//! ```
//!
//! Parsing checks the *shape* (known keys, value types) and reports every
//! problem at once; [`crate::plan`] then checks meaning (inputs, plugins,
//! `with` against each stage's schema).

mod diagnostic;

use std::ops::Range;
use std::sync::Arc;

use toml::de::{DeTable, DeValue};

pub use diagnostic::{Diagnostic, Diagnostics, SourceFile, closest};

use crate::config::ConfigValue;

type TomlSpanned<T> = toml::Spanned<T>;

/// A value and where it was written (`None` when it came from the command line).
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Byte range in the pipeline file.
    pub span: Option<Range<usize>>,
}

impl<T> Located<T> {
    fn new(value: T, span: Range<usize>) -> Self {
        Located {
            value,
            span: Some(span),
        }
    }
}

/// Per-stage resource limits for plugin stages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitsSpec {
    /// Linear-memory cap of the plugin instance, MiB.
    pub memory_mb: Option<Located<u64>>,
    /// Wall-time cap of one plugin call (one batch), milliseconds.
    pub timeout_ms: Option<Located<u64>>,
    /// Deterministic CPU cap of one plugin call, in wasmtime fuel units.
    pub fuel: Option<Located<u64>>,
}

/// One `[stages.<id>]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    /// The stage id (the table key).
    pub id: Located<String>,
    /// `builtin:<name>` or `<namespace>/<plugin>@<version-req>`.
    pub uses: Option<Located<String>>,
    /// Ids of the stages whose outputs this stage reads.
    pub inputs: Vec<Located<String>>,
    /// The stage's settings, checked against its declared schema.
    pub with: Vec<(Located<String>, Located<ConfigValue>)>,
    /// Only these input columns reach the stage.
    pub columns: Option<Located<Vec<String>>>,
    /// Resource limits (plugin stages).
    pub limits: LimitsSpec,
    /// Free-form description.
    pub description: Option<String>,
}

/// One entry of `[outputs]`: a file name and the stage whose table it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSpec {
    /// File stem (`synthetic` → `synthetic.parquet`).
    pub name: Located<String>,
    /// Stage id.
    pub stage: Located<String>,
}

/// A parsed pipeline file.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// The file, for diagnostics.
    pub file: Arc<SourceFile>,
    /// Pipeline name (defaults to the file stem).
    pub name: String,
    /// Free-form description.
    pub description: Option<String>,
    /// Stages in file order.
    pub stages: Vec<StageSpec>,
    /// Tables to write.
    pub outputs: Vec<OutputSpec>,
    /// Pipeline-level facts for rule stages (purpose, retention, ...).
    pub attributes: Vec<(Located<String>, Located<ConfigValue>)>,
}

const TOP_KEYS: &[&str] = &["version", "name", "description", "stages", "outputs", "attributes"];
const STAGE_KEYS: &[&str] = &["uses", "inputs", "with", "columns", "limits", "description"];
const LIMIT_KEYS: &[&str] = &["memory_mb", "timeout_ms", "fuel"];
/// The pipeline format version this build reads.
pub const FORMAT_VERSION: i64 = 1;

fn key_str<'a>(key: &'a TomlSpanned<std::borrow::Cow<'_, str>>) -> &'a str {
    key.get_ref().as_ref()
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn integer_of(v: &DeValue<'_>) -> Option<i64> {
    let i = v.as_integer()?;
    i64::from_str_radix(i.as_str(), i.radix()).ok()
}

fn float_of(v: &DeValue<'_>) -> Option<f64> {
    v.as_float().and_then(|f| {
        let s = f.as_str();
        match s {
            "inf" | "+inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            "nan" | "+nan" | "-nan" => Some(f64::NAN),
            other => other.parse().ok(),
        }
    })
}

/// Convert a TOML value to a config value (string, integer, float, boolean or
/// list of strings).
pub(crate) fn config_value(v: &TomlSpanned<DeValue<'_>>) -> Result<ConfigValue, Diagnostic> {
    let span = v.span();
    let value = v.get_ref();
    Ok(match value {
        DeValue::String(s) => ConfigValue::String(s.to_string()),
        DeValue::Boolean(b) => ConfigValue::Boolean(*b),
        DeValue::Integer(_) => match integer_of(value) {
            Some(i) => ConfigValue::Integer(i),
            None => return Err(Diagnostic::at(Some(span), "integer does not fit in 64 bits")),
        },
        DeValue::Float(_) => ConfigValue::Float(float_of(value).unwrap_or(f64::NAN)),
        DeValue::Array(items) => {
            let mut out = Vec::new();
            for item in items.iter() {
                match item.get_ref() {
                    DeValue::String(s) => out.push(s.to_string()),
                    other => {
                        return Err(Diagnostic::at(
                            Some(item.span()),
                            format!("expected a string, found {}", type_name(other)),
                        )
                        .label("lists in `with` hold strings only"));
                    }
                }
            }
            ConfigValue::Strings(out)
        }
        other => {
            return Err(Diagnostic::at(
                Some(span),
                format!(
                    "expected a string, integer, float, boolean or list of strings, found {}",
                    type_name(other)
                ),
            ));
        }
    })
}

fn expect_string(v: &TomlSpanned<DeValue<'_>>, what: &str, diags: &mut Vec<Diagnostic>) -> Option<Located<String>> {
    match v.get_ref() {
        DeValue::String(s) => Some(Located::new(s.to_string(), v.span())),
        other => {
            diags.push(Diagnostic::at(
                Some(v.span()),
                format!("`{what}` must be a string, found {}", type_name(other)),
            ));
            None
        }
    }
}

fn expect_table<'a, 'i>(
    v: &'a TomlSpanned<DeValue<'i>>,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<&'a DeTable<'i>> {
    match v.get_ref() {
        DeValue::Table(t) => Some(t),
        other => {
            diags.push(Diagnostic::at(
                Some(v.span()),
                format!("`{what}` must be a table, found {}", type_name(other)),
            ));
            None
        }
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl PipelineSpec {
    /// Parse a pipeline file, reporting every problem found.
    pub fn parse(file: Arc<SourceFile>) -> Result<PipelineSpec, Diagnostics> {
        let mut diags = Vec::new();
        let (root, errors) = DeTable::parse_recoverable(&file.text);
        if !errors.is_empty() {
            let items = errors
                .iter()
                .map(|e| Diagnostic::at(e.span(), e.message().trim().to_owned()))
                .collect();
            return Err(Diagnostics { file, items });
        }
        let root = root.get_ref();
        let mut spec = PipelineSpec {
            name: std::path::Path::new(&file.name)
                .file_stem()
                .map_or_else(|| "pipeline".to_owned(), |s| s.to_string_lossy().into_owned()),
            file: Arc::clone(&file),
            description: None,
            stages: Vec::new(),
            outputs: Vec::new(),
            attributes: Vec::new(),
        };
        let mut saw_version = false;
        let mut saw_stages = false;
        for (key, value) in root.iter() {
            match key_str(key) {
                "version" => {
                    saw_version = true;
                    match integer_of(value.get_ref()) {
                        Some(FORMAT_VERSION) => {}
                        Some(v) => diags.push(
                            Diagnostic::at(Some(value.span()), format!("unsupported pipeline format version {v}"))
                                .help(format!("this doppel reads version {FORMAT_VERSION}")),
                        ),
                        None => diags.push(Diagnostic::at(
                            Some(value.span()),
                            format!("`version` must be an integer, found {}", type_name(value.get_ref())),
                        )),
                    }
                }
                "name" => {
                    if let Some(s) = expect_string(value, "name", &mut diags) {
                        spec.name = s.value;
                    }
                }
                "description" => {
                    spec.description = expect_string(value, "description", &mut diags).map(|s| s.value);
                }
                "stages" => {
                    saw_stages = true;
                    if let Some(stages) = expect_table(value, "stages", &mut diags) {
                        for (id, body) in stages.iter() {
                            if let Some(stage) = parse_stage(id, body, &mut diags) {
                                spec.stages.push(stage);
                            }
                        }
                    }
                }
                "outputs" => {
                    if let Some(outputs) = expect_table(value, "outputs", &mut diags) {
                        for (name, stage) in outputs.iter() {
                            if let Some(stage) = expect_string(stage, &format!("outputs.{}", key_str(name)), &mut diags)
                            {
                                spec.outputs.push(OutputSpec {
                                    name: Located::new(key_str(name).to_owned(), name.span()),
                                    stage,
                                });
                            }
                        }
                    }
                }
                "attributes" => {
                    if let Some(attrs) = expect_table(value, "attributes", &mut diags) {
                        for (k, v) in attrs.iter() {
                            match config_value(v) {
                                Ok(cv) => spec.attributes.push((
                                    Located::new(key_str(k).to_owned(), k.span()),
                                    Located::new(cv, v.span()),
                                )),
                                Err(d) => diags.push(d),
                            }
                        }
                    }
                }
                other => diags.push(
                    Diagnostic::at(Some(key.span()), format!("unknown field `{other}`"))
                        .label("not a pipeline field")
                        .suggest(other, TOP_KEYS.iter().copied()),
                ),
            }
        }
        if !saw_version {
            diags.push(
                Diagnostic::at(None, "missing `version`")
                    .help(format!("start the file with `version = {FORMAT_VERSION}`")),
            );
        }
        if !saw_stages {
            diags.push(Diagnostic::at(None, "the pipeline has no `[stages]`"));
        }
        if diags.is_empty() {
            Ok(spec)
        } else {
            diags.sort_by_key(|d| d.span.as_ref().map_or(usize::MAX, |s| s.start));
            Err(Diagnostics { file, items: diags })
        }
    }

    /// Read and parse a pipeline file.
    pub fn load(path: &std::path::Path) -> Result<PipelineSpec, crate::Error> {
        let text = std::fs::read_to_string(path).map_err(|source| crate::Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(PipelineSpec::parse(SourceFile::new(path.display().to_string(), text))?)
    }

    /// Apply a command-line override `stage.key=value` to a stage's `with`.
    ///
    /// The value is read as TOML (`42`, `true`, `["a", "b"]`, `"text"`) and,
    /// failing that, taken as a plain string.
    pub fn set(&mut self, assignment: &str) -> Result<(), Diagnostic> {
        let bad = |m: String| Diagnostic::at(None, format!("--set {assignment}: {m}"));
        let (path, raw) = assignment
            .split_once('=')
            .ok_or_else(|| bad("expected `stage.key=value`".to_owned()))?;
        let (stage_id, key) = path
            .trim()
            .split_once('.')
            .ok_or_else(|| bad("expected `stage.key=value`".to_owned()))?;
        let raw = raw.trim();
        let value = match DeValue::parse(raw) {
            Ok(v) => config_value(&v).map_err(|d| bad(d.message))?,
            Err(_) => ConfigValue::String(raw.to_owned()),
        };
        let ids: Vec<String> = self.stages.iter().map(|s| s.id.value.clone()).collect();
        let stage =
            self.stages.iter_mut().find(|s| s.id.value == stage_id).ok_or_else(|| {
                bad(format!("no stage `{stage_id}`")).suggest(stage_id, ids.iter().map(String::as_str))
            })?;
        let located = Located { value, span: None };
        match stage.with.iter_mut().find(|(k, _)| k.value == key) {
            Some((_, v)) => *v = located,
            None => stage.with.push((
                Located {
                    value: key.to_owned(),
                    span: None,
                },
                located,
            )),
        }
        Ok(())
    }

    /// The stages that read the pipeline's input file (where `--input`
    /// goes), with the `with` key that names the file: `builtin:source`
    /// stages (`path`, a table) or, in a pipeline without one,
    /// `builtin:sample` stages (`model`, a saved model).
    pub fn input_stages(&self) -> Vec<(String, &'static str)> {
        let with = |uses: &str, key: &'static str| -> Vec<(String, &'static str)> {
            self.stages
                .iter()
                .filter(|s| s.uses.as_ref().is_some_and(|u| u.value == uses))
                .map(|s| (s.id.value.clone(), key))
                .collect()
        };
        let sources = with("builtin:source", "path");
        if sources.is_empty() {
            with("builtin:sample", "model")
        } else {
            sources
        }
    }

    /// Stage by id.
    pub fn stage(&self, id: &str) -> Option<&StageSpec> {
        self.stages.iter().find(|s| s.id.value == id)
    }
}

fn parse_stage(
    id: &TomlSpanned<std::borrow::Cow<'_, str>>,
    body: &TomlSpanned<DeValue<'_>>,
    diags: &mut Vec<Diagnostic>,
) -> Option<StageSpec> {
    let id_text = key_str(id).to_owned();
    if !valid_id(&id_text) {
        diags.push(
            Diagnostic::at(
                Some(id.span()),
                format!("stage id `{id_text}` may only use letters, digits, `_` and `-`"),
            )
            .help("ids are used on the command line (`--set <stage>.<key>=...`)"),
        );
    }
    let table = expect_table(body, &format!("stages.{id_text}"), diags)?;
    let mut stage = StageSpec {
        id: Located::new(id_text.clone(), id.span()),
        uses: None,
        inputs: Vec::new(),
        with: Vec::new(),
        columns: None,
        limits: LimitsSpec::default(),
        description: None,
    };
    for (key, value) in table.iter() {
        match key_str(key) {
            "uses" => stage.uses = expect_string(value, "uses", diags),
            "description" => stage.description = expect_string(value, "description", diags).map(|s| s.value),
            "inputs" => match value.get_ref() {
                DeValue::Array(items) => {
                    for item in items.iter() {
                        if let Some(s) = expect_string(item, "inputs", diags) {
                            stage.inputs.push(s);
                        }
                    }
                }
                // A single input may be written without brackets.
                DeValue::String(s) => stage.inputs.push(Located::new(s.to_string(), value.span())),
                other => diags.push(Diagnostic::at(
                    Some(value.span()),
                    format!("`inputs` must be a list of stage ids, found {}", type_name(other)),
                )),
            },
            "columns" => match value.get_ref() {
                DeValue::Array(items) => {
                    let mut cols = Vec::new();
                    for item in items.iter() {
                        if let Some(s) = expect_string(item, "columns", diags) {
                            cols.push(s.value);
                        }
                    }
                    stage.columns = Some(Located::new(cols, value.span()));
                }
                other => diags.push(Diagnostic::at(
                    Some(value.span()),
                    format!("`columns` must be a list of column names, found {}", type_name(other)),
                )),
            },
            "with" => {
                if let Some(with) = expect_table(value, "with", diags) {
                    for (k, v) in with.iter() {
                        match config_value(v) {
                            Ok(cv) => stage.with.push((
                                Located::new(key_str(k).to_owned(), k.span()),
                                Located::new(cv, v.span()),
                            )),
                            Err(d) => diags.push(d),
                        }
                    }
                }
            }
            "limits" => {
                if let Some(limits) = expect_table(value, "limits", diags) {
                    for (k, v) in limits.iter() {
                        let name = key_str(k);
                        if !LIMIT_KEYS.contains(&name) {
                            diags.push(
                                Diagnostic::at(Some(k.span()), format!("unknown limit `{name}`"))
                                    .label("not a stage limit")
                                    .suggest(name, LIMIT_KEYS.iter().copied())
                                    .help(format!("limits are {}", LIMIT_KEYS.join(", "))),
                            );
                            continue;
                        }
                        let parsed = integer_of(v.get_ref())
                            .and_then(|i| u64::try_from(i).ok())
                            .filter(|i| *i > 0);
                        let Some(n) = parsed else {
                            diags.push(Diagnostic::at(
                                Some(v.span()),
                                format!("`limits.{name}` must be a positive integer"),
                            ));
                            continue;
                        };
                        let located = Some(Located::new(n, v.span()));
                        match name {
                            "memory_mb" => stage.limits.memory_mb = located,
                            "timeout_ms" => stage.limits.timeout_ms = located,
                            _ => stage.limits.fuel = located,
                        }
                    }
                }
            }
            other => diags.push(
                Diagnostic::at(
                    Some(key.span()),
                    format!("unknown field `{other}` in stage `{id_text}`"),
                )
                .label("not a stage field")
                .suggest(other, STAGE_KEYS.iter().copied()),
            ),
        }
    }
    if stage.uses.is_none() {
        diags.push(
            Diagnostic::at(Some(id.span()), format!("stage `{id_text}` has no `uses`"))
                .help("say what runs here, e.g. `uses = \"builtin:copula\"` or `uses = \"doppel/pii@^0.1\"`"),
        );
    }
    Some(stage)
}

#[cfg(test)]
mod tests;
