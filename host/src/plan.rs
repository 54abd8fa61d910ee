//! From a parsed pipeline to a runnable plan: every `uses` resolved, every
//! `with` checked against its stage's schema, inputs wired and typed, limits
//! bounded — and every problem reported at once, with its place in the file.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use doppel_generators::Generator;

use crate::builtins::Builtin;
use crate::config::{self, ConfigField, Settings};
use crate::plugin::bindings::types::TableRole;
use crate::plugin::{Limits, LoadedPlugin, PluginKind, PluginRegistry, ResolveError};
use crate::spec::{Diagnostic, Diagnostics, PipelineSpec, SourceFile, StageSpec};
use crate::stage::InputCheck;
pub use crate::stage::Produces;

/// Builtins that exist only in builds with the `torch` feature.
pub const NEEDS_TORCH: &[&str] = &["ctgan", "tvae", "dp-tvae"];
/// Everything a pipeline can `use`: builtins, generators, installed plugins.
#[derive(Debug)]
pub struct Catalog {
    /// Installed plugins.
    pub plugins: PluginRegistry,
    /// Generators compiled in.
    pub generators: Vec<Arc<dyn Generator>>,
}

impl Catalog {
    /// A catalog with every compiled-in generator.
    pub fn new(plugins: PluginRegistry) -> Self {
        Catalog {
            plugins,
            generators: doppel_generators::builtin(),
        }
    }

    /// Every builtin stage.
    pub fn builtins(&self) -> Vec<Arc<dyn Builtin>> {
        crate::builtins::all(&self.generators)
    }

    /// The builtin called `name`.
    pub fn builtin(&self, name: &str) -> Option<Arc<dyn Builtin>> {
        self.builtins().into_iter().find(|b| b.name() == name)
    }
}

/// What runs in a stage.
#[derive(Debug, Clone)]
pub enum Operation {
    /// A native stage.
    Builtin(Arc<dyn Builtin>),
    /// A sandboxed plugin.
    Plugin(Arc<LoadedPlugin>),
}

impl Operation {
    /// What kind of stage this is (report.json's `kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            Operation::Builtin(b) => b.kind().as_str(),
            Operation::Plugin(p) => match p.manifest.kind {
                PluginKind::Detector => "detector",
                PluginKind::Metric => "metric",
                PluginKind::Rule => "rule",
            },
        }
    }

    /// The builtin, if this is one.
    pub fn builtin(&self) -> Option<&Arc<dyn Builtin>> {
        match self {
            Operation::Builtin(b) => Some(b),
            Operation::Plugin(_) => None,
        }
    }

    /// What the stage produces.
    pub fn produces(&self) -> Produces {
        match self {
            Operation::Builtin(b) => b.kind().produces(),
            Operation::Plugin(p) => match p.manifest.kind {
                PluginKind::Detector => Produces::Findings,
                PluginKind::Metric => Produces::Metrics,
                PluginKind::Rule => Produces::Verdicts,
            },
        }
    }

    fn schema(&self) -> Vec<ConfigField> {
        match self {
            Operation::Builtin(b) => b.schema(),
            Operation::Plugin(p) => p.info().config.clone(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Operation::Builtin(b) if b.generator().is_some() => format!("generator builtin:{}", b.name()),
            Operation::Builtin(b) => format!("builtin:{}", b.name()),
            Operation::Plugin(p) => format!("{} plugin {}", p.manifest.kind, p.label()),
        }
    }
}

