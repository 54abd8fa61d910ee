//! doppel's application core: the rules of the product, which every door —
//! the REST API, Arrow Flight, the web console, workers — calls, so that a
//! door is only wire format and error mapping. An upload, a job or a listing
//! is the same thing whichever door it came through.
//!
//! # Boundary
//!
//! This crate knows tables and pipelines (through `doppel-host`), accounts,
//! storage and jobs (through `doppel-platform`) and the marketplace (through
//! `doppel-market`). It knows no HTTP, gRPC or HTML: errors are
//! [`doppel_platform::Error`]s and the doors map them to their status codes.
//!
//! # Overview
//!
//! - [`AppState`]: what one server process shares (settings, store,
//!   storage, accounts, SSO, queue, plugin catalog, market, the upload reader,
//!   the rate limiter, request counters).
//! - [`admin`]: operator actions, each requiring the admin scope.
//! - [`access`]: the one "find, then authorize" per resource: another
//!   account's dataset or job is exactly as missing as one that never existed.
//! - [`datasets`]: uploads read as tables in a memory-capped child process,
//!   stored as Parquet and Arrow IPC, profiled; the dataset name rule;
//!   register and delete.
//! - [`jobs`]: job submission (overrides checked against each stage's
//!   user-settable keys, the input bound by the server, rows capped, DP
//!   budgets charged before queueing) and [`jobs::PipelineRunner`], what a
//!   worker does with a job.
//! - [`listings`]: whether a succeeded job's twin may be listed (the typed
//!   `report.json`'s privacy score and failed rules) and its preview.
//! - [`methods`]: the generators this build has (for `GET /v1/generators`
//!   and the console's picker), each with its settable parameters and the
//!   shipped pipeline that runs it; [`methods::resolve`] checks a job's
//!   generator parameters against the generator's schema.
//! - [`rate`]: the request budget key (per account, or per address).
//!
//! # Example
//!
//! ```no_run
//! # async fn demo(catalog: std::sync::Arc<doppel_host::plan::Catalog>, p: doppel_platform::authz::Principal) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use doppel_app::{AppState, access, jobs};
//! use doppel_platform::{Db, Settings, Storage, audit::RequestMeta, authz::Scope};
//!
//! let settings = Settings::load(None, std::env::vars())?;
//! let db = Db::connect(&settings.database_url()).await?;
//! let storage = Storage::open(&settings, settings.signing_key()?)?;
//! let state = Arc::new(AppState::new(settings, db, storage, catalog)?);
//! let dataset = access::dataset(&state, &p, "ds_…", Scope::DatasetsRead).await?;
//! let job = jobs::submit(&state, &RequestMeta::default(), &p, jobs::JobRequest {
//!     // The generator by name, its parameters checked against its schema;
//!     // it runs the generator's shipped pipeline (`dp` for privsyn).
//!     pipeline: None,
//!     generator: Some(jobs::GeneratorRequest {
//!         name: "privsyn".into(),
//!         params: vec![("epsilon".into(), serde_json::json!(0.5))],
//!     }),
//!     dataset_id: Some(dataset.id),
//!     model: None,
//!     overrides: vec![],
//!     csv: false,
//! })
//! .await?;
//! println!("queued {}", job.id);
//! # Ok(()) }
//! ```

pub mod access;
pub mod admin;
pub mod datasets;
pub mod jobs;
pub mod listings;
pub mod methods;
pub mod rate;
pub mod state;

pub use state::{AppState, Metrics};
