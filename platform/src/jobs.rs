//! Durable jobs: the `jobs` table is the single truth for REST, Flight and
//! workers — state, progress, attempt, lease, retries with backoff, cancel
//! requests, error and output manifest.
//!
//! A worker claims a job by taking a lease (a fresh random token and an
//! expiry) and keeps it by heart-beating. Every later write — progress,
//! completion, failure — is conditional on still holding that token, so a
//! worker that lost its lease (paused, partitioned, killed) can never commit.
//! A job whose lease expired is claimable again and is retried. Outputs are
//! written under an attempt-specific prefix and become visible only when the
//! manifest that lists them is committed with the final state: no reader ever
//! sees half-written output.
//!
//! Claiming uses `FOR UPDATE SKIP LOCKED` on PostgreSQL, so many workers take
//! different jobs without blocking; on SQLite the single writer serialises
//! claims. Job kinds and specs are opaque JSON: the platform does not know
//! what a job does, only how to run it durably.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use serde::{Deserialize, Serialize};
use sqlx::{FromRow as _, Row};

use crate::audit::{self, Event, RequestMeta};
use crate::authz::Principal;
use crate::db::Backend;
use crate::util::{base62, new_id, now_ms, random_bytes};
use crate::{Db, Error, Result};

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker (or for its retry time).
    Queued,
    /// A worker holds its lease.
    Running,
    /// Finished; the manifest lists its outputs.
    Succeeded,
    /// Failed for good.
    Failed,
    /// Cancelled on request.
    Cancelled,
}

impl JobState {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
    fn parse(s: &str) -> JobState {
        match s {
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => JobState::Queued,
        }
    }
    /// Whether the job will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    }
}

/// One output file of a finished job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Name clients ask for (`synthetic.parquet`, `report.json`).
    pub name: String,
    /// Object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Media type.
    pub media_type: String,
}

/// What a finished job produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Output files.
    pub files: Vec<OutputFile>,
    /// Kind-specific summary (scores, row counts) as JSON.
    #[serde(default)]
    pub summary: serde_json::Value,
}

/// One step of a job as it runs (a pipeline stage): what any door shows as
/// live per-step progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The step's name (a stage id).
    pub name: String,
    /// `waiting`, `running`, `done` or `failed`.
    pub state: String,
    /// One line on what it did (or why it failed), safe to show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A job as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// Id (`job_…`).
    pub id: String,
    /// Owner account.
    pub owner_id: String,
    /// What kind of work (`pipeline`).
    pub kind: String,
    /// Kind-specific parameters.
    pub spec: serde_json::Value,
    /// State.
    pub state: JobState,
    /// 0.0 – 1.0.
    pub progress: f64,
    /// Latest progress line.
    pub message: Option<String>,
    /// Each step's state, as the runner last reported it.
    pub steps: Vec<Step>,
    /// Attempts started so far.
    pub attempt: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
    /// Times a worker vanished while running it (its lease expired).
    pub lease_losses: i64,
    /// Whether a cancel was requested.
    pub cancel_requested: bool,
    /// Stable error code when failed.
    pub error_code: Option<String>,
    /// Error message when failed (safe to show).
    pub error: Option<String>,
    /// Outputs when succeeded.
    pub manifest: Option<Manifest>,
    /// Created, ms.
    pub created_at: i64,
    /// First started, ms.
    pub started_at: Option<i64>,
    /// Finished, ms.
    pub finished_at: Option<i64>,
    /// Last change, ms.
    pub updated_at: i64,
}

const COLUMNS: &str = "id, owner_id, kind, spec, state, progress, message, steps, attempt, max_attempts, lease_losses, cancel_requested, \
                       error_code, error, manifest, created_at, started_at, finished_at, updated_at";

