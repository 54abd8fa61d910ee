//! doppel's platform core: everything a data product needs that is not about
//! its data. It knows accounts, credentials, owned resources, stored objects
//! and durable jobs — never tables, columns or pipelines — so a future image
//! or text product reuses it unchanged.
//!
//! # Overview
//!
//! - [`Settings`]: layered configuration (defaults → `doppel.toml` →
//!   `DOPPEL__…` environment), secrets redacted.
//! - [`Db`]: the metadata store on sqlx — SQLite (embedded default) or
//!   PostgreSQL — with embedded migrations for both.
//! - [`Storage`]: object storage on object_store (local directory or
//!   S3-compatible), keys `{bucket}/{owner}/{resource}/{file}`, signed URLs.
//! - [`accounts::Accounts`]: sign-up, login (argon2id), sessions, TOTP.
//! - [`oidc::Oidc`]: single sign-on (authorization code + PKCE, state, nonce,
//!   ID tokens verified against the provider's JWKS, links by issuer+subject).
//! - [`keys`]: API keys (`dpl_…`, shown once, stored as SHA-256, scoped).
//! - [`authz::authorize`]: the one authorization decision for every endpoint.
//! - [`audit`]: the append-only audit log, written in the change's transaction.
//! - [`jobs`]: the lease queue — claim, heartbeat, retry with backoff, cancel,
//!   commit a manifest — and the [`jobs::Worker`] loop.
//! - [`datasets`], [`idempotency`]: owned objects and `Idempotency-Key`.
//! - [`notifications`]: messages to an account, written in the transaction of
//!   the change they report.
//! - [`privacy`]: differential-privacy budgets per dataset name, charged
//!   before a job runs.
//!
//! The marketplace and payments are not here (they are `doppel-market`, on
//! top of this crate); only the store's schema history for their tables is,
//! because every deployment applies one numbered migration sequence.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> doppel_platform::Result<()> {
//! use doppel_platform::{Db, Settings, audit::RequestMeta, accounts::Accounts};
//!
//! let settings = Settings::load(None, std::env::vars())?;
//! let db = Db::connect(&settings.database_url()).await?;
//! let accounts = Accounts::new(db.clone(), settings.auth.clone(), settings.signing_key()?);
//! let meta = RequestMeta::default();
//! accounts.sign_up(&meta, "ada@example.com", "correct horse battery").await?;
//! let session = accounts.log_in(&meta, "ada@example.com", "correct horse battery", None, None).await?;
//! let me = accounts.authenticate(&session.token, None).await?;
//! assert_eq!(me.email, "ada@example.com");
//! # Ok(()) }
//! ```

pub mod accounts;
pub mod audit;
pub mod authz;
pub mod datasets;
pub mod db;
mod error;
pub mod idempotency;
pub mod jobs;
pub mod keys;
pub mod notifications;
pub mod oidc;
pub mod privacy;
pub mod settings;
pub mod storage;
pub mod util;

pub use db::Db;
pub use error::{Error, Result};
pub use settings::Settings;
pub use storage::Storage;
