//! Run a [`Plan`]: stages in dependency order, independent stages at the same
//! time, tables streamed to plugins in batches, progress reported as events,
//! and cancellation honoured everywhere (between batches natively, within
//! 10 ms inside a plugin).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use doppel_generators::{Params, Progress, TrainingData};
use tokio::task::JoinSet;

use crate::builtins::profile::{self, TableProfile};
use crate::builtins::protect;
use crate::builtins::source::{self, SourceOptions};
use crate::builtins::{Builtin, to_param};
use crate::config::{ConfigValue, Settings, get};
use crate::plan::{Operation, Plan, PlannedStage};
use crate::plugin::bindings::types::{Batch, ColumnFact, Facts, TableFacts, TableRole};
use crate::plugin::{LoadedPlugin, PluginKind};
use crate::table::Table;
use crate::{Error, Result};

/// Rows per batch sent to a plugin. Per-call costs are fixed (~tens of µs), so
/// batches below 8k rows would let them dominate.
pub const DEFAULT_BATCH_ROWS: usize = 16_384;
/// The smallest batch the executor sends (except a table's last batch).
pub const MIN_BATCH_ROWS: usize = 8_192;
pub use crate::model::{
    DetectorOutput, Document, MAX_KEPT_FINDINGS, ModelSummary, Output, PipelineInfo, Provenance, RunResult, StageInfo,
    StageRun,
};

/// Something that happened during a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A stage began.
    StageStarted {
        /// Stage id.
        stage: String,
        /// Its `uses`.
        uses: String,
    },
    /// A stage made progress.
    StageProgress {
        /// Stage id.
        stage: String,
        /// Units done.
        done: u64,
        /// Units in all.
        total: u64,
        /// What is counted (`rows`, `columns`).
        unit: &'static str,
    },
    /// A stage finished.
    StageFinished {
        /// Stage id.
        stage: String,
        /// Wall time.
        elapsed: Duration,
        /// One line on what it produced.
        summary: String,
    },
    /// A stage failed (the run stops).
    StageFailed {
        /// Stage id.
        stage: String,
        /// Why.
        error: String,
    },
}

/// Receives events, from any thread.
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// Rows per batch sent to plugins (at least [`MIN_BATCH_ROWS`]).
    pub batch_rows: usize,
    /// Set to stop the run.
    pub cancel: Arc<AtomicBool>,
    /// Where events go.
    pub events: Option<EventSink>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("batch_rows", &self.batch_rows)
            .finish_non_exhaustive()
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            batch_rows: DEFAULT_BATCH_ROWS,
            cancel: Arc::new(AtomicBool::new(false)),
            events: None,
        }
    }
}

/// Everything a stage task needs, moved onto a blocking thread.
struct StageCtx {
    stage: PlannedStage,
    inputs: Vec<(String, Output)>,
    attributes: Settings,
    base_dir: std::path::PathBuf,
    pipeline: Arc<PipelineInfo>,
    options: RunOptions,
}

impl StageCtx {
    fn emit(&self, event: Event) {
        if let Some(sink) = &self.options.events {
            sink(&event);
        }
    }

    fn progress(&self, done: u64, total: u64, unit: &'static str) {
        self.emit(Event::StageProgress {
            stage: self.stage.id.clone(),
            done,
            total,
            unit,
        });
    }

    fn cancelled(&self) -> bool {
        self.options.cancel.load(Ordering::Relaxed)
    }

    fn stage_err(&self, message: impl Into<String>) -> Error {
        Error::Stage {
            stage: self.stage.id.clone(),
            message: message.into(),
        }
    }

    /// The i-th input as a table, restricted to `columns` if the stage says so.
    fn table(&self, i: usize) -> Result<Arc<Table>> {
        let Some((_, Output::Table(t, _))) = self.inputs.get(i) else {
            return Err(Error::Internal(format!(
                "stage `{}` input {i} is not a table",
                self.stage.id
            )));
        };
        match &self.stage.columns {
            Some(cols) => Ok(Arc::new(t.select(&self.stage.id, cols)?)),
            None => Ok(Arc::clone(t)),
        }
    }
}