/// A `jobs` row as stored (spec and manifest are JSON text, flags integers).
#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    owner_id: String,
    kind: String,
    spec: String,
    state: String,
    progress: f64,
    message: Option<String>,
    steps: Option<String>,
    attempt: i64,
    max_attempts: i64,
    lease_losses: i64,
    cancel_requested: i64,
    error_code: Option<String>,
    error: Option<String>,
    manifest: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    updated_at: i64,
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<Job> {
    let r = JobRow::from_row(r)?;
    Ok(Job {
        id: r.id,
        owner_id: r.owner_id,
        kind: r.kind,
        spec: serde_json::from_str(&r.spec).map_err(|e| Error::Internal(format!("job spec: {e}")))?,
        state: JobState::parse(&r.state),
        progress: r.progress,
        message: r.message,
        steps: r
            .steps
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default(),
        attempt: r.attempt,
        max_attempts: r.max_attempts,
        lease_losses: r.lease_losses,
        cancel_requested: r.cancel_requested != 0,
        error_code: r.error_code,
        error: r.error,
        manifest: r
            .manifest
            .map(|m| serde_json::from_str(&m))
            .transpose()
            .map_err(|e| Error::Internal(format!("job manifest: {e}")))?,
        created_at: r.created_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        updated_at: r.updated_at,
    })
}

/// Queue settings the job functions need.
#[derive(Debug, Clone)]
pub struct Queue {
    db: Db,
    /// Lease length.
    pub lease: Duration,
    /// Attempts per job.
    pub max_attempts: i64,
    /// First retry delay.
    pub retry_base: Duration,
    /// Longest one attempt may run.
    pub max_run: Duration,
    /// Lease losses after which a job is failed instead of claimed again.
    pub max_lease_losses: i64,
}

/// A lease on a claimed job: the token fences every write.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The job as claimed.
    pub job: Job,
    /// The lease token.
    pub token: String,
}

/// Why an attempt failed, and whether trying again could help.
#[derive(Debug, Clone)]
pub struct JobFailure {
    /// Stable code (`invalid_pipeline`, `dataset_unreadable`, `internal`).
    pub code: String,
    /// Message safe to show the owner.
    pub message: String,
    /// Whether another attempt may succeed (infrastructure trouble) or not
    /// (the input is wrong: retrying gives the same answer).
    pub retryable: bool,
}

impl Queue {
    /// A queue over `db`.
    pub fn new(db: Db, settings: &crate::settings::JobSettings) -> Queue {
        Queue {
            db,
            lease: Duration::from_secs(u64::try_from(settings.lease_seconds.max(1)).unwrap_or(30)),
            max_attempts: settings.max_attempts.max(1),
            retry_base: Duration::from_secs(u64::try_from(settings.retry_base_seconds.max(0)).unwrap_or(5)),
            max_run: Duration::from_secs(settings.max_seconds.max(1)),
            max_lease_losses: settings.max_lease_losses.max(0),
        }
    }

    /// The store behind the queue.
    pub fn db(&self) -> &Db {
        &self.db
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(30_000)
    }

    /// Enqueue a job for `owner` (audited in the same transaction).
    pub async fn submit(&self, meta: &RequestMeta, p: &Principal, kind: &str, spec: &serde_json::Value) -> Result<Job> {
        let id = new_id("job");
        let now = now_ms();
        let mut tx = self.db.pool.begin().await?;
        sqlx::query(
            "INSERT INTO jobs (id, owner_id, kind, spec, state, max_attempts, run_after, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'queued', $5, $6, $6, $6)",
        )
        .bind(&id)
        .bind(&p.account_id)
        .bind(kind)
        .bind(spec.to_string())
        .bind(self.max_attempts)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit::record(
            &mut tx,
            meta,
            &Event::by(p, "job_submitted", Some(&id)).with(serde_json::json!({"kind": kind})),
        )
        .await?;
        tx.commit().await?;
        self.get(&id).await
    }

