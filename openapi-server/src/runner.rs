//! The pipeline job runner: what a worker does with a `pipeline` job. It
//! fetches the dataset, runs a shipped pipeline on it exactly as `doppel run`
//! would, and uploads the outputs under an attempt-specific prefix; the
//! platform commits the manifest that makes them visible.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use doppel_host::exec::{self, Event, RunOptions};
use doppel_host::plan::{Catalog, plan};
use doppel_host::report::{self, TableFormat};
use doppel_host::shipped;
use doppel_host::spec::{PipelineSpec, SourceFile};
use doppel_platform::jobs::{HandlerFuture, JobContext, JobFailure, JobHandler, Manifest, OutputFile};
use doppel_platform::storage::object_key;
use doppel_platform::{Db, Storage};
use serde::{Deserialize, Serialize};

/// The job kind this runner handles.
pub const KIND: &str = "pipeline";

/// What a pipeline job runs (the job's `spec`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineJob {
    /// A shipped pipeline's name.
    pub pipeline: String,
    /// The dataset to run it on.
    pub dataset_id: String,
    /// Object key of the dataset's Parquet copy (resolved at submission).
    pub dataset_key: String,
    /// `stage.key=value` overrides, as `doppel run --set`.
    #[serde(default)]
    pub overrides: Vec<String>,
    /// Output table format: `parquet` or `csv`.
    #[serde(default = "default_format")]
    pub format: String,
}

fn default_format() -> String {
    "parquet".to_owned()
}

/// Build the plan a job would run, with its input at `input`. Errors are the
/// pipeline's diagnostics as text (file:line:col), safe to show the owner.
pub fn plan_job(catalog: &Catalog, job: &PipelineJob, input: &Path) -> Result<doppel_host::plan::Plan, String> {
    let pipeline = shipped::find(&job.pipeline).ok_or_else(|| {
        let names: Vec<&str> = shipped::PIPELINES.iter().map(|p| p.name).collect();
        format!(
            "pipeline: no shipped pipeline `{}` (have {})",
            job.pipeline,
            names.join(", ")
        )
    })?;
    let mut spec = PipelineSpec::parse(SourceFile::new(format!("{}.toml", pipeline.name), pipeline.text))
        .map_err(|d| d.to_string())?;
    let sources = spec.source_stages();
    let [source] = sources.as_slice() else {
        return Err(format!("pipeline {} must have exactly one source stage", pipeline.name));
    };
    let path = input.display().to_string().replace('\\', "\\\\").replace('"', "\\\"");
    spec.set(&format!("{source}.path=\"{path}\""))
        .map_err(|d| d.message.clone())?;
    spec.set(&format!("{source}.format=\"parquet\""))
        .map_err(|d| d.message.clone())?;
    for o in &job.overrides {
        spec.set(o).map_err(|d| d.message.clone())?;
    }
    plan(&spec, catalog).map_err(|d| d.to_string())
}

/// A request to run a shipped pipeline on a dataset, as REST's `POST
/// /v1/jobs` and Flight's `job.submit` action both take it.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// A shipped pipeline's name.
    pub pipeline: String,
    /// The dataset (must be readable by the caller).
    pub dataset_id: String,
    /// `stage.key=value` overrides.
    pub overrides: Vec<String>,
    /// Write tables as CSV instead of Parquet.
    pub csv: bool,
}

/// Why a job was not submitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The pipeline with these overrides does not plan; the text lists the
    /// problems (file:line:col).
    #[error("{0}")]
    InvalidPipeline(String),
    /// Scope, lookup or store failure.
    #[error(transparent)]
    Platform(#[from] doppel_platform::Error),
}

