//! One layered configuration: built-in defaults, then `doppel.toml`, then
//! `DOPPEL__SECTION__KEY` environment variables (highest). Secrets are wrapped
//! in [`Secret`] so that `Debug`, logs and `--print-config` never show them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Environment variable prefix of a setting (`DOPPEL__JOBS__WORKERS=4`).
pub const ENV_PREFIX: &str = "DOPPEL__";

/// A secret value: shown as `[redacted]` everywhere but [`Secret::expose`].
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether it is empty (unset).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "[redacted]" })
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "[redacted]" })
    }
}

/// Everything the platform and servers read at start-up.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "snake_case")]
pub struct Settings {
    /// Where the embedded defaults live: the SQLite file, local objects, keys.
    pub data_dir: PathBuf,
    /// Metadata store: `sqlite://…` or `postgres://…`. Empty: `{data_dir}/doppel.db`.
    pub database_url: Secret,
    /// Base URL clients reach the REST server at (signed download links use it).
    pub public_url: String,
    /// REST listen address.
    pub http_addr: String,
    /// Arrow Flight listen address.
    pub flight_addr: String,
    /// Object storage.
    pub storage: StorageSettings,
    /// Sign-in, sessions, API keys.
    pub auth: AuthSettings,
    /// Job queue and workers.
    pub jobs: JobSettings,
    /// Request limits.
    pub limits: LimitSettings,
    /// Differential-privacy budgets.
    pub privacy: PrivacySettings,
    /// Marketplace payments.
    pub payments: PaymentSettings,
    /// Where a fit's heavy counting runs.
    pub engine: EngineSettings,
}

/// Where count-based fits (PrivSyn) count the training rows. `doppel serve`
/// and `doppel worker` parse `url` when they start (the platform knows no
/// engines).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// `local` (rows in memory, on the worker) or `ballista://host:port`, an
    /// Apache Ballista 55 scheduler whose executors read `scratch`.
    pub url: String,
    /// Folder training tables are staged to as Parquet for the cluster; every
    /// executor must read it at the same path. Empty: `{data_dir}/engine`.
    pub scratch: PathBuf,
    /// Rows per staged Parquet part.
    pub part_rows: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            url: "local".to_owned(),
            scratch: PathBuf::new(),
            part_rows: 1_000_000,
        }
    }
}

/// Marketplace payment settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentSettings {
    /// `fake`: the built-in provider (hosted checkout page, Stripe-style
    /// signed webhooks) that needs no account anywhere; `stripe`: Connect
    /// destination charges (needs `stripe_secret_key` and `webhook_secret`);
    /// `flutterwave`: subaccount split payments (needs
    /// `flutterwave_secret_key` and `webhook_secret`, the secret hash).
    pub provider: String,
    /// The platform's share of each sale in basis points (2000 = 20 %).
    pub platform_fee_bps: i64,
    /// Secret webhooks are signed with (Stripe's `whsec_…`). Empty: for the
    /// fake provider, derived from the signing key.
    pub webhook_secret: Secret,
    /// How old a signed webhook timestamp may be (Stripe's 300 s).
    pub webhook_tolerance_seconds: u64,
    /// Seconds between reconciliation passes over pending purchases, which
    /// settles a purchase whose webhook never came (0: off).
    pub reconcile_seconds: u64,
    /// Purchases younger than this are left to their webhook.
    pub reconcile_after_seconds: u64,
    /// Lowest privacy score a listed output may have.
    pub min_privacy_score: f64,
    /// Fake provider only: do not deliver webhooks (to exercise
    /// reconciliation).
    pub fake_drop_webhooks: bool,
    /// Stripe API base URL.
    pub stripe_api_base: String,
    /// Stripe secret key (`sk_live_…` / `sk_test_…`).
    pub stripe_secret_key: Secret,
    /// Flutterwave API base URL.
    pub flutterwave_api_base: String,
    /// Flutterwave secret key (`FLWSECK-…`). With `provider = "flutterwave"`,
    /// `webhook_secret` is the dashboard's webhook secret hash.
    pub flutterwave_secret_key: Secret,
    /// Origins a checkout or onboarding `return_url` may lead back to,
    /// besides the server's own public origin (`https://shop.example.com`).
    pub return_origins: Vec<String>,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        PaymentSettings {
            provider: "fake".to_owned(),
            platform_fee_bps: 2000,
            webhook_secret: Secret::default(),
            webhook_tolerance_seconds: 300,
            reconcile_seconds: 60,
            reconcile_after_seconds: 30,
            min_privacy_score: 40.0,
            fake_drop_webhooks: false,
            stripe_api_base: "https://api.stripe.com".to_owned(),
            stripe_secret_key: Secret::default(),
            flutterwave_api_base: "https://api.flutterwave.com".to_owned(),
            flutterwave_secret_key: Secret::default(),
            return_origins: Vec::new(),
        }
    }
}

