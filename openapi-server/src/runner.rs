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
    /// The dataset to run it on (empty when the job samples a saved model).
    #[serde(default)]
    pub dataset_id: String,
    /// Object key of the dataset's Parquet copy (resolved at submission).
    #[serde(default)]
    pub dataset_key: String,
    /// The saved model a `builtin:sample` pipeline reads, instead of a dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelInput>,
    /// `stage.key=value` overrides, as `doppel run --set`.
    #[serde(default)]
    pub overrides: Vec<String>,
    /// Output table format: `parquet` or `csv`.
    #[serde(default = "default_format")]
    pub format: String,
}

/// A model an earlier job saved (`save_model = true`), resolved at submission.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInput {
    /// The job that saved it.
    pub job_id: String,
    /// Its output name (`model-synth.safetensors`).
    pub output: String,
    /// Object key of that output.
    pub key: String,
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
    let stages = spec.input_stages();
    let [(stage, key)] = stages.as_slice() else {
        return Err(format!(
            "pipeline {} must have exactly one source (or sample) stage",
            pipeline.name
        ));
    };
    match (*key, &job.model) {
        ("model", None) => {
            return Err(format!(
                "pipeline {} samples a saved model: give `model` (the job that saved it) instead of a dataset",
                pipeline.name
            ));
        }
        ("path", Some(_)) => {
            return Err(format!(
                "pipeline {} reads a dataset: give `dataset_id`; `model` is for the `sample` pipeline",
                pipeline.name
            ));
        }
        _ => {}
    }
    let path = input.display().to_string().replace('\\', "\\\\").replace('"', "\\\"");
    spec.set(&format!("{stage}.{key}=\"{path}\""))
        .map_err(|d| d.message.clone())?;
    if *key == "path" {
        spec.set(&format!("{stage}.format=\"parquet\""))
            .map_err(|d| d.message.clone())?;
    }
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
    /// The dataset (must be readable by the caller); none when sampling a
    /// saved model.
    pub dataset_id: Option<String>,
    /// A saved model to sample (the `sample` pipeline): the caller's own
    /// succeeded job and, when it saved more than one, which output.
    pub model: Option<ModelRequest>,
    /// `stage.key=value` overrides.
    pub overrides: Vec<String>,
    /// Write tables as CSV instead of Parquet.
    pub csv: bool,
}

/// Which saved model a job samples.
#[derive(Debug, Clone)]
pub struct ModelRequest {
    /// The job that saved it.
    pub job_id: String,
    /// Its output name; default: the job's only `.safetensors` output.
    pub output: Option<String>,
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
    use doppel_platform::authz::{Scope, require};
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
    let (dataset, model) = match (request.dataset_id, request.model) {
        (Some(id), None) => (Some(readable_dataset(state, p, &id).await?), None),
        (None, Some(m)) => (None, Some(saved_model(state, p, m).await?)),
        (Some(_), Some(_)) => {
            return Err(Error::invalid("model", "give either `dataset_id` or `model`, not both").into());
        }
        (None, None) => {
            return Err(Error::invalid(
                "dataset_id",
                "give the dataset to run on (or, for the `sample` pipeline, `model`)",
            )
            .into());
        }
    };
    let spec = PipelineJob {
        pipeline: request.pipeline,
        dataset_id: dataset.as_ref().map(|d| d.id.clone()).unwrap_or_default(),
        dataset_key: dataset.as_ref().map(|d| d.object_key.clone()).unwrap_or_default(),
        model,
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
    let charged = match (&dataset, spends.is_empty()) {
        (Some(dataset), _) => {
            doppel_platform::privacy::charge(&state.db, meta, p, state.settings.privacy, dataset, &spends).await?
        }
        // Sampling a saved model reads no data: nothing to charge.
        (None, true) => Vec::new(),
        (None, false) => {
            return Err(SubmitError::InvalidPipeline(
                "a differentially private stage needs a dataset to charge".into(),
            ));
        }
    };
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

/// A dataset the caller may read; another account's is "no such dataset".
async fn readable_dataset(
    state: &crate::state::AppState,
    p: &doppel_platform::authz::Principal,
    id: &str,
) -> Result<doppel_platform::datasets::Dataset, doppel_platform::Error> {
    use doppel_platform::Error;
    use doppel_platform::authz::{Grant, Scope, authorize};
    let no_dataset = || Error::invalid("dataset_id", "no such dataset");
    let dataset = doppel_platform::datasets::get(&state.db, id)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => no_dataset(),
            other => other,
        })?;
    authorize(p, Scope::DatasetsRead, &dataset.owner_id, "dataset", Grant::OwnerOnly).map_err(|e| match e {
        Error::NotFound(_) => no_dataset(),
        other => other,
    })?;
    Ok(dataset)
}

