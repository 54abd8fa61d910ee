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
    /// The generator its generator stage runs (`cart`, `privsyn`, …), as
    /// chosen or as the pipeline has it; absent for pipelines without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
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

/// Why a job's pipeline does not plan.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JobPlanError {
    /// An override touches a key no job may set (a path, a format, a model,
    /// a plugin, a limit, `uses`, …); `field` is `overrides[i]`.
    #[error(transparent)]
    Override(#[from] doppel_host::plan::OverrideError),
    /// The pipeline with these overrides does not plan; the text lists the
    /// problems (file:line:col).
    #[error("{0}")]
    Invalid(String),
}

/// Build the plan a job would run, with its input at `input`, named
/// `label` in everything the job writes (report.json, errors). Overrides are
/// checked against what each stage declares user-settable and applied
/// first; the input is bound last, by the server, so nothing a caller sends
/// can point a stage at a file.
pub fn plan_job(
    catalog: &Catalog,
    job: &PipelineJob,
    input: &Path,
    label: &str,
) -> Result<doppel_host::plan::Plan, JobPlanError> {
    use JobPlanError::Invalid;
    let pipeline = shipped::find(&job.pipeline).ok_or_else(|| {
        let names: Vec<&str> = shipped::PIPELINES.iter().map(|p| p.name).collect();
        Invalid(format!(
            "pipeline: no shipped pipeline `{}` (have {})",
            job.pipeline,
            names.join(", ")
        ))
    })?;
    let mut spec = PipelineSpec::parse(SourceFile::new(format!("{}.toml", pipeline.name), pipeline.text))
        .map_err(|d| Invalid(d.to_string()))?;
    let stages = spec.input_stages();
    let [(stage, key)] = stages.as_slice() else {
        return Err(Invalid(format!(
            "pipeline {} must have exactly one source (or sample) stage",
            pipeline.name
        )));
    };
    match (*key, &job.model) {
        ("model", None) => {
            return Err(Invalid(format!(
                "pipeline {} samples a saved model: give `model` (the job that saved it) instead of a dataset",
                pipeline.name
            )));
        }
        ("path", Some(_)) => {
            return Err(Invalid(format!(
                "pipeline {} reads a dataset: give `dataset_id`; `model` is for the `sample` pipeline",
                pipeline.name
            )));
        }
        _ => {}
    }
    doppel_host::plan::check_user_overrides(&spec, catalog, &job.overrides)?;
    for o in &job.overrides {
        spec.set(o).map_err(|d| Invalid(d.message.clone()))?;
    }
    let path = input.display().to_string().replace('\\', "\\\\").replace('"', "\\\"");
    spec.set(&format!("{stage}.{key}=\"{path}\""))
        .map_err(|d| Invalid(d.message.clone()))?;
    if *key == "path" {
        spec.set(&format!("{stage}.format=\"parquet\""))
            .map_err(|d| Invalid(d.message.clone()))?;
    }
    let mut plan = plan(&spec, catalog).map_err(|d| Invalid(d.to_string()))?;
    plan.input_label = Some(label.to_owned());
    Ok(plan)
}

/// What a job's report and errors call its input: the dataset (or the
/// saved model's job), never a server file.
fn input_label(job: &PipelineJob) -> String {
    match &job.model {
        Some(m) => format!("model {} of job {}", m.output, m.job_id),
        None => format!("dataset {}", job.dataset_id),
    }
}

/// A job as every door shows it (REST's `JobView`, Flight's job actions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// Id.
    pub id: String,
    /// Pipeline run.
    pub pipeline: String,
    /// The generator that made the twin (absent for pipelines without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    /// Dataset it ran on (absent for jobs that sampled a saved model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<String>,
    /// The job whose saved model it sampled (the `sample` pipeline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_job_id: Option<String>,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// 0.0 – 1.0.
    pub progress: f64,
    /// Latest progress line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Each stage's state (`waiting`, `running`, `done`, `failed`) and what it did.
    pub steps: Vec<doppel_platform::jobs::Step>,
    /// Attempts started.
    pub attempt: i64,
    /// Whether a cancel was requested.
    pub cancel_requested: bool,
    /// Error code when failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Error message when failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Output names (when succeeded).
    pub outputs: Vec<String>,
    /// Headline numbers (scores) when succeeded.
    pub summary: serde_json::Value,
    /// Created, ms.
    pub created_at: i64,
    /// Started, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    /// Finished, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
}