    /// One job (no authorization: callers check ownership).
    pub async fn get(&self, id: &str) -> Result<Job> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM jobs WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await?
            .ok_or_else(|| Error::NotFound("job".into()))?;
        from_row(&row)
    }

    /// Jobs newest first; `owner` None lists everyone's (admin).
    pub async fn list(&self, owner: Option<&str>, starting_after: Option<&str>, limit: i64) -> Result<Vec<Job>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM jobs WHERE ($1 = '' OR owner_id = $1) AND ($2 = '' OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        )))
        // Empty strings for "any": an untyped NULL parameter is ambiguous to PostgreSQL.
        .bind(owner.unwrap_or(""))
        .bind(starting_after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Ask a job to stop. A queued job is cancelled at once; a running one
    /// when its worker next heart-beats. Finished jobs are left as they are.
    pub async fn cancel(&self, meta: &RequestMeta, p: &Principal, id: &str) -> Result<Job> {
        let now = now_ms();
        let mut tx = self.db.pool.begin().await?;
        sqlx::query(
            "UPDATE jobs SET cancel_requested = 1, updated_at = $1, \
             state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END, \
             finished_at = CASE WHEN state = 'queued' THEN $1 ELSE finished_at END \
             WHERE id = $2 AND state IN ('queued', 'running')",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        audit::record(&mut tx, meta, &Event::by(p, "job_cancel_requested", Some(id))).await?;
        tx.commit().await?;
        self.get(id).await
    }

    /// Claim the oldest runnable job: queued and due, or running with an
    /// expired lease (its worker died). `worker` names the claimant in logs.
    pub async fn claim(&self, worker: &str) -> Result<Option<Lease>> {
        let now = now_ms();
        let token = format!("{worker}:{}", base62(&random_bytes::<12>(), 16));
        let pick = match self.db.backend {
            Backend::Postgres => {
                "SELECT id FROM jobs WHERE (state = 'queued' AND run_after <= $3) \
                 OR (state = 'running' AND lease_expires_at < $3) \
                 ORDER BY run_after, id LIMIT 1 FOR UPDATE SKIP LOCKED"
            }
            Backend::Sqlite => {
                "SELECT id FROM jobs WHERE (state = 'queued' AND run_after <= $3) \
                 OR (state = 'running' AND lease_expires_at < $3) \
                 ORDER BY run_after, id LIMIT 1"
            }
        };
        let sql = format!(
            "UPDATE jobs SET lease_losses = lease_losses + CASE WHEN state = 'running' THEN 1 ELSE 0 END, \
             state = 'running', lease_token = $1, lease_expires_at = $2, attempt = attempt + 1, \
             started_at = COALESCE(started_at, $3), updated_at = $3, message = NULL \
             WHERE id = ({pick}) RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&token)
            .bind(now + self.lease_ms())
            .bind(now)
            .fetch_optional(&self.db.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let job = from_row(&row)?;
        if job.attempt > job.max_attempts {
            // Its workers kept dying (a crash the job itself causes, say):
            // give up rather than loop forever.
            let lease = Lease { job, token };
            self.finish_failed(
                &lease,
                &JobFailure {
                    code: "attempts_exhausted".into(),
                    message: format!(
                        "the job was attempted {} times without finishing",
                        lease.job.max_attempts
                    ),
                    retryable: false,
                },
            )
            .await?;
            return Ok(None);
        }
        if job.lease_losses > self.max_lease_losses {
            // Its worker vanished mid-run more than once: most likely the job
            // itself exhausts memory or crashes the process. Retrying would
            // take the next worker (and everything it serves) down too.
            let lease = Lease { job, token };
            self.finish_failed(
                &lease,
                &JobFailure {
                    code: "worker_lost".into(),
                    message: format!(
                        "the worker running this job stopped {} times (out of memory or a crash); \
                         it is not retried again",
                        lease.job.lease_losses
                    ),
                    retryable: false,
                },
            )
            .await?;
            return Ok(None);
        }
        if job.cancel_requested {
            let lease = Lease { job, token };
            self.finish_cancelled(&lease).await?;
            return Ok(None);
        }
        Ok(Some(Lease { job, token }))
    }

    /// Extend the lease and record progress. Returns `Ok(true)` if a cancel
    /// was requested; [`Error::Conflict`] if the lease was lost.
    pub async fn heartbeat(&self, lease: &Lease, progress: Option<(f64, &str)>) -> Result<bool> {
        self.heartbeat_with_steps(lease, progress, None).await
    }

    /// [`Queue::heartbeat`], also recording each step's state.
    pub async fn heartbeat_with_steps(
        &self,
        lease: &Lease,
        progress: Option<(f64, &str)>,
        steps: Option<&[Step]>,
    ) -> Result<bool> {
        let now = now_ms();
        let steps = steps.map(|s| serde_json::to_string(s).unwrap_or_default());
        let (p, msg) = match progress {
            Some((p, m)) => (p.clamp(0.0, 1.0), Some(m)),
            None => (0.0, None),
        };
        // The progress is always bound as a number and chosen by a flag:
        // sqlx's Any driver declares a NULL f64 as float4 on PostgreSQL, and
        // the statement cached with that type then refuses the next real
        // value ("incorrect binary data format").
        let row = sqlx::query(
            "UPDATE jobs SET lease_expires_at = $1, updated_at = $2, \
             progress = CASE WHEN $7 THEN $3 ELSE progress END, \
             message = COALESCE($4, message), steps = COALESCE($8, steps) \
             WHERE id = $5 AND lease_token = $6 AND state = 'running' \
             RETURNING cancel_requested",
        )
        .bind(now + self.lease_ms())
        .bind(now)
        .bind(p)
        .bind(msg)
        .bind(&lease.job.id)
        .bind(&lease.token)
        .bind(progress.is_some())
        .bind(steps)
        .fetch_optional(&self.db.pool)
        .await?;
        match row {
            Some(r) => Ok(r.try_get::<i64, _>("cancel_requested")? != 0),
            None => Err(Error::Conflict(format!("lease on {} lost", lease.job.id))),
        }
    }

    /// Commit success with the manifest (only while holding the lease).
    pub async fn finish_succeeded(&self, lease: &Lease, manifest: &Manifest) -> Result<()> {
        let now = now_ms();
        let body = serde_json::to_string(manifest).map_err(|e| Error::Internal(e.to_string()))?;
        let mut tx = self.db.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE jobs SET state = 'succeeded', progress = 1.0, manifest = $1, finished_at = $2, updated_at = $2, \
             lease_token = NULL, lease_expires_at = NULL, message = 'done' WHERE id = $3 AND lease_token = $4 AND state = 'running'",
        )
        .bind(body)
        .bind(now)
        .bind(&lease.job.id)
        .bind(&lease.token)
        .execute(&mut *tx)
        .await?;
        if n.rows_affected() == 1 {
            // The owner hears of it in the same commit.
            crate::notifications::notify_raw(
                &mut tx,
                &lease.job.owner_id,
                "job_succeeded",
                "Your job finished.",
                &serde_json::json!({"job_id": lease.job.id, "kind": lease.job.kind}),
            )
            .await?;
            tx.commit().await?;
            Ok(())
        } else {
            Err(Error::Conflict(format!("lease on {} lost before commit", lease.job.id)))
        }
    }

    /// Record a failed attempt: retried later with exponential backoff if
    /// retryable and attempts remain, else failed for good.
    pub async fn finish_failed(&self, lease: &Lease, failure: &JobFailure) -> Result<()> {
        let now = now_ms();
        let retry = failure.retryable && lease.job.attempt < lease.job.max_attempts;
        let n = if retry {
            let exp = u32::try_from((lease.job.attempt - 1).clamp(0, 16)).unwrap_or(0);
            let delay = i64::try_from(self.retry_base.as_millis()).unwrap_or(5_000) * 2i64.pow(exp);
            sqlx::query(
                "UPDATE jobs SET state = 'queued', run_after = $1, updated_at = $2, lease_token = NULL, \
                 lease_expires_at = NULL, error_code = $3, error = $4, message = 'waiting to retry' \
                 WHERE id = $5 AND lease_token = $6",
            )
            .bind(now + delay)
            .bind(now)
            .bind(&failure.code)
            .bind(&failure.message)
            .bind(&lease.job.id)
            .bind(&lease.token)
            .execute(&self.db.pool)
            .await?
        } else {
            let mut tx = self.db.pool.begin().await?;
            let n = sqlx::query(
                "UPDATE jobs SET state = 'failed', finished_at = $1, updated_at = $1, lease_token = NULL, \
                 lease_expires_at = NULL, error_code = $2, error = $3 WHERE id = $4 AND lease_token = $5",
            )
            .bind(now)
            .bind(&failure.code)
            .bind(&failure.message)
            .bind(&lease.job.id)
            .bind(&lease.token)
            .execute(&mut *tx)
            .await?;
            if n.rows_affected() == 1 {
                crate::notifications::notify_raw(
                    &mut tx,
                    &lease.job.owner_id,
                    "job_failed",
                    &format!("Your job failed: {}", failure.message),
                    &serde_json::json!({"job_id": lease.job.id, "kind": lease.job.kind, "code": failure.code}),
                )
                .await?;
            }
            tx.commit().await?;
            n
        };
        if n.rows_affected() == 1 {
            Ok(())
        } else {
            Err(Error::Conflict(format!("lease on {} lost", lease.job.id)))
        }
    }

    /// Record that the running attempt stopped on a cancel request.
    pub async fn finish_cancelled(&self, lease: &Lease) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished_at = $1, updated_at = $1, lease_token = NULL, \
             lease_expires_at = NULL, message = 'cancelled' WHERE id = $2 AND lease_token = $3",
        )
        .bind(now)
        .bind(&lease.job.id)
        .bind(&lease.token)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }
}