/// One stage, ready to run.
#[derive(Debug, Clone)]
pub struct PlannedStage {
    /// Stage id.
    pub id: String,
    /// The `uses` text.
    pub uses: String,
    /// What runs.
    pub operation: Operation,
    /// Indices (into [`Plan::stages`]) of its inputs, in `inputs` order.
    pub inputs: Vec<usize>,
    /// Validated settings, defaults applied.
    pub settings: Settings,
    /// Columns the stage is restricted to.
    pub columns: Option<Vec<String>>,
    /// Limits (plugin stages).
    pub limits: Option<Limits>,
}

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Pipeline name.
    pub name: String,
    /// The file it came from.
    pub file: Arc<SourceFile>,
    /// Stages in file order.
    pub stages: Vec<PlannedStage>,
    /// A topological order of stage indices (file order among equals).
    pub order: Vec<usize>,
    /// (file stem, stage index) of each table output.
    pub outputs: Vec<(String, usize)>,
    /// Pipeline attributes.
    pub attributes: Settings,
    /// Directory relative paths in the pipeline are resolved against (the
    /// pipeline file's directory).
    pub base_dir: std::path::PathBuf,
    /// How report.json names the input instead of its path (a server names
    /// the dataset: its files are its own business, never the caller's).
    pub input_label: Option<String>,
}

impl Plan {
    /// Index of a stage by id.
    pub fn index(&self, id: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.id == id)
    }
}

fn span_of_stage(stage: &StageSpec) -> Option<Range<usize>> {
    stage.id.span.clone()
}

/// Parse `namespace/name@req`.
fn parse_plugin_ref(uses: &str) -> Result<(String, semver::VersionReq), String> {
    let Some((id, req)) = uses.split_once('@') else {
        return Err(format!(
            "`{uses}` needs a version requirement, e.g. `{uses}@^0.1` (or use `builtin:<name>`)"
        ));
    };
    if !id.contains('/') {
        return Err(format!("`{id}` is not a plugin id: write `namespace/name@<version>`"));
    }
    let req = semver::VersionReq::parse(req).map_err(|e| format!("bad version requirement `{req}`: {e}"))?;
    Ok((id.to_owned(), req))
}