/// Resolve a saved model: the caller's own succeeded job and one of its
/// `.safetensors` outputs. Another account's job is "no such job".
async fn saved_model(
    state: &crate::state::AppState,
    p: &doppel_platform::authz::Principal,
    m: ModelRequest,
) -> Result<ModelInput, doppel_platform::Error> {
    use doppel_platform::Error;
    use doppel_platform::authz::{Grant, Scope, authorize};
    let no_job = || Error::invalid("model.job_id", "no such job");
    let job = state.queue.get(&m.job_id).await.map_err(|e| match e {
        Error::NotFound(_) => no_job(),
        other => other,
    })?;
    authorize(p, Scope::DatasetsRead, &job.owner_id, "job", Grant::OwnerOnly).map_err(|e| match e {
        Error::NotFound(_) => no_job(),
        other => other,
    })?;
    let models: Vec<&OutputFile> = job
        .manifest
        .as_ref()
        .map(|man| {
            man.files
                .iter()
                .filter(|f| Path::new(&f.name).extension().is_some_and(|e| e == "safetensors"))
                .collect()
        })
        .unwrap_or_default();
    let chosen = match (&m.output, models.as_slice()) {
        (Some(name), _) => models
            .iter()
            .find(|f| &f.name == name)
            .copied()
            .ok_or_else(|| Error::invalid("model.output", format!("job {} has no saved model `{name}`", job.id)))?,
        (None, [one]) => *one,
        (None, []) => {
            return Err(Error::invalid(
                "model.job_id",
                format!(
                    "job {} saved no model ({}); run a pipeline whose generator sets `save_model = true`",
                    job.id,
                    job.state.as_str()
                ),
            ));
        }
        (None, many) => {
            let names: Vec<&str> = many.iter().map(|f| f.name.as_str()).collect();
            return Err(Error::invalid(
                "model.output",
                format!(
                    "job {} saved {} models; name one of {}",
                    job.id,
                    many.len(),
                    names.join(", ")
                ),
            ));
        }
    };
    Ok(ModelInput {
        job_id: job.id.clone(),
        output: chosen.name.clone(),
        key: chosen.key.clone(),
    })
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
    let work = tempfile::tempdir().map_err(|e| fail("internal", e.to_string(), true))?;
    let input = if let Some(model) = &spec.model {
        // Keep the output's name: errors and the report name the file.
        let input = work
            .path()
            .join(Path::new(&model.output).file_name().unwrap_or_default());
        ctx.progress(0.0, "fetching the saved model");
        storage
            .get_to_file(&model.key, &input)
            .await
            .map_err(|e| fail("storage_unavailable", e.to_string(), true))?;
        input
    } else {
        // The dataset may have been deleted since the job was queued.
        doppel_platform::datasets::get(&db, &spec.dataset_id)
            .await
            .map_err(|e| match e {
                doppel_platform::Error::NotFound(_) => fail("dataset_gone", "the dataset was deleted", false),
                other => fail("unavailable", other.to_string(), true),
            })?;
        let input = work.path().join("input.parquet");
        ctx.progress(0.0, "fetching the dataset");
        storage
            .get_to_file(&spec.dataset_key, &input)
            .await
            .map_err(|e| fail("storage_unavailable", e.to_string(), true))?;
        input
    };

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
