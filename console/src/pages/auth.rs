//! Signing up, in and out, and single sign-on (OpenID Connect providers and
//! GitHub), all through the platform's accounts: the same rules as REST
//! (password length, TOTP judged with the password, lockouts) because they
//! are the same calls.
//!
//! Two-factor sign-in without JavaScript: the form comes back with the code
//! field shown and asks for the password again (it is never written into a
//! page). With JavaScript, the script sends the form with
//! `X-Doppel-Probe: 1` and gets a small JSON answer instead, so it can reveal
//! the code field while the password stays in its input.

use std::sync::Arc;

use doppel_app::AppState;
use doppel_platform::Error;
use maud::{Markup, html};
use poem::http::StatusCode;
use poem::web::{Data, Form, Path, Query};
use poem::{IntoResponse, Request, Response, handler};
use serde::Deserialize;

use crate::errors::{self, PageResult, capitalise, safe_next};
use crate::layout::{self, Ctx, Flash, Nav, csrf_field};
use crate::pages::enc;
use crate::session::Keys;
use crate::web::{meta, see_other};

/// `?next=` on the sign-in page.
#[derive(Debug, Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    code: String,
    next: Option<String>,
}

/// The sign-up form.
#[derive(Debug, Deserialize)]
pub(crate) struct SignupForm {
    email: String,
    password: String,
    #[serde(default)]
    password_again: String,
}

struct LoginView<'a> {
    email: &'a str,
    next: &'a str,
    error: Option<String>,
    ask_code: bool,
}

fn sso_buttons(ctx: &Ctx, next: &str) -> Markup {
    html! {
        @if !ctx.sso.is_empty() {
            div class="sso" {
                p class="muted" { "Or continue with" }
                ul class="sso-list" {
                    @for (name, label) in ctx.sso.iter() {
                        li {
                            a class="button secondary" href=(format!("/login/sso/{name}?next={}", enc(next))) {
                                "Sign in with " (label)
                            }
                        }
                    }
                }
            }
        }
    }
}

fn login_page(ctx: &Ctx, v: &LoginView<'_>, status: StatusCode) -> Response {
    let body = html! {
        div class="narrow" {
            h1 { "Sign in" }
            (layout::alert(v.error.as_deref()))
            form method="post" action="/login" class="stack" data-login {
                (csrf_field(ctx))
                input type="hidden" name="next" value=(v.next);
                label for="email" { "E-mail" }
                input id="email" name="email" type="email" autocomplete="username" required
                    value=(v.email) autofocus[!v.ask_code];
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                div data-mfa hidden[!v.ask_code] {
                    label for="code" { "Authentication code" }
                    p class="hint" id="code-hint" {
                        "The 6-digit code from your authenticator app, or one of your recovery codes."
                    }
                    input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
                        aria-describedby="code-hint" autofocus[v.ask_code];
                }
                button type="submit" { "Sign in" }
            }
            (sso_buttons(ctx, v.next))
            p { "New here? " a href="/signup" { "Create an account" } "." }
        }
    };
    let mut r = layout::page_with_status(ctx, Nav::None, "Sign in", status, body);
    if v.ask_code {
        r.set_status(StatusCode::UNAUTHORIZED);
    }
    r
}

/// `GET /login`.
#[handler]
pub(crate) fn login_form(ctx: Ctx, Query(q): Query<Next>) -> Response {
    if ctx.viewer.is_some() {
        return see_other_plain(&safe_next(q.next.as_deref()));
    }
    let next = safe_next(q.next.as_deref());
    login_page(
        &ctx,
        &LoginView {
            email: "",
            next: &next,
            error: None,
            ask_code: false,
        },
        StatusCode::OK,
    )
}

fn see_other_plain(to: &str) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header("location", to)
        .finish()
}

/// The `Set-Cookie` value of a fresh session: it lasts as long as the session.
fn session_cookie(keys: &Keys, session: &doppel_platform::accounts::NewSession) -> String {
    let max_age = (session.expires_at - doppel_platform::util::now_ms()).max(0) / 1000;
    keys.cookie(keys.session_cookie(), &session.token, max_age)
}

/// Set the session cookie for a fresh session and go on.
fn signed_in(keys: &Keys, session: &doppel_platform::accounts::NewSession, to: &str, flash: Option<Flash>) -> Response {
    let mut r = see_other(keys, to, flash);
    if let Ok(v) = poem::http::HeaderValue::from_str(&session_cookie(keys, session)) {
        r.headers_mut().append("set-cookie", v);
    }
    r
}

/// A session that was open in this browser before signing in again ends:
/// the new sign-in gets a new token (no fixation), the old one is revoked.
async fn end_previous(state: &AppState, req: &Request, ctx: &Ctx) {
    if let Some(p) = &ctx.viewer
        && let Err(e) = state.accounts.log_out(&meta(req, ctx), p).await
    {
        tracing::warn!(error = %e, "Revoking the previous session failed.");
    }
}

