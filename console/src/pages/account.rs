//! The account: API keys (scopes and expiry; the secret shown once; last
//! use; revoking), two-factor sign-in (enrolment with a QR code, recovery
//! codes shown once), privacy budgets per dataset, and notifications. Keys
//! and TOTP go through the platform's accounts and keys, with their rules: a
//! key is never wider or longer-lived than the session that makes it, and a
//! second factor is changed with the password or the current factor.

use std::sync::Arc;

use doppel_app::AppState;
use doppel_platform::authz::{Principal, Role, Scope};
use maud::{Markup, html};
use poem::http::StatusCode;
use poem::web::{Data, Form, Path, Query};
use poem::{Request, Response, handler};
use serde::Deserialize;

use crate::errors::{self, PageResult};
use crate::layout::{self, Ctx, Flash, Nav, badge, csrf_field, time};
use crate::pages::{Cursor, page_of, pager};
use crate::session::Keys;
use crate::web::{Viewer, meta, see_other};

fn scope_label(s: Scope) -> &'static str {
    match s {
        Scope::DatasetsRead => "Read datasets, jobs and reports",
        Scope::DatasetsWrite => "Upload and delete datasets",
        Scope::JobsRun => "Run and cancel jobs",
        Scope::MarketplaceSell => "Sell on the marketplace",
        Scope::MarketplaceBuy => "Buy on the marketplace",
        Scope::Admin => "Operator actions (admins only)",
    }
}