/// Check and queue a pipeline job: the caller needs `jobs:run` and read
/// access to the dataset; the pipeline and overrides are planned now, so a
/// mistake is answered at once instead of failing in a worker later.
pub async fn submit(
    state: &crate::state::AppState,
    meta: &doppel_platform::audit::RequestMeta,
    p: &doppel_platform::authz::Principal,
    request: JobRequest,
) -> Result<doppel_platform::jobs::Job, SubmitError> {
    use doppel_platform::Error;
    use doppel_platform::authz::{Grant, Scope, authorize, require};
    require(p, Scope::JobsRun)?;
    if shipped::find(&request.pipeline).is_none() {
        let names: Vec<&str> = shipped::PIPELINES.iter().map(|p| p.name).collect();
        return Err(Error::invalid(
            "pipeline",
            format!(
                "no shipped pipeline `{}`; choose one of {}",
                request.pipeline,
                names.join(", ")
            ),
        )
        .into());
    }
    let no_dataset = || Error::invalid("dataset_id", "no such dataset");
    let dataset = doppel_platform::datasets::get(&state.db, &request.dataset_id)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => no_dataset(),
            other => other,
        })?;
    authorize(p, Scope::DatasetsRead, &dataset.owner_id, "dataset", Grant::OwnerOnly).map_err(|e| match e {
        Error::NotFound(_) => no_dataset(),
        other => other,
    })?;
    let spec = PipelineJob {
        pipeline: request.pipeline,
        dataset_id: dataset.id.clone(),
        dataset_key: dataset.object_key.clone(),
        overrides: request.overrides,
        format: if request.csv { "csv".into() } else { "parquet".into() },
    };
    let check = {
        let (catalog, spec) = (Arc::clone(&state.catalog), spec.clone());
        tokio::task::spawn_blocking(move || plan_job(&catalog, &spec, Path::new("/dev/null/input.parquet")))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    };
    let plan = check.map_err(SubmitError::InvalidPipeline)?;
    // Differentially private stages are charged to the dataset's budget now,
    // before the job exists, so an overspend is refused before any row is read.
    let charges = doppel_host::exec::privacy_charges(&plan).map_err(|e| SubmitError::InvalidPipeline(e.to_string()))?;
    let spends: Vec<doppel_platform::privacy::Spend<'_>> = charges
        .iter()
        .map(|c| doppel_platform::privacy::Spend {
            stage: &c.stage,
            mechanism: &c.mechanism,
            epsilon: c.cost.epsilon,
            delta: c.cost.delta,
        })
        .collect();
    let charged =
        doppel_platform::privacy::charge(&state.db, meta, p, state.settings.privacy, &dataset, &spends).await?;
    let value = serde_json::to_value(&spec).map_err(|e| Error::Internal(e.to_string()))?;
    let job = match state.queue.submit(meta, p, KIND, &value).await {
        Ok(job) => job,
        Err(e) => {
            doppel_platform::privacy::cancel_unqueued(&state.db, &charged).await?;
            return Err(e.into());
        }
    };
    doppel_platform::privacy::attach_job(&state.db, &charged, &job.id).await?;
    Ok(job)
}

/// The table outputs of a finished pipeline job that Flight and SQL serve:
/// Parquet files, the synthetic twin first.
pub fn table_outputs(manifest: &Manifest) -> Vec<&OutputFile> {
    let mut tables: Vec<&OutputFile> = manifest
        .files
        .iter()
        .filter(|f| f.media_type == "application/vnd.apache.parquet")
        .collect();
    tables.sort_by_key(|f| (f.name != "synthetic.parquet", f.name.clone()));
    tables
}

/// Runs `pipeline` jobs.
pub struct PipelineRunner {
    storage: Storage,
    catalog: Arc<Catalog>,
    db: Db,
}

impl std::fmt::Debug for PipelineRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineRunner").finish_non_exhaustive()
    }
}

impl PipelineRunner {
    /// A runner reading and writing `storage`.
    pub fn new(storage: Storage, catalog: Arc<Catalog>, db: Db) -> Self {
        PipelineRunner { storage, catalog, db }
    }
}

fn fail(code: &str, message: impl Into<String>, retryable: bool) -> JobFailure {
    JobFailure {
        code: code.to_owned(),
        message: message.into(),
        retryable,
    }
}

impl JobHandler for PipelineRunner {
    fn run(&self, ctx: JobContext) -> HandlerFuture {
        let storage = self.storage.clone();
        let catalog = Arc::clone(&self.catalog);
        let db = self.db.clone();
        Box::pin(async move { run_pipeline(storage, catalog, db, ctx).await })
    }
}