/// `POST /login`.
#[handler]
pub(crate) async fn login(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    req: &Request,
    ctx: Ctx,
    Form(f): Form<LoginForm>,
) -> Response {
    let probe = req.headers().get("x-doppel-probe").is_some();
    let next = safe_next(f.next.as_deref());
    let code = f.code.trim();
    // Six digits are a TOTP code; anything else typed there is a recovery code.
    let (totp, recovery) = if code.is_empty() {
        (None, None)
    } else if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        (Some(code), None)
    } else {
        (None, Some(code))
    };
    let result = state
        .accounts
        .log_in(&meta(req, &ctx), &f.email, &f.password, totp, recovery)
        .await;
    match result {
        Ok(session) => {
            end_previous(&state, req, &ctx).await;
            if probe {
                let body = serde_json::json!({ "location": next });
                return Response::builder()
                    .content_type("application/json")
                    .header("set-cookie", session_cookie(&keys, &session))
                    .body(body.to_string());
            }
            signed_in(&keys, &session, &next, None)
        }
        Err(e) => {
            let ask_code = matches!(e, Error::MfaRequired) || !code.is_empty();
            let (status, mut message) = errors::explain(&e);
            if matches!(e, Error::MfaRequired) && !probe {
                message = "Two-factor sign-in is on for this account: enter your password again with the code \
                           from your authenticator app (or a recovery code)."
                    .to_owned();
            }
            if probe {
                let body = serde_json::json!({
                    "mfa_required": matches!(e, Error::MfaRequired),
                    "error": if matches!(e, Error::MfaRequired) { None } else { Some(message) },
                });
                return Response::builder()
                    .status(status)
                    .content_type("application/json")
                    .body(body.to_string());
            }
            if status.is_server_error() {
                tracing::error!(request_id = %ctx.request_id, error = %e, "Sign-in failed.");
            }
            login_page(
                &ctx,
                &LoginView {
                    email: &f.email,
                    next: &next,
                    error: Some(message),
                    ask_code,
                },
                status,
            )
        }
    }
}

fn signup_page(ctx: &Ctx, email: &str, error: Option<(&str, String)>, status: StatusCode) -> Response {
    let (field, message) = match &error {
        Some((f, m)) => (Some(*f), Some(m.as_str())),
        None => (None, None),
    };
    let describe = |id: &str, hint: &str| -> String {
        if field == Some(id) {
            format!("{hint} {id}-error")
        } else {
            hint.to_owned()
        }
    };
    let body = html! {
        div class="narrow" {
            h1 { "Create your account" }
            @if field.is_none() {
                (layout::alert(message))
            }
            form method="post" action="/signup" class="stack" {
                (csrf_field(ctx))
                label for="email" { "E-mail" }
                input id="email" name="email" type="email" autocomplete="email" required value=(email)
                    aria-invalid=[(field == Some("email")).then_some("true")]
                    aria-describedby=[(field == Some("email")).then_some("email-error")];
                (layout::field_error("email", if field == Some("email") { message } else { None }))
                label for="password" { "Password" }
                p class="hint" id="password-hint" { "At least 10 characters. A few unrelated words work well." }
                input id="password" name="password" type="password" autocomplete="new-password" required minlength="10"
                    aria-describedby=(describe("password", "password-hint"))
                    aria-invalid=[(field == Some("password")).then_some("true")];
                (layout::field_error("password", if field == Some("password") { message } else { None }))
                label for="password_again" { "Password again" }
                input id="password_again" name="password_again" type="password" autocomplete="new-password" required
                    aria-invalid=[(field == Some("password_again")).then_some("true")]
                    aria-describedby=[(field == Some("password_again")).then_some("password_again-error")];
                (layout::field_error("password_again", if field == Some("password_again") { message } else { None }))
                button type="submit" { "Create account" }
            }
            (sso_buttons(ctx, "/"))
            p { "Have an account? " a href="/login" { "Sign in" } "." }
        }
    };
    layout::page_with_status(ctx, Nav::None, "Create your account", status, body)
}

/// `GET /signup`.
#[handler]
pub(crate) fn signup_form(ctx: Ctx) -> Response {
    if ctx.viewer.is_some() {
        return see_other_plain("/");
    }
    signup_page(&ctx, "", None, StatusCode::OK)
}

