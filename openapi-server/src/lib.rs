//! doppel's REST door on poem-openapi: wire format and error mapping over
//! the application core (`doppel-app`). Handlers parse a request, call the
//! core (which finds, authorizes and decides), and turn its answer or its
//! [`doppel_platform::Error`] into JSON and a status; no rule of the product
//! lives here.
//!
//! # Overview
//!
//! - [`app`]: the whole HTTP application — `/v1` ([`Endpoints`]: auth, API
//!   keys, datasets, pipelines, jobs with SSE progress, reports, signed
//!   downloads, admin; [`market::MarketApi`]: listings, checkout, purchases,
//!   webhooks, seller pages), `/docs` (Swagger UI), `/openapi.json`,
//!   `/healthz`, `/readyz`, `/metrics` — behind the request middleware
//!   (request ids, rate limits, body limits, metrics, one JSON error shape).
//! - [`auth::Auth`]: the resolved caller (session or API key).
//! - [`error::ApiError`]: the stable error codes, mapped from the core's
//!   errors.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo(catalog: std::sync::Arc<doppel_host::plan::Catalog>) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use doppel_platform::{Db, Settings, Storage};
//! use doppel_app::AppState;
//! use doppel_openapi_server::app;
//!
//! let settings = Settings::load(None, std::env::vars())?;
//! let db = Db::connect(&settings.database_url()).await?;
//! let storage = Storage::open(&settings, settings.signing_key()?)?;
//! let state = Arc::new(AppState::new(settings, db, storage, catalog)?);
//! let listener = poem::listener::TcpListener::bind("127.0.0.1:8080");
//! poem::Server::new(listener).run(app(state)).await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod auth;
pub mod body;
pub mod error;
pub mod market;
pub mod middleware;

use std::sync::Arc;

use futures::StreamExt;
use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{Endpoint, EndpointExt, IntoResponse, Response, Route, get, handler};
use poem_openapi::OpenApiService;

use doppel_app::AppState;

/// Every endpoint group, one per resource, as one OpenAPI document.
pub type Endpoints = (
    api::AuthApi,
    api::KeysApi,
    api::DatasetsApi,
    api::PipelinesApi,
    api::JobsApi,
    api::AdminApi,
    market::MarketApi,
);

/// The OpenAPI service (also used to write the spec without a server).
pub fn openapi(public_url: &str) -> OpenApiService<Endpoints, ()> {
    OpenApiService::new(Endpoints::default(), "doppel", env!("CARGO_PKG_VERSION"))
        .description(
            "Privacy-safe synthetic twins of sensitive tables: upload a table, run a pipeline, \
             fetch the synthetic table and its quality, privacy and compliance reports. \
             Authenticate with `Authorization: Bearer <API key or session token>`.",
        )
        .server(public_url.to_owned())
}

/// The HTTP application.
pub fn app(state: Arc<AppState>) -> impl Endpoint {
    let api = openapi(&state.settings.public_url());
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    Route::new()
        .nest("/", api)
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .at("/healthz", get(healthz))
        .at("/readyz", get(readyz))
        .at("/metrics", get(metrics))
        .at("/v1/downloads/*key", get(download))
        .at("/v1/purchase-downloads/:id", get(market::purchase_download))
        .at("/v1/webhooks/:provider", poem::post(market::webhook))
        .at("/v1/checkout/return", get(market::checkout_return))
        .at(
            "/v1/fake-pay/:id",
            get(market::fake_checkout_page).post(market::fake_checkout_submit),
        )
        // The middleware reads the state, so the state is added outside it.
        .around(middleware::around)
        .data(state)
}

#[handler]
fn healthz() -> &'static str {
    "ok"
}