async fn run_pipeline(
    storage: Storage,
    catalog: Arc<Catalog>,
    db: Db,
    ctx: JobContext,
) -> Result<Manifest, JobFailure> {
    let job = &ctx.lease.job;
    if job.kind != KIND {
        return Err(fail(
            "unsupported_job",
            format!("no runner for jobs of kind `{}`", job.kind),
            false,
        ));
    }
    let spec: PipelineJob =
        serde_json::from_value(job.spec.clone()).map_err(|e| fail("invalid_job", format!("job spec: {e}"), false))?;
    // The dataset may have been deleted since the job was queued.
    doppel_platform::datasets::get(&db, &spec.dataset_id)
        .await
        .map_err(|e| match e {
            doppel_platform::Error::NotFound(_) => fail("dataset_gone", "the dataset was deleted", false),
            other => fail("unavailable", other.to_string(), true),
        })?;
    let work = tempfile::tempdir().map_err(|e| fail("internal", e.to_string(), true))?;
    let input = work.path().join("input.parquet");
    ctx.progress(0.0, "fetching the dataset");
    storage
        .get_to_file(&spec.dataset_key, &input)
        .await
        .map_err(|e| fail("storage_unavailable", e.to_string(), true))?;

    let planned = {
        let (catalog, spec, input) = (Arc::clone(&catalog), spec.clone(), input.clone());
        tokio::task::spawn_blocking(move || plan_job(&catalog, &spec, &input))
            .await
            .map_err(|e| fail("internal", e.to_string(), true))?
    };
    let plan = planned.map_err(|m| fail("invalid_pipeline", m, false))?;

    let total = plan.stages.len().max(1);
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let events = {
        let ctx = ctx.clone();
        let done = Arc::clone(&done);
        Arc::new(move |e: &Event| match e {
            Event::StageStarted { stage, .. } => {
                let d = done.load(Ordering::Relaxed);
                #[allow(clippy::cast_precision_loss, reason = "stage counts are tiny")]
                ctx.progress(d as f64 / total as f64 * 0.95, format!("running {stage}"));
            }
            Event::StageFinished { stage, summary, .. } => {
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                #[allow(clippy::cast_precision_loss, reason = "stage counts are tiny")]
                ctx.progress(d as f64 / total as f64 * 0.95, format!("{stage}: {summary}"));
            }
            _ => {}
        })
    };
    let options = RunOptions {
        batch_rows: exec::MIN_BATCH_ROWS.max(8192),
        cancel: ctx.cancel_flag(),
        events: Some(events),
    };
    let run = match exec::run(&plan, &options).await {
        Ok(r) => r,
        Err(doppel_host::Error::Cancelled) => return Err(fail("cancelled", "cancelled", false)),
        Err(e) => {
            let message = e.to_string().replace(&work.path().display().to_string(), "");
            return Err(fail("pipeline_failed", message, false));
        }
    };
    let out = work.path().join("out");
    let format = if spec.format == "csv" {
        TableFormat::Csv
    } else {
        TableFormat::Parquet
    };
    let written = {
        let out = out.clone();
        tokio::task::spawn_blocking(move || report::write_all(&plan, &run, &out, format).map(|(w, _)| w.len()))
            .await
            .map_err(|e| fail("internal", e.to_string(), true))?
    };
    written.map_err(|e| fail("output_failed", e.to_string(), true))?;
    ctx.progress(0.97, "uploading outputs");

    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&out)
        .map_err(|e| fail("internal", e.to_string(), true))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let key = object_key(
            "outputs",
            &job.owner_id,
            &job.id,
            &format!("{}/{name}", ctx.attempt_dir()),
        );
        let size = storage
            .put_file(&key, &path)
            .await
            .map_err(|e| fail("storage_unavailable", e.to_string(), true))?;
        files.push(OutputFile {
            media_type: media_type(&name).to_owned(),
            name,
            key,
            size,
        });
    }
    let summary = summarize(&out.join("report.json"));
    Ok(Manifest { files, summary })
}

fn media_type(name: &str) -> &'static str {
    match Path::new(name).extension().and_then(|e| e.to_str()) {
        Some("parquet") => "application/vnd.apache.parquet",
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        Some("pdf") => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// The headline numbers of a run, from its report.json: every table-wide
/// score (`Quality Score`, `Privacy Score`, …) as `"{stage}.{name}"`, and the
/// row counts of the output tables.
fn summarize(report: &Path) -> serde_json::Value {
    let Some(v) = std::fs::read_to_string(report)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    else {
        return serde_json::Value::Null;
    };
    let mut out = serde_json::Map::new();
    for stage in v.get("stages").and_then(|s| s.as_array()).into_iter().flatten() {
        let id = stage.get("id").and_then(|i| i.as_str()).unwrap_or_default();
        let metrics = stage.pointer("/result/metrics").and_then(|m| m.as_array());
        for m in metrics.into_iter().flatten() {
            let (Some(name), Some(value)) = (m.get("name").and_then(|n| n.as_str()), m.get("value")) else {
                continue;
            };
            let table_wide = m.get("columns").and_then(|c| c.as_array()).is_none_or(Vec::is_empty);
            if table_wide && name.ends_with("Score") {
                out.insert(format!("{id}.{name}"), value.clone());
            }
        }
    }
    if let Some(outputs) = v.get("outputs") {
        out.insert("outputs".into(), outputs.clone());
    }
    serde_json::Value::Object(out)
}