/// Differential-privacy budget defaults.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacySettings {
    /// Total ε a dataset may spend across all DP jobs, until its owner sets
    /// another budget.
    pub dataset_epsilon: f64,
    /// Total δ a dataset may spend.
    pub dataset_delta: f64,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        // ε = 10 allows, say, ten ε = 1 twins; δ = 1e-6 stays far below
        // 1/rows for any table worth protecting.
        PrivacySettings {
            dataset_epsilon: 10.0,
            dataset_delta: 1e-6,
        }
    }
}

/// Object storage settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// `file:///abs/dir` or `s3://bucket/prefix`. Empty: `{data_dir}/objects`.
    pub url: String,
    /// S3-compatible endpoint (`http://127.0.0.1:9000`); empty for AWS.
    pub endpoint: String,
    /// S3 region.
    pub region: String,
    /// S3 access key id.
    pub access_key_id: String,
    /// S3 secret access key.
    pub secret_access_key: Secret,
    /// Allow plain HTTP to the endpoint (local S3-compatible servers).
    pub allow_http: bool,
}

/// Authentication settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Session lifetime in hours.
    pub session_ttl_hours: i64,
    /// Longest API key lifetime in days (requests for longer are capped).
    pub api_key_max_days: i64,
    /// HMAC key for signed download URLs and tickets (hex, ≥ 32 bytes). Empty:
    /// generated once into `{data_dir}/signing.key`. Every server and worker
    /// of one deployment must share it.
    pub signing_key: Secret,
    /// Accounts signing up with these e-mails become admins.
    pub admin_emails: Vec<String>,
    /// Shortest accepted password.
    pub password_min_length: usize,
    /// Cheap password hashing, for test suites only (never in production).
    pub insecure_fast_hashing: bool,
    /// OpenID Connect providers for single sign-on.
    pub oidc: Vec<OidcProviderSettings>,
    /// "Sign in with GitHub" (an OAuth app), when set.
    pub github: Option<GithubSettings>,
    /// Password hashes computed at once (each argon2id hash holds 19 MiB);
    /// 0: one per CPU. Further sign-ins wait in line.
    pub hash_concurrency: usize,
    /// Longest a sign-in waits in that line before it is answered 503, in ms.
    pub hash_wait_ms: u64,
    /// Wrong second-factor codes in a row before sign-in is locked out.
    pub mfa_max_failures: i64,
    /// First lockout in seconds; it doubles with each further wrong code.
    pub mfa_lockout_seconds: i64,
}

/// One OpenID Connect provider (authorization code flow with PKCE).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderSettings {
    /// Name in URLs: `/v1/auth/oidc/{name}/start`.
    pub name: String,
    /// Issuer URL; discovery is read from `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// Client id registered with the provider.
    pub client_id: String,
    /// Client secret.
    pub client_secret: Secret,
    /// Origins besides the issuer's that its discovery document may point
    /// the server at (`https://oauth2.googleapis.com` for Google's token
    /// endpoint, say). Every other token, JWKS or userinfo URL is refused.
    #[serde(default)]
    pub endpoint_origins: Vec<String>,
}

/// "Sign in with GitHub": an OAuth app registered on GitHub (or a GitHub
/// Enterprise Server), whose callback is `{public_url}/login/sso/github/callback`
/// for the console and `{public_url}/v1/auth/oidc/github/callback` for REST.
/// GitHub issues no ID token: the account is read from its user API and
/// linked by GitHub's numeric user id.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GithubSettings {
    /// The OAuth app's client id.
    pub client_id: String,
    /// The OAuth app's client secret.
    pub client_secret: Secret,
    /// Where people sign in (`https://github.com`, or the Enterprise Server).
    #[serde(default = "github_web_url")]
    pub web_url: String,
    /// The REST API (`https://api.github.com`, or `https://HOST/api/v3`).
    #[serde(default = "github_api_url")]
    pub api_url: String,
}