#[handler]
async fn readyz(state: Data<&Arc<AppState>>) -> Response {
    let db = state.db.ping().await;
    let storage = state.storage.ping().await;
    let body = serde_json::json!({
        "database": if db.is_ok() { "ok" } else { "unavailable" },
        "storage": if storage.is_ok() { "ok" } else { "unavailable" },
    });
    if let Err(e) = &db {
        tracing::warn!(error = %e, "Readiness: metadata store unavailable.");
    }
    if let Err(e) = &storage {
        tracing::warn!(error = %e, "Readiness: object storage unavailable.");
    }
    let status = if db.is_ok() && storage.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

#[handler]
async fn metrics(state: Data<&Arc<AppState>>) -> Response {
    let jobs: Vec<(String, i64)> = sqlx_job_counts(&state).await.unwrap_or_default();
    Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render(&jobs))
}

async fn sqlx_job_counts(state: &AppState) -> doppel_platform::Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for s in ["queued", "running", "succeeded", "failed", "cancelled"] {
        let jobs = state.queue.count_in_state(s).await?;
        out.push((s.to_owned(), jobs));
    }
    Ok(out)
}

#[derive(Debug, serde::Deserialize)]
struct Signed {
    expires: i64,
    signature: String,
}

/// `GET /v1/downloads/{key}?expires=…&signature=…`: a signed link made by
/// `GET /v1/jobs/{id}/outputs/{name}/url`. The link is the permission; a
/// changed byte or a past expiry answers 403.
#[handler]
async fn download(
    state: Data<&Arc<AppState>>,
    req: &poem::Request,
    query: poem::Result<Query<Signed>>,
) -> poem::Result<Response> {
    let forbidden = |m: &str| crate::error::poem_error(StatusCode::FORBIDDEN, "invalid_link", m);
    let Ok(Query(q)) = query else {
        return Err(forbidden("this download link is incomplete"));
    };
    let raw = req.uri().path().strip_prefix("/v1/downloads/").unwrap_or_default();
    let key: Vec<String> = raw
        .split('/')
        .map(|seg| url_decode(seg).ok_or_else(|| forbidden("this download link is malformed")))
        .collect::<poem::Result<_>>()?;
    let key = key.join("/");
    state
        .storage
        .verify_local(&key, q.expires, &q.signature)
        .map_err(|e| forbidden(&e.to_string()))?;
    let name = key.rsplit('/').next().unwrap_or("download").to_owned();
    send_object(&state, &key, &name).await
}

/// Stream the stored object `key` as an attachment called `name`: the
/// answer of every download route once it has decided the caller may have it.
pub(crate) async fn send_object(state: &AppState, key: &str, name: &str) -> poem::Result<Response> {
    let (size, stream) = state.storage.get_stream(key).await.map_err(|e| match e {
        doppel_platform::Error::NotFound(_) => {
            crate::error::poem_error(StatusCode::NOT_FOUND, "not_found", "this file no longer exists")
        }
        other => {
            tracing::error!(error = %other, "Download failed.");
            crate::error::poem_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the download failed")
        }
    })?;
    let name = name.replace(['"', '/', '\\'], "");
    let body = poem::Body::from_bytes_stream(stream.map(|c| c.map_err(std::io::Error::other)));
    Ok(Response::builder()
        .header("content-type", "application/octet-stream")
        .header("content-length", size)
        .header("content-disposition", format!("attachment; filename=\"{name}\""))
        .body(body)
        .into_response())
}

fn url_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::url_decode;
    use proptest::prelude::*;

    #[test]
    fn decodes_percent_escapes_and_plus() {
        assert_eq!(url_decode("a+b%2Fc%C3%A9").as_deref(), Some("a b/cé"));
        assert_eq!(url_decode("%zz"), None);
        assert_eq!(url_decode("%4"), None);
        assert_eq!(url_decode("%FF"), None, "not UTF-8");
    }

    proptest! {
        /// What the signer encodes (form-urlencoded path segments), the download route decodes.
        #[test]
        fn round_trips_what_the_signer_encodes(segment in "\\PC{0,40}") {
            let encoded: String = url::form_urlencoded::byte_serialize(segment.as_bytes()).collect();
            prop_assert_eq!(url_decode(&encoded), Some(segment));
        }
    }
}
