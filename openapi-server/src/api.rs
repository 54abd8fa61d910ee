//! The `/v1` endpoints. Every protected endpoint takes [`Auth`] and calls
//! [`authorize`] (or [`require`]) before touching a resource; someone else's
//! resource answers 404 exactly like a missing one.

use std::sync::Arc;
use std::time::Duration;

use doppel_platform::audit::RequestMeta;
use doppel_platform::authz::{Principal, Scope, require};
use doppel_platform::datasets;
use doppel_platform::jobs::Job;
use doppel_platform::{idempotency, keys};
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
    /// Shipped pipelines and validation.
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

impl From<keys::ApiKey> for KeyView {
    fn from(k: keys::ApiKey) -> Self {
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

fn dataset_view(d: &datasets::Dataset, with_profile: bool) -> DatasetView {
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
    /// A shipped pipeline (`GET /v1/pipelines`).
    pub pipeline: String,
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

/// A job as REST shows it: the application core's view, field for field.
pub fn job_view(j: &Job) -> JobView {
    let v = doppel_app::jobs::JobView::of(j);
    JobView {
        id: v.id,
        pipeline: v.pipeline,
        dataset_id: v.dataset_id,
        model_job_id: v.model_job_id,
        state: v.state,
        progress: v.progress,
        message: v.message,
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

/// The `/v1` API.
#[derive(Debug)]
pub struct Api;

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

async fn owned_dataset(state: &AppState, p: &Principal, id: &str, need: Scope) -> ApiResult<datasets::Dataset> {
    Ok(doppel_app::access::dataset(state, p, id, need).await?)
}

/// An output of a succeeded job, or 404 / 409.
fn output<'a>(job: &'a Job, name: &str) -> ApiResult<&'a doppel_platform::jobs::OutputFile> {
    Ok(doppel_app::listings::output(job, name)?)
}

#[OpenApi(prefix_path = "/v1")]
impl Api {
    /// Create an account.
    #[oai(
        path = "/auth/signup",
        method = "post",
        tag = "ApiTags::Auth",
        operation_id = "sign_up"
    )]
    async fn sign_up(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: JsonBody<SignUp>,
    ) -> ApiResult<CreatedAccount> {
        let a = state.accounts.sign_up(&meta(req), &body.email, &body.password).await?;
        Ok(CreatedAccount::Created(Json(a.into())))
    }

    /// Log in: returns a session token for `Authorization: Bearer`.
    /// Accounts with a second factor also send `totp_code` or `recovery_code`
    /// (401 `mfa_required` says so).
    #[oai(
        path = "/auth/login",
        method = "post",
        tag = "ApiTags::Auth",
        operation_id = "log_in"
    )]
    async fn log_in(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: JsonBody<LogIn>,
    ) -> ApiResult<Json<SessionView>> {
        let s = state
            .accounts
            .log_in(
                &meta(req),
                &body.email,
                &body.password,
                body.totp_code.as_deref(),
                body.recovery_code.as_deref(),
            )
            .await?;
        Ok(Json(SessionView {
            token: s.token,
            expires_at: s.expires_at,
            account: s.account.into(),
        }))
    }

    /// Start single sign-on with a configured OpenID Connect provider: a
    /// redirect to it (authorization code flow with PKCE, state and nonce).
    #[oai(
        path = "/auth/oidc/:provider/start",
        method = "get",
        tag = "ApiTags::Auth",
        operation_id = "oidc_start"
    )]
    async fn oidc_start(&self, state: Data<&Arc<AppState>>, provider: Path<String>) -> ApiResult<Redirect> {
        Ok(Redirect::Found(state.oidc.start(&provider).await?))
    }

    /// Where the provider sends the browser back: verifies the sign-in and
    /// answers with a session, as login does. Accounts are linked by the
    /// provider's issuer and subject.
    #[oai(
        path = "/auth/oidc/:provider/callback",
        method = "get",
        tag = "ApiTags::Auth",
        operation_id = "oidc_callback"
    )]
    async fn oidc_callback(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        provider: Path<String>,
        code: Query<Option<String>>,
        #[oai(name = "state")] oidc_state: Query<Option<String>>,
        error: Query<Option<String>>,
    ) -> ApiResult<Json<SessionView>> {
        if let Some(e) = &error.0 {
            return Err(ApiError::Unauthorized(Json(ErrorBody::new(
                "unauthenticated",
                format!("single sign-on failed: the provider answered `{e}`"),
            ))));
        }
        let (Some(code), Some(st)) = (code.0.as_deref(), oidc_state.0.as_deref()) else {
            return Err(ApiError::invalid("code", "the callback needs `code` and `state`"));
        };
        let s = state.oidc.callback(&meta(req), &provider, code, st).await?;
        Ok(Json(SessionView {
            token: s.token,
            expires_at: s.expires_at,
            account: s.account.into(),
        }))
    }

    /// Log out: revokes the session token used.
    #[oai(
        path = "/auth/logout",
        method = "post",
        tag = "ApiTags::Auth",
        operation_id = "log_out"
    )]
    async fn log_out(&self, state: Data<&Arc<AppState>>, req: &Request, auth: Auth) -> ApiResult<NoContent> {
        state.accounts.log_out(&meta(req), &auth.0).await?;
        Ok(NoContent::Done)
    }

    /// The calling account.
    #[oai(path = "/me", method = "get", tag = "ApiTags::Auth", operation_id = "get_me")]
    async fn me(&self, state: Data<&Arc<AppState>>, auth: Auth) -> ApiResult<Json<AccountView>> {
        Ok(Json(state.accounts.get(&auth.0.account_id).await?.into()))
    }

    /// Start TOTP enrolment (confirm with a code to turn it on). Turning a
    /// second factor on takes the password; replacing one takes a current
    /// code from it (or a recovery code).
    #[oai(
        path = "/me/totp",
        method = "post",
        tag = "ApiTags::Auth",
        operation_id = "enrol_totp"
    )]
    async fn enrol_totp(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        body: JsonBody<TotpEnrol>,
    ) -> ApiResult<Json<TotpEnrolmentView>> {
        session_only(&auth.0)?;
        let e = state
            .accounts
            .enrol_totp(&auth.0, body.password.as_deref(), body.code.as_deref())
            .await?;
        Ok(Json(TotpEnrolmentView {
            secret: e.secret,
            otpauth_url: e.otpauth_url,
        }))
    }

    /// Confirm TOTP enrolment; returns recovery codes, shown once.
    #[oai(
        path = "/me/totp/confirm",
        method = "post",
        tag = "ApiTags::Auth",
        operation_id = "confirm_totp"
    )]
    async fn confirm_totp(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        body: JsonBody<TotpCode>,
    ) -> ApiResult<Json<RecoveryCodes>> {
        session_only(&auth.0)?;
        let codes = state.accounts.confirm_totp(&meta(req), &auth.0, &body.code).await?;
        Ok(Json(RecoveryCodes { recovery_codes: codes }))
    }

    /// Create an API key. The secret is in this answer only.
    #[oai(
        path = "/api-keys",
        method = "post",
        tag = "ApiTags::ApiKeys",
        operation_id = "create_api_key"
    )]
    async fn create_key(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        body: JsonBody<NewKey>,
    ) -> ApiResult<CreatedKeyResponse> {
        let k = keys::create(
            &state.db,
            &meta(req),
            &auth.0,
            &body.name,
            &body.scopes,
            body.expires_in_days,
            state.settings.auth.api_key_max_days,
        )
        .await?;
        Ok(CreatedKeyResponse::Created(Json(CreatedKey {
            key: k.key.into(),
            secret: k.secret,
        })))
    }

    /// The caller's API keys.
    #[oai(
        path = "/api-keys",
        method = "get",
        tag = "ApiTags::ApiKeys",
        operation_id = "list_api_keys"
    )]
    async fn list_keys(&self, state: Data<&Arc<AppState>>, auth: Auth) -> ApiResult<Json<Vec<KeyView>>> {
        Ok(Json(
            keys::list(&state.db, &auth.0.account_id)
                .await?
                .into_iter()
                .map(Into::into)
                .collect(),
        ))
    }

    /// Revoke an API key.
    #[oai(
        path = "/api-keys/:id",
        method = "delete",
        tag = "ApiTags::ApiKeys",
        operation_id = "revoke_api_key"
    )]
    async fn revoke_key(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<KeyView>> {
        Ok(Json(keys::revoke(&state.db, &meta(req), &auth.0, &id).await?.into()))
    }

    /// Upload a table (multipart field `file`; CSV, Parquet or NDJSON). It is
    /// stored as Parquet and profiled. Honours `Idempotency-Key`.
    #[oai(
        path = "/datasets",
        method = "post",
        tag = "ApiTags::Datasets",
        operation_id = "create_dataset"
    )]
    async fn create_dataset(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        upload: DatasetUpload,
    ) -> ApiResult<CreatedDataset> {
        require(&auth.0, Scope::DatasetsWrite)?;
        let max = state.settings.limits.upload_max_mb * 1024 * 1024;
        if upload.file.size() as u64 > max {
            return Err(ApiError::TooLarge(Json(ErrorBody::new(
                "too_large",
                format!(
                    "file: larger than the {} MiB limit",
                    state.settings.limits.upload_max_mb
                ),
            ))));
        }
        let file_name = upload.file.file_name().unwrap_or("upload").to_owned();
        let format = tables::format_of(&file_name, upload.file.content_type()).ok_or_else(|| {
            ApiError::unprocessable(
                "unknown_format",
                tables::IngestError::UnknownFormat(file_name.clone()).to_string(),
            )
        })?;
        let name = upload.name.clone().unwrap_or_else(|| tables::default_name(&file_name));
        let name = tables::check_name(&name)?.to_owned();
        let work = tempfile::tempdir().map_err(ApiError::internal)?;
        let local = work.path().join(sanitize(&file_name));
        // Copy the spooled upload to our work file in chunks, hashing as it
        // goes (for Idempotency-Key): a large upload is never all in memory.
        let hash = {
            use sha2::Digest;
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut reader = upload.file.into_async_read();
            let mut out = tokio::fs::File::create(&local).await.map_err(ApiError::internal)?;
            let mut h = sha2::Sha256::new();
            h.update((name.len() as u64).to_be_bytes());
            h.update(name.as_bytes());
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = reader.read(&mut buf).await.map_err(ApiError::internal)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                out.write_all(&buf[..n]).await.map_err(ApiError::internal)?;
            }
            out.flush().await.map_err(ApiError::internal)?;
            doppel_platform::util::hex(&h.finalize())
        };
        let key = idempotency_key.0.as_deref();
        if let Some(previous) = replay::<DatasetView>(&state, &auth.0, key, &hash).await? {
            return Ok(CreatedDataset::Created(Json(previous)));
        }
        let created = async {
            let ingested = state
                .ingest
                .ingest(&local, &file_name, format, work.path())
                .await
                .map_err(|e| match e {
                    tables::IngestError::Internal(m) => ApiError::internal(m),
                    e @ tables::IngestError::TooLarge(_) => ApiError::unprocessable("limit_exceeded", e.to_string()),
                    other => ApiError::unprocessable("unreadable_table", other.to_string()),
                })?;
            let d = tables::register(&state, &meta(req), &auth.0, &name, &ingested).await?;
            let view = dataset_view(&d, true);
            remember(&state, &auth.0, key, &hash, &view).await?;
            Ok(view)
        }
        .await;
        let view = forget(&state, &auth.0, key, created).await?;
        Ok(CreatedDataset::Created(Json(view)))
    }

    /// The caller's datasets, newest first (cursor pagination).
    #[oai(
        path = "/datasets",
        method = "get",
        tag = "ApiTags::Datasets",
        operation_id = "list_datasets"
    )]
    async fn list_datasets(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u32>>,
        starting_after: Query<Option<String>>,
    ) -> ApiResult<Json<DatasetPage>> {
        require(&auth.0, Scope::DatasetsRead)?;
        let n = page_limit(limit.0)?;
        let rows = datasets::list(&state.db, &auth.0.account_id, starting_after.0.as_deref(), n + 1).await?;
        let (rows, has_more, next_cursor) = paginate(rows, n, |d| d.id.clone());
        Ok(Json(DatasetPage {
            data: rows.iter().map(|d| dataset_view(d, false)).collect(),
            has_more,
            next_cursor,
        }))
    }

    /// One dataset with its column profiles.
    #[oai(
        path = "/datasets/:id",
        method = "get",
        tag = "ApiTags::Datasets",
        operation_id = "get_dataset"
    )]
    async fn get_dataset(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<DatasetView>> {
        let d = owned_dataset(&state, &auth.0, &id, Scope::DatasetsRead).await?;
        Ok(Json(dataset_view(&d, true)))
    }

    /// The first rows of a dataset (at most 20).
    #[oai(
        path = "/datasets/:id/preview",
        method = "get",
        tag = "ApiTags::Datasets",
        operation_id = "preview_dataset"
    )]
    async fn preview(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<String>,
        #[oai(validator(minimum(value = "1"), maximum(value = "20")))] limit: Query<Option<u32>>,
    ) -> ApiResult<Json<Preview>> {
        let d = owned_dataset(&state, &auth.0, &id, Scope::DatasetsRead).await?;
        let n = match limit.0 {
            None => tables::PREVIEW_ROWS,
            Some(n) if (1..=tables::PREVIEW_ROWS as u32).contains(&n) => n as usize,
            Some(_) => {
                return Err(ApiError::invalid(
                    "limit",
                    format!("must be between 1 and {}", tables::PREVIEW_ROWS),
                ));
            }
        };
        let columns = d
            .metadata
            .get("columns")
            .and_then(|c| c.as_array())
            .map(|cols| {
                cols.iter()
                    .filter_map(|c| c.get("name")?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let rows = d
            .metadata
            .get("preview")
            .and_then(|p| p.as_array())
            .map(|r| r.iter().take(n).cloned().collect())
            .unwrap_or_default();
        Ok(Json(Preview { columns, rows }))
    }

    /// Delete a dataset and its stored table.
    #[oai(
        path = "/datasets/:id",
        method = "delete",
        tag = "ApiTags::Datasets",
        operation_id = "delete_dataset"
    )]
    async fn delete_dataset(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<NoContent> {
        tables::delete(&state, &meta(req), &auth.0, &id).await?;
        Ok(NoContent::Done)
    }

    /// The dataset's differential-privacy budget, what DP jobs spent and
    /// what is left.
    #[oai(
        path = "/datasets/:id/privacy",
        method = "get",
        tag = "ApiTags::Datasets",
        operation_id = "get_privacy_budget"
    )]
    async fn get_privacy(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<PrivacyLedgerView>> {
        let d = owned_dataset(&state, &auth.0, &id, Scope::DatasetsRead).await?;
        let l = doppel_platform::privacy::ledger(&state.db, state.settings.privacy, &d.owner_id, &d.name).await?;
        Ok(Json(ledger_view(l)))
    }

    /// Set the dataset's total differential-privacy budget (all versions of
    /// its name). Lowering it below what was spent stops further DP jobs.
    #[oai(
        path = "/datasets/:id/privacy",
        method = "put",
        tag = "ApiTags::Datasets",
        operation_id = "set_privacy_budget"
    )]
    async fn set_privacy(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<String>,
        body: JsonBody<PrivacyAmount>,
    ) -> ApiResult<Json<PrivacyLedgerView>> {
        let d = owned_dataset(&state, &auth.0, &id, Scope::DatasetsWrite).await?;
        let l = doppel_platform::privacy::set_budget(
            &state.db,
            &meta(req),
            &auth.0,
            state.settings.privacy,
            &d.owner_id,
            &d.name,
            doppel_platform::privacy::Amount {
                epsilon: body.epsilon,
                delta: body.delta,
            },
        )
        .await?;
        Ok(Json(ledger_view(l)))
    }

    /// The shipped pipelines a job can run.
    #[oai(
        path = "/pipelines",
        method = "get",
        tag = "ApiTags::Pipelines",
        operation_id = "list_pipelines"
    )]
    async fn list_pipelines(&self) -> Json<Vec<PipelineView>> {
        Json(
            doppel_host::shipped::PIPELINES
                .iter()
                .map(|p| PipelineView {
                    name: p.name.to_owned(),
                    description: doppel_host::shipped::description(p.text).unwrap_or_default(),
                    toml: p.text.to_owned(),
                })
                .collect(),
        )
    }

    /// Validate a pipeline (the TOML as the request body): every problem with
    /// its line and column, as `doppel validate` prints them.
    #[oai(
        path = "/pipelines/validate",
        method = "post",
        tag = "ApiTags::Pipelines",
        operation_id = "validate_pipeline"
    )]
    async fn validate(&self, state: Data<&Arc<AppState>>, body: PlainText<String>) -> ApiResult<Json<Validation>> {
        if body.0.len() > 1 << 20 {
            return Err(ApiError::invalid("body", "a pipeline is at most 1 MiB"));
        }
        let catalog = Arc::clone(&state.catalog);
        let text = body.0;
        let result = tokio::task::spawn_blocking(move || {
            use doppel_host::spec::{PipelineSpec, SourceFile};
            let spec = PipelineSpec::parse(SourceFile::new("pipeline.toml", text))?;
            doppel_host::plan::plan(&spec, &catalog)
        })
        .await
        .map_err(ApiError::internal)?;
        Ok(Json(match result {
            Ok(plan) => Validation {
                valid: true,
                order: plan.order.iter().map(|&i| plan.stages[i].id.clone()).collect(),
                problems: Vec::new(),
            },
            Err(d) => Validation {
                valid: false,
                order: Vec::new(),
                problems: d
                    .items
                    .iter()
                    .map(|item| {
                        let (line, column) = d
                            .location_of(item)
                            .map_or((None, None), |(l, c)| (u32::try_from(l).ok(), u32::try_from(c).ok()));
                        let one = doppel_host::spec::Diagnostics {
                            file: Arc::clone(&d.file),
                            items: vec![item.clone()],
                        };
                        Problem {
                            line,
                            column,
                            message: item.message.clone(),
                            rendered: one.to_string(),
                        }
                    })
                    .collect(),
            },
        }))
    }

    /// Run a shipped pipeline on a dataset. Honours `Idempotency-Key`.
    #[oai(path = "/jobs", method = "post", tag = "ApiTags::Jobs", operation_id = "create_job")]
    async fn create_job(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        body: JsonBody<NewJob>,
    ) -> ApiResult<CreatedJob> {
        require(&auth.0, Scope::JobsRun)?;
        let hash = hash_request(&[serde_json::to_string(&body.0).unwrap_or_default().as_bytes()]);
        let key = idempotency_key.0.as_deref();
        if let Some(previous) = replay::<JobView>(&state, &auth.0, key, &hash).await? {
            return Ok(CreatedJob::Created(Json(previous)));
        }
        let request = runner::JobRequest {
            pipeline: body.pipeline.clone(),
            dataset_id: body.dataset_id.clone(),
            model: body.model.as_ref().map(|m| runner::ModelRequest {
                job_id: m.job_id.clone(),
                output: m.output.clone(),
            }),
            overrides: body.overrides.clone(),
            csv: matches!(body.format, Some(OutputFormat::Csv)),
        };
        let created = async {
            let job = runner::submit(&state, &meta(req), &auth.0, request)
                .await
                .map_err(|e| match e {
                    runner::SubmitError::InvalidPipeline(problems) => {
                        ApiError::unprocessable("invalid_pipeline", problems)
                    }
                    e @ runner::SubmitError::NotAllowed { .. } => ApiError::unprocessable("not_allowed", e.to_string()),
                    runner::SubmitError::Platform(e) => ApiError::from(e),
                })?;
            let view = job_view(&job);
            remember(&state, &auth.0, key, &hash, &view).await?;
            Ok(view)
        }
        .await;
        let view = forget(&state, &auth.0, key, created).await?;
        Ok(CreatedJob::Created(Json(view)))
    }

    /// The caller's jobs, newest first.
    #[oai(path = "/jobs", method = "get", tag = "ApiTags::Jobs", operation_id = "list_jobs")]
    async fn list_jobs(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u32>>,
        starting_after: Query<Option<String>>,
    ) -> ApiResult<Json<JobPage>> {
        require(&auth.0, Scope::DatasetsRead)?;
        let n = page_limit(limit.0)?;
        let rows = state
            .queue
            .list(Some(&auth.0.account_id), starting_after.0.as_deref(), n + 1)
            .await?;
        let (rows, has_more, next_cursor) = paginate(rows, n, |j| j.id.clone());
        Ok(Json(JobPage {
            data: rows.iter().map(job_view).collect(),
            has_more,
            next_cursor,
        }))
    }

    /// One job.
    #[oai(path = "/jobs/:id", method = "get", tag = "ApiTags::Jobs", operation_id = "get_job")]
    async fn get_job(&self, state: Data<&Arc<AppState>>, auth: Auth, id: Path<String>) -> ApiResult<Json<JobView>> {
        Ok(Json(job_view(
            &owned_job(&state, &auth.0, &id, Scope::DatasetsRead).await?,
        )))
    }

    /// Ask a job to stop (queued jobs stop at once, running ones within seconds).
    #[oai(
        path = "/jobs/:id/cancel",
        method = "post",
        tag = "ApiTags::Jobs",
        operation_id = "cancel_job"
    )]
    async fn cancel_job(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<JobView>> {
        let job = owned_job(&state, &auth.0, &id, Scope::JobsRun).await?;
        Ok(Json(job_view(&state.queue.cancel(&meta(req), &auth.0, &job.id).await?)))
    }

    /// Progress as server-sent events: one `JobView` per change, ending with
    /// the final state.
    #[oai(
        path = "/jobs/:id/events",
        method = "get",
        tag = "ApiTags::Jobs",
        operation_id = "job_events"
    )]
    async fn job_events(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<EventStream<futures::stream::BoxStream<'static, JobView>>> {
        let job = owned_job(&state, &auth.0, &id, Scope::DatasetsRead).await?;
        let queue = state.queue.clone();
        let stream = futures::stream::unfold((Some(job), None::<(i64, String)>, false), move |(first, last, done)| {
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
                            tokio::time::sleep(Duration::from_millis(250)).await;
                            queue.get(&first_id(&last)?).await.ok()?
                        }
                    };
                    let mark = (job.updated_at, job.id.clone());
                    if last.as_ref() != Some(&mark) {
                        let terminal = job.state.is_terminal();
                        return Some((job_view(&job), (None, Some(mark), terminal)));
                    }
                }
            }
        })
        .boxed();
        Ok(EventStream::new(stream).keep_alive(Duration::from_secs(15)))
    }

    /// The run's report (report.json).
    #[oai(
        path = "/jobs/:id/report",
        method = "get",
        tag = "ApiTags::Jobs",
        operation_id = "get_report"
    )]
    async fn report(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<serde_json::Value>> {
        let job = owned_job(&state, &auth.0, &id, Scope::DatasetsRead).await?;
        let file = output(&job, "report.json")?;
        let bytes = state.storage.get_bytes(&file.key).await?;
        Ok(Json(serde_json::from_slice(&bytes).map_err(ApiError::internal)?))
    }

    /// The run's PDF report.
    #[oai(
        path = "/jobs/:id/report.pdf",
        method = "get",
        tag = "ApiTags::Jobs",
        operation_id = "get_report_pdf"
    )]
    async fn report_pdf(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Attachment<Vec<u8>>> {
        let job = owned_job(&state, &auth.0, &id, Scope::DatasetsRead).await?;
        let file = output(&job, "report.pdf")?;
        let bytes = state.storage.get_bytes(&file.key).await?;
        Ok(Attachment::new(bytes.to_vec())
            .attachment_type(AttachmentType::Inline)
            .filename(format!("{}-report.pdf", job.id)))
    }

    /// A download link for one output (valid one hour by default; no
    /// credentials needed to use it).
    #[oai(
        path = "/jobs/:id/outputs/:name/url",
        method = "get",
        tag = "ApiTags::Jobs",
        operation_id = "get_output_url"
    )]
    async fn output_url(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<String>,
        name: Path<String>,
    ) -> ApiResult<Json<DownloadLink>> {
        let job = owned_job(&state, &auth.0, &id, Scope::DatasetsRead).await?;
        let file = output(&job, &name)?;
        let ttl = Duration::from_secs(state.settings.limits.download_ttl_seconds.max(1));
        let link = state.storage.signed_url(&file.key, ttl).await?;
        Ok(Json(DownloadLink {
            url: link.url,
            expires_at: link.expires_at,
        }))
    }

    /// All accounts (admin).
    #[oai(
        path = "/admin/users",
        method = "get",
        tag = "ApiTags::Admin",
        operation_id = "admin_list_users"
    )]
    async fn admin_users(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u32>>,
        starting_after: Query<Option<String>>,
    ) -> ApiResult<Json<AccountPage>> {
        require(&auth.0, Scope::Admin)?;
        let n = page_limit(limit.0)?;
        let rows = state.accounts.list(starting_after.0.as_deref(), n + 1).await?;
        let (rows, has_more, next_cursor) = paginate(rows, n, |a| a.id.clone());
        Ok(Json(AccountPage {
            data: rows.into_iter().map(Into::into).collect(),
            has_more,
            next_cursor,
        }))
    }

    /// Disable an account (admin): its sessions end and its keys stop working.
    #[oai(
        path = "/admin/users/:id/disable",
        method = "post",
        tag = "ApiTags::Admin",
        operation_id = "admin_disable_user"
    )]
    async fn admin_disable(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<AccountView>> {
        require(&auth.0, Scope::Admin)?;
        Ok(Json(
            state
                .accounts
                .set_disabled(&meta(req), &auth.0, &id, true)
                .await?
                .into(),
        ))
    }

    /// Re-enable an account (admin).
    #[oai(
        path = "/admin/users/:id/enable",
        method = "post",
        tag = "ApiTags::Admin",
        operation_id = "admin_enable_user"
    )]
    async fn admin_enable(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<AccountView>> {
        require(&auth.0, Scope::Admin)?;
        Ok(Json(
            state
                .accounts
                .set_disabled(&meta(req), &auth.0, &id, false)
                .await?
                .into(),
        ))
    }

    /// Every account's jobs, newest first (admin).
    #[oai(
        path = "/admin/jobs",
        method = "get",
        tag = "ApiTags::Admin",
        operation_id = "admin_list_jobs"
    )]
    async fn admin_jobs(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u32>>,
        starting_after: Query<Option<String>>,
    ) -> ApiResult<Json<JobPage>> {
        require(&auth.0, Scope::Admin)?;
        let n = page_limit(limit.0)?;
        let rows = state.queue.list(None, starting_after.0.as_deref(), n + 1).await?;
        let (rows, has_more, next_cursor) = paginate(rows, n, |j| j.id.clone());
        Ok(Json(JobPage {
            data: rows.iter().map(job_view).collect(),
            has_more,
            next_cursor,
        }))
    }

    /// The audit log, newest first (admin).
    #[oai(
        path = "/admin/audit",
        method = "get",
        tag = "ApiTags::Admin",
        operation_id = "admin_audit_log"
    )]
    async fn admin_audit(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u32>>,
        before: Query<Option<i64>>,
    ) -> ApiResult<Json<Vec<AuditEventView>>> {
        require(&auth.0, Scope::Admin)?;
        let n = page_limit(limit.0)?;
        let events = doppel_platform::audit::list(&state.db, before.0, n).await?;
        Ok(Json(events.into_iter().map(Api::audit_view).collect()))
    }
}

impl Api {
    fn audit_view(e: doppel_platform::audit::StoredEvent) -> AuditEventView {
        AuditEventView {
            seq: e.seq,
            at: e.at,
            actor: e.actor,
            api_key_id: e.api_key_id,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            request_id: e.request_id,
            ip: e.ip,
        }
    }
}

fn first_id(last: &Option<(i64, String)>) -> Option<String> {
    last.as_ref().map(|(_, id)| id.clone())
}

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