fn github_web_url() -> String {
    "https://github.com".to_owned()
}

fn github_api_url() -> String {
    "https://api.github.com".to_owned()
}

/// Job queue settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobSettings {
    /// Workers `doppel serve` runs in-process (0: only external `doppel worker`s).
    pub workers: usize,
    /// Lease length in seconds; a worker that stops heart-beating loses its job after it.
    pub lease_seconds: i64,
    /// Attempts before a job is failed for good.
    pub max_attempts: i64,
    /// First retry delay in seconds; doubles with each attempt.
    pub retry_base_seconds: i64,
    /// How often an idle worker looks for work, in milliseconds.
    pub poll_ms: u64,
    /// Longest one attempt may run, in seconds, before it is cancelled and
    /// failed (`timed_out`).
    pub max_seconds: u64,
    /// Times a job's worker may vanish mid-run (lease expired: a crash, an
    /// out-of-memory kill) before the job is failed instead of retried, so a
    /// job that kills its worker cannot crash-loop the fleet.
    pub max_lease_losses: i64,
    /// Input-table MiB a job's stages running at the same time may read
    /// together; past it a stage waits for the others, so a large table is
    /// scored one stage at a time instead of every stage holding its copies
    /// at once (0: no limit).
    pub side_by_side_mb: u64,
}

/// Request limits: every input has a size, count, depth and time bound,
/// checked before the memory is spent (SECURITY.md lists them all).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Largest upload in MiB (REST multipart file, Flight `DoPut` stream).
    pub upload_max_mb: u64,
    /// Largest request body of any other route (JSON, forms, webhooks), in KiB.
    pub body_max_kb: u64,
    /// Sustained requests per second per account (anonymous calls: per address).
    pub requests_per_second: u32,
    /// Burst above that rate.
    pub burst: u32,
    /// How long a signed download link works, in seconds.
    pub download_ttl_seconds: u64,
    /// Most columns an uploaded table may have.
    pub max_columns: usize,
    /// Longest column name, in bytes.
    pub max_name_bytes: usize,
    /// Most cells (rows × columns) of an uploaded table or a job's output.
    pub max_cells: u64,
    /// Longest single value of an upload (a CSV field, an NDJSON line), in KiB.
    pub max_value_kb: u64,
    /// Deepest nesting of an upload (JSON values, Parquet groups).
    pub max_depth: usize,
    /// Largest uploaded table once decoded in memory, in MiB.
    pub decoded_max_mb: u64,
    /// Memory one upload's reader process may use, in MiB (it runs apart
    /// from the server, so a file that defeats every other check takes down
    /// only its own reader, and the memory goes back when it exits).
    pub ingest_memory_mb: u64,
    /// Longest an upload may take to read, in seconds.
    pub ingest_timeout_seconds: u64,
    /// Uploads read at once; further ones wait.
    pub concurrent_ingests: usize,
    /// Most rows one job may ask a generator or sampler for.
    pub max_synthetic_rows: u64,
    /// Largest gRPC message Flight accepts or sends, in MiB.
    pub flight_message_mb: usize,
    /// Memory one Flight SQL statement may use (sorts, joins, aggregates), in MiB.
    pub sql_memory_mb: usize,
    /// Longest one Flight SQL statement may run, in seconds.
    pub sql_timeout_seconds: u64,
    /// Flight SQL statements running at once (per process); further ones wait.
    pub sql_concurrency: usize,
    /// Largest bound-parameter upload of a prepared statement, in KiB.
    pub sql_parameters_kb: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("doppel-data"),
            database_url: Secret::default(),
            public_url: String::new(),
            http_addr: "127.0.0.1:8080".to_owned(),
            flight_addr: "127.0.0.1:50051".to_owned(),
            storage: StorageSettings::default(),
            auth: AuthSettings::default(),
            jobs: JobSettings::default(),
            limits: LimitSettings::default(),
            privacy: PrivacySettings::default(),
            payments: PaymentSettings::default(),
            engine: EngineSettings::default(),
        }
    }
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            url: String::new(),
            endpoint: String::new(),
            region: "us-east-1".to_owned(),
            access_key_id: String::new(),
            secret_access_key: Secret::default(),
            allow_http: false,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            session_ttl_hours: 24 * 7,
            api_key_max_days: 365,
            signing_key: Secret::default(),
            admin_emails: Vec::new(),
            password_min_length: 10,
            insecure_fast_hashing: false,
            oidc: Vec::new(),
            github: None,
            hash_concurrency: 0,
            hash_wait_ms: 5000,
            mfa_max_failures: 5,
            mfa_lockout_seconds: 30,
        }
    }
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            workers: 2,
            lease_seconds: 30,
            max_attempts: 3,
            retry_base_seconds: 5,
            poll_ms: 250,
            max_seconds: 6 * 3600,
            max_lease_losses: 1,
            side_by_side_mb: 1024,
        }
    }
}

