//! What a stage sees: while it is planned ([`InputCheck`]: its inputs' kinds,
//! to refuse wrong wiring with a place in the file) and while it runs
//! ([`StageContext`]: its settings, its inputs' outputs, progress and
//! cancellation). Builtins and plugin stages use these; only the executor
//! (`exec`) builds them and schedules stages.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::{ConfigValue, Settings};
use crate::model::{Output, PipelineInfo};
use crate::plan::PlannedStage;
use crate::spec::{Diagnostic, StageSpec};
use crate::table::Table;
use crate::{Error, Result};

/// What a stage hands to its consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Produces {
    /// A table (source, generators).
    Table,
    /// A table profile.
    Profile,
    /// Column findings (detectors).
    Findings,
    /// Scores (metrics).
    Metrics,
    /// Verdicts (rules).
    Verdicts,
    /// A rendered document (reports).
    Document,
}

impl Produces {
    /// "a table", "findings", … for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Produces::Table => "a table",
            Produces::Profile => "a profile",
            Produces::Findings => "findings",
            Produces::Metrics => "scores",
            Produces::Verdicts => "verdicts",
            Produces::Document => "a document",
        }
    }
}

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
        /// Since the stage started (for the time left: [`Event::time_left`]).
        elapsed: Duration,
        /// `elapsed` and `done` at the stage's first report: the time left
        /// follows the rate since then, so work a stage does before it can
        /// count (reading its inputs, building an index) does not make the
        /// first estimates many times too long. `None` on the first report.
        counting_since: Option<(Duration, u64)>,
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

impl Event {
    /// For a progress event, the time left at the stage's rate since its
    /// first report; `None` for other events and until a second report has
    /// counted something.
    pub fn time_left(&self) -> Option<Duration> {
        let Event::StageProgress {
            done,
            total,
            elapsed,
            counting_since,
            ..
        } = self
        else {
            return None;
        };
        let (since, done_then) = (*counting_since)?;
        let counted = done.checked_sub(done_then).filter(|c| *c > 0)?;
        if *total == 0 {
            return None;
        }
        let spent = elapsed.saturating_sub(since);
        #[allow(clippy::cast_precision_loss, reason = "a rate for people")]
        let left = spent.as_secs_f64() * total.saturating_sub(*done) as f64 / counted as f64;
        Some(Duration::from_secs_f64(left))
    }
}

/// A duration for people: `1h 02m`, `3m 05s`, `12s`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, s / 60 % 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Receives events, from any thread.
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// Everything a running stage may use, on its own blocking thread.
pub struct StageContext {
    /// The stage as planned (id, settings, `columns`, limits).
    pub stage: PlannedStage,
    /// Its inputs' outputs, in `inputs` order, with the producing stage's id.
    pub inputs: Vec<(String, Output)>,
    /// Pipeline attributes (rules read them as facts).
    pub attributes: Settings,
    /// Directory relative file settings resolve against.
    pub base_dir: PathBuf,
    /// The pipeline, for stages that report on it.
    pub pipeline: Arc<PipelineInfo>,
    /// Rows per batch sent to plugins.
    pub batch_rows: usize,
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) events: Option<EventSink>,
    /// When the stage was launched.
    pub(crate) started: std::time::Instant,
    /// Elapsed time and units done at the first progress report.
    pub(crate) first_report: std::sync::OnceLock<(Duration, u64)>,
    /// Where count-based fits count.
    pub(crate) engine: crate::exec::EngineOptions,
}

impl std::fmt::Debug for StageContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageContext")
            .field("stage", &self.stage.id)
            .finish_non_exhaustive()
    }
}

impl StageContext {
    /// The stage's id.
    pub fn id(&self) -> &str {
        &self.stage.id
    }

    /// Its validated settings (defaults applied).
    pub fn settings(&self) -> &Settings {
        &self.stage.settings
    }

    /// An integer setting.
    pub fn int(&self, key: &str) -> Option<i64> {
        match crate::config::get(&self.stage.settings, key) {
            Some(ConfigValue::Integer(i)) => Some(*i),
            _ => None,
        }
    }

    /// The `seed` setting (0 when unset).
    pub fn seed(&self) -> u64 {
        self.int("seed").map_or(0, |s| u64::try_from(s).unwrap_or(0))
    }

    pub(crate) fn emit(&self, event: Event) {
        if let Some(sink) = &self.events {
            sink(&event);
        }
    }

    /// Report progress (shown as a bar by the CLI, as job progress by servers).
    pub fn progress(&self, done: u64, total: u64, unit: &'static str) {
        let elapsed = self.started.elapsed();
        let first = *self.first_report.get_or_init(|| (elapsed, done));
        self.emit(Event::StageProgress {
            stage: self.stage.id.clone(),
            done,
            total,
            unit,
            elapsed,
            counting_since: (first != (elapsed, done)).then_some(first),
        });
    }