/// Run a plan to completion.
pub async fn run(plan: &Plan, options: &RunOptions) -> Result<RunResult> {
    let started = Instant::now();
    // Stages stop on a flag of this run's own: a failing stage must stop its
    // siblings without leaving the caller's flag set for its next run. The
    // caller's flag is forwarded to it.
    let external = Arc::clone(&options.cancel);
    let stop = Arc::new(AtomicBool::new(external.load(Ordering::Relaxed)));
    let forward = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            while !external.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    let result = run_stages(plan, options, &stop, started).await;
    forward.abort();
    result
}

async fn run_stages(plan: &Plan, options: &RunOptions, stop: &Arc<AtomicBool>, started: Instant) -> Result<RunResult> {
    let mut options = options.clone();
    options.batch_rows = options.batch_rows.max(MIN_BATCH_ROWS);
    options.cancel = Arc::clone(stop);
    let pipeline = Arc::new(PipelineInfo {
        name: plan.name.clone(),
        file: plan.file.name.clone(),
        stages: plan
            .stages
            .iter()
            .map(|s| StageInfo {
                id: s.id.clone(),
                uses: s.uses.clone(),
                plugin: match &s.operation {
                    Operation::Plugin(p) => Some((p.label(), p.sha256.clone())),
                    Operation::Builtin(_) => None,
                },
            })
            .collect(),
        attributes: plan.attributes.clone(),
    });
    let n = plan.stages.len();
    let mut outputs: Vec<Option<StageRun>> = vec![None; n];
    let mut launched = vec![false; n];
    let mut tasks: JoinSet<(usize, Result<StageRun>)> = JoinSet::new();
    loop {
        for &i in &plan.order {
            let stage = &plan.stages[i];
            if launched[i] || !stage.inputs.iter().all(|&j| outputs[j].is_some()) {
                continue;
            }
            launched[i] = true;
            let ctx = StageCtx {
                stage: stage.clone(),
                inputs: stage
                    .inputs
                    .iter()
                    .map(|&j| {
                        let run = outputs[j].as_ref().expect("inputs are done");
                        (run.id.clone(), run.output.clone())
                    })
                    .collect(),
                attributes: plan.attributes.clone(),
                base_dir: plan.base_dir.clone(),
                pipeline: Arc::clone(&pipeline),
                options: options.clone(),
            };
            tasks.spawn_blocking(move || (i, run_stage(&ctx)));
        }
        let Some(joined) = tasks.join_next().await else { break };
        let (i, result) = joined.map_err(|e| Error::Internal(format!("a stage task failed: {e}")))?;
        match result {
            Ok(run) => outputs[i] = Some(run),
            Err(e) => {
                // Stop everything still running; their errors are secondary.
                options.cancel.store(true, Ordering::Relaxed);
                while tasks.join_next().await.is_some() {}
                return Err(e);
            }
        }
    }
    if options.cancel.load(Ordering::Relaxed) {
        return Err(Error::Cancelled);
    }
    let stages = outputs
        .into_iter()
        .map(|o| o.ok_or_else(|| Error::Internal("a stage never ran".to_owned())))
        .collect::<Result<Vec<_>>>()?;
    Ok(RunResult {
        pipeline: plan.name.clone(),
        stages,
        elapsed: started.elapsed(),
    })
}