/// Check and resolve a pipeline.
pub fn plan(spec: &PipelineSpec, catalog: &Catalog) -> Result<Plan, Diagnostics> {
    let mut diags: Vec<Diagnostic> = Vec::new();
    let index: HashMap<&str, usize> = spec
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.value.as_str(), i))
        .collect();
    let ids: Vec<&str> = spec.stages.iter().map(|s| s.id.value.as_str()).collect();

    // 1. What each stage runs.
    let mut operations: Vec<Option<Operation>> = Vec::with_capacity(spec.stages.len());
    for stage in &spec.stages {
        let Some(uses) = &stage.uses else {
            operations.push(None);
            continue;
        };
        let at = uses.span.clone();
        let op = if let Some(name) = uses.value.strip_prefix("builtin:") {
            match catalog.builtin(name) {
                Some(b) => Some(Operation::Builtin(b)),
                None => {
                    let names: Vec<String> = catalog.builtins().iter().map(|b| b.name().to_owned()).collect();
                    let d = if NEEDS_TORCH.contains(&name) {
                        Diagnostic::at(at, format!("`builtin:{name}` is not in this build of doppel")).help(
                            "CTGAN and TVAE need libtorch: build with `--features torch` and PyTorch 2.11.0 \
                             installed (README, \"CTGAN and TVAE\")",
                        )
                    } else {
                        Diagnostic::at(at, format!("unknown builtin `{name}`"))
                            .suggest(name, names.iter().map(String::as_str))
                            .help(format!("builtins: {}", names.join(", ")))
                    };
                    diags.push(d);
                    None
                }
            }
        } else {
            match parse_plugin_ref(&uses.value) {
                Err(m) => {
                    diags.push(Diagnostic::at(at, m));
                    None
                }
                Ok((id, req)) => match catalog.plugins.resolve(&id, &req) {
                    Ok(p) => Some(Operation::Plugin(p)),
                    Err(ResolveError::Unknown { id, installed }) => {
                        diags.push(
                            Diagnostic::at(at, format!("no plugin named `{id}` is installed"))
                                .suggest(&id, installed.iter().map(String::as_str))
                                .help(format!(
                                    "installed: {} (add more with --plugin-dir or DOPPEL_PLUGIN_PATH)",
                                    installed.join(", ")
                                )),
                        );
                        None
                    }
                    Err(e @ ResolveError::NoMatchingVersion { .. }) => {
                        diags.push(Diagnostic::at(at, e.to_string()).label("version not satisfiable"));
                        None
                    }
                    Err(ResolveError::Load(e)) => {
                        diags.push(Diagnostic::at(at, e.to_string()).label("cannot load this plugin"));
                        None
                    }
                },
            }
        };
        operations.push(op);
    }

    // 2. Settings against each stage's schema.
    let mut settings: Vec<Settings> = Vec::with_capacity(spec.stages.len());
    for (stage, op) in spec.stages.iter().zip(&operations) {
        let schema = op.as_ref().map(Operation::schema).unwrap_or_default();
        match op {
            Some(_) => match config::validate(&stage.id.value, &schema, &stage.with, span_of_stage(stage)) {
                Ok(s) => settings.push(s),
                Err(mut d) => {
                    diags.append(&mut d);
                    settings.push(Settings::new());
                }
            },
            None => settings.push(Settings::new()),
        }
    }

    // 3. Inputs exist.
    let mut inputs: Vec<Vec<usize>> = Vec::with_capacity(spec.stages.len());
    for stage in &spec.stages {
        let mut resolved = Vec::new();
        for input in &stage.inputs {
            match index.get(input.value.as_str()) {
                Some(&i) => resolved.push(i),
                None => diags.push(
                    Diagnostic::at(
                        input.span.clone(),
                        format!(
                            "stage `{}` reads `{}`, which is not a stage",
                            stage.id.value, input.value
                        ),
                    )
                    .label("unknown input")
                    .suggest(&input.value, ids.iter().copied()),
                ),
            }
        }
        inputs.push(resolved);
    }

    // 4. No cycles.
    let order = match topological_order(&inputs) {
        Ok(order) => order,
        Err(cycle) => {
            let path: Vec<&str> = cycle.iter().map(|&i| ids[i]).collect();
            // Point at the input that closes the loop: the last stage of the
            // path reading the one before it.
            let (producer, consumer) = (cycle[cycle.len() - 2], cycle[cycle.len() - 1]);
            let span = spec.stages[consumer]
                .inputs
                .iter()
                .find(|inp| inp.value == ids[producer])
                .and_then(|inp| inp.span.clone());
            diags.push(
                Diagnostic::at(span, format!("stages form a cycle: {}", path.join(" → ")))
                    .label("this input closes the cycle")
                    .help("a stage cannot read its own output, directly or through other stages"),
            );
            Vec::new()
        }
    };

    // 5. Inputs have the right kinds and counts; stages that read a file
    // take none, and two stages may not write the same file.
    let mut written: HashMap<String, String> = HashMap::new();
    for (i, stage) in spec.stages.iter().enumerate() {
        let Some(op) = &operations[i] else { continue };
        let id = &stage.id.value;
        if let Operation::Builtin(b) = op
            && let Some(file) = b.output_file(&settings[i])
            && let Some(other) = written.insert(file.clone(), id.clone())
        {
            diags.push(
                Diagnostic::at(
                    span_of_stage(stage),
                    format!("stages `{other}` and `{id}` would both write `{file}`"),
                )
                .help("give one of them another `file`"),
            );
        }
        if inputs[i].len() != stage.inputs.len() {
            continue; // unknown inputs already reported
        }
        let given: Vec<(usize, Produces)> = inputs[i]
            .iter()
            .filter_map(|&j| operations[j].as_ref().map(|o| (j, o.produces())))
            .collect();
        if given.len() != inputs[i].len() {
            continue; // an input failed to resolve; reported above
        }
        let mut check = InputCheck {
            stage,
            describe: op.describe(),
            given,
            ids: &ids,
            inputs: &inputs,
            diags: Vec::new(),
        };
        match op {
            Operation::Builtin(b) if b.file_setting().is_some() => {
                if !check.is_empty() {
                    let d = Diagnostic::at(
                        check.at(),
                        format!("stage `{id}` (builtin:{}) reads a file and takes no inputs", b.name()),
                    )
                    .label("remove these inputs");
                    check.push(d);
                }
                // `columns` only means something for stages that read tables.
                if let Some(cols) = &stage.columns {
                    check.push(Diagnostic::at(
                        cols.span.clone(),
                        format!("stage `{id}` reads a file; `columns` applies to stages with table inputs"),
                    ));
                }
            }
            Operation::Builtin(b) => b.check_inputs(&mut check),
            Operation::Plugin(p) => check_plugin_inputs(p, &mut check),
        }
        diags.append(&mut check.diags);
    }

    // 6. Limits.
    let host = catalog.plugins.host().config();
    let mut limits: Vec<Option<Limits>> = Vec::with_capacity(spec.stages.len());
    for (stage, op) in spec.stages.iter().zip(&operations) {
        let l = &stage.limits;
        match op {
            Some(Operation::Plugin(p)) => {
                if let Some(m) = &l.memory_mb
                    && m.value > host.max_memory_mb
                {
                    diags.push(
                        Diagnostic::at(
                            m.span.clone(),
                            format!(
                                "limits.memory_mb = {} exceeds the operator's maximum of {} MiB",
                                m.value, host.max_memory_mb
                            ),
                        )
                        .help("raise it with --max-plugin-memory-mb"),
                    );
                }
                if let Some(t) = &l.timeout_ms
                    && t.value > host.max_timeout_ms
                {
                    diags.push(
                        Diagnostic::at(
                            t.span.clone(),
                            format!(
                                "limits.timeout_ms = {} exceeds the operator's maximum of {} ms",
                                t.value, host.max_timeout_ms
                            ),
                        )
                        .help("raise it with --max-plugin-timeout-ms"),
                    );
                }
                if let Some(f) = &l.fuel
                    && !host.fuel
                {
                    diags.push(Diagnostic::at(
                        f.span.clone(),
                        "limits.fuel needs a plugin host with fuel metering enabled",
                    ));
                }
                limits.push(Some(p.limits(
                    l.memory_mb.as_ref().map(|x| x.value),
                    l.timeout_ms.as_ref().map(|x| x.value),
                    l.fuel.as_ref().map(|x| x.value),
                )));
            }
            Some(Operation::Builtin(b)) => {
                for span in [&l.memory_mb, &l.timeout_ms, &l.fuel]
                    .into_iter()
                    .flatten()
                    .map(|x| x.span.clone())
                {
                    diags.push(Diagnostic::at(
                        span,
                        format!(
                            "stage `{}` runs builtin:{} natively; limits apply to plugin stages only",
                            stage.id.value,
                            b.name()
                        ),
                    ));
                }
                limits.push(None);
            }
            None => limits.push(None),
        }
    }

    // 7. Outputs name table stages.
    let mut outputs = Vec::new();
    for out in &spec.outputs {
        let valid_stem = !out.name.value.is_empty()
            && out
                .name
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_stem {
            diags.push(Diagnostic::at(
                out.name.span.clone(),
                format!(
                    "output name `{}` must be a plain file name (letters, digits, `_`, `-`)",
                    out.name.value
                ),
            ));
        }
        match index.get(out.stage.value.as_str()) {
            None => diags.push(
                Diagnostic::at(
                    out.stage.span.clone(),
                    format!(
                        "output `{}` names `{}`, which is not a stage",
                        out.name.value, out.stage.value
                    ),
                )
                .suggest(&out.stage.value, ids.iter().copied()),
            ),
            Some(&i) => match operations[i].as_ref().map(Operation::produces) {
                Some(Produces::Table) => outputs.push((out.name.value.clone(), i)),
                Some(other) => diags.push(
                    Diagnostic::at(
                        out.stage.span.clone(),
                        format!(
                            "output `{}` needs a table, but stage `{}` produces {}",
                            out.name.value,
                            out.stage.value,
                            other.noun()
                        ),
                    )
                    .help("every stage's result is in report.json; [outputs] lists tables to write as files"),
                ),
                None => {}
            },
        }
    }

    if !diags.is_empty() {
        // File order reads best; diagnostics without a place go last.
        diags.sort_by_key(|d| d.span.as_ref().map_or(usize::MAX, |s| s.start));
        return Err(Diagnostics {
            file: Arc::clone(&spec.file),
            items: diags,
        });
    }

    let stages = spec
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| PlannedStage {
            id: s.id.value.clone(),
            uses: s.uses.as_ref().map(|u| u.value.clone()).unwrap_or_default(),
            operation: operations[i]
                .clone()
                .expect("no diagnostics means every stage resolved"),
            inputs: inputs[i].clone(),
            settings: settings[i].clone(),
            columns: s.columns.as_ref().map(|c| c.value.clone()),
            limits: limits[i],
        })
        .collect();
    Ok(Plan {
        name: spec.name.clone(),
        file: Arc::clone(&spec.file),
        stages,
        order,
        outputs,
        attributes: spec
            .attributes
            .iter()
            .map(|(k, v)| (k.value.clone(), v.value.clone()))
            .collect(),
        base_dir: std::path::Path::new(&spec.file.name)
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default(),
        input_label: None,
    })
}

