//! The `Authorization: Bearer <session token | API key>` scheme every
//! protected endpoint declares. The checker resolves the token once per
//! request; endpoints then call [`doppel_platform::authz::authorize`].

use std::sync::Arc;

use doppel_platform::authz::Principal;
use poem::Request;
use poem::http::StatusCode;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use crate::error::poem_error;
use doppel_app::AppState;

/// An authenticated caller.
#[derive(Debug, SecurityScheme)]
#[oai(
    ty = "bearer",
    bearer_format = "dpl_… API key or dps_… session token",
    checker = "check"
)]
pub struct Auth(pub Principal);

/// The client address as text, if known.
pub fn client_ip(req: &Request) -> Option<String> {
    req.remote_addr().as_socket_addr().map(|a| a.ip().to_string())
}

async fn check(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    // The middleware resolved this request's token already (for its rate
    // limit): the same answer, without asking the store twice.
    match req.extensions().get::<crate::middleware::Resolved>() {
        Some(crate::middleware::Resolved::Principal(p)) => return Ok(p.clone()),
        Some(crate::middleware::Resolved::Invalid(m)) => {
            return Err(poem_error(StatusCode::UNAUTHORIZED, "unauthenticated", m));
        }
        None => {}
    }
    let state = req
        .data::<Arc<AppState>>()
        .ok_or_else(|| poem_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "server state missing"))?;
    match state
        .accounts
        .authenticate(&bearer.token, client_ip(req).as_deref())
        .await
    {
        Ok(p) => Ok(p),
        Err(doppel_platform::Error::Unauthenticated(m)) => {
            Err(poem_error(StatusCode::UNAUTHORIZED, "unauthenticated", &m))
        }
        Err(e) => {
            tracing::error!(error = %e, "Authenticating a request failed.");
            Err(poem_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "credentials could not be checked right now; try again",
            ))
        }
    }
}