/// What a handler gets while it runs a job.
#[derive(Clone)]
pub struct JobContext {
    /// The claimed job.
    pub lease: Lease,
    progress: Arc<std::sync::Mutex<Option<(f64, String)>>>,
    /// Each step's state, and whether it changed since the last heartbeat.
    steps: Arc<std::sync::Mutex<(Vec<Step>, bool)>>,
    cancel: Arc<AtomicBool>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("job", &self.lease.job.id)
            .finish_non_exhaustive()
    }
}

impl JobContext {
    /// Report progress (0.0 – 1.0) and a line; written at the next heartbeat.
    pub fn progress(&self, fraction: f64, message: impl Into<String>) {
        if let Ok(mut p) = self.progress.lock() {
            *p = Some((fraction, message.into()));
        }
    }
    /// Name the job's steps (all `waiting`); written at the next heartbeat.
    pub fn set_steps(&self, names: impl IntoIterator<Item = String>) {
        if let Ok(mut s) = self.steps.lock() {
            s.0 = names
                .into_iter()
                .map(|name| Step {
                    name,
                    state: "waiting".into(),
                    detail: None,
                })
                .collect();
            s.1 = true;
        }
    }

    /// Record a step's state (`running`, `done`, `failed`) and detail.
    pub fn step(&self, name: &str, state: &str, detail: Option<String>) {
        if let Ok(mut s) = self.steps.lock() {
            match s.0.iter_mut().find(|x| x.name == name) {
                Some(x) => {
                    x.state = state.to_owned();
                    x.detail = detail;
                }
                None => s.0.push(Step {
                    name: name.to_owned(),
                    state: state.to_owned(),
                    detail,
                }),
            }
            s.1 = true;
        }
    }

