//! The subcommands.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use doppel_host::exec::{self, Output, Provenance, RunOptions};
use doppel_host::plan::{Catalog, Operation, Plan, plan};
use doppel_host::plugin::{Grants, HostConfig, PluginHost, PluginRegistry};
use doppel_host::report::{self, TableFormat};
use doppel_host::spec::{Diagnostics, PipelineSpec};

use crate::progress::Bars;
use crate::{Global, RunArgs, Target, ValidateArgs};

/// Exit status for an invalid pipeline or command line.
const INVALID: u8 = 2;
/// Exit status for a cancelled run (128 + SIGINT).
const CANCELLED: u8 = 130;

pub(crate) fn host_config(global: &Global, fuel: bool) -> anyhow::Result<HostConfig> {
    let mut mounts = Vec::new();
    for m in &global.mounts {
        let (guest, host) = m
            .split_once('=')
            .with_context(|| format!("--mount {m}: expected GUEST=HOST, e.g. /models=./models"))?;
        let host = std::fs::canonicalize(host).with_context(|| format!("--mount {m}: {host}"))?;
        mounts.push((guest.to_owned(), host));
    }
    Ok(HostConfig {
        cache_dir: if global.no_cache {
            None
        } else {
            global.cache_dir.clone().or_else(doppel_host::plugin::default_cache_dir)
        },
        fuel,
        grants: Grants {
            env: global.allow_env.clone(),
            clock: global.allow_clock,
            mounts,
        },
        max_memory_mb: global.max_plugin_memory_mb,
        max_timeout_ms: global.max_plugin_timeout_ms,
    })
}

pub(crate) fn registry(global: &Global, fuel: bool) -> anyhow::Result<PluginRegistry> {
    let host = PluginHost::new(host_config(global, fuel)?)?;
    let mut reg = PluginRegistry::new(host);
    for p in doppel_plugins::FIRST_PARTY {
        reg.add_embedded(p.manifest, p.wasm, p.name)?;
    }
    for dir in &global.plugin_dirs {
        if dir.as_os_str().is_empty() {
            continue;
        }
        reg.add_dir(dir)?;
    }
    Ok(reg)
}

/// The parsed pipeline with `--input` and `--set` applied, or its diagnostics.
fn load(target: &Target) -> anyhow::Result<Result<PipelineSpec, Diagnostics>> {
    let mut spec = match PipelineSpec::load(&target.pipeline) {
        Ok(spec) => spec,
        Err(doppel_host::Error::Pipeline(d)) => return Ok(Err(d)),
        Err(e) => return Ok(Err(unreadable(&target.pipeline, &e))),
    };
    let mut problems = Vec::new();
    if let Some(input) = &target.input {
        let stages = spec.input_stages();
        match stages.as_slice() {
            [(one, key)] => {
                // `--input` is relative to where doppel runs, not to the pipeline.
                let absolute = std::path::absolute(input).with_context(|| format!("--input {}", input.display()))?;
                if let Err(d) = spec.set(&format!("{one}.{key}={}", toml_string(&absolute))) {
                    problems.push(d);
                }
            }
            [] => bail!(
                "--input: {} has no `builtin:source` (or `builtin:sample`) stage to read it",
                target.pipeline.display()
            ),
            many => bail!(
                "--input: {} has {} input stages ({}); set each with --set <stage>.{}=FILE",
                target.pipeline.display(),
                many.len(),
                many.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(", "),
                many[0].1
            ),
        }
    }
    for assignment in &target.overrides {
        if let Err(d) = spec.set(assignment) {
            problems.push(d);
        }
    }
    if problems.is_empty() {
        Ok(Ok(spec))
    } else {
        Ok(Err(Diagnostics {
            file: Arc::clone(&spec.file),
            items: problems,
        }))
    }
}

/// A pipeline file that cannot be read, as a diagnostic (exit status 2).
fn unreadable(path: &Path, e: &doppel_host::Error) -> Diagnostics {
    Diagnostics {
        file: doppel_host::spec::SourceFile::new(path.display().to_string(), ""),
        items: vec![doppel_host::spec::Diagnostic::at(None, e.to_string())],
    }
}

