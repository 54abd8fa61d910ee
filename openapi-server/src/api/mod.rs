//! The `/v1` endpoints. Every protected endpoint takes [`Auth`] and calls
//! [`authorize`] (or [`require`]) before touching a resource; someone else's
//! resource answers 404 exactly like a missing one.

use std::sync::Arc;
use std::time::Duration;

use doppel_platform::audit::RequestMeta;
use doppel_platform::authz::{Principal, Scope, require};
use doppel_platform::idempotency;
use doppel_platform::jobs::Job;
use futures::StreamExt;
use poem::Request;
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Attachment, AttachmentType, EventStream, Json, PlainText};
use poem_openapi::types::multipart::Upload;
use poem_openapi::types::{ParseFromJSON, ToJSON};
use poem_openapi::{ApiResponse, Enum, Multipart, Object, OpenApi, Tags};

use crate::auth::{Auth, client_ip};
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult, ErrorBody};
use doppel_app::AppState;
use doppel_app::datasets as tables;
use doppel_app::jobs as runner;

/// Endpoint groups in the documentation.
#[derive(Debug, Tags)]
pub enum ApiTags {
    /// Sign-up, login, sessions, second factor.
    Auth,
    /// API keys.
    ApiKeys,
    /// Uploaded tables.
    Datasets,
    /// Shipped pipelines, the generators they run, and validation.
    Pipelines,
    /// Pipeline runs, their progress, reports and outputs.
    Jobs,
    /// Operator endpoints.
    Admin,
    /// Listings, search, purchases, downloads, the seller dashboard.
    Marketplace,
    /// In-app notifications.
    Notifications,
}

pub(crate) fn meta(req: &Request) -> RequestMeta {
    RequestMeta {
        request_id: crate::error::request_id(),
        ip: client_ip(req),
    }
}

const MAX_PAGE: u32 = 100;

/// Cut a page of `n` from `rows` fetched with limit `n + 1`: whether more
/// follow, and the cursor (`starting_after`) for the next page.
pub(crate) fn paginate<T>(mut rows: Vec<T>, n: i64, id: impl Fn(&T) -> String) -> (Vec<T>, bool, Option<String>) {
    let n = usize::try_from(n).unwrap_or(20);
    let has_more = rows.len() > n;
    rows.truncate(n);
    let next = if has_more { rows.last().map(id) } else { None };
    (rows, has_more, next)
}

pub(crate) fn page_limit(limit: Option<u32>) -> ApiResult<i64> {
    match limit {
        None => Ok(20),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(i64::from(n)),
        Some(_) => Err(ApiError::invalid("limit", format!("must be between 1 and {MAX_PAGE}"))),
    }
}

// ---------------------------------------------------------------- objects

/// Sign-up details.
#[derive(Debug, Object, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct SignUp {
    /// E-mail address (the login name).
    #[oai(validator(max_length = 254))]
    pub email: String,
    /// Password (at least 10 characters by default).
    #[oai(validator(max_length = 1024))]
    pub password: String,
}

/// Login details.
#[derive(Debug, Object, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct LogIn {
    /// E-mail address.
    pub email: String,
    /// Password.
    #[oai(validator(max_length = 1024))]
    pub password: String,
    /// Current TOTP code, when the account has a second factor.
    pub totp_code: Option<String>,
    /// A recovery code instead of a TOTP code (each works once).
    pub recovery_code: Option<String>,
}

/// An account.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AccountView {
    /// Id.
    pub id: String,
    /// E-mail.
    pub email: String,
    /// `user` or `admin`.
    pub role: String,
    /// Whether a second factor is on.
    pub totp_enabled: bool,
    /// Created, ms since the epoch.
    pub created_at: i64,
    /// Set if an admin disabled the account.
    pub disabled_at: Option<i64>,
}

