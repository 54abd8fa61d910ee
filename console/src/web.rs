//! Around every console request: a request id; the session cookie resolved
//! to the signed-in person; the same rate limit REST and Flight spend (per
//! account, or per address when signed out); body limits checked before a
//! byte is read; forgery checks on every POST; the flash message; strict
//! security headers; and failures turned into pages.

use std::sync::Arc;
use std::time::Instant;

use doppel_app::AppState;
use doppel_platform::authz::{Credential, Principal};
use poem::http::{HeaderValue, Method, StatusCode};
use poem::{Endpoint, FromRequest, IntoResponse, Request, RequestBody, Response};

use crate::errors::{PageError, error_page};
use crate::layout::{Ctx, Flash};
use crate::session::{self, Keys};

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageError::Core(e) => write!(f, "{e}"),
            PageError::SignIn => f.write_str("sign in first"),
            PageError::Bad(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for PageError {}

impl poem::error::ResponseError for PageError {
    fn status(&self) -> StatusCode {
        match self {
            PageError::Core(e) => crate::errors::explain(e).0,
            PageError::SignIn => StatusCode::SEE_OTHER,
            PageError::Bad(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl<'a> FromRequest<'a> for Ctx {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        req.extensions()
            .get::<Ctx>()
            .cloned()
            .ok_or_else(|| poem::Error::from_status(StatusCode::INTERNAL_SERVER_ERROR))
    }
}

/// The signed-in person; a page taking it sends signed-out visitors to the
/// sign-in page and back.
#[derive(Debug, Clone)]
pub(crate) struct Viewer(pub(crate) Principal);

impl<'a> FromRequest<'a> for Viewer {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        match req.extensions().get::<Ctx>().and_then(|c| c.viewer.clone()) {
            Some(p) => Ok(Viewer(p)),
            None => Err(PageError::SignIn.into()),
        }
    }
}

/// The client address as text.
pub(crate) fn client_ip(req: &Request) -> Option<String> {
    req.remote_addr().as_socket_addr().map(|a| a.ip().to_string())
}

/// Request metadata for the audit log.
pub(crate) fn meta(req: &Request, ctx: &Ctx) -> doppel_platform::audit::RequestMeta {
    doppel_platform::audit::RequestMeta {
        request_id: ctx.request_id.clone(),
        ip: client_ip(req),
    }
}

/// The routes that take an upload; every other body is a small form.
fn is_upload(req: &Request) -> bool {
    req.method() == Method::POST && req.uri().path() == "/datasets"
}

/// The largest body this request may send (the limit every door applies).
fn body_limit(req: &Request, state: &AppState) -> u64 {
    state.settings.limits.body_limit(is_upload(req))
}

/// The strict policy of every page: our own scripts, styles and images only,
/// no inline code, no framing, forms only to ourselves, no plugins.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn secure_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    let set = |h: &mut poem::http::HeaderMap, k: &'static str, v: &'static str| {
        if !h.contains_key(k) {
            h.insert(k, HeaderValue::from_static(v));
        }
    };
    set(h, "content-security-policy", CSP);
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "same-origin");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=()",
    );
}

