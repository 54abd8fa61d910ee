//! What every handler shares.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use doppel_host::plan::Catalog;
use doppel_platform::accounts::Accounts;
use doppel_platform::jobs::Queue;
use doppel_platform::oidc::Oidc;
use doppel_platform::{Db, Settings, Storage};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Shared state of one server process.
pub struct AppState {
    /// Effective settings.
    pub settings: Settings,
    /// Metadata store.
    pub db: Db,
    /// Object storage.
    pub storage: Storage,
    /// Accounts and sign-in.
    pub accounts: Accounts,
    /// Single sign-on.
    pub oidc: Oidc,
    /// The job queue.
    pub queue: Queue,
    /// Builtins and plugins, for validating pipelines.
    pub catalog: Arc<Catalog>,
    /// Request counters for `/metrics`.
    pub metrics: Metrics,
    /// Per-credential / per-address request limiter.
    pub limiter: DefaultKeyedRateLimiter<String>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Assemble the state.
    pub fn new(settings: Settings, db: Db, storage: Storage, catalog: Arc<Catalog>) -> doppel_platform::Result<Self> {
        let accounts = Accounts::new(db.clone(), settings.auth.clone(), settings.signing_key()?);
        let queue = Queue::new(db.clone(), &settings.jobs);
        let oidc = Oidc::new(
            db.clone(),
            accounts.clone(),
            settings.auth.oidc.clone(),
            settings.public_url(),
        )?;
        let per_second = NonZeroU32::new(settings.limits.requests_per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(settings.limits.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Ok(AppState {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            settings,
            db,
            storage,
            accounts,
            oidc,
            queue,
            catalog,
            metrics: Metrics::default(),
        })
    }
}

/// Request counters, rendered in Prometheus' text format.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), (u64, f64)>>,
    rate_limited: std::sync::atomic::AtomicU64,
}

impl Metrics {
    /// Count a request.
    pub fn observe(&self, method: &str, status: u16, seconds: f64) {
        if let Ok(mut m) = self.requests.lock() {
            let e = m.entry((method.to_owned(), status)).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += seconds;
        }
    }

    /// Count a rate-limited request.
    pub fn limited(&self) {
        self.rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Prometheus text, plus job counts by state.
    pub fn render(&self, jobs: &[(String, i64)]) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        out.push_str("# HELP doppel_http_requests_total HTTP requests by method and status.\n");
        out.push_str("# TYPE doppel_http_requests_total counter\n");
        let snapshot: Vec<((String, u16), (u64, f64))> = self
            .requests
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        for ((method, status), (n, _)) in &snapshot {
            let _ = writeln!(
                out,
                "doppel_http_requests_total{{method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP doppel_http_request_duration_seconds_sum Time spent answering, by method and status.\n");
        out.push_str("# TYPE doppel_http_request_duration_seconds_sum counter\n");
        for ((method, status), (_, s)) in &snapshot {
            let _ = writeln!(
                out,
                "doppel_http_request_duration_seconds_sum{{method=\"{method}\",status=\"{status}\"}} {s:.6}"
            );
        }
        out.push_str("# HELP doppel_http_rate_limited_total Requests refused with 429.\n");
        out.push_str("# TYPE doppel_http_rate_limited_total counter\n");
        let _ = writeln!(
            out,
            "doppel_http_rate_limited_total {}",
            self.rate_limited.load(std::sync::atomic::Ordering::Relaxed)
        );
        out.push_str("# HELP doppel_jobs Jobs by state.\n# TYPE doppel_jobs gauge\n");
        for (state, n) in jobs {
            let _ = writeln!(out, "doppel_jobs{{state=\"{state}\"}} {n}");
        }
        out
    }
}
