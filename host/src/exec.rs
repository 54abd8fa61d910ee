//! Run a [`Plan`]: stages in dependency order, independent stages at the same
//! time (as many as their input tables' memory allows: see
//! [`RunOptions::side_by_side_bytes`]), tables streamed to plugins in
//! batches, progress reported as events, and cancellation honoured
//! everywhere (between batches natively, within 10 ms inside a plugin).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::plan::{Operation, Plan};
use crate::stage::StageContext;
use crate::{Error, Result};

/// Rows per batch sent to a plugin. Per-call costs are fixed (~tens of µs), so
/// batches below 8k rows would let them dominate.
pub const DEFAULT_BATCH_ROWS: usize = 16_384;
/// The smallest batch the executor sends (except a table's last batch).
pub const MIN_BATCH_ROWS: usize = 8_192;
/// Default of [`RunOptions::side_by_side_bytes`]: 1 GiB of input tables.
/// Adult × 10 (325,610 rows, about 0.1 GB a copy) still scores in parallel;
/// at × 100 each scoring stage reads about 1 GB and runs alone.
pub const DEFAULT_SIDE_BY_SIDE_BYTES: u64 = 1 << 30;
pub use crate::model::{
    DetectorOutput, Document, MAX_KEPT_FINDINGS, ModelSummary, Output, PipelineInfo, Provenance, RunResult, StageInfo,
    StageRun, summarize,
};
pub use crate::plan::{PrivacyCharge, privacy_charges};
pub use crate::stage::{Event, EventSink, human_duration};

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// Rows per batch sent to plugins (at least [`MIN_BATCH_ROWS`]).
    pub batch_rows: usize,
    /// Set to stop the run.
    pub cancel: Arc<AtomicBool>,
    /// Where events go.
    pub events: Option<EventSink>,
    /// Drop a stage's table rows once every stage that reads them has run,
    /// unless the pipeline's `[outputs]` name it; the run's result keeps its
    /// row count, columns and provenance (see `Table::without_rows`). On a
    /// table of millions of rows the source read at the start is then not
    /// held while the twin is scored. Off for callers that read every
    /// stage's rows afterwards (tests, `doppel plugin test`).
    pub release_tables: bool,
    /// Where count-based fits (`builtin:privsyn`) do their counting.
    pub engine: EngineOptions,
    /// Input-table bytes the stages running at the same time may read
    /// together (0: no limit). A stage's working memory grows with its
    /// inputs (encodings, indexes, a plugin's copy), so on a large table
    /// scoring stages that would each hold a few copies wait for one another
    /// instead of all holding theirs at once; a stage past the limit on its
    /// own runs alone. Shared inputs count once per stage that reads them.
    pub side_by_side_bytes: u64,
}

/// Where count-based fits count: rows in memory (the default) or DataFusion
/// plans on an Apache Ballista cluster ([`doppel_engine`]). Other generators
/// learn on this machine either way, and say so in their notes.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// `Engine::Local`, or the Ballista scheduler.
    pub engine: doppel_engine::Engine,
    /// Folder the training table is staged to as Parquet; on a cluster,
    /// one every executor reads at the same path.
    pub scratch: std::path::PathBuf,
    /// Rows per staged Parquet part (the tasks a cluster runs in parallel).
    pub part_rows: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            engine: doppel_engine::Engine::Local,
            scratch: std::env::temp_dir(),
            part_rows: 1_000_000,
        }
    }
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
            release_tables: false,
            engine: EngineOptions::default(),
            side_by_side_bytes: DEFAULT_SIDE_BY_SIDE_BYTES,
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
    // Stages still to read each stage's output; outputs the pipeline writes
    // are never released.
    let mut readers: Vec<usize> = vec![0; n];
    for stage in &plan.stages {
        for &j in &stage.inputs {
            readers[j] += 1;
        }
    }
    let written: Vec<bool> = (0..n).map(|i| plan.outputs.iter().any(|(_, o)| *o == i)).collect();
    let mut tasks: JoinSet<(usize, Result<StageRun>)> = JoinSet::new();
    // Input bytes each running stage claimed, and their sum.
    let mut claims: Vec<u64> = vec![0; n];
    let (mut claimed, mut running) = (0u64, 0usize);
    loop {
        for &i in &plan.order {
            let stage = &plan.stages[i];
            if launched[i] || !stage.inputs.iter().all(|&j| outputs[j].is_some()) {
                continue;
            }
            let claim: u64 = stage
                .inputs
                .iter()
                .filter_map(|&j| outputs[j].as_ref().and_then(|run| run.output.table()))
                .map(|t| t.batches.iter().map(|b| b.get_array_memory_size() as u64).sum::<u64>())
                .sum();
            let limit = options.side_by_side_bytes;
            if running > 0 && limit > 0 && claimed.saturating_add(claim) > limit {
                // Waits for a running stage to finish; with none left it
                // starts however large it is.
                continue;
            }
            (claims[i], claimed, running) = (claim, claimed + claim, running + 1);
            launched[i] = true;
            let ctx = StageContext {
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
                batch_rows: options.batch_rows,
                cancel: Arc::clone(&options.cancel),
                events: options.events.clone(),
                started: std::time::Instant::now(),
                first_report: std::sync::OnceLock::new(),
                engine: options.engine.clone(),
            };
            tasks.spawn_blocking(move || (i, run_stage(&ctx)));
        }
        let Some(joined) = tasks.join_next().await else { break };
        let (i, result) = joined.map_err(|e| Error::Internal(format!("a stage task failed: {e}")))?;
        (claimed, running) = (claimed - claims[i], running - 1);
        match result {
            Ok(run) => {
                outputs[i] = Some(run);
                for &j in &plan.stages[i].inputs {
                    readers[j] -= 1;
                    if options.release_tables && readers[j] == 0 && !written[j] {
                        release(&mut outputs[j]);
                    }
                }
            }
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

/// Replace a finished stage's table by its record without rows (the memory
/// is freed once no other stage's output shares the arrays).
fn release(run: &mut Option<StageRun>) {
    if let Some(run) = run
        && let Output::Table(table, provenance) = &run.output
    {
        run.output = Output::Table(Arc::new(table.without_rows()), provenance.clone());
    }
}

fn run_stage(ctx: &StageContext) -> Result<StageRun> {
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
        Operation::Builtin(b) => b.run(ctx),
        Operation::Plugin(p) => crate::plugin::stage::run(ctx, p),
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