impl LimitSettings {
    /// The largest request body a route may send, for every HTTP door: a
    /// route that takes an upload gets the upload limit (plus 1 MiB for
    /// multipart framing and the form's other fields, the file being
    /// streamed to disk); every other body — JSON, forms, webhooks,
    /// unauthenticated ones too — is read whole and gets `body_max_kb`.
    pub fn body_limit(&self, upload: bool) -> u64 {
        if upload {
            self.upload_max_mb.saturating_add(1).saturating_mul(1024 * 1024)
        } else {
            self.body_max_kb.saturating_mul(1024)
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            upload_max_mb: 512,
            body_max_kb: 1024,
            requests_per_second: 50,
            burst: 100,
            download_ttl_seconds: 3600,
            max_columns: 2000,
            max_name_bytes: 256,
            max_cells: 200_000_000,
            max_value_kb: 1024,
            max_depth: 32,
            decoded_max_mb: 4096,
            ingest_memory_mb: 8192,
            ingest_timeout_seconds: 900,
            concurrent_ingests: 2,
            max_synthetic_rows: 10_000_000,
            flight_message_mb: 64,
            sql_memory_mb: 512,
            sql_timeout_seconds: 60,
            sql_concurrency: 4,
            sql_parameters_kb: 256,
        }
    }
}

impl Settings {
    /// Defaults ← `file` (if given and present) ← `DOPPEL__…` variables from `env`.
    /// Unknown keys in either layer are an error naming the key.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Settings> {
        let mut table = toml::Table::new();
        if let Some(path) = file {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    table = text
                        .parse::<toml::Table>()
                        .map_err(|e| Error::Settings(format!("{}: {e}", path.display())))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Settings(format!("{}: {e}", path.display()))),
            }
        }
        let mut env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
        env.sort();
        for (key, value) in env {
            let path: Vec<String> = key[ENV_PREFIX.len()..]
                .split("__")
                .map(str::to_ascii_lowercase)
                .collect();
            set_path(&mut table, &path, env_value(&value)).map_err(|m| Error::Settings(format!("{key}: {m}")))?;
        }
        toml::Value::Table(table)
            .try_into::<Settings>()
            .map_err(|e| Error::Settings(e.to_string()))
    }

    /// The metadata store URL, defaulting to a SQLite file under the data dir.
    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}?mode=rwc", self.data_dir.join("doppel.db").display())
        } else {
            self.database_url.expose().to_owned()
        }
    }

    /// The engine's scratch folder, defaulting to `{data_dir}/engine`.
    pub fn engine_scratch(&self) -> PathBuf {
        if self.engine.scratch.as_os_str().is_empty() {
            self.data_dir.join("engine")
        } else {
            self.engine.scratch.clone()
        }
    }

    /// The object storage URL, defaulting to `{data_dir}/objects`.
    pub fn storage_url(&self) -> Result<String> {
        if !self.storage.url.is_empty() {
            return Ok(self.storage.url.clone());
        }
        let dir = std::path::absolute(self.data_dir.join("objects")).map_err(|source| Error::Io {
            path: self.data_dir.display().to_string(),
            source,
        })?;
        Ok(format!("file://{}", dir.display()))
    }

    /// The public base URL, defaulting to `http://{http_addr}`.
    pub fn public_url(&self) -> String {
        if self.public_url.is_empty() {
            format!("http://{}", self.http_addr)
        } else {
            self.public_url.trim_end_matches('/').to_owned()
        }
    }

    /// The effective settings as TOML, secrets redacted (`--print-config`).
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The signing key: configured, or read from (first created in) the data dir.
    pub fn signing_key(&self) -> Result<Vec<u8>> {
        if !self.auth.signing_key.is_empty() {
            let key = crate::util::unhex(self.auth.signing_key.expose())
                .ok_or_else(|| Error::Settings("auth.signing_key: expected hex".into()))?;
            if key.len() < 32 {
                return Err(Error::Settings(
                    "auth.signing_key: at least 32 bytes (64 hex digits)".into(),
                ));
            }
            return Ok(key);
        }
        let path = self.data_dir.join("signing.key");
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => crate::util::unhex(text.trim())
                .filter(|k| k.len() >= 32)
                .ok_or_else(|| Error::Settings(format!("{}: not a hex key", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.data_dir).map_err(io)?;
                let key = crate::util::random_bytes::<32>();
                write_private(&path, crate::util::hex(&key).as_bytes()).map_err(io)?;
                Ok(key.to_vec())
            }
            Err(e) => Err(io(e)),
        }
    }
}

