//! What every handler shares.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use doppel_host::plan::Catalog;
use doppel_market::Market;
use doppel_market::payments::fake::FakeProvider;
use doppel_platform::accounts::Accounts;
use doppel_platform::jobs::Queue;
use doppel_platform::oidc::Oidc;
use doppel_platform::{Db, Settings, Storage};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Shared state of one server process. Uploads are read in this process
/// unless [`AppState::with_ingest_program`] names the binary to read them in
/// child processes (what `doppel serve` does).
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
    /// Per-account / per-address request limiter (use [`AppState::check_rate`]).
    pub limiter: DefaultKeyedRateLimiter<String>,
    /// Checks since the limiter last forgot idle keys.
    limiter_checks: std::sync::atomic::AtomicU64,
    /// Listings, purchases, the ledger.
    pub market: Market,
    /// The built-in payment provider, when it is the one configured (its
    /// hosted checkout pages are served here).
    pub fake: Option<FakeProvider>,
    /// Reads uploads (REST and Flight) under the settings' limits.
    pub ingest: crate::datasets::Ingestor,
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
            settings.auth.github.clone(),
            settings.public_url(),
        )?;
        let (market, fake) = payments(&settings, &db)?;
        let settings_limits = settings.limits.clone();
        let per_second = NonZeroU32::new(settings.limits.requests_per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(settings.limits.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Ok(AppState {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            limiter_checks: std::sync::atomic::AtomicU64::new(0),
            settings,
            db,
            storage,
            accounts,
            oidc,
            queue,
            catalog,
            metrics: Metrics::default(),
            market,
            fake,
            ingest: crate::datasets::Ingestor::new(&settings_limits),
        })
    }
}

impl AppState {
    /// Read uploads in child processes of `program` (`doppel ingest-worker`).
    #[must_use]
    pub fn with_ingest_program(mut self, program: std::path::PathBuf) -> Self {
        self.ingest = self.ingest.in_child_processes(program);
        self
    }

    /// Spend one request of `key`'s budget (REST and Flight alike), or say
    /// how long to wait. Every few thousand checks, keys whose budget is full
    /// again are forgotten, so addresses and accounts seen once do not pile
    /// up in memory.
    pub fn check_rate(&self, key: &str) -> Result<(), std::time::Duration> {
        use governor::clock::{Clock, DefaultClock};
        let n = self.limiter_checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % 4096 == 4095 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(&key.to_owned()).map_err(|not_until| {
            self.metrics.limited();
            not_until.wait_time_from(DefaultClock::default().now())
        })
    }
}

/// The configured payment provider and the marketplace on it.
fn payments(settings: &Settings, db: &Db) -> doppel_platform::Result<(Market, Option<FakeProvider>)> {
    let p = &settings.payments;
    match p.provider.as_str() {
        "fake" => {
            // Without a configured secret, one derived from the signing key:
            // stable across restarts and servers sharing the key.
            let secret = if p.webhook_secret.is_empty() {
                use hmac::Mac;
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&settings.signing_key()?)
                    .map_err(|e| doppel_platform::Error::Internal(e.to_string()))?;
                mac.update(b"doppel fake payments webhook secret");
                format!("whsec_{}", doppel_platform::util::hex(&mac.finalize().into_bytes()))
            } else {
                p.webhook_secret.expose().to_owned()
            };
            let fake = FakeProvider::new(
                db.clone(),
                secret,
                settings.public_url(),
                p.webhook_tolerance_seconds,
                p.fake_drop_webhooks,
            );
            let market = Market::new(db.clone(), Arc::new(fake.clone()), p.clone());
            // Anyone holding a checkout link can "pay" on the fake page.
            tracing::warn!(
                "payments.provider = \"fake\": checkouts are settled by pressing Pay, no money moves; \
                 use it to try the marketplace, not to sell"
            );
            Ok((market, Some(fake)))
        }
        "stripe" => {
            if p.stripe_secret_key.is_empty() || p.webhook_secret.is_empty() {
                return Err(doppel_platform::Error::Settings(
                    "payments.provider = \"stripe\" needs payments.stripe_secret_key and payments.webhook_secret"
                        .into(),
                ));
            }
            let stripe = doppel_market::payments::stripe::StripeProvider::new(
                &p.stripe_api_base,
                p.stripe_secret_key.expose().to_owned(),
                p.webhook_secret.expose().to_owned(),
                p.webhook_tolerance_seconds,
            );
            Ok((Market::new(db.clone(), Arc::new(stripe), p.clone()), None))
        }
        "flutterwave" => {
            if p.flutterwave_secret_key.is_empty() || p.webhook_secret.is_empty() {
                return Err(doppel_platform::Error::Settings(
                    "payments.provider = \"flutterwave\" needs payments.flutterwave_secret_key and \
                     payments.webhook_secret (the dashboard's webhook secret hash)"
                        .into(),
                ));
            }
            let flutterwave = doppel_market::payments::flutterwave::FlutterwaveProvider::new(
                &p.flutterwave_api_base,
                p.flutterwave_secret_key.expose().to_owned(),
                p.webhook_secret.expose().to_owned(),
                p.platform_fee_bps,
            );
            Ok((Market::new(db.clone(), Arc::new(flutterwave), p.clone()), None))
        }
        other => Err(doppel_platform::Error::Settings(format!(
            "payments.provider: `{other}` is not one of `fake`, `stripe`, `flutterwave`"
        ))),
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