async fn account_page(
    state: &AppState,
    ctx: &Ctx,
    v: &Principal,
    created: Option<(String, String)>,
    error: Option<String>,
    status: StatusCode,
) -> PageResult<Response> {
    let me = state.accounts.get(&v.account_id).await?;
    let keys = doppel_platform::keys::list(&state.db, &v.account_id).await?;
    let datasets = doppel_platform::datasets::list(&state.db, &v.account_id, None, 100).await?;
    let mut names: Vec<String> = datasets.into_iter().map(|d| d.name).collect();
    names.sort();
    names.dedup();
    let mut budgets = Vec::new();
    for n in names.iter().take(50) {
        budgets.push(doppel_platform::privacy::ledger(&state.db, state.settings.privacy, &v.account_id, n).await?);
    }
    let now = doppel_platform::util::now_ms();
    let body = html! {
        h1 { "Account" }
        section class="card" {
            dl class="facts" {
                dt { "E-mail" } dd { (me.email) }
                dt { "Role" } dd { (me.role.as_str()) }
                dt { "Member since" } dd { (time(me.created_at)) }
                dt { "Two-factor sign-in" } dd {
                    @if me.totp_enabled { (badge("on")) " " a href="/account/totp" { "Replace" } }
                    @else { (badge("off")) " " a href="/account/totp" { "Turn on" } }
                }
            }
        }
        h2 id="keys" { "API keys" }
        p class="hint" { "For scripts, notebooks and BI tools: send " code { "Authorization: Bearer <key>" } " to the REST API or Arrow Flight." }
        @if let Some((name, secret)) = &created {
            div class="flash" role="status" {
                p { "Key “" (name) "” created. Copy it now: it is shown this once." }
                p class="secret" id="new-secret" { (secret) }
                button type="button" class="secondary" data-copy="new-secret" hidden { "Copy" }
            }
        }
        (layout::alert(error.as_deref()))
        @if keys.is_empty() {
            p class="muted" { "No keys yet." }
        } @else {
            div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
                table {
                    thead { tr { th { "Name" } th { "Starts with" } th { "Permissions" } th { "Expires" } th { "Last used" } th { "" } } }
                    tbody {
                        @for k in &keys {
                            @let gone = k.revoked_at.is_some() || k.expires_at.is_some_and(|e| e <= now);
                            tr {
                                td { (k.name) }
                                td { code { (k.prefix) "…" } }
                                td { (k.scopes.join(", ")) }
                                td { (k.expires_at.map(time).unwrap_or_else(|| "never".to_owned())) }
                                td {
                                    (k.last_used_at.map(time).unwrap_or_else(|| "never".to_owned()))
                                    @if let Some(ip) = &k.last_used_ip { br; span class="muted" { "from " (ip) } }
                                }
                                td {
                                    @if k.revoked_at.is_some() { (badge("revoked")) }
                                    @else if gone { (badge("expired")) }
                                    @else {
                                        form method="post" action=(format!("/account/keys/{}/revoke", k.id)) class="inline"
                                            data-confirm="Revoke this key? Anything using it stops working at once." {
                                            (csrf_field(ctx))
                                            button type="submit" class="link" { "Revoke " span class="sr" { (k.name) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        form method="post" action="/account/keys" class="card stack" {
            h3 { "Create a key" }
            (csrf_field(ctx))
            label for="key-name" { "Name" }
            input id="key-name" name="name" type="text" maxlength="100" required placeholder="notebook";
            fieldset {
                legend { "Permissions" }
                @for s in Scope::ALL {
                    @if s != Scope::Admin || v.role == Role::Admin {
                        @let id = format!("scope-{}", s.as_str().replace(':', "-"));
                        label class="choice" for=(id) {
                            input type="checkbox" name="scopes" id=(id) value=(s.as_str())
                                checked[matches!(s, Scope::DatasetsRead | Scope::DatasetsWrite | Scope::JobsRun)];
                            span { code { (s.as_str()) } " — " (scope_label(s)) }
                        }
                    }
                }
            }
            label for="expires" { "Expires after (days)" }
            p class="hint" { "At most " (state.settings.auth.api_key_max_days) " days on this server." }
            input id="expires" name="expires_in_days" type="number" min="1" max=(state.settings.auth.api_key_max_days) value="90";
            button type="submit" { "Create key" }
        }
        h2 id="budgets" { "Privacy budgets" }
        @if budgets.is_empty() {
            p class="muted" { "Datasets you upload each get a privacy budget for differentially private jobs." }
        } @else {
            div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
                table {
                    thead { tr { th { "Dataset" } th class="num" { "ε left" } th class="num" { "ε budget" } th class="num" { "δ left" } th class="num" { "Jobs charged" } } }
                    tbody {
                        @for l in &budgets {
                            tr {
                                td { (l.dataset_name) }
                                td class="num" { (format!("{:.3}", l.remaining.epsilon)) }
                                td class="num" { (format!("{:.3}", l.budget.epsilon)) }
                                td class="num" { (format!("{:.1e}", l.remaining.delta)) }
                                td class="num" { (l.charges.len()) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page_with_status(ctx, Nav::Account, "Account", status, body))
}

/// `GET /account`.
#[handler]
pub(crate) async fn show(state: Data<&Arc<AppState>>, ctx: Ctx, Viewer(v): Viewer) -> PageResult<Response> {
    account_page(&state, &ctx, &v, None, None, StatusCode::OK).await
}

/// `POST /account/keys`: the form repeats `scopes` once per checked box.
#[handler]
pub(crate) async fn create_key(
    state: Data<&Arc<AppState>>,
    req: &Request,
    ctx: Ctx,
    Viewer(v): Viewer,
    body: poem::Body,
) -> PageResult<Response> {
    let bytes = body.into_bytes().await.unwrap_or_default();
    let (mut name, mut scopes, mut days) = (String::new(), Vec::new(), None);
    for (k, val) in url::form_urlencoded::parse(&bytes) {
        match k.as_ref() {
            "name" => name = val.into_owned(),
            "scopes" => scopes.push(val.into_owned()),
            "expires_in_days" => days = val.trim().parse::<i64>().ok(),
            _ => {}
        }
    }
    if scopes.is_empty() {
        return account_page(
            &state,
            &ctx,
            &v,
            None,
            Some("Choose at least one permission.".into()),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    match doppel_platform::keys::create(
        &state.db,
        &meta(req, &ctx),
        &v,
        &name,
        &scopes,
        days,
        state.settings.auth.api_key_max_days,
    )
    .await
    {
        Ok(k) => {
            account_page(
                &state,
                &ctx,
                &v,
                Some((k.key.name, k.secret)),
                None,
                StatusCode::CREATED,
            )
            .await
        }
        Err(e) => {
            let (status, message) = errors::explain(&e);
            if status.is_server_error() {
                return Err(e.into());
            }
            account_page(&state, &ctx, &v, None, Some(message), status).await
        }
    }
}

/// `POST /account/keys/{id}/revoke`.
#[handler]
pub(crate) async fn revoke_key(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    req: &Request,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path(id): Path<String>,
) -> PageResult<Response> {
    doppel_platform::keys::revoke(&state.db, &meta(req, &ctx), &v, &id).await?;
    Ok(see_other(&keys, "/account#keys", Some(Flash::KeyRevoked)))
}

fn qr_svg(text: &str) -> Markup {
    use qrcode::render::svg;
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => {
            let image = code
                .render::<svg::Color<'_>>()
                .min_dimensions(200, 200)
                .quiet_zone(true)
                .build();
            // Drop the XML declaration; the SVG goes inline.
            let inline = image
                .split_once("?>")
                .map_or(image.as_str(), |(_, rest)| rest)
                .trim()
                .to_owned();
            let labelled = inline.replacen("<svg", "<svg role=\"img\" aria-label=\"QR code of the secret\"", 1);
            layout::svg(labelled)
        }
        Err(_) => html! {},
    }
}

/// The second-factor form.
#[derive(Debug, Deserialize)]
pub(crate) struct TotpStart {
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
}

fn totp_page(
    ctx: &Ctx,
    enabled: bool,
    enrol: Option<&doppel_platform::accounts::TotpEnrolment>,
    codes: Option<&[String]>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let body = html! {
        div class="narrow" {
            h1 { "Two-factor sign-in" }
            (layout::alert(error.as_deref()))
            @if let Some(codes) = codes {
                p class="flash" role="status" { "Two-factor sign-in is on." }
                p { "Recovery codes: each signs you in once if you lose your authenticator. They are shown this once; store them somewhere safe." }
                ul class="secret" id="recovery-codes" { @for c in codes { li { code { (c) } } } }
                button type="button" class="secondary" data-copy="recovery-codes" hidden { "Copy" }
                p { a class="button" href="/account" { "Done" } }
            } @else if let Some(e) = enrol {
                p { "Scan this code with an authenticator app (or type the secret), then enter the 6-digit code it shows." }
                figure { (qr_svg(&e.otpauth_url)) figcaption { "Secret: " code id="totp-secret" { (e.secret) } } }
                form method="post" action="/account/totp/confirm" class="stack" {
                    (csrf_field(ctx))
                    label for="code" { "Code from the app" }
                    input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required pattern="[0-9]{6}" maxlength="6";
                    button type="submit" { "Turn on" }
                }
            } @else {
                @if enabled {
                    p { "Two-factor sign-in is on. To move it to a new device, enter a current code (or a recovery code)." }
                } @else {
                    p { "After your password, sign-in will ask for a code from an authenticator app (TOTP). Confirm with your password to begin." }
                }
                form method="post" action="/account/totp" class="stack" {
                    (csrf_field(ctx))
                    @if enabled {
                        label for="code" { "Current code or a recovery code" }
                        input id="code" name="code" type="text" autocomplete="one-time-code" required;
                    } @else {
                        label for="password" { "Password" }
                        input id="password" name="password" type="password" autocomplete="current-password" required;
                    }
                    button type="submit" { "Continue" }
                }
            }
        }
    };
    layout::page_with_status(ctx, Nav::Account, "Two-factor sign-in", status, body)
}

/// `GET /account/totp`.
#[handler]
pub(crate) async fn totp_form(state: Data<&Arc<AppState>>, ctx: Ctx, Viewer(v): Viewer) -> PageResult<Response> {
    let me = state.accounts.get(&v.account_id).await?;
    Ok(totp_page(&ctx, me.totp_enabled, None, None, None, StatusCode::OK))
}

/// `POST /account/totp`: a new secret, once the password (or the current
/// factor) checks out.
#[handler]
pub(crate) async fn totp_start(
    state: Data<&Arc<AppState>>,
    ctx: Ctx,
    Viewer(v): Viewer,
    Form(f): Form<TotpStart>,
) -> PageResult<Response> {
    let me = state.accounts.get(&v.account_id).await?;
    let password = (!f.password.is_empty()).then_some(f.password.as_str());
    let code = (!f.code.trim().is_empty()).then_some(f.code.trim());
    match state.accounts.enrol_totp(&v, password, code).await {
        Ok(e) => Ok(totp_page(&ctx, me.totp_enabled, Some(&e), None, None, StatusCode::OK)),
        Err(e) => {
            let (status, message) = errors::explain(&e);
            if status.is_server_error() {
                return Err(e.into());
            }
            Ok(totp_page(&ctx, me.totp_enabled, None, None, Some(message), status))
        }
    }
}

/// The confirmation code.
#[derive(Debug, Deserialize)]
pub(crate) struct TotpConfirm {
    code: String,
}

/// `POST /account/totp/confirm`.
#[handler]
pub(crate) async fn totp_confirm(
    state: Data<&Arc<AppState>>,
    req: &Request,
    ctx: Ctx,
    Viewer(v): Viewer,
    Form(f): Form<TotpConfirm>,
) -> PageResult<Response> {
    match state.accounts.confirm_totp(&meta(req, &ctx), &v, f.code.trim()).await {
        Ok(codes) => Ok(totp_page(&ctx, true, None, Some(&codes), None, StatusCode::OK)),
        Err(e) => {
            let (status, message) = errors::explain(&e);
            if status.is_server_error() {
                return Err(e.into());
            }
            let me = state.accounts.get(&v.account_id).await?;
            Ok(totp_page(
                &ctx,
                me.totp_enabled,
                None,
                None,
                Some(format!("{message} Start again to get a fresh secret.")),
                status,
            ))
        }
    }
}

/// `GET /notifications`.
#[handler]
pub(crate) async fn notifications(
    state: Data<&Arc<AppState>>,
    ctx: Ctx,
    Viewer(v): Viewer,
    Query(c): Query<Cursor>,
) -> PageResult<Response> {
    let rows =
        doppel_platform::notifications::notifications(&state.db, &v.account_id, false, c.after.as_deref(), 51).await?;
    let (rows, next) = page_of(rows, 50, |n| n.id.clone());
    let link = |n: &doppel_platform::notifications::Notification| -> Option<String> {
        let d = &n.data;
        if let Some(j) = d.get("job_id").and_then(serde_json::Value::as_str) {
            return Some(format!("/jobs/{j}"));
        }
        if let Some(p) = d.get("purchase_id").and_then(serde_json::Value::as_str) {
            return (n.kind.starts_with("purchase") || n.kind == "refund").then(|| format!("/purchases/{p}"));
        }
        d.get("listing_id")
            .and_then(serde_json::Value::as_str)
            .map(|l| format!("/market/{l}"))
    };
    let body = html! {
        (layout::heading("Notifications", html! {
            @if ctx.unread > 0 {
                form method="post" action="/notifications/read-all" class="inline" {
                    (csrf_field(&ctx))
                    button type="submit" class="secondary" { "Mark all as read" }
                }
            }
        }))
        @if rows.is_empty() {
            (layout::empty("Nothing yet", "Finished jobs, sales, purchases and refunds show up here.", None))
        } @else {
            ul class="plain card" {
                @for n in &rows {
                    li {
                        @if n.read_at.is_none() { (badge("new")) " " }
                        @match link(n) {
                            Some(href) => { a href=(href) { (n.message) } }
                            None => { (n.message) }
                        }
                        " " span class="muted" { (time(n.created_at)) }
                    }
                }
            }
            (pager("/notifications", next.as_deref()))
        }
    };
    Ok(layout::page(&ctx, Nav::Account, "Notifications", body))
}

/// `POST /notifications/read-all`.
#[handler]
pub(crate) async fn read_all(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    Viewer(v): Viewer,
) -> PageResult<Response> {
    doppel_platform::notifications::mark_all_read(&state.db, &v.account_id).await?;
    Ok(see_other(&keys, "/notifications", Some(Flash::NotificationsRead)))
}