/// Write a file only its owner can read, atomically (temp + rename): two
/// processes starting at once must not end up with different keys on disk.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    // Keep a key another process wrote first.
    if path.exists() {
        std::fs::remove_file(&tmp)?;
        return Ok(());
    }
    std::fs::rename(&tmp, path)
}

/// An environment value as TOML when it parses as a number, boolean, array
/// or inline table, else as a string (so `DOPPEL__JOBS__WORKERS=4` is an
/// integer and `DOPPEL__AUTH__GITHUB='{client_id = "…", …}'` a table).
fn env_value(raw: &str) -> toml::Value {
    let probe = format!("v = {raw}");
    match probe.parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(
                v @ (toml::Value::Integer(_)
                | toml::Value::Float(_)
                | toml::Value::Boolean(_)
                | toml::Value::Array(_)
                | toml::Value::Table(_)),
            ) => v,
            _ => toml::Value::String(raw.to_owned()),
        },
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".into()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => set_path(t, rest, value),
                _ => Err(format!("`{first}` is not a section")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn layers_apply_in_order_and_types_follow_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("doppel.toml");
        std::fs::write(
            &file,
            "http_addr = \"0.0.0.0:9000\"\n[jobs]\nworkers = 1\nlease_seconds = 10\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(&file),
            env(&[
                ("DOPPEL__JOBS__WORKERS", "4"),
                ("DOPPEL__AUTH__ADMIN_EMAILS", "[\"a@x.io\"]"),
                (
                    "DOPPEL__AUTH__GITHUB",
                    "{client_id = \"gh\", client_secret = \"s3cret\", web_url = \"https://ghe.example.com\"}",
                ),
                ("OTHER", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(s.http_addr, "0.0.0.0:9000");
        assert_eq!(s.jobs.workers, 4, "env beats the file");
        assert_eq!(s.jobs.lease_seconds, 10, "file beats the default");
        assert_eq!(s.jobs.max_attempts, 3, "default");
        assert_eq!(s.auth.admin_emails, vec!["a@x.io"]);
        let gh = s.auth.github.clone().expect("an inline table from the environment");
        assert_eq!((gh.client_id.as_str(), gh.client_secret.expose()), ("gh", "s3cret"));
        assert_eq!(gh.web_url, "https://ghe.example.com");
        assert_eq!(gh.api_url, "https://api.github.com", "default");
        assert!(!s.to_redacted_toml().contains("s3cret"), "the secret is redacted");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Settings::load(None, env(&[("DOPPEL__JOBS__WORKRES", "4")])).unwrap_err();
        assert!(e.to_string().contains("workres"), "{e}");
    }

    #[test]
    fn secrets_never_print() {
        let s = Settings::load(
            None,
            env(&[
                ("DOPPEL__DATABASE_URL", "postgres://u:hunter2@db/x"),
                ("DOPPEL__STORAGE__SECRET_ACCESS_KEY", "hunter3"),
            ]),
        )
        .unwrap();
        let shown = format!("{s:?}\n{}", s.to_redacted_toml());
        assert!(!shown.contains("hunter2") && !shown.contains("hunter3"), "{shown}");
        assert!(shown.contains("[redacted]"));
        assert_eq!(s.database_url(), "postgres://u:hunter2@db/x");
    }

    #[test]
    fn signing_key_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings {
            data_dir: dir.path().to_owned(),
            ..Settings::default()
        };
        let a = s.signing_key().unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(s.signing_key().unwrap(), a);
    }
}
