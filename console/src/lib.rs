//! doppel's web console: the third door, beside REST and Arrow Flight.
//! Server-rendered pages (maud) over the application core (`doppel-app`):
//! every rule — who may see what, what a job may set, whether a twin may be
//! listed — is the core's, called exactly as REST calls it; the console
//! only turns forms into calls and answers into pages.
//!
//! # Boundary
//!
//! No product rule lives here. The console knows HTML, cookies, CSRF tokens
//! and charts; errors come from the core as [`doppel_platform::Error`]s and
//! become sentences ([`errors`]).
//!
//! # Overview
//!
//! - [`app`]: the whole console as one poem endpoint, to be served beside
//!   the REST API (`doppel serve` sends every path REST does not own here).
//! - Sessions are the REST sessions, in an HttpOnly SameSite=Lax cookie;
//!   every POST carries a CSRF token (`session`); the pages carry a strict
//!   Content-Security-Policy with no inline script or style (`web`).
//! - Pages: sign-in and sign-up (with TOTP and single sign-on), datasets
//!   (drag-and-drop upload, schema with histograms, personal data found,
//!   rows, privacy budget), synthesis (method, rows, seed, ε/δ, checks) with
//!   live per-stage progress over SSE, the report (scores, real-vs-synthetic
//!   charts, association heatmaps, privacy metrics, the GDPR/HIPAA
//!   checklist, downloads), the marketplace (search, listing, checkout,
//!   purchases), selling (listing, editing, the seller dashboard with
//!   charts, payout account), the account (API keys, two-factor sign-in,
//!   notifications, privacy budgets) and the admin panel.
//! - Charts are SVG drawn on the server (`charts`) from the same numbers the
//!   PDF report draws.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo(state: std::sync::Arc<doppel_app::AppState>) -> Result<(), Box<dyn std::error::Error>> {
//! let console = doppel_console::app(state)?;
//! poem::Server::new(poem::listener::TcpListener::bind("127.0.0.1:8080"))
//!     .run(console)
//!     .await?;
//! # Ok(()) }
//! ```

mod assets;
mod charts;
mod errors;
mod layout;
mod pages;
mod session;
mod web;

use std::sync::Arc;

use doppel_app::AppState;
use poem::{Endpoint, EndpointExt, Route, get, post};

/// The console as one endpoint (with its middleware and state). Fails only
/// when the signing key cannot be read.
pub fn app(state: Arc<AppState>) -> doppel_platform::Result<impl Endpoint> {
    let keys = session::Keys::new(&state.settings.signing_key()?, &state.settings.public_url());
    use pages::{account, admin, auth, datasets, home, jobs, market, report, selling};
    let routes = Route::new()
        .at("/", get(home::home))
        .at("/assets/:name", get(assets::serve))
        // Signing in and out.
        .at("/login", get(auth::login_form).post(auth::login))
        .at("/signup", get(auth::signup_form).post(auth::signup))
        .at("/logout", post(auth::logout))
        .at("/login/sso/:provider", get(auth::sso_start))
        .at("/login/sso/:provider/callback", get(auth::sso_callback))
        // Datasets.
        .at("/datasets", get(datasets::list).post(datasets::upload))
        .at("/datasets/:id", get(datasets::show))
        .at(
            "/datasets/:id/delete",
            get(datasets::confirm_delete).post(datasets::delete),
        )
        .at("/datasets/:id/scan", post(datasets::scan))
        .at("/datasets/:id/budget", post(datasets::budget))
        .at(
            "/datasets/:id/synthesize",
            get(jobs::synthesize_form).post(jobs::synthesize),
        )
        // Jobs and reports.
        .at("/jobs", get(jobs::list))
        .at("/jobs/:id", get(jobs::show))
        .at("/jobs/:id/events", get(jobs::events))
        .at("/jobs/:id/cancel", post(jobs::cancel))
        .at("/jobs/:id/report", get(report::show))
        .at("/jobs/:id/files/:name", get(jobs::download))
        // The marketplace.
        .at("/market", get(market::search))
        .at("/market/:id", get(market::show))
        .at("/market/:id/buy", post(market::buy))
        .at("/purchases", get(market::purchases))
        .at("/purchases/return", get(market::checkout_return))
        .at("/purchases/:id", get(market::purchase))
        .at("/purchases/:id/verify", post(market::verify))
        .at("/purchases/:id/download", get(market::download))
        // Selling.
        .at("/selling", get(selling::dashboard))
        .at("/selling/new", get(selling::new_form).post(selling::create))
        .at("/selling/payout", get(selling::payout_form).post(selling::payout))
        .at("/selling/payout/onboarding", post(selling::onboarding))
        .at("/selling/:id", get(selling::edit_form).post(selling::update))
        // The account.
        .at("/account", get(account::show))
        .at("/account/keys", post(account::create_key))
        .at("/account/keys/:id/revoke", post(account::revoke_key))
        .at("/account/totp", get(account::totp_form).post(account::totp_start))
        .at("/account/totp/confirm", post(account::totp_confirm))
        .at("/notifications", get(account::notifications))
        .at("/notifications/read-all", post(account::read_all))
        // Operators.
        .at("/admin", get(admin::overview))
        .at("/admin/users", get(admin::users))
        .at("/admin/users/:id/:action", post(admin::set_user))
        .at("/admin/jobs", get(admin::jobs))
        .at("/admin/audit", get(admin::audit))
        .at("/admin/market", get(admin::market))
        .at("/admin/listings/:id/suspend", post(admin::suspend))
        .at("/admin/purchases/:id/refund", post(admin::refund))
        .at("/admin/reconcile", post(admin::reconcile));
    let sso = web::SsoButtons::new(&state);
    Ok(routes.around(web::around).data(keys).data(sso).data(state))
}

/// Whether `path` is one of the console's (every path but the REST API's,
/// its documentation and the probes, which `doppel serve` sends to REST).
pub fn owns(path: &str) -> bool {
    !(path.starts_with("/v1/")
        || path == "/v1"
        || path.starts_with("/docs")
        || matches!(path, "/openapi.json" | "/healthz" | "/readyz" | "/metrics"))
}