impl From<doppel_platform::accounts::Account> for AccountView {
    fn from(a: doppel_platform::accounts::Account) -> Self {
        AccountView {
            id: a.id,
            email: a.email,
            role: a.role.as_str().to_owned(),
            totp_enabled: a.totp_enabled,
            created_at: a.created_at,
            disabled_at: a.disabled_at,
        }
    }
}

/// A new session. The token is shown once.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SessionView {
    /// Bearer token (`dps_…`).
    pub token: String,
    /// Expiry, ms since the epoch.
    pub expires_at: i64,
    /// The account.
    pub account: AccountView,
}

/// TOTP enrolment: scan the URL as a QR code, then confirm a code.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TotpEnrolmentView {
    /// Base32 secret.
    pub secret: String,
    /// `otpauth://` URL.
    pub otpauth_url: String,
}

/// Proof for changing the second factor: the password to turn one on, or
/// a current code from the one in use (or a recovery code) to replace it.
#[derive(Debug, Object, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct TotpEnrol {
    /// The account's password (turning a second factor on).
    #[oai(validator(max_length = 1024))]
    pub password: Option<String>,
    /// A current code, or a recovery code (replacing the second factor).
    #[oai(validator(max_length = 64))]
    pub code: Option<String>,
}

/// A TOTP code.
#[derive(Debug, Object, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct TotpCode {
    /// Six digits from the authenticator.
    pub code: String,
}

/// Recovery codes, shown once.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RecoveryCodes {
    /// Each works once instead of a TOTP code.
    pub recovery_codes: Vec<String>,
}

/// A key to create.
#[derive(Debug, Object, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct NewKey {
    /// A name to recognise it by.
    pub name: String,
    /// Scopes: `datasets:read`, `datasets:write`, `jobs:run`, `marketplace:sell`, `marketplace:buy`, `admin`.
    pub scopes: Vec<String>,
    /// Lifetime in days (capped by the server; default the cap).
    pub expires_in_days: Option<i64>,
}

/// An API key (never its secret, except once in [`CreatedKey`]).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct KeyView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// First characters, to recognise it.
    pub prefix: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Created, ms.
    pub created_at: i64,
    /// Expiry, ms.
    pub expires_at: Option<i64>,
    /// Last used, ms (to the minute).
    pub last_used_at: Option<i64>,
    /// Revoked, ms.
    pub revoked_at: Option<i64>,
}

impl From<doppel_platform::keys::ApiKey> for KeyView {
    fn from(k: doppel_platform::keys::ApiKey) -> Self {
        KeyView {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes,
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A created key: the secret is shown this once.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CreatedKey {
    /// The key.
    pub key: KeyView,
    /// The secret (`dpl_…`). Store it now: it cannot be shown again.
    pub secret: String,
}

/// A dataset to upload.
#[derive(Debug, Multipart)]
pub struct DatasetUpload {
    /// The table: CSV, Parquet or NDJSON.
    pub file: Upload,
    /// Display name (default: the file name).
    pub name: Option<String>,
}

/// A dataset.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct DatasetView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Rows.
    pub rows: u64,
    /// Columns: name, Arrow type, semantic type.
    pub columns: serde_json::Value,
    /// Stored size in bytes (Parquet).
    pub size_bytes: i64,
    /// Format it was uploaded in.
    pub source_format: String,
    /// Created, ms.
    pub created_at: i64,
    /// Column profiles (only on `GET /v1/datasets/{id}`).
    pub profile: Option<serde_json::Value>,
}

fn dataset_view(d: &doppel_platform::datasets::Dataset, with_profile: bool) -> DatasetView {
    let m = &d.metadata;
    DatasetView {
        id: d.id.clone(),
        name: d.name.clone(),
        rows: m.get("rows").and_then(serde_json::Value::as_u64).unwrap_or(0),
        columns: m.get("columns").cloned().unwrap_or(serde_json::Value::Null),
        size_bytes: d.size_bytes,
        source_format: m
            .get("source_format")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        created_at: d.created_at,
        profile: if with_profile { m.get("profile").cloned() } else { None },
    }
}

/// A page of datasets.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DatasetPage {
    /// This page, newest first.
    pub data: Vec<DatasetView>,
    /// Whether more follow.
    pub has_more: bool,
    /// Pass as `starting_after` for the next page.
    pub next_cursor: Option<String>,
}

/// Preview rows.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Preview {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows as objects keyed by column (nulls omitted).
    pub rows: Vec<serde_json::Value>,
}