/// `POST /signup`: create the account, then sign in with it.
#[handler]
pub(crate) async fn signup(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    req: &Request,
    ctx: Ctx,
    Form(f): Form<SignupForm>,
) -> Response {
    if f.password != f.password_again {
        return signup_page(
            &ctx,
            &f.email,
            Some(("password_again", "The two passwords differ.".to_owned())),
            StatusCode::BAD_REQUEST,
        );
    }
    let m = meta(req, &ctx);
    let created = state.accounts.sign_up(&m, &f.email, &f.password).await;
    if let Err(e) = created {
        let (status, message) = errors::explain(&e);
        let field = match &e {
            Error::Invalid { field, .. } if field == "email" => Some("email"),
            Error::Invalid { field, .. } if field == "password" => Some("password"),
            Error::Conflict(_) => Some("email"),
            _ => None,
        };
        let message = match (&e, field) {
            (Error::Conflict(_), _) => "An account with this e-mail already exists. Sign in instead.".to_owned(),
            (Error::Invalid { message, .. }, Some(_)) => format!("{}.", capitalise(message)),
            _ => message,
        };
        return match field {
            Some(f_) => signup_page(&ctx, &f.email, Some((f_, message)), status),
            None => signup_page(&ctx, &f.email, Some(("", message)), status),
        };
    }
    match state.accounts.log_in(&m, &f.email, &f.password, None, None).await {
        Ok(session) => {
            end_previous(&state, req, &ctx).await;
            signed_in(&keys, &session, "/", Some(Flash::Welcome))
        }
        Err(_) => see_other(&keys, "/login", None),
    }
}

/// `POST /logout`.
#[handler]
pub(crate) async fn logout(state: Data<&Arc<AppState>>, keys: Data<&Keys>, req: &Request, ctx: Ctx) -> PageResult {
    if let Some(p) = &ctx.viewer {
        state.accounts.log_out(&meta(req, &ctx), p).await?;
    }
    let mut r = see_other(&keys, "/login", Some(Flash::SignedOut));
    if let Ok(v) = poem::http::HeaderValue::from_str(&keys.cookie(keys.session_cookie(), "", 0)) {
        r.headers_mut().append("set-cookie", v);
    }
    Ok(r)
}

/// `GET /login/sso/{provider}`: off to the provider.
#[handler]
pub(crate) async fn sso_start(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    Path(provider): Path<String>,
    Query(q): Query<Next>,
) -> PageResult {
    let url = state
        .oidc
        .start_for(&provider, doppel_platform::oidc::Door::Console)
        .await?;
    // Where to land afterwards rides in a short cookie of our own; the
    // provider only ever sees `state`.
    let next = safe_next(q.next.as_deref());
    let mut r = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header("location", url)
        .finish();
    if let Ok(v) = poem::http::HeaderValue::from_str(&keys.cookie(&sso_cookie(&keys), &enc(&next), 600)) {
        r.headers_mut().append("set-cookie", v);
    }
    Ok(r)
}

fn sso_cookie(keys: &Keys) -> String {
    if keys.secure {
        "__Host-doppel_next".to_owned()
    } else {
        "doppel_next".to_owned()
    }
}

/// The provider's answer.
#[derive(Debug, Deserialize)]
pub(crate) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /login/sso/{provider}/callback`: verify, open a session, land.
#[handler]
pub(crate) async fn sso_callback(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    req: &Request,
    ctx: Ctx,
    Path(provider): Path<String>,
    Query(q): Query<Callback>,
) -> Response {
    let failed = |message: String| {
        login_page(
            &ctx,
            &LoginView {
                email: "",
                next: "/",
                error: Some(message),
                ask_code: false,
            },
            StatusCode::UNAUTHORIZED,
        )
    };
    if let Some(e) = q.error {
        let e: String = e
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return failed(format!("Single sign-on did not finish: the provider answered `{e}`."));
    }
    let (Some(code), Some(st)) = (q.code.as_deref(), q.state.as_deref()) else {
        return failed("Single sign-on did not finish: the provider sent no code. Start again.".to_owned());
    };
    match state.oidc.callback(&meta(req, &ctx), &provider, code, st).await {
        Ok(session) => {
            end_previous(&state, req, &ctx).await;
            let next = crate::session::cookie(req, &sso_cookie(&keys)).and_then(|v| {
                url::form_urlencoded::parse(format!("n={v}").as_bytes())
                    .next()
                    .map(|(_, n)| n.into_owned())
            });
            let mut r = signed_in(&keys, &session, &safe_next(next.as_deref()), None);
            if let Ok(v) = poem::http::HeaderValue::from_str(&keys.cookie(&sso_cookie(&keys), "", 0)) {
                r.headers_mut().append("set-cookie", v);
            }
            r
        }
        Err(e) => failed(errors::message(&e)),
    }
}

/// The sign-up and sign-in pages as the response a signed-out visitor gets
/// at `/`.
pub(crate) fn welcome(ctx: &Ctx) -> Response {
    let body = html! {
        section class="hero" {
            h1 { "Synthetic twins of sensitive tables" }
            p class="lead" {
                "Upload a table, get a twin that keeps its statistics but none of its people, "
                "with a report that proves how faithful and how private it is."
            }
            p {
                a class="button" href="/signup" { "Create an account" }
                " "
                a class="button secondary" href="/login" { "Sign in" }
            }
        }
    };
    layout::page(ctx, Nav::Home, "Welcome", body).into_response()
}
