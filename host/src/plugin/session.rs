//! One plugin instance serving one stage run: every call runs under the
//! stage's deadline (and fuel), and every result is checked against the output
//! caps before the pipeline sees it.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::ResourceAny;

use super::bindings::types::{
    Batch, ColumnFinding, ConfigValue, Facts, MetricValue, PluginInfo, ScanOutcome, StageError, TableRole, Verdict,
};
use super::bindings::v0_1;
use super::sandbox::{HostState, Interrupt};
use super::{Failure, Limits, LoadedPlugin, PluginError};

/// Typed pre-instantiated component, per world.
pub(crate) enum Pre {
    Detector(v0_1::detector::DetectorPluginPre<HostState>),
    Metric(v0_1::metric::MetricPluginPre<HostState>),
    Rule(v0_1::rule::RulePluginPre<HostState>),
}

enum Instance {
    Detector(v0_1::detector::DetectorPlugin),
    Metric(v0_1::metric::MetricPlugin),
    Rule(v0_1::rule::RulePlugin),
}

/// Caps on what a plugin may hand back; past them the stage fails instead of
/// the host buffering whatever a buggy or hostile plugin returns.
#[derive(Debug, Clone, Copy)]
pub struct OutputCaps {
    /// Cell findings per batch.
    pub findings_per_batch: usize,
    /// Column verdicts per stage.
    pub column_findings: usize,
    /// Scores per stage.
    pub metrics: usize,
    /// Verdicts per stage.
    pub verdicts: usize,
    /// Bytes of any single string (names, messages, evidence).
    pub string_bytes: usize,
}

impl Default for OutputCaps {
    fn default() -> Self {
        OutputCaps {
            findings_per_batch: 100_000,
            column_findings: 10_000,
            metrics: 1_000_000,
            verdicts: 10_000,
            string_bytes: 64 * 1024,
        }
    }
}

/// A live plugin instance for one stage.
pub struct Session {
    label: String,
    stage: String,
    store: Store<HostState>,
    instance: Instance,
    resource: Option<ResourceAny>,
    limits: Limits,
    fuel: bool,
    discarded: bool,
    caps: OutputCaps,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("plugin", &self.label)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn start(
        plugin: &LoadedPlugin,
        stage: &str,
        limits: Limits,
        cancel: Arc<AtomicBool>,
    ) -> Result<Session, PluginError> {
        let label = plugin.label();
        let fail = |message: String| PluginError::Stage {
            stage: stage.to_owned(),
            plugin: label.clone(),
            failure: Failure::Trap {
                message,
                stderr: String::new(),
            },
        };
        let mut store = plugin
            .new_store(stage, limits, cancel)
            .map_err(|e| fail(format!("could not set up its sandbox: {e:#}")))?;
        store.data_mut().deadline = Some(Instant::now() + Duration::from_millis(limits.timeout_ms));
        let instance = match &plugin.pre {
            Pre::Detector(p) => p.instantiate(&mut store).map(Instance::Detector),
            Pre::Metric(p) => p.instantiate(&mut store).map(Instance::Metric),
            Pre::Rule(p) => p.instantiate(&mut store).map(Instance::Rule),
        };
        let mut session_store = store;
        let instance = match instance {
            Ok(i) => i,
            Err(e) => {
                let failure = classify(&session_store, &limits, &e);
                return Err(PluginError::Stage {
                    stage: stage.to_owned(),
                    plugin: label,
                    failure,
                });
            }
        };
        session_store.data_mut().deadline = None;
        Ok(Session {
            label,
            stage: stage.to_owned(),
            store: session_store,
            instance,
            resource: None,
            limits,
            fuel: plugin.fuel_metered(),
            discarded: false,
            caps: OutputCaps::default(),
        })
    }

    /// Replace the output caps.
    pub fn with_caps(mut self, caps: OutputCaps) -> Self {
        self.caps = caps;
        self
    }

    fn error(&self, failure: Failure) -> PluginError {
        PluginError::Stage {
            stage: self.stage.clone(),
            plugin: self.label.clone(),
            failure,
        }
    }

