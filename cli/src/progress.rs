//! Progress: one bar per running stage on a terminal, one log line per stage
//! event otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use doppel_host::exec::Event;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ProgressMode;

/// The bars of a run (or none).
#[derive(Clone)]
pub(crate) struct Bars {
    multi: Option<MultiProgress>,
    bars: Arc<Mutex<HashMap<String, ProgressBar>>>,
    tty: bool,
}

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
            tty,
        }
    }

    pub(crate) fn hidden() -> Self {
        Bars {
            multi: None,
            bars: Arc::default(),
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
            "{prefix:>10.bold} [{bar:30.cyan/blue}] {percent:>3}% {elapsed:>4} {msg}"
        } else {
            "{prefix:>10.bold} [{bar:30.cyan/blue}] {human_pos}/{human_len} rows {elapsed:>4} {msg}"
        };
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    }

    /// Show one event.
    pub(crate) fn on_event(&self, event: &Event) {
        let Some(multi) = &self.multi else {
            log_event(event);
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
            } => {
                if let Some(bar) = bars.get(stage) {
                    if bar.length() != Some(*total) {
                        bar.set_style(Self::style(unit));
                        bar.set_length(*total);
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

fn log_event(event: &Event) {
    match event {
        Event::StageStarted { stage, uses } => tracing::info!(%stage, %uses, "Stage started."),
        Event::StageProgress { .. } => {}
        Event::StageFinished {
            stage,
            elapsed,
            summary,
        } => {
            tracing::info!(%stage, elapsed_ms = elapsed.as_millis() as u64, "Stage finished: {summary}.");
        }
        Event::StageFailed { stage, error } => tracing::error!(%stage, "Stage failed: {error}"),
    }
}
