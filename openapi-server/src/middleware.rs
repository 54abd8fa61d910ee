//! Around every request: a request id (`X-Request-Id`, also in every error
//! body), rate limiting per credential or address (429 + `Retry-After`),
//! request metrics, an access log line, and errors raised outside typed
//! endpoints (unknown route, auth, body limits) turned into our JSON shape.

use std::sync::Arc;
use std::time::Instant;

use governor::clock::{Clock, DefaultClock};
use poem::http::{HeaderValue, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use sha2::{Digest, Sha256};

use crate::error::{ErrorBody, REQUEST_ID};
use crate::state::AppState;

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

/// Rate-limit key: the credential (hashed, never stored) or the address.
/// REST and Flight both key by it, so one credential has one budget.
pub fn limit_key(authorization: Option<&str>, ip: Option<&str>) -> String {
    match authorization {
        Some(auth) => format!(
            "cred:{}",
            doppel_platform::util::hex(&Sha256::digest(auth.as_bytes())[..12])
        ),
        None => format!("ip:{}", ip.unwrap_or_default()),
    }
}

fn request_limit_key(req: &Request) -> String {
    limit_key(
        req.headers().get("authorization").and_then(|v| v.to_str().ok()),
        crate::auth::client_ip(req).as_deref(),
    )
}

/// The outer middleware.
pub async fn around<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let id = request_id(&req);
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let state = req.data::<Arc<AppState>>().cloned();
    let exempt = matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics");
    let mut resp = REQUEST_ID
        .scope(id.clone(), async {
            if let Some(state) = state.as_ref().filter(|_| !exempt)
                && let Err(not_until) = state.limiter.check_key(&request_limit_key(&req))
            {
                state.metrics.limited();
                let wait = not_until.wait_time_from(DefaultClock::default().now());
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

/// Bodies are checked before they are read: a declared length over the upload
/// limit is refused at once, and a body of undeclared length (chunked) is
/// refused too, since its size cannot be bounded before it fills the disk.
fn body_limit(req: &Request, state: Option<&AppState>) -> Option<Response> {
    let state = state?;
    let limit = state
        .settings
        .limits
        .upload_max_mb
        .saturating_add(1)
        .saturating_mul(1024 * 1024);
    let headers = req.headers();
    if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        return (len > limit).then(|| {
            json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &format!(
                    "the body is larger than the {} MiB limit",
                    state.settings.limits.upload_max_mb
                ),
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