fn run_stage(ctx: &StageCtx) -> Result<StageRun> {
    let started = Instant::now();
    ctx.emit(Event::StageStarted {
        stage: ctx.stage.id.clone(),
        uses: ctx.stage.uses.clone(),
    });
    if ctx.cancelled() {
        return Err(Error::Cancelled);
    }
    let rows_in: u64 = ctx
        .inputs
        .iter()
        .filter_map(|(_, o)| o.table())
        .map(|t| t.rows() as u64)
        .sum();
    let result = match &ctx.stage.operation {
        Operation::Builtin(Builtin::Source) => run_source(ctx),
        Operation::Builtin(Builtin::Profile) => {
            let table = ctx.table(0)?;
            profile::profile(&table, &ctx.stage.settings).map(|p| Output::Profile(Arc::new(p)))
        }
        Operation::Builtin(Builtin::Generator(g)) => run_generator(ctx, g.as_ref()),
        Operation::Builtin(Builtin::Sample) => run_sample(ctx),
        Operation::Builtin(Builtin::Protect) => run_protect(ctx),
        Operation::Builtin(Builtin::Split) => {
            let table = ctx.table(0)?;
            crate::builtins::split::split(&table, &ctx.stage.settings)
                .map(|t| Output::Table(Arc::new(t), Provenance::Read))
        }
        Operation::Builtin(Builtin::Privacy) => run_privacy(ctx),
        Operation::Builtin(Builtin::ReportPdf) => {
            let inputs: Vec<(&str, &Output)> = ctx.inputs.iter().map(|(n, o)| (n.as_str(), o)).collect();
            crate::builtins::report_pdf::render(&ctx.stage.id, &inputs, &ctx.pipeline, &ctx.stage.settings)
                .map(|d| Output::Document(Arc::new(d)))
        }
        Operation::Plugin(p) => match p.manifest.kind {
            PluginKind::Detector => run_detector(ctx, p),
            PluginKind::Metric => run_metric(ctx, p),
            PluginKind::Rule => run_rule(ctx, p),
        },
    };
    match result {
        Ok(output) => {
            let elapsed = started.elapsed();
            ctx.emit(Event::StageFinished {
                stage: ctx.stage.id.clone(),
                elapsed,
                summary: summarize(&output),
            });
            Ok(StageRun {
                id: ctx.stage.id.clone(),
                uses: ctx.stage.uses.clone(),
                output,
                elapsed,
                rows_in,
            })
        }
        Err(e) => {
            let e = if ctx.cancelled() && !matches!(e, Error::Cancelled) && is_cancellation(&e) {
                Error::Cancelled
            } else {
                e
            };
            ctx.emit(Event::StageFailed {
                stage: ctx.stage.id.clone(),
                error: e.to_string(),
            });
            Err(e)
        }
    }
}

fn is_cancellation(e: &Error) -> bool {
    matches!(e, Error::Plugin(p) if matches!(p.failure(), Some(crate::plugin::Failure::Cancelled)))
        || matches!(
            e,
            Error::Generator {
                source: doppel_generators::Error::Cancelled,
                ..
            }
        )
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
                .filter(|c| c.entity != "NONE")
                .map(|c| format!("{}={}", c.column, c.entity))
                .collect();
            if pii.is_empty() {
                "no personal data found".to_owned()
            } else {
                format!("personal data in {}", pii.join(", "))
            }
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

fn run_source(ctx: &StageCtx) -> Result<Output> {
    let mut options = SourceOptions::from_settings(&ctx.stage.settings).map_err(|m| ctx.stage_err(m))?;
    // Relative paths in a pipeline are relative to the pipeline file.
    if options.path.is_relative() {
        options.path = ctx.base_dir.join(&options.path);
    }
    let table = source::read_table(&options)?;
    ctx.progress(table.rows() as u64, table.rows() as u64, "rows");
    Ok(Output::Table(Arc::new(table), Provenance::Read))
}

/// Bridges generator progress to events and cancellation.
struct GenProgress<'a> {
    ctx: &'a StageCtx,
    phase_offset: u64,
}

impl Progress for GenProgress<'_> {
    fn advance(&self, done: u64, total: u64) {
        // Two phases (fit, sample) shown as one 0-200 % bar would confuse:
        // report fit as the first half and sampling as the second.
        let scaled = self.phase_offset + (done * 500).checked_div(total).unwrap_or(0);
        self.ctx.progress(scaled, 1000, "‰");
    }
    fn is_cancelled(&self) -> bool {
        self.ctx.cancelled()
    }
}

fn int_setting(settings: &Settings, key: &str) -> Option<i64> {
    match get(settings, key) {
        Some(ConfigValue::Integer(i)) => Some(*i),
        _ => None,
    }
}

