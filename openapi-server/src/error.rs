//! One error shape for every answer: `{code, message, request_id}` with a
//! stable machine `code`. Messages of 5xx answers never carry internals: the
//! cause is logged with the request id, and the client gets a generic line
//! and that id to quote.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

tokio::task_local! {
    /// The current request's id, set by the request middleware.
    pub static REQUEST_ID: String;
}

/// The current request id (empty outside a request).
pub fn request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// The body of every error answer.
#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    /// Stable machine-readable code (`not_found`, `invalid_request`, …).
    pub code: String,
    /// What went wrong, for people; names the field at fault.
    pub message: String,
    /// Quote this when asking for help.
    pub request_id: String,
}

impl ErrorBody {
    /// A body for the current request.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ErrorBody {
            code: code.to_owned(),
            message: message.into(),
            request_id: request_id(),
        }
    }
}

/// Every error an endpoint can answer.
#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum ApiError {
    /// The request is malformed or a field is invalid.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing, wrong, expired or revoked credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Authenticated, but the credential lacks a scope or role.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such resource (or not yours).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Conflicts with the current state.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// A body was sent without a length (chunked); send `Content-Length`.
    #[oai(status = 411)]
    LengthRequired(Json<ErrorBody>),
    /// The upload is too large.
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// The body's content type is not one this endpoint takes.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// Well-formed but unprocessable (an invalid pipeline, an unreadable table).
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Too many requests from this credential or address; see `Retry-After`.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>),
    /// Something failed on our side; the request id is in the log.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// A dependency (database, storage) is unavailable.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

/// Parse failures (missing field, wrong type) become our 400, naming the field.
fn bad_request(err: poem::Error) -> ApiError {
    ApiError::BadRequest(Json(ErrorBody::new("invalid_request", clean_message(&err.to_string()))))
}

/// poem's parse messages without their generic lead-in, so they start with
/// the field at fault.
pub fn clean_message(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("failed to parse parameter `")
        && let Some((name, reason)) = rest.split_once("`: ")
    {
        return format!("{name}: {reason}");
    }
    message
        .strip_prefix("parse request payload error: ")
        .unwrap_or(message)
        .to_owned()
}

impl ApiError {
    /// 400 naming `field`.
    pub fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        ApiError::BadRequest(Json(ErrorBody::new("invalid_request", format!("{field}: {message}"))))
    }
    /// 404 for `what`.
    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(Json(ErrorBody::new("not_found", format!("{what} not found"))))
    }
    /// 422 with a code.
    pub fn unprocessable(code: &str, message: impl Into<String>) -> Self {
        ApiError::Unprocessable(Json(ErrorBody::new(code, message)))
    }
    /// 500 after logging `cause` (which the client never sees).
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let body = ErrorBody::new(
            "internal",
            "an internal error occurred; quote the request id when reporting it",
        );
        tracing::error!(request_id = %body.request_id, error = %cause, "Request failed.");
        ApiError::Internal(Json(body))
    }
    /// The status code.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::Conflict(_) => 409,
            ApiError::LengthRequired(_) => 411,
            ApiError::TooLarge(_) => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::TooManyRequests(_) => 429,
            ApiError::Unprocessable(_) => 422,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
        }
    }
    /// The body.
    pub fn body(&self) -> &ErrorBody {
        match self {
            ApiError::BadRequest(b)
            | ApiError::Unauthorized(b)
            | ApiError::Forbidden(b)
            | ApiError::NotFound(b)
            | ApiError::Conflict(b)
            | ApiError::LengthRequired(b)
            | ApiError::TooLarge(b)
            | ApiError::UnsupportedMediaType(b)
            | ApiError::TooManyRequests(b)
            | ApiError::Unprocessable(b)
            | ApiError::Internal(b)
            | ApiError::Unavailable(b) => &b.0,
        }
    }
}

impl From<doppel_platform::Error> for ApiError {
    fn from(e: doppel_platform::Error) -> Self {
        use doppel_platform::Error as E;
        let body = |e: &E| Json(ErrorBody::new(e.code(), e.to_string()));
        match &e {
            E::NotFound(_) => ApiError::NotFound(body(&e)),
            E::Conflict(_) | E::BudgetExceeded(_) | E::NotReady { .. } => ApiError::Conflict(body(&e)),
            E::Invalid { .. } | E::BadSignature(_) => ApiError::BadRequest(body(&e)),
            E::Refused { code: "too_large", .. } => ApiError::TooLarge(body(&e)),
            E::Refused { .. } => ApiError::Unprocessable(body(&e)),
            E::Unauthenticated(_) | E::MfaRequired => ApiError::Unauthorized(body(&e)),
            E::TooManyAttempts { .. } => ApiError::TooManyRequests(body(&e)),
            E::Forbidden(_) => ApiError::Forbidden(body(&e)),
            E::Unavailable(_) => {
                tracing::warn!(error = %e, "A dependency is unavailable.");
                ApiError::Unavailable(body(&e))
            }
            _ => ApiError::internal(&e),
        }
    }
}

/// Endpoint result.
pub type ApiResult<T> = Result<T, ApiError>;

/// A poem error carrying our body (for middleware and auth checkers, which
/// answer outside poem-openapi's typed responses).
pub fn poem_error(status: poem::http::StatusCode, code: &str, message: &str) -> poem::Error {
    let body = ErrorBody::new(code, message);
    let json = serde_json::json!({"code": body.code, "message": body.message, "request_id": body.request_id});
    poem::Error::from_response(
        poem::Response::builder()
            .status(status)
            .content_type("application/json; charset=utf-8")
            .body(json.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::clean_message;

    #[test]
    fn messages_lead_with_the_field() {
        assert_eq!(
            clean_message("failed to parse parameter `limit`: verification failed. maximum(100, exclusive: false)"),
            "limit: verification failed. maximum(100, exclusive: false)"
        );
        assert_eq!(
            clean_message("parse request payload error: email: invalid type: integer `1`, expected a string"),
            "email: invalid type: integer `1`, expected a string"
        );
        assert_eq!(clean_message("something else"), "something else");
    }
}