/// A differentially private stage of a plan and what it will spend.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivacyCharge {
    /// Stage id.
    pub stage: String,
    /// Generator name.
    pub mechanism: String,
    /// The (ε, δ) it spends.
    pub cost: doppel_generators::PrivacyCost,
}

/// What each differentially private stage of `plan` will spend, known before
/// any row is read, so a budget ledger can refuse the run up front.
pub fn privacy_charges(plan: &Plan) -> crate::Result<Vec<PrivacyCharge>> {
    let mut out = Vec::new();
    for stage in &plan.stages {
        if let Operation::Builtin(b) = &stage.operation
            && let Some(g) = b.generator()
            && let Some(cost) = g
                .privacy_cost(&crate::builtins::generator::params(&stage.settings))
                .map_err(|source| crate::Error::Generator {
                    stage: stage.id.clone(),
                    generator: g.name().to_owned(),
                    source,
                })?
        {
            out.push(PrivacyCharge {
                stage: stage.id.clone(),
                mechanism: g.name().to_owned(),
                cost,
            });
        }
    }
    Ok(out)
}

/// A plugin stage's inputs: one table for a detector, the declared tables
/// for a metric, anything but verdicts and documents for a rule.
fn check_plugin_inputs(p: &LoadedPlugin, check: &mut InputCheck<'_>) {
    match p.manifest.kind {
        PluginKind::Detector => check.tables(1, ""),
        PluginKind::Metric => {
            let roles: Vec<&str> = p
                .info()
                .tables
                .iter()
                .map(|r| match r {
                    TableRole::Real => "real",
                    TableRole::Synthetic => "synthetic",
                    TableRole::Holdout => "holdout",
                })
                .collect();
            check.tables(roles.len(), &format!(" ({} in that order)", roles.join(", ")));
        }
        PluginKind::Rule => {
            let id = check.id().to_owned();
            if check.is_empty() {
                let d = Diagnostic::at(
                    check.stage_span(),
                    format!(
                        "stage `{id}` ({}) judges other stages' results; give it `inputs`",
                        check.describe()
                    ),
                )
                .label("no inputs");
                check.push(d);
            }
            for (k, produces) in check.kinds().into_iter().enumerate() {
                let what = match produces {
                    Produces::Verdicts => "another rule's verdicts",
                    Produces::Document => "a rendered document",
                    _ => continue,
                };
                let d = Diagnostic::at(
                    check.input_span(k),
                    format!("stage `{id}` cannot judge `{}`, {what}", check.input_id(k)),
                );
                check.push(d);
            }
        }
    }
}

