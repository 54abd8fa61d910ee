//! What the console says when something goes wrong: the core's errors (the
//! same stable codes REST and Flight answer with) turned into a status and a
//! sentence a person understands. Server faults show no internals, only the
//! request id to quote; their cause is logged under that id.

use doppel_platform::Error;
use maud::html;
use poem::http::StatusCode;
use poem::{IntoResponse, Response};

use crate::layout::{self, Ctx, Nav};

/// A page handler's failure.
#[derive(Debug)]
pub(crate) enum PageError {
    /// The core refused or failed.
    Core(Error),
    /// Signing in is needed first (redirect to the login page).
    SignIn,
    /// Something the console itself checks (a missing form field).
    Bad(String),
}

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        PageError::Core(e)
    }
}

impl From<doppel_app::jobs::SubmitError> for PageError {
    fn from(e: doppel_app::jobs::SubmitError) -> Self {
        match e {
            doppel_app::jobs::SubmitError::Platform(e) => PageError::Core(e),
            other => PageError::Bad(other.to_string()),
        }
    }
}

/// A handler's result.
pub(crate) type PageResult<T = Response> = Result<T, PageError>;

/// The status and the sentence for a core error. The sentence names what
/// happened and what to do; the core's own message (safe to show: it names a
/// field, a limit or a reason) follows where it helps.
pub(crate) fn explain(e: &Error) -> (StatusCode, String) {
    match e {
        Error::NotFound(_) => (
            StatusCode::NOT_FOUND,
            "We could not find that. It may have been deleted, or the link is wrong.".to_owned(),
        ),
        Error::Conflict(m) => (
            StatusCode::CONFLICT,
            format!("That clashes with what is there already: {m}."),
        ),
        Error::BudgetExceeded(m) => (
            StatusCode::CONFLICT,
            format!("This would spend more privacy budget than the dataset has left: {m}."),
        ),
        Error::Refused { code, message } => (StatusCode::UNPROCESSABLE_ENTITY, refused(code, message)),
        Error::NotReady { message, .. } => (StatusCode::CONFLICT, format!("Not yet: {message}.")),
        Error::Invalid { field, message } => (
            StatusCode::BAD_REQUEST,
            format!("Please check {}: {message}.", field_label(field)),
        ),
        Error::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, capitalise(m) + "."),
        Error::MfaRequired => (
            StatusCode::UNAUTHORIZED,
            "Enter the code from your authenticator app (or a recovery code).".to_owned(),
        ),
        Error::Forbidden(_) => (
            StatusCode::FORBIDDEN,
            "Your account may not do that. Ask an administrator if you think it should.".to_owned(),
        ),
        Error::TooManyAttempts { retry_after_s, .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many attempts. Wait {retry_after_s} seconds and try again."),
        ),
        Error::Unavailable(m) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("A service doppel relies on is not answering right now ({m}). Try again in a minute."),
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong on our side. Try again; if it keeps happening, quote the reference below.".to_owned(),
        ),
    }
}

fn refused(code: &str, message: &str) -> String {
    match code {
        "listing_refused" => format!("This twin cannot be listed: {message}."),
        "not_for_sale" => format!("This listing is not for sale: {message}."),
        "payout_details_required" => format!("Set up your payout account first: {message}."),
        "unreadable_table" => format!("This file cannot be read as a table: {message}."),
        "limit_exceeded" => format!("This file is over one of the server's limits: {message}."),
        "unknown_format" => format!("{message}."),
        "too_large" => format!("This file is too large: {message}."),
        _ => format!("{}.", capitalise(message)),
    }
}

/// How a form field is named to people.
fn field_label(field: &str) -> String {
    match field {
        "email" => "the e-mail address".to_owned(),
        "password" => "the password".to_owned(),
        "name" => "the name".to_owned(),
        "scopes" => "the permissions".to_owned(),
        "price_minor" => "the price".to_owned(),
        other => format!("`{other}`"),
    }
}

/// `s` with its first letter upper-case.
pub(crate) fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The message of a core error, for a form's alert (sign-in, sign-up).
pub(crate) fn message(e: &Error) -> String {
    explain(e).1
}

/// A full error page.
pub(crate) fn error_page(ctx: &Ctx, status: StatusCode, message: &str) -> Response {
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::TOO_MANY_REQUESTS => "Slow down",
        StatusCode::PAYLOAD_TOO_LARGE => "Too large",
        s if s.is_server_error() => "Something went wrong",
        _ => "That did not work",
    };
    let body = html! {
        div class="error-page" {
            h1 { (title) }
            p { (message) }
            p class="muted" { "Reference: " code { (ctx.request_id) } }
            p {
                a class="button" href="/" { "Go to the start page" }
            }
        }
    };
    layout::page_with_status(ctx, Nav::None, title, status, body)
}

impl PageError {
    /// The answer for this failure.
    pub(crate) fn into_page(self, ctx: &Ctx, path_and_query: &str) -> Response {
        match self {
            PageError::SignIn => sign_in_redirect(path_and_query),
            PageError::Bad(m) => error_page(ctx, StatusCode::BAD_REQUEST, &m),
            PageError::Core(Error::Unauthenticated(_)) if ctx.viewer.is_none() => sign_in_redirect(path_and_query),
            PageError::Core(e) => {
                let (status, message) = explain(&e);
                if status.is_server_error() {
                    tracing::error!(request_id = %ctx.request_id, error = %e, "Console request failed.");
                }
                error_page(ctx, status, &message)
            }
        }
    }
}

/// A redirect to the sign-in page that comes back here afterwards.
pub(crate) fn sign_in_redirect(back_to: &str) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header("location", format!("/login?next={}", crate::pages::enc(back_to)))
        .finish()
        .into_response()
}

/// Where to go after signing in: only a path on this site (`/…`, never
/// `//host` or a scheme), so the `next` parameter cannot send anyone away.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.len() <= 512
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_error_reads_as_a_sentence_without_internals() {
        let cases = [
            Error::NotFound("dataset ds_1".into()),
            Error::Conflict("an account with this e-mail exists".into()),
            Error::Invalid {
                field: "email".into(),
                message: "not an e-mail address".into(),
            },
            Error::Unauthenticated("wrong e-mail or password".into()),
            Error::MfaRequired,
            Error::Internal("/var/lib/doppel/secret path".into()),
        ];
        for e in &cases {
            let (status, text) = explain(e);
            assert!(text.ends_with('.'), "{text}");
            assert!(text.chars().next().is_some_and(char::is_uppercase), "{text}");
            assert!(!text.contains("/var/lib"), "internals leak: {text}");
            assert!(status.is_client_error() || status.is_server_error());
        }
        assert_eq!(explain(&cases[0]).0, StatusCode::NOT_FOUND);
        assert!(explain(&cases[2]).1.contains("the e-mail address"));
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/datasets/ds_1")), "/datasets/ds_1");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "javascript:alert(1)",
            "/a\nb",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