/// The console's middleware.
pub(crate) async fn around<E: Endpoint>(ep: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let Some(state) = req.data::<Arc<AppState>>().cloned() else {
        return Ok(StatusCode::INTERNAL_SERVER_ERROR.into_response());
    };
    let Some(keys) = req.data::<Keys>().cloned() else {
        return Ok(StatusCode::INTERNAL_SERVER_ERROR.into_response());
    };
    let request_id = doppel_platform::util::new_id("req");
    let path = req.uri().path().to_owned();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    let is_asset = path.starts_with("/assets/");
    let ip = client_ip(&req);

    // Who is this? Only a session token counts in the cookie.
    let mut viewer = None;
    let mut session_token: Option<String> = None;
    if let Some(token) = session::cookie(&req, keys.session_cookie())
        && let Ok(p) = state.accounts.authenticate(token, ip.as_deref()).await
        && matches!(p.credential, Credential::Session { .. })
    {
        session_token = Some(token.to_owned());
        viewer = Some(p);
    }
    let mut set_cookies: Vec<String> = Vec::new();
    let csrf = match &session_token {
        Some(t) => keys.session_csrf(t),
        None => {
            let nonce = match session::cookie(&req, keys.anon_cookie()) {
                Some(n) => n.to_owned(),
                None => {
                    let n = session::nonce();
                    // Never on a static file: those are cached publicly, and a
                    // shared cache must not hand one visitor's nonce to another.
                    if !is_asset {
                        set_cookies.push(keys.cookie(keys.anon_cookie(), &n, 86_400));
                    }
                    n
                }
            };
            keys.anon_csrf(&nonce)
        }
    };
    let flash_cookie = session::cookie(&req, keys.flash_cookie());
    let flash = flash_cookie.and_then(Flash::parse);
    if flash_cookie.is_some() && !is_asset {
        set_cookies.push(keys.cookie(keys.flash_cookie(), "", 0));
    }
    // Fixed at start-up (settings): shared, not rebuilt per request.
    let sso = req.data::<SsoButtons>().map(|s| Arc::clone(&s.0)).unwrap_or_default();
    let mut ctx = Ctx {
        viewer,
        csrf,
        request_id: request_id.clone(),
        flash,
        unread: 0,
        sso,
    };

    let refusal: Option<Response> = 'check: {
        if is_asset {
            break 'check None;
        }
        let key = doppel_app::rate::limit_key(ctx.viewer.as_ref().map(|p| p.account_id.as_str()), ip.as_deref());
        if let Err(wait) = state.check_rate(&key) {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut r = error_page(
                &ctx,
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Too many requests from you just now. Wait {} seconds and try again.",
                    secs.max(1)
                ),
            );
            r.headers_mut().insert("retry-after", HeaderValue::from(secs.max(1)));
            break 'check Some(r);
        }
        // Bodies are bounded before they are read: a declared length over
        // the route's limit is refused, an undeclared one (chunked) too.
        let limit = body_limit(&req, &state);
        let declared = req
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let chunked = req
            .headers()
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if declared.is_some_and(|n| n > limit) || (declared.is_none() && chunked) {
            let message = if is_upload(&req) {
                format!(
                    "That file is larger than the {} MiB this server accepts.",
                    state.settings.limits.upload_max_mb
                )
            } else {
                "That form sent more than this page accepts.".to_owned()
            };
            break 'check Some(error_page(&ctx, StatusCode::PAYLOAD_TOO_LARGE, &message));
        }
        {
            use tokio::io::AsyncReadExt;
            let body = req.take_body().into_async_read().take(limit.saturating_add(1));
            req.set_body(poem::Body::from_async_read(body));
        }
        if method == Method::POST {
            if session::cross_site(&req) {
                break 'check Some(forgery(&ctx));
            }
            let header = req
                .headers()
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let sent = match header {
                Some(h) => Some(h),
                None => {
                    let is_form = req
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
                    if !is_form {
                        None
                    } else {
                        let Ok(bytes) = req.take_body().into_bytes().await else {
                            break 'check Some(error_page(
                                &ctx,
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "That form sent more than this page accepts.",
                            ));
                        };
                        let token = session::form_token(&bytes);
                        req.set_body(poem::Body::from(bytes));
                        token
                    }
                }
            };
            if !sent.is_some_and(|t| session::same(&t, &ctx.csrf)) {
                break 'check Some(forgery(&ctx));
            }
        }
        None
    };

    let mut resp = match refusal {
        Some(r) => r,
        None => {
            if let Some(v) = &ctx.viewer
                && method == Method::GET
                && !is_asset
                && !path.ends_with("/events")
            {
                ctx.unread = doppel_platform::notifications::unread_count(&state.db, &v.account_id)
                    .await
                    .unwrap_or(0);
            }
            req.extensions_mut().insert(ctx.clone());
            match ep.call(req).await {
                Ok(r) => r.into_response(),
                Err(e) => match e.downcast::<PageError>() {
                    Ok(pe) => pe.into_page(&ctx, &path_and_query),
                    Err(e) => {
                        let status = e.status();
                        if status.is_server_error() {
                            tracing::error!(request_id = %request_id, error = %e, "Console request failed.");
                        }
                        let message = match status {
                            StatusCode::NOT_FOUND => {
                                "There is no page here. Check the address, or start again from the top."
                            }
                            StatusCode::METHOD_NOT_ALLOWED => "This page cannot be used that way.",
                            s if s.is_server_error() => {
                                "Something went wrong on our side. Try again; if it keeps happening, quote the reference below."
                            }
                            _ => "The request could not be read. Go back, check the form and try again.",
                        };
                        error_page(&ctx, status, message)
                    }
                },
            }
        }
    };
    for c in set_cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append("set-cookie", v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    secure_headers(&mut resp);
    let status = resp.status().as_u16();
    let secs = started.elapsed().as_secs_f64();
    state.metrics.observe(method.as_str(), status, secs);
    tracing::info!(request_id = %request_id, method = %method, path = %path, status, ms = secs * 1e3, "Console request.");
    Ok(resp)
}

fn forgery(ctx: &Ctx) -> Response {
    error_page(
        ctx,
        StatusCode::FORBIDDEN,
        "This form has expired or was sent from another site, so nothing was done. Go back, reload the page and try again.",
    )
}

/// The single sign-on buttons (name, label): each configured OpenID Connect
/// provider, and GitHub when it is configured; built once at start-up.
#[derive(Debug, Clone)]
pub(crate) struct SsoButtons(pub(crate) Arc<Vec<(String, String)>>);

impl SsoButtons {
    pub(crate) fn new(state: &AppState) -> SsoButtons {
        let buttons = state
            .oidc
            .provider_names()
            .into_iter()
            .map(|n| {
                let label = match n.as_str() {
                    "github" => "GitHub".to_owned(),
                    "google" => "Google".to_owned(),
                    other => other.to_owned(),
                };
                (n, label)
            })
            .collect();
        SsoButtons(Arc::new(buttons))
    }
}

/// A redirect after a POST (303), optionally leaving a flash message.
pub(crate) fn see_other(keys: &Keys, to: &str, flash: Option<Flash>) -> Response {
    let mut b = Response::builder().status(StatusCode::SEE_OTHER).header("location", to);
    if let Some(f) = flash {
        b = b.header("set-cookie", keys.cookie(keys.flash_cookie(), f.key(), 60));
    }
    b.finish()
}