/// Why a remote caller's override was refused: `field` is its place in the
/// request (`overrides[2]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct OverrideError {
    /// Where in the request (`overrides[i]`).
    pub field: String,
    /// What is wrong, with what may be set instead.
    pub message: String,
}

/// Check `stage.key=value` overrides that came from a remote caller (a
/// server job) against what each stage declares user-settable
/// ([`Builtin::user_settable`]; plugin stages: nothing). A key that names a
/// path, a format, a model, a plugin, a limit or `uses` is refused here,
/// before anything is applied; the value itself is then checked by
/// [`plan`] against the stage's schema and bounds.
pub fn check_user_overrides(spec: &PipelineSpec, catalog: &Catalog, overrides: &[String]) -> Result<(), OverrideError> {
    for (i, o) in overrides.iter().enumerate() {
        let refuse = |message: String| OverrideError {
            field: format!("overrides[{i}]"),
            message,
        };
        let (path, _) = o
            .split_once('=')
            .ok_or_else(|| refuse("expected `stage.key=value`".to_owned()))?;
        let (stage_id, key) = path
            .trim()
            .split_once('.')
            .ok_or_else(|| refuse("expected `stage.key=value`".to_owned()))?;
        let stage = spec
            .stage(stage_id)
            .ok_or_else(|| refuse(format!("no stage `{stage_id}` in pipeline {}", spec.name)))?;
        let uses = stage.uses.as_ref().map(|u| u.value.as_str()).unwrap_or_default();
        let settable = uses
            .strip_prefix("builtin:")
            .and_then(|name| catalog.builtin(name))
            .map(|b| b.user_settable())
            .unwrap_or_default();
        if !settable.contains(&key) {
            let allowed = if settable.is_empty() {
                format!("stage `{stage_id}` ({uses}) takes no settings from a job")
            } else {
                format!("on `{stage_id}` a job may set {}", settable.join(", "))
            };
            return Err(refuse(format!(
                "`{stage_id}.{key}` cannot be set on a server job; {allowed}"
            )));
        }
    }
    Ok(())
}