/// A shipped pipeline.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PipelineView {
    /// Name to submit jobs with.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Its TOML.
    pub toml: String,
}

/// A generator a job can choose (`generator` on `POST /v1/jobs`).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct GeneratorView {
    /// Name to submit jobs with (`cart`, `copula`, `privsyn`, `ctgan`, `tvae`, `dp-tvae`).
    pub id: String,
    /// For people.
    pub label: String,
    /// What it does and when to choose it.
    pub summary: String,
    /// Whether its guarantee is differential privacy (the dataset's privacy
    /// budget is charged before the job runs).
    pub dp: bool,
    /// Whether this server can run it.
    pub available: bool,
    /// Why it cannot, when it cannot (e.g. built without `--features torch`).
    pub unavailable_reason: Option<String>,
    /// The shipped pipeline a job with this generator runs by default.
    pub pipeline: String,
    /// The other shipped pipelines that run it (`pipeline` may name one).
    pub pipelines: Vec<String>,
    /// The parameters a job may set (`generator.params`); empty when unavailable.
    pub params: Vec<GeneratorParam>,
}

/// One parameter a job may set on a generator.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct GeneratorParam {
    /// Key in `generator.params`.
    pub name: String,
    /// What it does.
    pub description: String,
    /// `string`, `integer`, `number`, `boolean` or `strings`.
    #[oai(rename = "type")]
    pub kind: String,
    /// Value when not set.
    pub default: Option<serde_json::Value>,
    /// The values a string parameter accepts (absent: any).
    pub allowed: Option<Vec<String>>,
    /// Inclusive lower bound.
    pub minimum: Option<f64>,
    /// Inclusive upper bound.
    pub maximum: Option<f64>,
}

/// One problem in a pipeline.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Problem {
    /// 1-based line, when the problem has a place.
    pub line: Option<u32>,
    /// 1-based column.
    pub column: Option<u32>,
    /// What is wrong.
    pub message: String,
    /// The full diagnostic with the source line and a caret.
    pub rendered: String,
}

/// Validation result.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Validation {
    /// Whether the pipeline is valid.
    pub valid: bool,
    /// Stage ids in run order (when valid).
    pub order: Vec<String>,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

/// Output format of a job's tables.
#[derive(Debug, Clone, Copy, Enum, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Apache Parquet.
    Parquet,
    /// CSV.
    Csv,
}

/// An (ε, δ) amount of differential privacy.
#[derive(Debug, Clone, Copy, Object, serde::Deserialize, serde::Serialize)]
pub struct PrivacyAmount {
    /// ε.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
}

impl From<doppel_platform::privacy::Amount> for PrivacyAmount {
    fn from(a: doppel_platform::privacy::Amount) -> Self {
        PrivacyAmount {
            epsilon: a.epsilon,
            delta: a.delta,
        }
    }
}

/// One DP stage's charge against a dataset's budget.
#[derive(Debug, Clone, Object)]
pub struct PrivacyChargeView {
    /// Id (`pc_…`).
    pub id: String,
    /// The dataset version the job read.
    pub dataset_id: String,
    /// The job that spent it.
    pub job_id: Option<String>,
    /// Pipeline stage.
    pub stage: String,
    /// Mechanism (`privsyn`).
    pub mechanism: String,
    /// ε charged.
    pub epsilon: f64,
    /// δ charged.
    pub delta: f64,
    /// When, ms.
    pub created_at: i64,
}