    /// Whether the run was cancelled (check between batches).
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// The run's cancel flag, for work that polls it itself (plugins).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancel)
    }

    /// An error naming this stage.
    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::Stage {
            stage: self.stage.id.clone(),
            message: message.into(),
        }
    }

    /// A relative file setting resolved against the pipeline's directory.
    pub fn resolve(&self, path: PathBuf) -> PathBuf {
        if path.is_relative() {
            self.base_dir.join(path)
        } else {
            path
        }
    }

    /// The i-th input as a table, restricted to `columns` if the stage says so.
    pub fn table(&self, i: usize) -> Result<Arc<Table>> {
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

    /// The leading inputs that are tables (each restricted to `columns`).
    pub fn leading_tables(&self) -> Result<Vec<Arc<Table>>> {
        (0..self.inputs.len())
            .take_while(|&i| matches!(self.inputs[i].1, Output::Table(..)))
            .map(|i| self.table(i))
            .collect()
    }
}

/// A stage's inputs as the planner sees them, for a builtin to check their
/// kinds and counts ([`crate::builtins::Builtin::check_inputs`]). Problems
/// are collected with their place in the file; the planner reports them all.
#[derive(Debug)]
pub struct InputCheck<'a> {
    pub(crate) stage: &'a StageSpec,
    pub(crate) describe: String,
    /// (stage index, what it produces) of each input, in `inputs` order.
    pub(crate) given: Vec<(usize, Produces)>,
    pub(crate) ids: &'a [&'a str],
    pub(crate) inputs: &'a [Vec<usize>],
    pub(crate) diags: Vec<Diagnostic>,
}

impl InputCheck<'_> {
    /// The stage's id.
    pub fn id(&self) -> &str {
        &self.stage.id.value
    }

    /// `builtin:<name>` (or the plugin) for messages.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// What each input produces, in order.
    pub fn kinds(&self) -> Vec<Produces> {
        self.given.iter().map(|(_, p)| *p).collect()
    }

    /// How many inputs the stage lists.
    pub fn len(&self) -> usize {
        self.given.len()
    }

    /// Whether the stage lists no inputs.
    pub fn is_empty(&self) -> bool {
        self.given.is_empty()
    }

    /// The id of the stage behind the k-th input.
    pub fn input_id(&self, k: usize) -> &str {
        self.ids[self.given[k].0]
    }

    /// Whether the detector behind input `detector` scanned the table behind
    /// input `table` (cell findings point at rows of the table they read).
    pub fn scanned(&self, detector: usize, table: usize) -> bool {
        self.inputs[self.given[detector].0].first() == Some(&self.given[table].0)
    }

    /// Where to point for problems with the inputs as a whole.
    pub fn at(&self) -> Option<Range<usize>> {
        self.stage
            .inputs
            .first()
            .and_then(|x| x.span.clone())
            .or_else(|| self.stage_span())
    }

    /// The k-th input's place in the file.
    pub fn input_span(&self, k: usize) -> Option<Range<usize>> {
        self.stage.inputs.get(k).and_then(|x| x.span.clone())
    }

    /// The stage's place in the file.
    pub fn stage_span(&self) -> Option<Range<usize>> {
        self.stage.id.span.clone()
    }

    /// A `with` value as written, with its place.
    pub fn with_value(&self, key: &str) -> Option<(Option<Range<usize>>, &ConfigValue)> {
        self.stage
            .with
            .iter()
            .find(|(k, _)| k.value == key)
            .map(|(_, v)| (v.span.clone(), &v.value))
    }

    /// Record a problem.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.diags.push(diagnostic);
    }

    /// Require exactly `n` table inputs (`roles` explains their order).
    pub fn tables(&mut self, n: usize, roles: &str) {
        if self.given.len() != n {
            let d = Diagnostic::at(
                self.at(),
                format!(
                    "stage `{}` ({}) needs {n} table input{}{roles}; `inputs` lists {}",
                    self.id(),
                    self.describe,
                    if n == 1 { "" } else { "s" },
                    self.given.len()
                ),
            )
            .label("wrong number of inputs");
            self.diags.push(d);
            return;
        }
        for k in 0..self.given.len() {
            let produces = self.given[k].1;
            if produces != Produces::Table {
                let d = Diagnostic::at(
                    self.input_span(k),
                    format!(
                        "stage `{}` needs a table, but `{}` produces {}",
                        self.id(),
                        self.input_id(k),
                        produces.noun()
                    ),
                )
                .label("not a table");
                self.diags.push(d);
            }
        }
    }
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn time_left_follows_the_rate_so_far() {
        // Counting began 4 s in with 5 of 100 done; 20 more in the next 6 s.
        let at = |done, total, secs| Event::StageProgress {
            stage: "s".into(),
            done,
            total,
            unit: "rows",
            elapsed: Duration::from_secs(secs),
            counting_since: Some((Duration::from_secs(4), 5)),
        };
        assert_eq!(at(5, 100, 10).time_left(), None);
        assert_eq!(
            at(25, 100, 10).time_left(),
            Some(Duration::from_secs(22) + Duration::from_millis(500))
        );
        assert_eq!(at(100, 100, 10).time_left(), Some(Duration::ZERO));
        // The first report has no rate yet.
        let first = Event::StageProgress {
            stage: "s".into(),
            done: 25,
            total: 100,
            unit: "rows",
            elapsed: Duration::from_secs(10),
            counting_since: None,
        };
        assert_eq!(first.time_left(), None);
        assert_eq!(human_duration(Duration::from_secs(12)), "12s");
        assert_eq!(human_duration(Duration::from_secs(185)), "3m 05s");
        assert_eq!(human_duration(Duration::from_secs(3_720)), "1h 02m");
    }
}
