//! A plugin as a pipeline stage: tables streamed to detectors and metrics
//! in Arrow IPC batches (restricted to the columns the plugin reads), rules
//! handed facts (profiles, findings, scores, attributes) and never rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::builtins::profile::{self, TableProfile};
use crate::model::{DetectorOutput, MAX_KEPT_FINDINGS, Output};
use crate::plugin::bindings::types::{Batch, ColumnFact, Facts, TableFacts, TableRole};
use crate::plugin::{LoadedPlugin, PluginKind};
use crate::stage::StageContext;
use crate::{Error, Result};

/// Run a plugin stage.
pub(crate) fn run(ctx: &StageContext, plugin: &LoadedPlugin) -> Result<Output> {
    match plugin.manifest.kind {
        PluginKind::Detector => detector(ctx, plugin),
        PluginKind::Metric => metric(ctx, plugin),
        PluginKind::Rule => rule(ctx, plugin),
    }
}

fn start_session(ctx: &StageContext, plugin: &LoadedPlugin) -> Result<crate::plugin::Session> {
    let limits = ctx
        .stage
        .limits
        .ok_or_else(|| Error::Internal(format!("plugin stage `{}` has no limits", ctx.stage.id)))?;
    Ok(plugin.start(&ctx.stage.id, limits, ctx.cancel_flag())?)
}

fn detector(ctx: &StageContext, plugin: &LoadedPlugin) -> Result<Output> {
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
        for chunk in table.chunks(ctx.batch_rows)? {
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

fn metric(ctx: &StageContext, plugin: &LoadedPlugin) -> Result<Output> {
    let roles = plugin.info().tables.clone();
    let tables = (0..roles.len()).map(|i| ctx.table(i)).collect::<Result<Vec<_>>>()?;
    let projections: Vec<_> = tables.iter().map(|t| t.projection(&plugin.info().reads)).collect();
    let schemas = projections
        .iter()
        .map(|p| p.encode_schema())
        .collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    let mut session = start_session(ctx, plugin)?;
    session.check(&ctx.stage.settings, &schemas)?;
    session.create(&ctx.stage.settings)?;
    let setup = started.elapsed();
    let total: u64 = tables.iter().map(|t| t.rows() as u64).sum();
    let mut done = 0u64;
    // Where a metric's time goes, for `--log-filter doppel_host=debug`:
    // encoding on this side, the plugin's reading, its scoring.
    let (mut encoding, mut reading) = (Duration::ZERO, Duration::ZERO);
    for ((table, projection), role) in tables.iter().zip(&projections).zip(&roles) {
        let mut offset = 0u64;
        for chunk in table.chunks(ctx.batch_rows)? {
            if ctx.cancelled() {
                return Err(Error::Cancelled);
            }
            let lap = Instant::now();
            let batch = Batch {
                ipc: projection.encode(&chunk)?,
                row_offset: offset,
            };
            encoding += lap.elapsed();
            let lap = Instant::now();
            session.update(role_copy(role), &batch)?;
            reading += lap.elapsed();
            offset += chunk.num_rows() as u64;
            done += chunk.num_rows() as u64;
            ctx.progress(done, total, "rows");
        }
    }
    let lap = Instant::now();
    let values = session.finish_metric()?;
    tracing::debug!(
        stage = %ctx.stage.id,
        setup_ms = setup.as_secs_f64() * 1e3,
        encoding_ms = encoding.as_secs_f64() * 1e3,
        update_ms = reading.as_secs_f64() * 1e3,
        finish_ms = lap.elapsed().as_secs_f64() * 1e3,
        "Metric plugin calls."
    );
    Ok(Output::Metrics(Arc::new(values)))
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

fn rule(ctx: &StageContext, plugin: &LoadedPlugin) -> Result<Output> {
    let mut facts = Facts {
        tables: Vec::new(),
        findings: Vec::new(),
        metrics: Vec::new(),
        attributes: ctx.attributes.clone(),
    };
    for (name, output) in &ctx.inputs {
        match output {
            Output::Table(t, _) => facts.tables.push(profile_facts(name, &profile::facts(t)?)),
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
