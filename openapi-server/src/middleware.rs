//! Around every request: a request id (`X-Request-Id`, also in every error
//! body), rate limiting per credential or address (429 + `Retry-After`),
//! request metrics, an access log line, and errors raised outside typed
//! endpoints (unknown route, auth, body limits) turned into our JSON shape.

use std::sync::Arc;
use std::time::Instant;

use doppel_platform::authz::Principal;
use poem::http::{HeaderValue, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::error::{ErrorBody, REQUEST_ID};
use doppel_app::AppState;

/// A request id: the client's `X-Request-Id` if it is short and plain, else new.
fn request_id(req: &Request) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(|| doppel_platform::util::new_id("req"), str::to_owned)
}

/// How this request's bearer token resolved, once, in the middleware; the
/// auth checker reuses it instead of asking the store again.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// A valid credential.
    Principal(Principal),
    /// Not a valid credential; the message says why.
    Invalid(String),
}

/// The bearer token of `req`, if it sends one.
fn bearer_token(req: &Request) -> Option<&str> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Resolve the request's credential (if any) for rate limiting and auth.
async fn resolve(req: &Request, state: &AppState) -> Option<Resolved> {
    let token = bearer_token(req)?;
    match state
        .accounts
        .authenticate(token, crate::auth::client_ip(req).as_deref())
        .await
    {
        Ok(p) => Some(Resolved::Principal(p)),
        Err(doppel_platform::Error::Unauthenticated(m)) => Some(Resolved::Invalid(m)),
        // The store is unavailable: leave it to the checker to answer 503.
        Err(_) => None,
    }
}

/// The outer middleware.
pub async fn around<E: Endpoint>(ep: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let id = request_id(&req);
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let state = req.data::<Arc<AppState>>().cloned();
    let exempt = matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics");
    let mut resp = REQUEST_ID
        .scope(id.clone(), async {
            let resolved = match state.as_ref().filter(|_| !exempt) {
                Some(state) => resolve(&req, state).await,
                None => None,
            };
            let account = match &resolved {
                Some(Resolved::Principal(p)) => Some(p.account_id.as_str()),
                _ => None,
            };
            let key = doppel_app::rate::limit_key(account, crate::auth::client_ip(&req).as_deref());
            if let Some(state) = state.as_ref().filter(|_| !exempt)
                && let Err(wait) = state.check_rate(&key)
            {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let mut r = json_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many requests; retry later",
                );
                r.headers_mut().insert("retry-after", HeaderValue::from(secs.max(1)));
                return r;
            }
            if let Some(refusal) = body_limit(&req, state.as_deref()) {
                return refusal;
            }
            if let Some(resolved) = resolved {
                req.extensions_mut().insert(resolved);
            }
            if let Some(state) = &state {
                // Whatever the headers said (HTTP/2 need not declare a
                // length), no handler can read past the route's limit.
                use tokio::io::AsyncReadExt;
                let limit = body_limit_of(&req, &state.settings.limits);
                let body = req.take_body().into_async_read().take(limit.saturating_add(1));
                req.set_body(poem::Body::from_async_read(body));
            }
            match ep.call(req).await {
                Ok(r) => r.into_response(),
                Err(e) => error_response(e),
            }
        })
        .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status().as_u16();
    let secs = started.elapsed().as_secs_f64();
    if let Some(state) = &state {
        state.metrics.observe(&method, status, secs);
    }
    tracing::info!(request_id = %id, %method, %path, status, ms = secs * 1e3, "Request.");
    Ok(resp)
}

/// The largest body `req` may send: the upload route takes files up to the
/// upload limit (streamed to disk, never held in memory); every other route
/// — JSON, forms, webhooks, unauthenticated ones included — takes
/// `limits.body_max_kb`, since those bodies are read whole.
pub fn body_limit_of(req: &Request, limits: &doppel_platform::settings::LimitSettings) -> u64 {
    limits.body_limit(req.method() == poem::http::Method::POST && req.uri().path() == "/v1/datasets")
}

/// Bodies are checked before they are read: a declared length over the
/// route's limit is refused at once, and a body of undeclared length
/// (chunked) is refused too, since its size cannot be bounded before it
/// fills the disk or memory.
fn body_limit(req: &Request, state: Option<&AppState>) -> Option<Response> {
    let state = state?;
    let limit = body_limit_of(req, &state.settings.limits);
    let headers = req.headers();
    if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        return (len > limit).then(|| {
            let shown = if limit >= 1024 * 1024 {
                format!("{} MiB", limit / (1024 * 1024))
            } else {
                format!("{} KiB", limit / 1024)
            };
            json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &format!("the body is larger than this endpoint's {shown} limit"),
            )
        });
    }
    let chunked = headers
        .get("transfer-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    chunked.then(|| {
        json_error(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "send the body with a Content-Length",
        )
    })
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let b = ErrorBody::new(code, message);
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(serde_json::json!({"code": b.code, "message": b.message, "request_id": b.request_id}).to_string())
}

/// A poem error as our JSON shape (unless it already is), hiding 5xx details.
pub fn error_response(e: poem::Error) -> Response {
    let status = e.status();
    // 4xx messages from poem say what was wrong with the request (which field
    // failed to parse); 5xx ones are replaced below.
    let detail = crate::error::clean_message(&e.to_string());
    let resp = e.into_response();
    let is_json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), "Unhandled server error.");
        return json_error(
            status,
            "internal",
            "an internal error occurred; quote the request id when reporting it",
        );
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such endpoint".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this endpoint does not take that method".to_owned(),
        ),
        StatusCode::UNAUTHORIZED => (
            "unauthenticated",
            "send `Authorization: Bearer <API key or session token>`".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "the request body is larger than allowed".to_owned()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", detail),
        _ if !detail.is_empty() => ("invalid_request", detail),
        _ => (
            "invalid_request",
            status.canonical_reason().unwrap_or("bad request").to_lowercase(),
        ),
    };
    json_error(status, code, &message)
}