/// A dataset's differential-privacy budget: every version uploaded under the
/// dataset's name draws on it, and each DP job is charged when it is accepted.
#[derive(Debug, Clone, Object)]
pub struct PrivacyLedgerView {
    /// Dataset name.
    pub dataset_name: String,
    /// Total allowed.
    pub budget: PrivacyAmount,
    /// Charged so far (basic composition: the sum of charges).
    pub spent: PrivacyAmount,
    /// What further DP jobs may spend.
    pub remaining: PrivacyAmount,
    /// Every charge, oldest first.
    pub charges: Vec<PrivacyChargeView>,
}

fn ledger_view(l: doppel_platform::privacy::Ledger) -> PrivacyLedgerView {
    PrivacyLedgerView {
        dataset_name: l.dataset_name,
        budget: l.budget.into(),
        spent: l.spent.into(),
        remaining: l.remaining.into(),
        charges: l
            .charges
            .into_iter()
            .map(|c| PrivacyChargeView {
                id: c.id,
                dataset_id: c.dataset_id,
                job_id: c.job_id,
                stage: c.stage,
                mechanism: c.mechanism,
                epsilon: c.epsilon,
                delta: c.delta,
                created_at: c.created_at,
            })
            .collect(),
    }
}

/// A job to submit.
#[derive(Debug, Object, serde::Deserialize, serde::Serialize)]
#[oai(skip_serializing_if_is_none)]
pub struct NewJob {
    /// A shipped pipeline (`GET /v1/pipelines`). With `generator`, one of
    /// the pipelines that run it, or absent for the generator's own.
    pub pipeline: Option<String>,
    /// The generator to make the twin with (`GET /v1/generators`) and its
    /// parameters, checked against its schema.
    pub generator: Option<GeneratorChoice>,
    /// The dataset to run it on (every pipeline but `sample`).
    pub dataset_id: Option<String>,
    /// For the `sample` pipeline: the saved model to sample, instead of a
    /// dataset.
    pub model: Option<SavedModelRef>,
    /// `stage.key=value` overrides, as `doppel run --set`.
    #[oai(default)]
    #[serde(default)]
    pub overrides: Vec<String>,
    /// Output table format (default parquet).
    pub format: Option<OutputFormat>,
}

/// A generator chosen for a job.
#[derive(Debug, Clone, Object, serde::Deserialize, serde::Serialize)]
pub struct GeneratorChoice {
    /// `cart`, `copula`, `privsyn`, `ctgan`, `tvae` or `dp-tvae` (`GET /v1/generators`).
    pub name: String,
    /// Parameter values by name (`{"epochs": 50}`); each must be one the
    /// generator lists, of its type and within its bounds.
    #[oai(default)]
    #[serde(default)]
    pub params: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A model an earlier job of yours saved (its generator set `save_model = true`).
#[derive(Debug, Clone, Object, serde::Deserialize, serde::Serialize)]
#[oai(skip_serializing_if_is_none)]
pub struct SavedModelRef {
    /// The job that saved it (must have succeeded).
    pub job_id: String,
    /// Output name (`model-synth.safetensors`); default: the job's only saved model.
    pub output: Option<String>,
}

/// A job.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct JobView {
    /// Id.
    pub id: String,
    /// Pipeline run.
    pub pipeline: String,
    /// The generator that made the twin (absent for pipelines without one).
    pub generator: Option<String>,
    /// Dataset it ran on (absent for jobs that sampled a saved model).
    pub dataset_id: Option<String>,
    /// The job whose saved model it sampled (the `sample` pipeline).
    pub model_job_id: Option<String>,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// 0.0 – 1.0.
    pub progress: f64,
    /// Latest progress line.
    pub message: Option<String>,
    /// Each stage in run order: `waiting`, `running` (with a percentage),
    /// `done` (with what it produced) or `failed`.
    #[oai(default)]
    #[serde(default)]
    pub steps: Vec<StepView>,
    /// Attempts started.
    pub attempt: i64,
    /// Whether a cancel was requested.
    pub cancel_requested: bool,
    /// Error code when failed.
    pub error_code: Option<String>,
    /// Error message when failed.
    pub error: Option<String>,
    /// Output names (when succeeded): fetch each with `/outputs/{name}/url`.
    pub outputs: Vec<String>,
    /// Headline numbers (scores) when succeeded.
    pub summary: serde_json::Value,
    /// Created, ms.
    pub created_at: i64,
    /// Started, ms.
    pub started_at: Option<i64>,
    /// Finished, ms.
    pub finished_at: Option<i64>,
}