    /// Run one call under the deadline; a trap discards the instance.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&mut Store<HostState>, &Instance, Option<ResourceAny>) -> wasmtime::Result<Result<R, StageError>>,
    ) -> Result<R, PluginError> {
        if self.discarded {
            return Err(self.error(Failure::Discarded));
        }
        {
            let state = self.store.data_mut();
            state.deadline = Some(Instant::now() + Duration::from_millis(self.limits.timeout_ms));
            state.interrupted = None;
        }
        if self.fuel {
            let fuel = self.limits.fuel.unwrap_or(u64::MAX);
            self.store.set_fuel(fuel).map_err(|e| {
                self.error(Failure::Trap {
                    message: format!("{e:#}"),
                    stderr: String::new(),
                })
            })?;
        }
        self.store.set_epoch_deadline(1);
        let result = f(&mut self.store, &self.instance, self.resource);
        self.store.data_mut().deadline = None;
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(reported)) => Err(self.error(Failure::Reported(reported))),
            Err(e) => {
                // A trapped store may hold broken invariants: never reuse it.
                self.discarded = true;
                Err(self.error(classify(&self.store, &self.limits, &e)))
            }
        }
    }

    fn check_str(&self, what: &str, s: &str) -> Result<(), PluginError> {
        if s.len() > self.caps.string_bytes {
            return Err(self.error(Failure::OutputCap(format!(
                "a {what} of {} bytes (cap {} bytes)",
                s.len(),
                self.caps.string_bytes
            ))));
        }
        Ok(())
    }

    pub(crate) fn describe(&mut self) -> Result<PluginInfo, PluginError> {
        self.call(|store, inst, _| {
            let info = match inst {
                Instance::Detector(i) => i.doppel_plugin_detector().call_describe(store)?,
                Instance::Metric(i) => i.doppel_plugin_metric().call_describe(store)?,
                Instance::Rule(i) => i.doppel_plugin_rule().call_describe(store)?,
            };
            Ok(Ok(info))
        })
    }

    /// Let the plugin check its config against its input schemas (schema-only
    /// IPC streams) before data flows.
    pub fn check(&mut self, config: &Vec<(String, ConfigValue)>, schemas: &[Vec<u8>]) -> Result<(), PluginError> {
        self.call(|store, inst, _| match inst {
            Instance::Detector(i) => i.doppel_plugin_detector().call_check(store, config, schemas),
            Instance::Metric(i) => i.doppel_plugin_metric().call_check(store, config, schemas),
            Instance::Rule(i) => i.doppel_plugin_rule().call_check(store, config, schemas),
        })
    }

    /// Create the stage's resource (scanner, accumulator or evaluator).
    pub fn create(&mut self, config: &Vec<(String, ConfigValue)>) -> Result<(), PluginError> {
        let resource = self.call(|store, inst, _| match inst {
            Instance::Detector(i) => i.doppel_plugin_detector().scanner().call_create(store, config),
            Instance::Metric(i) => i.doppel_plugin_metric().accumulator().call_create(store, config),
            Instance::Rule(i) => i.doppel_plugin_rule().evaluator().call_create(store, config),
        })?;
        self.resource = Some(resource);
        Ok(())
    }

    fn resource(&self) -> Result<ResourceAny, PluginError> {
        self.resource
            .ok_or_else(|| self.error(Failure::InvalidOutput("called before create".to_owned())))
    }

    fn wrong_kind(&self, want: &str) -> PluginError {
        self.error(Failure::InvalidOutput(format!("is not a {want} plugin")))
    }

    /// Scan one batch. `columns` are the batch's column names: findings must
    /// name one of them.
    pub fn scan(&mut self, batch: &Batch, columns: &[String]) -> Result<ScanOutcome, PluginError> {
        let res = self.resource()?;
        if !matches!(self.instance, Instance::Detector(_)) {
            return Err(self.wrong_kind("detector"));
        }
        let outcome = self.call(|store, inst, _| match inst {
            Instance::Detector(i) => i.doppel_plugin_detector().scanner().call_scan(store, res, batch),
            _ => unreachable!("checked above"),
        })?;
        if outcome.findings.len() > self.caps.findings_per_batch {
            return Err(self.error(Failure::OutputCap(format!(
                "{} findings for one batch (cap {})",
                outcome.findings.len(),
                self.caps.findings_per_batch
            ))));
        }
        for f in &outcome.findings {
            self.check_str("finding entity", &f.entity)?;
            if !columns.contains(&f.column) {
                return Err(self.error(Failure::InvalidOutput(format!(
                    "a finding in unknown column `{}`",
                    f.column
                ))));
            }
            if f.start > f.end {
                return Err(self.error(Failure::InvalidOutput(format!(
                    "a finding in `{}` whose span starts after it ends ({}..{})",
                    f.column, f.start, f.end
                ))));
            }
        }
        Ok(outcome)
    }

    /// The detector's verdict per column.
    pub fn finish_detector(&mut self) -> Result<Vec<ColumnFinding>, PluginError> {
        let res = self.resource()?;
        if !matches!(self.instance, Instance::Detector(_)) {
            return Err(self.wrong_kind("detector"));
        }
        let out = self.call(|store, inst, _| match inst {
            Instance::Detector(i) => i.doppel_plugin_detector().scanner().call_finish(store, res),
            _ => unreachable!("checked above"),
        })?;
        if out.len() > self.caps.column_findings {
            return Err(self.error(Failure::OutputCap(format!(
                "{} column findings (cap {})",
                out.len(),
                self.caps.column_findings
            ))));
        }
        for f in &out {
            self.check_str("column name", &f.column)?;
            self.check_str("entity", &f.entity)?;
        }
        Ok(out)
    }

    /// Feed one batch of the table playing `role`.
    pub fn update(&mut self, role: TableRole, batch: &Batch) -> Result<(), PluginError> {
        let res = self.resource()?;
        if !matches!(self.instance, Instance::Metric(_)) {
            return Err(self.wrong_kind("metric"));
        }
        self.call(|store, inst, _| match inst {
            Instance::Metric(i) => i
                .doppel_plugin_metric()
                .accumulator()
                .call_update(store, res, role, batch),
            _ => unreachable!("checked above"),
        })
    }

    /// The metric's scores.
    pub fn finish_metric(&mut self) -> Result<Vec<MetricValue>, PluginError> {
        let res = self.resource()?;
        if !matches!(self.instance, Instance::Metric(_)) {
            return Err(self.wrong_kind("metric"));
        }
        let out = self.call(|store, inst, _| match inst {
            Instance::Metric(i) => i.doppel_plugin_metric().accumulator().call_finish(store, res),
            _ => unreachable!("checked above"),
        })?;
        if out.len() > self.caps.metrics {
            return Err(self.error(Failure::OutputCap(format!(
                "{} scores (cap {})",
                out.len(),
                self.caps.metrics
            ))));
        }
        for m in &out {
            self.check_str("metric name", &m.name)?;
            if let Some(note) = &m.note {
                self.check_str("note", note)?;
            }
        }
        Ok(out)
    }

    /// Judge the facts.
    pub fn evaluate(&mut self, facts: &Facts) -> Result<Vec<Verdict>, PluginError> {
        let res = self.resource()?;
        if !matches!(self.instance, Instance::Rule(_)) {
            return Err(self.wrong_kind("rule"));
        }
        let out = self.call(|store, inst, _| match inst {
            Instance::Rule(i) => i.doppel_plugin_rule().evaluator().call_evaluate(store, res, facts),
            _ => unreachable!("checked above"),
        })?;
        if out.len() > self.caps.verdicts {
            return Err(self.error(Failure::OutputCap(format!(
                "{} verdicts (cap {})",
                out.len(),
                self.caps.verdicts
            ))));
        }
        for v in &out {
            self.check_str("rule id", &v.rule_id)?;
            self.check_str("evidence", &v.evidence)?;
            self.check_str("remediation", &v.remediation)?;
        }
        Ok(out)
    }

    /// What the plugin wrote to stdout (plugins should log instead; kept for
    /// `doppel plugin test`).
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.store.data().stdout.contents()).into_owned()
    }
}

/// Turn a wasmtime error into the reason users need.
fn classify(store: &Store<HostState>, limits: &Limits, e: &wasmtime::Error) -> Failure {
    let state = store.data();
    match state.interrupted {
        Some(Interrupt::Timeout) => {
            return Failure::Timeout {
                limit_ms: limits.timeout_ms,
            };
        }
        Some(Interrupt::Cancelled) => return Failure::Cancelled,
        None => {}
    }
    if let Some(wanted) = state.limiter.denied_growth {
        #[allow(clippy::cast_precision_loss, reason = "a size in MiB for display")]
        return Failure::Memory {
            limit_mb: limits.memory_mb,
            wanted_mb: wanted as f64 / f64::from(1 << 20),
        };
    }
    if let Some(wasmtime::Trap::OutOfFuel) = e.downcast_ref::<wasmtime::Trap>() {
        return Failure::Fuel {
            fuel: limits.fuel.unwrap_or(u64::MAX),
        };
    }
    // The first line is the trap; the rest is a wasm backtrace.
    let full = format!("{e:#}");
    let message = full.lines().next().unwrap_or("trap").trim().to_owned();
    Failure::Trap {
        message,
        stderr: state.stderr_tail(),
    }
}