impl JobView {
    /// How a stored job reads: its pipeline, dataset or model from the
    /// job's spec ([`PipelineJob`]), its outputs and summary from the
    /// manifest.
    pub fn of(j: &doppel_platform::jobs::Job) -> JobView {
        let spec: Option<PipelineJob> = serde_json::from_value(j.spec.clone()).ok();
        JobView {
            id: j.id.clone(),
            pipeline: spec.as_ref().map(|s| s.pipeline.clone()).unwrap_or_default(),
            // Jobs queued before jobs recorded their generator read it
            // from their pipeline.
            generator: spec.as_ref().and_then(|s| {
                s.generator
                    .clone()
                    .or_else(|| crate::methods::generator_stage(&s.pipeline).map(|(_, g)| g.to_owned()))
            }),
            dataset_id: spec.as_ref().map(|s| s.dataset_id.clone()).filter(|d| !d.is_empty()),
            model_job_id: spec.as_ref().and_then(|s| s.model.as_ref()).map(|m| m.job_id.clone()),
            state: j.state.as_str().to_owned(),
            progress: j.progress,
            message: j.message.clone(),
            steps: j.steps.clone(),
            attempt: j.attempt,
            cancel_requested: j.cancel_requested,
            error_code: j.error_code.clone(),
            error: j.error.clone(),
            outputs: j
                .manifest
                .as_ref()
                .map(|m| m.files.iter().map(|f| f.name.clone()).collect())
                .unwrap_or_default(),
            summary: j
                .manifest
                .as_ref()
                .map(|m| m.summary.clone())
                .unwrap_or(serde_json::Value::Null),
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
        }
    }
}

/// How many overrides one job may carry, and how long each may be.
pub const MAX_OVERRIDES: usize = 32;
/// See [`MAX_OVERRIDES`].
pub const MAX_OVERRIDE_BYTES: usize = 1024;

/// A request to run a shipped pipeline on a dataset, as REST's `POST
/// /v1/jobs` and Flight's `job.submit` action both take it.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// A shipped pipeline's name; with a [`JobRequest::generator`], one of
    /// the pipelines that run it (default: the generator's own).
    pub pipeline: Option<String>,
    /// The generator to make the twin with, and its parameters.
    pub generator: Option<GeneratorRequest>,
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