/// One stage of a running job.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct StepView {
    /// Stage id.
    pub name: String,
    /// `waiting`, `running`, `done` or `failed`.
    pub state: String,
    /// Progress (`40%`) while running, what it produced when done.
    pub detail: Option<String>,
}

/// A job as REST shows it: the application core's view, field for field.
pub fn job_view(j: &Job) -> JobView {
    let v = doppel_app::jobs::JobView::of(j);
    JobView {
        id: v.id,
        pipeline: v.pipeline,
        generator: v.generator,
        dataset_id: v.dataset_id,
        model_job_id: v.model_job_id,
        state: v.state,
        progress: v.progress,
        message: v.message,
        steps: v
            .steps
            .into_iter()
            .map(|s| StepView {
                name: s.name,
                state: s.state,
                detail: s.detail,
            })
            .collect(),
        attempt: v.attempt,
        cancel_requested: v.cancel_requested,
        error_code: v.error_code,
        error: v.error,
        outputs: v.outputs,
        summary: v.summary,
        created_at: v.created_at,
        started_at: v.started_at,
        finished_at: v.finished_at,
    }
}

/// A page of jobs.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct JobPage {
    /// This page, newest first.
    pub data: Vec<JobView>,
    /// Whether more follow.
    pub has_more: bool,
    /// Pass as `starting_after` for the next page.
    pub next_cursor: Option<String>,
}

/// A time-limited download link.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DownloadLink {
    /// GET this URL (no credentials needed) before it expires.
    pub url: String,
    /// Expiry, ms since the epoch.
    pub expires_at: i64,
}

/// An audit event.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditEventView {
    /// Sequence number (pass as `before` for older events).
    pub seq: i64,
    /// When, ms since the epoch.
    pub at: i64,
    /// Acting account.
    pub actor: Option<String>,
    /// API key used.
    pub api_key_id: Option<String>,
    /// What happened (OWASP logging vocabulary where it has a word).
    pub action: String,
    /// Resource acted on.
    pub target: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    /// Request id.
    pub request_id: Option<String>,
    /// Client address.
    pub ip: Option<String>,
}

/// A page of accounts (admin).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AccountPage {
    /// This page, by id.
    pub data: Vec<AccountView>,
    /// Whether more follow.
    pub has_more: bool,
    /// Pass as `starting_after` for the next page.
    pub next_cursor: Option<String>,
}

// -------------------------------------------------------------- responses