/// Kahn's algorithm, taking the earliest-declared ready stage first. On a
/// cycle returns one, as stage indices with the first repeated at the end.
fn topological_order(inputs: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = inputs.len();
    let mut remaining: Vec<usize> = inputs.iter().map(Vec::len).collect();
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ins) in inputs.iter().enumerate() {
        for &j in ins {
            consumers[j].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| remaining[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &c in &consumers[i] {
            remaining[c] -= 1;
            if remaining[c] == 0 {
                ready.insert(c);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk backwards along inputs from a stuck stage until a stage repeats.
    let start = (0..n).find(|&i| remaining[i] > 0).expect("a stuck stage exists");
    let mut path = vec![start];
    let mut current = start;
    loop {
        let next = *inputs[current]
            .iter()
            .find(|&&j| remaining[j] > 0)
            .expect("a stuck stage has a stuck input");
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.reverse(); // input → consumer direction
            cycle.push(cycle[0]);
            return Err(cycle);
        }
        path.push(next);
        current = next;
    }
}

#[cfg(test)]
mod tests {
    use super::topological_order;

    #[test]
    fn order_respects_inputs_and_file_order() {
        // 0: source, 1: synth(0), 2: pii(0), 3: quality(0, 1)
        let order = topological_order(&[vec![], vec![0], vec![0], vec![0, 1]]).unwrap();
        assert_eq!(order, vec![0, 1, 2, 3]);
    }

    #[test]
    fn cycles_are_reported_as_paths() {
        // 0 reads 2, 1 reads 0, 2 reads 1.
        let cycle = topological_order(&[vec![2], vec![0], vec![1]]).unwrap_err();
        assert_eq!(cycle.len(), 4);
        assert_eq!(cycle.first(), cycle.last());
        let self_loop = topological_order(&[vec![0]]).unwrap_err();
        assert_eq!(self_loop, vec![0, 0]);
    }
}