    /// The steps if they changed since last asked.
    fn take_steps(&self) -> Option<Vec<Step>> {
        let mut s = self.steps.lock().ok()?;
        if !s.1 {
            return None;
        }
        s.1 = false;
        Some(s.0.clone())
    }

    /// Set once the job should stop (cancel requested or lease lost).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancel)
    }
    /// Attempt-unique folder name for outputs (`a3`): a retry never writes
    /// over what an earlier, possibly still running, attempt wrote.
    pub fn attempt_dir(&self) -> String {
        format!("a{}", self.lease.job.attempt)
    }
}

/// A heartbeat carrying what the runner reported since the last one
/// (progress line, steps); `Ok(true)` if a cancel was requested.
async fn heartbeat(queue: &Queue, lease: &Lease, ctx: &JobContext) -> Result<bool> {
    let progress = ctx.progress.lock().ok().and_then(|mut p| p.take());
    let steps = ctx.take_steps();
    queue
        .heartbeat_with_steps(
            lease,
            progress.as_ref().map(|(f, m)| (*f, m.as_str())),
            steps.as_deref(),
        )
        .await
}

/// The result a handler returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = std::result::Result<Manifest, JobFailure>> + Send>>;

/// Runs jobs of some kinds. Implemented outside the platform (the pipeline
/// runner lives with the tabular product).
pub trait JobHandler: Send + Sync {
    /// Run one attempt of `ctx.lease.job`.
    fn run(&self, ctx: JobContext) -> HandlerFuture;
}

/// A worker loop: claim, run with heartbeats, commit.
pub struct Worker {
    queue: Queue,
    handler: Arc<dyn JobHandler>,
    name: String,
    poll: Duration,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker named `name` (unique per process and host, for the logs).
    pub fn new(queue: Queue, handler: Arc<dyn JobHandler>, name: impl Into<String>, poll: Duration) -> Worker {
        Worker {
            queue,
            handler,
            name: name.into(),
            poll,
        }
    }

    /// Run until `stop` is set. Errors talking to the store are logged and
    /// retried: a worker outlives a database restart.
    pub async fn run(self, stop: Arc<AtomicBool>) {
        tracing::info!(worker = %self.name, "Worker started.");
        while !stop.load(Ordering::Relaxed) {
            match self.queue.claim(&self.name).await {
                Ok(Some(lease)) => self.run_one(lease).await,
                Ok(None) => tokio::time::sleep(self.poll).await,
                Err(e) => {
                    tracing::warn!(worker = %self.name, error = %e, "Claiming a job failed; retrying.");
                    tokio::time::sleep(self.poll * 4).await;
                }
            }
        }
        tracing::info!(worker = %self.name, "Worker stopped.");
    }