/// A redirect to the identity provider.
#[derive(Debug, ApiResponse)]
pub enum Redirect {
    /// Follow `Location` to sign in at the provider.
    #[oai(status = 302)]
    Found(#[oai(header = "Location")] String),
}

/// 201 with an account.
#[derive(Debug, ApiResponse)]
pub enum CreatedAccount {
    /// Created.
    #[oai(status = 201)]
    Created(Json<AccountView>),
}

/// 201 with a key.
#[derive(Debug, ApiResponse)]
pub enum CreatedKeyResponse {
    /// Created.
    #[oai(status = 201)]
    Created(Json<CreatedKey>),
}

/// 201 with a dataset.
#[derive(Debug, ApiResponse)]
pub enum CreatedDataset {
    /// Created (or the stored answer to a repeated `Idempotency-Key`).
    #[oai(status = 201)]
    Created(Json<DatasetView>),
}

/// 201 with a job.
#[derive(Debug, ApiResponse)]
pub enum CreatedJob {
    /// Queued (or the stored answer to a repeated `Idempotency-Key`).
    #[oai(status = 201)]
    Created(Json<JobView>),
}

/// 204.
#[derive(Debug, ApiResponse)]
pub enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

// ---------------------------------------------------------------- the API

pub(crate) fn hash_request(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    doppel_platform::util::hex(&h.finalize())
}

/// Start an `Idempotency-Key` request: the answer to replay if this request
/// was answered before; else the key is now reserved for this request (a
/// concurrent duplicate gets 409 while it runs), to be finished with
/// [`remember`] or, on failure, [`forget`].
pub(crate) async fn replay<T: ParseFromJSON>(
    state: &AppState,
    p: &Principal,
    key: Option<&str>,
    hash: &str,
) -> ApiResult<Option<T>> {
    let Some(key) = key else { return Ok(None) };
    match idempotency::begin(&state.db, &p.account_id, key, hash).await? {
        idempotency::Begin::Replay(stored) => {
            let value: serde_json::Value = serde_json::from_str(&stored.body).map_err(ApiError::internal)?;
            T::parse_from_json(Some(value))
                .map(Some)
                .map_err(|e| ApiError::internal(e.into_message()))
        }
        idempotency::Begin::Reserved => Ok(None),
    }
}

pub(crate) async fn remember<T: ToJSON>(
    state: &AppState,
    p: &Principal,
    key: Option<&str>,
    hash: &str,
    value: &T,
) -> ApiResult<()> {
    if let Some(key) = key {
        let body = value.to_json().map(|v| v.to_string()).unwrap_or_default();
        idempotency::store(&state.db, &p.account_id, key, hash, 201, &body).await?;
    }
    Ok(())
}

/// Release a reserved key after the request failed, so a retry can redo it;
/// the failure itself is passed through.
pub(crate) async fn forget<T>(
    state: &AppState,
    p: &Principal,
    key: Option<&str>,
    result: ApiResult<T>,
) -> ApiResult<T> {
    if result.is_err()
        && let Some(key) = key
        && let Err(e) = idempotency::release(&state.db, &p.account_id, key).await
    {
        tracing::warn!(error = %e, "Releasing an Idempotency-Key failed; it frees itself later.");
    }
    result
}

pub(crate) async fn owned_job(state: &AppState, p: &Principal, id: &str, need: Scope) -> ApiResult<Job> {
    Ok(doppel_app::access::job(state, p, id, need).await?)
}

async fn owned_dataset(
    state: &AppState,
    p: &Principal,
    id: &str,
    need: Scope,
) -> ApiResult<doppel_platform::datasets::Dataset> {
    Ok(doppel_app::access::dataset(state, p, id, need).await?)
}

/// An output of a succeeded job, or 404 / 409.
fn output<'a>(job: &'a Job, name: &str) -> ApiResult<&'a doppel_platform::jobs::OutputFile> {
    Ok(doppel_app::listings::output(job, name)?)
}

mod admin;
mod auth;
mod datasets;
mod jobs;
mod keys;
mod pipelines;

pub use self::datasets::DatasetsApi;
pub use self::keys::KeysApi;
pub use admin::AdminApi;
pub use auth::AuthApi;
pub use jobs::JobsApi;
pub use pipelines::PipelinesApi;

/// Second-factor settings change only from a signed-in session, never with an API key.
fn session_only(p: &Principal) -> ApiResult<()> {
    match p.credential {
        doppel_platform::authz::Credential::Session { .. } => Ok(()),
        doppel_platform::authz::Credential::ApiKey { .. } => Err(ApiError::Forbidden(Json(ErrorBody::new(
            "forbidden",
            "manage the second factor from a signed-in session, not with an API key",
        )))),
    }
}

/// A file name safe to use on local disk.
fn sanitize(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("upload");
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if clean.is_empty() || clean.starts_with('.') {
        format!("upload{clean}")
    } else {
        clean
    }
}
