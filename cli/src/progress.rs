//! Progress: one bar per running stage on a terminal, one log line per stage
//! event otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use doppel_host::exec::{Event, human_duration};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ProgressMode;

/// The bars of a run (or none).
#[derive(Clone)]
pub(crate) struct Bars {
    multi: Option<MultiProgress>,
    bars: Arc<Mutex<HashMap<String, ProgressBar>>>,
    /// Without bars: when each running stage last logged its progress.
    clocks: Arc<Mutex<HashMap<String, Instant>>>,
    tty: bool,
}

/// How often a stage's progress is logged when there are no bars.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl Bars {
    pub(crate) fn new(mode: ProgressMode) -> Self {
        let tty = std::io::stderr().is_terminal();
        let draw = match mode {
            ProgressMode::Always => true,
            ProgressMode::Never => false,
            ProgressMode::Auto => tty,
        };
        Bars {
            multi: draw.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            bars: Arc::default(),
            clocks: Arc::default(),
            tty,
        }
    }

    pub(crate) fn hidden() -> Self {
        Bars {
            multi: None,
            bars: Arc::default(),
            clocks: Arc::default(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub(crate) fn is_tty(&self) -> bool {
        self.tty
    }

    /// Run `f` with the bars hidden (to print around them).
    pub(crate) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.multi {
            Some(m) => m.suspend(f),
            None => f(),
        }
    }

    pub(crate) fn clear(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }

    fn style(unit: &str) -> ProgressStyle {
        let template = if unit == "‰" {
            "{prefix:>10.bold} [{bar:30.cyan/blue}] {percent:>3}% {elapsed:>4} (eta {eta}) {msg}"
        } else {
            "{prefix:>10.bold} [{bar:30.cyan/blue}] {human_pos}/{human_len} rows {elapsed:>4} (eta {eta}) {msg}"
        };
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    }

    /// Show one event.
    pub(crate) fn on_event(&self, event: &Event) {
        let Some(multi) = &self.multi else {
            self.log_event(event);
            return;
        };
        let mut bars = self.bars.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::StageStarted { stage, uses } => {
                let bar = multi.add(ProgressBar::new(0));
                bar.set_style(
                    ProgressStyle::with_template("{prefix:>10.bold} {spinner} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(stage.clone());
                bar.set_message(uses.clone());
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bars.insert(stage.clone(), bar);
            }
            Event::StageProgress {
                stage,
                done,
                total,
                unit,
                ..
            } => {
                if let Some(bar) = bars.get(stage) {
                    if bar.length() != Some(*total) {
                        bar.set_style(Self::style(unit));
                        bar.set_length(*total);
                        bar.set_position(*done);
                        // The rate starts at the first count: the time the
                        // stage spent before it (reading, indexing) would
                        // make the first estimates many times too long.
                        bar.reset_eta();
                    }
                    bar.set_position(*done);
                }
            }
            Event::StageFinished {
                stage,
                elapsed,
                summary,
            } => {
                if let Some(bar) = bars.get(stage) {
                    bar.set_style(
                        ProgressStyle::with_template("{prefix:>10.bold} ✓ {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.finish_with_message(format!("{summary} ({:.2}s)", elapsed.as_secs_f64()));
                }
            }
            Event::StageFailed { stage, error } => {
                if let Some(bar) = bars.get(stage) {
                    bar.set_style(
                        ProgressStyle::with_template("{prefix:>10.bold} ✗ {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.abandon_with_message(error.clone());
                }
            }
        }
    }
}

impl Bars {
    /// Without bars: one line per stage event, and a stage's progress with
    /// the time left every [`LOG_EVERY`], so a long stage in a log is seen
    /// moving.
    fn log_event(&self, event: &Event) {
        let mut clocks = self.clocks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::StageStarted { stage, uses } => {
                clocks.insert(stage.clone(), Instant::now());
                tracing::info!(%stage, %uses, "Stage started.");
            }
            Event::StageProgress {
                stage,
                done,
                total,
                unit,
                ..
            } => {
                let Some(last) = clocks.get_mut(stage) else {
                    return;
                };
                if last.elapsed() < LOG_EVERY || *total == 0 {
                    return;
                }
                *last = Instant::now();
                let left = event.time_left().map_or_else(
                    || "time left unknown".to_owned(),
                    |d| format!("about {} left", human_duration(d)),
                );
                #[allow(clippy::cast_precision_loss, reason = "a percentage")]
                let percent = 100.0 * *done as f64 / *total as f64;
                if *unit == "‰" {
                    tracing::info!(%stage, "Stage progress: {percent:.0} %, {left}.");
                } else {
                    tracing::info!(%stage, "Stage progress: {percent:.0} % ({done}/{total} {unit}), {left}.");
                }
            }
            Event::StageFinished {
                stage,
                elapsed,
                summary,
            } => {
                clocks.remove(stage);
                tracing::info!(%stage, elapsed_ms = elapsed.as_millis() as u64, "Stage finished: {summary}.");
            }
            Event::StageFailed { stage, error } => {
                clocks.remove(stage);
                tracing::error!(%stage, "Stage failed: {error}");
            }
        }
    }
}