/// A generator chosen by name (`GET /v1/generators`) with parameters from
/// its schema, instead of a pipeline and raw overrides.
#[derive(Debug, Clone)]
pub struct GeneratorRequest {
    /// `cart`, `copula`, `privsyn`, `ctgan`, `tvae` or `dp-tvae` (what
    /// [`crate::methods::methods`] lists).
    pub name: String,
    /// Parameter values as the client sent them (JSON), checked against the
    /// generator's schema by [`crate::methods::resolve`].
    pub params: Vec<(String, serde_json::Value)>,
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
    /// An override names a key a job may not set, or asks for more than the
    /// server allows (`field` says which).
    #[error("{field}: {message}")]
    NotAllowed {
        /// `overrides[i]`, or the setting at fault.
        field: String,
        /// Why, with what may be set instead.
        message: String,
    },
    /// Scope, lookup or store failure.
    #[error(transparent)]
    Platform(#[from] doppel_platform::Error),
}

/// Check and queue a pipeline job: the caller needs `jobs:run` and read
/// access to the dataset; the pipeline and overrides are planned now, so a
/// mistake is answered at once instead of failing in a worker later.
pub async fn submit(
    state: &crate::AppState,
    meta: &doppel_platform::audit::RequestMeta,
    p: &doppel_platform::authz::Principal,
    request: JobRequest,
) -> Result<doppel_platform::jobs::Job, SubmitError> {
    use doppel_platform::Error;
    use doppel_platform::authz::{Scope, require};
    require(p, Scope::JobsRun)?;
    if request.overrides.len() > MAX_OVERRIDES {
        return Err(Error::invalid("overrides", format!("at most {MAX_OVERRIDES} overrides")).into());
    }
    if let Some(i) = request.overrides.iter().position(|o| o.len() > MAX_OVERRIDE_BYTES) {
        return Err(Error::invalid(format!("overrides[{i}]"), format!("at most {MAX_OVERRIDE_BYTES} bytes")).into());
    }
    let (pipeline, overrides) = match (&request.generator, request.pipeline) {
        (Some(g), pipeline) => {
            let (pipeline, params) = crate::methods::resolve(state, &g.name, &g.params, pipeline.as_deref())?;
            // The generator's parameters come last, so they win over a raw
            // override of the same key.
            let mut overrides = request.overrides;
            overrides.extend(params);
            (pipeline.to_owned(), overrides)
        }
        (None, Some(pipeline)) => (pipeline, request.overrides),
        (None, None) => {
            return Err(Error::invalid(
                "pipeline",
                "give `pipeline` (GET /v1/pipelines) or `generator` (GET /v1/generators)",
            )
            .into());
        }
    };
    if shipped::find(&pipeline).is_none() {
        let names: Vec<&str> = shipped::PIPELINES.iter().map(|p| p.name).collect();
        return Err(Error::invalid(
            "pipeline",
            format!("no shipped pipeline `{pipeline}`; choose one of {}", names.join(", ")),
        )
        .into());
    }
    let (dataset, model) = match (request.dataset_id, request.model) {
        (Some(id), None) => {
            let dataset = crate::access::dataset(state, p, &id, doppel_platform::authz::Scope::DatasetsRead)
                .await
                .map_err(crate::access::as_field("dataset_id", "dataset"))?;
            (Some(dataset), None)
        }
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
        generator: crate::methods::generator_stage(&pipeline).map(|(_, g)| g.to_owned()),
        pipeline,
        dataset_id: dataset.as_ref().map(|d| d.id.clone()).unwrap_or_default(),
        dataset_key: dataset.as_ref().map(|d| d.object_key.clone()).unwrap_or_default(),
        model,
        overrides,
        format: if request.csv { "csv".into() } else { "parquet".into() },
    };
    let check = {
        let (catalog, spec) = (Arc::clone(&state.catalog), spec.clone());
        tokio::task::spawn_blocking(move || {
            let label = input_label(&spec);
            plan_job(&catalog, &spec, Path::new("input.parquet"), &label)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    };
    let plan = check.map_err(|e| match e {
        JobPlanError::Override(o) => SubmitError::NotAllowed {
            field: o.field,
            message: o.message,
        },
        JobPlanError::Invalid(m) => SubmitError::InvalidPipeline(m),
    })?;
    check_rows(&plan, dataset.as_ref(), &state.settings.limits)?;
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

/// Refuse a job whose generator or sample stage would write more rows than
/// the server allows (`limits.max_synthetic_rows`), or more cells than an
/// upload may hold (`limits.max_cells`), before it is queued: a worker that
/// runs out of memory takes every job and request in its process with it.
fn check_rows(
    plan: &doppel_host::plan::Plan,
    dataset: Option<&doppel_platform::datasets::Dataset>,
    limits: &doppel_platform::settings::LimitSettings,
) -> Result<(), SubmitError> {
    use doppel_host::builtins::Kind;
    let columns = dataset
        .and_then(|d| d.metadata.get("columns")?.as_array().map(Vec::len))
        .unwrap_or(1)
        .max(1) as u64;
    for stage in &plan.stages {
        if !stage.operation.builtin().is_some_and(|b| b.kind() == Kind::Generator) {
            continue;
        }
        let Some(doppel_host::config::ConfigValue::Integer(rows)) = doppel_host::config::get(&stage.settings, "rows")
        else {
            continue;
        };
        let rows = u64::try_from(*rows).unwrap_or(0);
        if rows > limits.max_synthetic_rows {
            return Err(SubmitError::NotAllowed {
                field: format!("{}.rows", stage.id),
                message: format!(
                    "at most {} rows per job on this server (limits.max_synthetic_rows)",
                    limits.max_synthetic_rows
                ),
            });
        }
        if rows.saturating_mul(columns) > limits.max_cells {
            return Err(SubmitError::NotAllowed {
                field: format!("{}.rows", stage.id),
                message: format!(
                    "{rows} rows × {columns} columns is more than the {} cells a table may have here (limits.max_cells)",
                    limits.max_cells
                ),
            });
        }
    }
    Ok(())
}

/// Resolve a saved model: the caller's own succeeded job and one of its
/// `.safetensors` outputs. Another account's job is "no such job".
async fn saved_model(
    state: &crate::AppState,
    p: &doppel_platform::authz::Principal,
    m: ModelRequest,
) -> Result<ModelInput, doppel_platform::Error> {
    use doppel_platform::Error;
    use doppel_platform::authz::Scope;
    let job = crate::access::job(state, p, &m.job_id, Scope::DatasetsRead)
        .await
        .map_err(crate::access::as_field("model.job_id", "job"))?;
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
    engine: exec::EngineOptions,
    side_by_side_bytes: u64,
}

impl std::fmt::Debug for PipelineRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineRunner").finish_non_exhaustive()
    }
}

impl PipelineRunner {
    /// A runner reading and writing `storage`.
    pub fn new(storage: Storage, catalog: Arc<Catalog>, db: Db) -> Self {
        PipelineRunner {
            storage,
            catalog,
            db,
            engine: exec::EngineOptions::default(),
            side_by_side_bytes: exec::DEFAULT_SIDE_BY_SIDE_BYTES,
        }
    }

    /// Input-table bytes a job's stages may read at the same time
    /// (`[jobs] side_by_side_mb`; see `RunOptions::side_by_side_bytes`).
    #[must_use]
    pub fn with_side_by_side_bytes(mut self, bytes: u64) -> Self {
        self.side_by_side_bytes = bytes;
        self
    }

    /// Count-based fits count on `engine` (the `[engine]` settings).
    #[must_use]
    pub fn with_engine(mut self, engine: exec::EngineOptions) -> Self {
        self.engine = engine;
        self
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
        let engine = self.engine.clone();
        let side_by_side_bytes = self.side_by_side_bytes;
        Box::pin(async move { run_pipeline(storage, catalog, db, engine, side_by_side_bytes, ctx).await })
    }
}

async fn run_pipeline(
    storage: Storage,
    catalog: Arc<Catalog>,
    db: Db,
    engine: exec::EngineOptions,
    side_by_side_bytes: u64,
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
        storage.get_to_file(&model.key, &input).await.map_err(|e| {
            tracing::warn!(job = %job.id, error = %e, "Fetching a saved model failed.");
            fail(
                "storage_unavailable",
                "the saved model could not be fetched; retrying",
                true,
            )
        })?;
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
        storage.get_to_file(&spec.dataset_key, &input).await.map_err(|e| {
            tracing::warn!(job = %job.id, error = %e, "Fetching a dataset failed.");
            fail(
                "storage_unavailable",
                "the dataset could not be fetched; retrying",
                true,
            )
        })?;
        input
    };

    let label = input_label(&spec);
    // Whatever a stage says about its input names the dataset, not our file.
    let hide = {
        let (input, work, label) = (
            input.display().to_string(),
            work.path().display().to_string(),
            label.clone(),
        );
        move |m: String| m.replace(&input, &label).replace(&work, "")
    };
    let planned = {
        let (catalog, spec, input, label) = (Arc::clone(&catalog), spec.clone(), input.clone(), label.clone());
        tokio::task::spawn_blocking(move || plan_job(&catalog, &spec, &input, &label))
            .await
            .map_err(|e| fail("internal", e.to_string(), true))?
    };
    let plan = planned.map_err(|e| fail("invalid_pipeline", hide(e.to_string()), false))?;

    let total = plan.stages.len().max(1);
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    ctx.set_steps(plan.order.iter().map(|&i| plan.stages[i].id.clone()));
    let events = {
        let ctx = ctx.clone();
        let done = Arc::clone(&done);
        Arc::new(move |e: &Event| match e {
            Event::StageProgress {
                stage,
                done: units,
                total: of,
                ..
            } if *of > 0 => {
                #[allow(clippy::cast_precision_loss, reason = "a percentage for people")]
                let pct = (*units as f64 / *of as f64 * 100.0).clamp(0.0, 100.0);
                // With the time left at the stage's rate so far, once it
                // has one: a long privacy stage is seen moving.
                let detail = match e.time_left() {
                    Some(left) if *units < *of => {
                        format!("{pct:.0}%, about {} left", doppel_host::exec::human_duration(left))
                    }
                    _ => format!("{pct:.0}%"),
                };
                ctx.step(stage, "running", Some(detail));
            }
            Event::StageStarted { stage, .. } => {
                let d = done.load(Ordering::Relaxed);
                #[allow(clippy::cast_precision_loss, reason = "stage counts are tiny")]
                ctx.progress(d as f64 / total as f64 * 0.95, format!("running {stage}"));
                ctx.step(stage, "running", None);
            }
            Event::StageFinished { stage, summary, .. } => {
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                #[allow(clippy::cast_precision_loss, reason = "stage counts are tiny")]
                ctx.progress(d as f64 / total as f64 * 0.95, format!("{stage}: {summary}"));
                ctx.step(stage, "done", Some(summary.clone()));
            }
            Event::StageFailed { stage, .. } => {
                // The reason is in the job's error (paths hidden); here only
                // which stage it was.
                ctx.step(stage, "failed", None);
            }
            _ => {}
        })
    };
    let options = RunOptions {
        batch_rows: exec::MIN_BATCH_ROWS.max(8192),
        cancel: ctx.cancel_flag(),
        events: Some(events),
        // Only `[outputs]` and report.json are kept from the run.
        release_tables: true,
        engine,
        side_by_side_bytes,
    };
    let run = match exec::run(&plan, &options).await {
        Ok(r) => r,
        Err(doppel_host::Error::Cancelled) => return Err(fail("cancelled", "cancelled", false)),
        Err(e) => return Err(fail("pipeline_failed", hide(e.to_string()), false)),
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
    written.map_err(|e| fail("output_failed", hide(e.to_string()), true))?;
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
        let size = storage.put_file(&key, &path).await.map_err(|e| {
            tracing::warn!(job = %job.id, error = %e, "Uploading an output failed.");
            fail("storage_unavailable", "an output could not be stored; retrying", true)
        })?;
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
    let Some(r) = std::fs::read(report)
        .ok()
        .and_then(|bytes| doppel_host::report::Report::from_slice(&bytes).ok())
    else {
        return serde_json::Value::Null;
    };
    let mut out: serde_json::Map<String, serde_json::Value> = r
        .summary
        .scores
        .iter()
        .filter(|(k, _)| k.ends_with("Score"))
        .map(|(k, v)| (k.clone(), v.map_or(serde_json::Value::Null, serde_json::Value::from)))
        .collect();
    out.insert("outputs".into(), serde_json::to_value(&r.outputs).unwrap_or_default());
    serde_json::Value::Object(out)
}

/// A job as it changes: the job now, then each new state of it (polled
/// every 250 ms), ending with its final state. What every door's live
/// progress (REST and console SSE) streams.
pub fn watch(
    queue: doppel_platform::jobs::Queue,
    job: doppel_platform::jobs::Job,
) -> futures::stream::BoxStream<'static, doppel_platform::jobs::Job> {
    use futures::StreamExt;
    futures::stream::unfold(
        (Some(job.clone()), job.id.clone(), None::<i64>, false),
        move |(first, id, last, done)| {
            let queue = queue.clone();
            async move {
                if done {
                    return None;
                }
                let mut next = first;
                loop {
                    let job = match next.take() {
                        Some(j) => j,
                        None => {
                            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                            queue.get(&id).await.ok()?
                        }
                    };
                    if last != Some(job.updated_at) {
                        let terminal = job.state.is_terminal();
                        let mark = Some(job.updated_at);
                        return Some((job, (None, id, mark, terminal)));
                    }
                }
            }
        },
    )
    .boxed()
}

/// A succeeded job's `report.json`, typed. A report this doppel cannot read
/// (another version, damaged) is an internal error, never a guess.
pub async fn report(
    state: &crate::AppState,
    job: &doppel_platform::jobs::Job,
) -> doppel_platform::Result<doppel_host::report::Report> {
    let file = crate::listings::output(job, "report.json")?;
    let bytes = state.storage.get_bytes(&file.key).await?;
    doppel_host::report::Report::from_slice(&bytes)
        .map_err(|e| doppel_platform::Error::Internal(format!("report of {}: {e}", job.id)))
}

/// The caller's jobs that ran on dataset `dataset_id`, newest first, among
/// their latest `scan` jobs.
pub async fn of_dataset(
    state: &crate::AppState,
    p: &doppel_platform::authz::Principal,
    dataset_id: &str,
    scan: i64,
) -> doppel_platform::Result<Vec<doppel_platform::jobs::Job>> {
    doppel_platform::authz::require(p, doppel_platform::authz::Scope::DatasetsRead)?;
    let jobs = state.queue.list(Some(&p.account_id), None, scan).await?;
    Ok(jobs
        .into_iter()
        .filter(|j| serde_json::from_value::<PipelineJob>(j.spec.clone()).is_ok_and(|s| s.dataset_id == dataset_id))
        .collect())
}

/// Stream the stored Parquet object `key` as CSV (header first), a batch at
/// a time: the object goes to a temporary file, a blocking task decodes it
/// batch by batch and the CSV text flows through a two-slot channel, so
/// memory stays at a few batches whatever the table's size.
pub async fn csv_stream(
    state: &crate::AppState,
    key: &str,
) -> doppel_platform::Result<futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>> {
    use futures::StreamExt;
    let dir = tempfile::tempdir().map_err(|e| doppel_platform::Error::Internal(e.to_string()))?;
    let local = dir.path().join("table.parquet");
    state.storage.get_to_file(key, &local).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(2);
    tokio::task::spawn_blocking(move || {
        let _keep = dir;
        let send = |chunk: std::io::Result<Vec<u8>>| tx.blocking_send(chunk.map(bytes::Bytes::from)).is_ok();
        let reader = std::fs::File::open(&local)
            .map_err(std::io::Error::other)
            .and_then(|f| {
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                    .and_then(|b| b.with_batch_size(8192).build())
                    .map_err(std::io::Error::other)
            });
        let reader = match reader {
            Ok(r) => r,
            Err(e) => {
                send(Err(e));
                return;
            }
        };
        let mut header = true;
        for batch in reader {
            let chunk = batch.map_err(std::io::Error::other).and_then(|b| {
                let mut out = Vec::new();
                {
                    let mut w = arrow::csv::WriterBuilder::new().with_header(header).build(&mut out);
                    w.write(&b).map_err(std::io::Error::other)?;
                }
                Ok(out)
            });
            header = false;
            let failed = chunk.is_err();
            if !send(chunk) || failed {
                return;
            }
        }
    });
    Ok(tokio_stream_from(rx).boxed())
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