/// A generator stage's own parameters (everything but `rows` and `seed`).
fn generator_params(settings: &Settings) -> Params {
    let mut params = Params::new();
    for (k, v) in settings {
        if !crate::builtins::HOST_SETTINGS.contains(&k.as_str()) {
            params = params.set(k, to_param(v));
        }
    }
    params
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
pub fn privacy_charges(plan: &Plan) -> Result<Vec<PrivacyCharge>> {
    let mut out = Vec::new();
    for stage in &plan.stages {
        if let Operation::Builtin(Builtin::Generator(g)) = &stage.operation
            && let Some(cost) =
                g.privacy_cost(&generator_params(&stage.settings))
                    .map_err(|source| Error::Generator {
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

fn run_generator(ctx: &StageCtx, generator: &dyn doppel_generators::Generator) -> Result<Output> {
    let table = ctx.table(0)?;
    let params = generator_params(&ctx.stage.settings);
    let gen_err = |source| Error::Generator {
        stage: ctx.stage.id.clone(),
        generator: generator.name().to_owned(),
        source,
    };
    // The release rule (crate::release): a non-DP generator learns from a
    // copy whose identifier-like columns and rare values are markers, and
    // what it samples is finished so that no rare real value is released.
    // A DP generator's guarantee covers what it releases; rewriting its
    // input or output by exact counts would void it.
    let dp = generator.privacy_cost(&params).map_err(gen_err)?.is_some();
    let guarded = if dp {
        None
    } else {
        Some(crate::release::before_fit(&table)?)
    };
    let learn: &Table = guarded.as_ref().map_or(table.as_ref(), |g| &g.table);
    let batch = learn.concat()?;
    // Default size: the whole real table, also when the generator was trained
    // on a split-off part of it.
    let default_rows = table.population_rows.unwrap_or(batch.num_rows());
    let rows_setting = int_setting(&ctx.stage.settings, "rows");
    let seed = int_setting(&ctx.stage.settings, "seed").map_or(0, |s| u64::try_from(s).unwrap_or(0));
    let data = TrainingData {
        batch: &batch,
        semantics: &learn.semantics,
    };
    let fit_started = Instant::now();
    let model = generator
        .fit(&data, &params, seed, &GenProgress { ctx, phase_offset: 0 })
        .map_err(gen_err)?;
    let fit = fit_started.elapsed();
    // A DP model answers its noisy row count of the rows it learned from: the
    // real count is private too. It is not scaled up for rows a split set
    // aside, because that ratio comes from exact counts.
    let rows = rows_setting.map_or_else(
        || model.suggested_rows().unwrap_or(default_rows),
        |r| usize::try_from(r).unwrap_or(0),
    );
    let sample_started = Instant::now();
    let synthetic = model
        .sample(rows, seed, &GenProgress { ctx, phase_offset: 500 })
        .map_err(gen_err)?;
    let synthetic = match &guarded {
        Some(g) => crate::release::after_sample(&synthetic, Some(&g.forbidden), seed)?,
        None => synthetic,
    };
    let sample = sample_started.elapsed();
    let out = Table {
        schema: synthetic.schema(),
        batches: vec![synthetic],
        // The twin has the same columns with the same meaning; keeping the real
        // table's semantic types lets metrics compare like with like.
        semantics: Arc::clone(&table.semantics),
        population_rows: None,
    };
    let saved_model = if matches!(get(&ctx.stage.settings, "save_model"), Some(ConfigValue::Boolean(true))) {
        let bytes = model
            .save()
            .ok_or_else(|| ctx.stage_err(format!("builtin:{} cannot save its models", generator.name())))?
            .map_err(gen_err)?;
        Some(Arc::new(Document {
            file_name: saved_model_name(&ctx.stage.id),
            bytes,
            pages: 0,
        }))
    } else {
        None
    };
    let mut notes = model.notes();
    notes.extend(
        guarded
            .iter()
            .flat_map(|g| g.columns.iter().map(crate::release::ColumnGuard::note)),
    );
    let summary = ModelSummary {
        generator: generator.name().to_owned(),
        columns: model.columns(),
        notes,
        fit,
        sample,
        seed,
        privacy: model.privacy(),
        saved_model,
        loaded_from: None,
    };
    Ok(Output::Table(Arc::new(out), Provenance::Generated(Arc::new(summary))))
}

/// The file a generator stage saves its model to.
pub fn saved_model_name(stage: &str) -> String {
    format!("model-{stage}.safetensors")
}

/// `builtin:sample`: load a saved model and sample it — no real data, no
/// fit, and no privacy spent (sampling a DP model is post-processing).
fn run_sample(ctx: &StageCtx) -> Result<Output> {
    let mut path = match get(&ctx.stage.settings, "model") {
        Some(ConfigValue::String(p)) => std::path::PathBuf::from(p),
        _ => return Err(ctx.stage_err("`model` names no file")),
    };
    if path.is_relative() {
        path = ctx.base_dir.join(&path);
    }
    let bytes = std::fs::read(&path).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })?;
    // Name the file, not its directory: a server's work directory is its own business.
    let file_name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let generator = doppel_generators::saved_generator(&bytes).unwrap_or_else(|_| "saved model".to_owned());
    let gen_err = |source| Error::Generator {
        stage: ctx.stage.id.clone(),
        generator: format!("{generator} from {file_name}"),
        source,
    };
    let model = doppel_generators::load_model(&bytes).map_err(gen_err)?;
    let seed = int_setting(&ctx.stage.settings, "seed").map_or(0, |s| u64::try_from(s).unwrap_or(0));
    let rows = match int_setting(&ctx.stage.settings, "rows") {
        Some(r) => usize::try_from(r).unwrap_or(0),
        None => model
            .suggested_rows()
            .ok_or_else(|| ctx.stage_err("the model does not know its table's size; set `rows`"))?,
    };
    let started = Instant::now();
    let synthetic = model
        .sample(rows, seed, &GenProgress { ctx, phase_offset: 500 })
        .map_err(gen_err)?;
    // The model learned markers where its table had identifiers and rare
    // values (crate::release): they become generated values here too.
    let synthetic = crate::release::after_sample(&synthetic, None, seed)?;
    let sample = started.elapsed();
    let columns = model.columns();
    let semantics: Vec<_> = columns.iter().map(|c| c.semantic).collect();
    if semantics.len() != synthetic.num_columns() {
        return Err(Error::Internal(format!(
            "{} column models for {} columns",
            semantics.len(),
            synthetic.num_columns()
        )));
    }
    let out = Table {
        schema: synthetic.schema(),
        batches: vec![synthetic],
        semantics: Arc::new(semantics),
        population_rows: None,
    };
    let summary = ModelSummary {
        generator,
        columns,
        notes: model.notes(),
        fit: Duration::ZERO,
        sample,
        seed,
        privacy: model.privacy(),
        saved_model: None,
        loaded_from: Some(file_name),
    };
    Ok(Output::Table(Arc::new(out), Provenance::Generated(Arc::new(summary))))
}

fn run_privacy(ctx: &StageCtx) -> Result<Output> {
    let tables: Vec<Arc<Table>> = (0..ctx.inputs.len())
        .take_while(|&i| matches!(ctx.inputs[i].1, Output::Table(..)))
        .map(|i| ctx.table(i))
        .collect::<Result<_>>()?;
    let findings = ctx.inputs.iter().find_map(|(_, o)| match o {
        Output::Findings(f) => Some(f.as_ref()),
        _ => None,
    });
    let metrics = crate::builtins::privacy::privacy(&ctx.stage.id, &tables, findings, &ctx.stage.settings)?;
    Ok(Output::Metrics(Arc::new(metrics)))
}

fn run_protect(ctx: &StageCtx) -> Result<Output> {
    let table = ctx.table(0)?;
    let Some((_, Output::Findings(findings))) = ctx.inputs.get(1) else {
        return Err(Error::Internal(format!(
            "stage `{}` has no findings input",
            ctx.stage.id
        )));
    };
    let (protected, actions) = protect::protect(&ctx.stage.id, &table, findings, &ctx.stage.settings)?;
    ctx.progress(protected.rows() as u64, table.rows() as u64, "rows");
    Ok(Output::Table(
        Arc::new(protected),
        Provenance::Protected(Arc::new(actions)),
    ))
}

fn start_session(ctx: &StageCtx, plugin: &LoadedPlugin) -> Result<crate::plugin::Session> {
    let limits = ctx
        .stage
        .limits
        .ok_or_else(|| Error::Internal(format!("plugin stage `{}` has no limits", ctx.stage.id)))?;
    Ok(plugin.start(&ctx.stage.id, limits, Arc::clone(&ctx.options.cancel))?)
}

fn run_detector(ctx: &StageCtx, plugin: &LoadedPlugin) -> Result<Output> {
    let table = ctx.table(0)?;
    let projection = table.projection(&plugin.info().reads);
    let columns: Vec<String> = projection.schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut session = start_session(ctx, plugin)?;
    session.check(&ctx.stage.settings, &[projection.encode_schema()?])?;
    session.create(&ctx.stage.settings)?;
    let mut out = DetectorOutput::default();
    let total = table.rows() as u64;
    let mut offset = 0u64;
    if !columns.is_empty() {
        for chunk in table.chunks(ctx.options.batch_rows)? {
            if ctx.cancelled() {
                return Err(Error::Cancelled);
            }
            let batch = Batch {
                ipc: projection.encode(&chunk)?,
                row_offset: offset,
            };
            let outcome = session.scan(&batch, &columns)?;
            offset += chunk.num_rows() as u64;
            out.total_findings += outcome.findings.len() as u64;
            let room = MAX_KEPT_FINDINGS.saturating_sub(out.findings.len());
            out.findings.extend(outcome.findings.into_iter().take(room));
            ctx.progress(offset, total, "rows");
            if !outcome.needs_more {
                break;
            }
        }
    }
    out.rows_scanned = offset;
    out.columns = session.finish_detector()?;
    Ok(Output::Findings(Arc::new(out)))
}

fn run_metric(ctx: &StageCtx, plugin: &LoadedPlugin) -> Result<Output> {
    let roles = plugin.info().tables.clone();
    let tables = (0..roles.len()).map(|i| ctx.table(i)).collect::<Result<Vec<_>>>()?;
    let projections: Vec<_> = tables.iter().map(|t| t.projection(&plugin.info().reads)).collect();
    let schemas = projections
        .iter()
        .map(|p| p.encode_schema())
        .collect::<Result<Vec<_>>>()?;
    let mut session = start_session(ctx, plugin)?;
    session.check(&ctx.stage.settings, &schemas)?;
    session.create(&ctx.stage.settings)?;
    let total: u64 = tables.iter().map(|t| t.rows() as u64).sum();
    let mut done = 0u64;
    for ((table, projection), role) in tables.iter().zip(&projections).zip(&roles) {
        let mut offset = 0u64;
        for chunk in table.chunks(ctx.options.batch_rows)? {
            if ctx.cancelled() {
                return Err(Error::Cancelled);
            }
            let batch = Batch {
                ipc: projection.encode(&chunk)?,
                row_offset: offset,
            };
            session.update(role_copy(role), &batch)?;
            offset += chunk.num_rows() as u64;
            done += chunk.num_rows() as u64;
            ctx.progress(done, total, "rows");
        }
    }
    Ok(Output::Metrics(Arc::new(session.finish_metric()?)))
}

fn role_copy(role: &TableRole) -> TableRole {
    match role {
        TableRole::Real => TableRole::Real,
        TableRole::Synthetic => TableRole::Synthetic,
        TableRole::Holdout => TableRole::Holdout,
    }
}

/// Column facts of a profile.
fn profile_facts(stage: &str, p: &TableProfile) -> TableFacts {
    TableFacts {
        stage: stage.to_owned(),
        rows: p.rows,
        columns: p
            .columns
            .iter()
            .map(|c| ColumnFact {
                name: c.name.clone(),
                data_type: c.data_type.clone(),
                semantic_type: c.semantic_type.clone(),
                null_share: c.null_share,
                distinct: c.distinct,
                min: c.min.clone(),
                max: c.max.clone(),
            })
            .collect(),
    }
}

fn run_rule(ctx: &StageCtx, plugin: &LoadedPlugin) -> Result<Output> {
    let mut facts = Facts {
        tables: Vec::new(),
        findings: Vec::new(),
        metrics: Vec::new(),
        attributes: ctx.attributes.clone(),
    };
    let no_top = vec![("top".to_owned(), ConfigValue::Integer(0))];
    for (name, output) in &ctx.inputs {
        match output {
            Output::Table(t, _) => facts.tables.push(profile_facts(name, &profile::profile(t, &no_top)?)),
            Output::Profile(p) => facts.tables.push(profile_facts(name, p)),
            Output::Findings(d) => facts.findings.push((name.clone(), d.columns.clone())),
            Output::Metrics(m) => facts.metrics.push((name.clone(), m.as_ref().clone())),
            Output::Verdicts(_) | Output::Document(_) => {}
        }
    }
    let mut session = start_session(ctx, plugin)?;
    session.check(&ctx.stage.settings, &[])?;
    session.create(&ctx.stage.settings)?;
    Ok(Output::Verdicts(Arc::new(session.evaluate(&facts)?)))
}