/// A path as a TOML string value, so `--set` reads it back verbatim.
fn toml_string(path: &Path) -> String {
    let s = path.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn uses_fuel(spec: &PipelineSpec) -> bool {
    spec.stages.iter().any(|s| s.limits.fuel.is_some())
}

fn plan_or_report(global: &Global, target: &Target) -> anyhow::Result<Result<Plan, ExitCode>> {
    let spec = match load(target)? {
        Ok(spec) => spec,
        Err(d) => {
            eprintln!("{d}");
            return Ok(Err(ExitCode::from(INVALID)));
        }
    };
    let catalog = Catalog::new(registry(global, uses_fuel(&spec))?);
    match plan(&spec, &catalog) {
        Ok(p) => Ok(Ok(p)),
        Err(d) => {
            eprintln!("{d}");
            Ok(Err(ExitCode::from(INVALID)))
        }
    }
}

pub(crate) fn validate(global: &Global, args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let plan = match plan_or_report(global, &args.target)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let order: Vec<&str> = plan.order.iter().map(|&i| plan.stages[i].id.as_str()).collect();
    println!(
        "ok: {} — {} stages ({})",
        args.target.pipeline.display(),
        plan.stages.len(),
        order.join(" → ")
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run(global: &Global, args: RunArgs, bars: &Bars) -> anyhow::Result<ExitCode> {
    let plan = match plan_or_report(global, &args.target)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let engine: doppel_engine::Engine = args.engine.parse()?;
    let cancel = Arc::new(AtomicBool::new(false));
    let events_bars = bars.clone();
    let options = RunOptions {
        batch_rows: args.batch_rows,
        cancel: Arc::clone(&cancel),
        events: Some(Arc::new(move |e| events_bars.on_event(e))),
        // Only `[outputs]` and report.json are written afterwards.
        release_tables: true,
        engine: doppel_host::exec::EngineOptions {
            engine,
            scratch: args.engine_scratch.clone().unwrap_or_else(std::env::temp_dir),
            ..doppel_host::exec::EngineOptions::default()
        },
        side_by_side_bytes: args.side_by_side_mb.saturating_mul(1 << 20),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(async {
        let watcher = Arc::clone(&cancel);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::warn!("Cancelling: waiting for running stages to stop.");
                watcher.store(true, Ordering::Relaxed);
            }
        });
        exec::run(&plan, &options).await
    });
    bars.clear();
    let run = match result {
        Ok(run) => run,
        Err(doppel_host::Error::Cancelled) => {
            eprintln!("cancelled");
            return Ok(ExitCode::from(CANCELLED));
        }
        Err(e) => return Err(e.into()),
    };
    let format = match args.format {
        crate::TableFormat::Parquet => TableFormat::Parquet,
        crate::TableFormat::Csv => TableFormat::Csv,
    };
    let (written, report_path) = report::write_all(&plan, &run, &args.out, format)?;
    print_summary(&plan, &run, &written, &report_path);
    Ok(ExitCode::SUCCESS)
}

fn print_summary(plan: &Plan, run: &exec::RunResult, written: &[report::WrittenTable], report_path: &Path) {
    println!("pipeline {} finished in {:.2}s", plan.name, run.elapsed.as_secs_f64());
    let uses: Vec<String> = plan
        .stages
        .iter()
        .map(|s| match &s.operation {
            Operation::Plugin(p) => p.label(),
            Operation::Builtin(b) => format!("builtin:{}", b.name()),
        })
        .collect();
    let id_w = plan.stages.iter().map(|s| s.id.len()).max().unwrap_or(5).max(5);
    let uses_w = uses.iter().map(String::len).max().unwrap_or(4).max(4);
    println!("  {:id_w$}  {:uses_w$}  {:>8}  result", "stage", "uses", "time");
    for ((stage, u), r) in plan.stages.iter().zip(&uses).zip(&run.stages) {
        println!(
            "  {:id_w$}  {:uses_w$}  {:>7.2}s  {}",
            stage.id,
            u,
            r.elapsed.as_secs_f64(),
            exec::summarize(&r.output)
        );
    }
    for r in &run.stages {
        if let Output::Table(_, Provenance::Generated(model)) = &r.output {
            println!(
                "  {}: fit {:.2}s, sample {:.2}s (seed {})",
                r.id,
                model.fit.as_secs_f64(),
                model.sample.as_secs_f64(),
                model.seed
            );
        }
    }
    let files: Vec<String> = written
        .iter()
        .map(|w| format!("{} ({} rows)", w.path.display(), w.rows))
        .chain(run.stages.iter().filter_map(|r| match &r.output {
            Output::Document(d) => {
                let path = report_path.with_file_name(&d.file_name);
                Some(format!("{} ({} pages)", path.display(), d.pages))
            }
            Output::Table(_, Provenance::Generated(m)) => m.saved_model.as_ref().map(|d| {
                let path = report_path.with_file_name(&d.file_name);
                format!("{} (model, {} KiB)", path.display(), d.bytes.len().div_ceil(1024))
            }),
            _ => None,
        }))
        .chain(std::iter::once(report_path.display().to_string()))
        .collect();
    println!("wrote {}", files.join(", "));
}

pub(crate) fn plugins_list(global: &Global, json: bool) -> anyhow::Result<ExitCode> {
    let catalog = Catalog::new(registry(global, false)?);
    let mut rows: Vec<(String, String, String, String, String)> = catalog
        .builtins()
        .iter()
        .map(|b| {
            let kind = match b.kind() {
                doppel_host::builtins::Kind::Generator => "generator",
                _ => "builtin",
            };
            (
                format!("builtin:{}", b.name()),
                String::new(),
                kind.to_owned(),
                "built in".to_owned(),
                b.summary().to_owned(),
            )
        })
        .collect();
    for e in catalog.plugins.entries() {
        rows.push((
            e.manifest.id.clone(),
            e.manifest.version.to_string(),
            e.manifest.kind.to_string(),
            e.origin.clone(),
            e.manifest.summary.clone(),
        ));
    }
    if json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(id, v, k, o, s)| serde_json::json!({"id": id, "version": v, "kind": k, "origin": o, "summary": s}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(2);
    for (id, version, kind, origin, summary) in rows {
        let version = if version.is_empty() {
            String::new()
        } else {
            format!("@{version}")
        };
        println!(
            "{:<w2$}  {:<9}  {:<10}  {}",
            format!("{id}{version}"),
            kind,
            origin,
            summary,
            w2 = w + 8
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `doppel engine standalone`: a Ballista cluster in this process until
/// Ctrl-C.
pub(crate) fn engine_standalone(executors: usize, vcores: usize) -> anyhow::Result<ExitCode> {
    if executors == 0 || executors > 64 || vcores == 0 || vcores > 256 {
        anyhow::bail!("--executors must be 1 to 64 and --vcores 1 to 256");
    }
    let cluster = doppel_engine::LocalCluster::start(executors, vcores)?;
    println!("{}", cluster.engine());
    eprintln!(
        "Ballista scheduler and {executors} executor(s) of {vcores} task slot(s) on loopback; run pipelines with \
         `--engine {}`. Ctrl-C stops them.",
        cluster.engine()
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(tokio::signal::ctrl_c())?;
    drop(cluster);
    Ok(ExitCode::SUCCESS)
}