    /// Run one claimed job to a committed end (or to a lost lease).
    pub async fn run_one(&self, lease: Lease) {
        let job_id = lease.job.id.clone();
        tracing::info!(worker = %self.name, job = %job_id, attempt = lease.job.attempt, "Job started.");
        let ctx = JobContext {
            lease: lease.clone(),
            progress: Arc::new(std::sync::Mutex::new(None)),
            steps: Arc::new(std::sync::Mutex::new((Vec::new(), false))),
            cancel: Arc::new(AtomicBool::new(false)),
        };
        let lost = Arc::new(AtomicBool::new(false));
        let cancelled = Arc::new(AtomicBool::new(false));
        let timed_out = Arc::new(AtomicBool::new(false));
        let deadline = tokio::time::Instant::now() + self.queue.max_run;
        // Beat at a third of the lease (so one slow write does not lose it),
        // and at least every second so clients see progress promptly.
        let beat = {
            let queue = self.queue.clone();
            let lease = lease.clone();
            let beat_ctx = ctx.clone();
            let cancel = Arc::clone(&ctx.cancel);
            let (lost, cancelled, timed_out) = (Arc::clone(&lost), Arc::clone(&cancelled), Arc::clone(&timed_out));
            let every = (self.queue.lease / 3).min(Duration::from_secs(1));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if tokio::time::Instant::now() >= deadline {
                        // Every stage polls the cancel flag: the attempt stops
                        // and is failed below, not retried.
                        timed_out.store(true, Ordering::Relaxed);
                        cancel.store(true, Ordering::Relaxed);
                    }
                    match heartbeat(&queue, &lease, &beat_ctx).await {
                        Ok(true) => {
                            cancelled.store(true, Ordering::Relaxed);
                            cancel.store(true, Ordering::Relaxed);
                        }
                        Ok(false) => {}
                        Err(Error::Conflict(_)) => {
                            lost.store(true, Ordering::Relaxed);
                            cancel.store(true, Ordering::Relaxed);
                            return;
                        }
                        Err(e) => tracing::warn!(job = %lease.job.id, error = %e, "Heartbeat failed; retrying."),
                    }
                }
            })
        };
        // A runner that panics must not take the worker loop down with it: the
        // attempt fails (retryably) and the worker carries on.
        let result = match std::panic::AssertUnwindSafe(self.handler.run(ctx.clone()))
            .catch_unwind()
            .await
        {
            Ok(r) => r,
            Err(_) => {
                tracing::error!(worker = %self.name, job = %job_id, "The job runner panicked.");
                Err(JobFailure {
                    code: "internal".into(),
                    message: "the job's runner crashed; it will be retried".into(),
                    retryable: true,
                })
            }
        };
        beat.abort();
        if lost.load(Ordering::Relaxed) {
            tracing::warn!(worker = %self.name, job = %job_id, "Lease lost; another worker owns the job now.");
            return;
        }
        // Flush the last progress line before the final state.
        let _ = heartbeat(&self.queue, &lease, &ctx).await;
        let outcome = match result {
            _ if cancelled.load(Ordering::Relaxed) => self.queue.finish_cancelled(&lease).await,
            _ if timed_out.load(Ordering::Relaxed) => {
                let failure = JobFailure {
                    code: "timed_out".into(),
                    message: format!(
                        "the job ran longer than the {} s this server allows (jobs.max_seconds)",
                        self.queue.max_run.as_secs()
                    ),
                    retryable: false,
                };
                self.queue.finish_failed(&lease, &failure).await
            }
            Ok(manifest) => self.queue.finish_succeeded(&lease, &manifest).await,
            Err(failure) => {
                tracing::warn!(job = %job_id, code = %failure.code, error = %failure.message, "Job attempt failed.");
                self.queue.finish_failed(&lease, &failure).await
            }
        };
        match outcome {
            Ok(()) => tracing::info!(worker = %self.name, job = %job_id, "Job finished."),
            Err(e) => tracing::warn!(worker = %self.name, job = %job_id, error = %e, "Job result not committed."),
        }
    }
}

impl Queue {
    /// How many jobs are in `state` (for `/metrics`).
    pub async fn count_in_state(&self, state: &str) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = $1")
            .bind(state)
            .fetch_one(&self.db.pool)
            .await?)
    }
}
