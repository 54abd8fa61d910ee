//! The admin panel (admin accounts only): users (disable, enable), every
//! job, the audit log, and the marketplace (suspend a listing, refund a
//! purchase, the ledger, reconcile with the provider). Every action is the
//! core's `admin` module, which requires the admin scope itself; a regular
//! account gets "not allowed" from the core, not from this page.

use std::sync::Arc;

use doppel_app::AppState;
use maud::{Markup, html};
use poem::web::{Data, Form, Path, Query};
use poem::{Request, Response, handler};
use serde::Deserialize;

use crate::errors::{PageError, PageResult};
use crate::layout::{self, Ctx, Flash, Nav, badge, csrf_field, money, time};
use crate::pages::{Cursor, PAGE, page_of, pager};
use crate::session::Keys;
use crate::web::{Viewer, meta, see_other};

fn tabs(current: &str) -> Markup {
    let tab = |href: &str, label: &str| {
        html! {
            li {
                @if href == current { a href=(href) aria-current="page" { (label) } } @else { a href=(href) { (label) } }
            }
        }
    };
    html! {
        nav aria-label="Admin" class="card" {
            ul class="plain" {
                (tab("/admin/users", "Users"))
                (tab("/admin/jobs", "Jobs"))
                (tab("/admin/audit", "Audit log"))
                (tab("/admin/market", "Marketplace"))
            }
        }
    }
}

/// `GET /admin`.
#[handler]
pub(crate) async fn overview(state: Data<&Arc<AppState>>, ctx: Ctx, Viewer(v): Viewer) -> PageResult<Response> {
    let accounts = doppel_app::admin::users(&state, &v, None, 1000).await?;
    let recent = doppel_app::admin::jobs(&state, &v, None, 1000).await?;
    let running = recent.iter().filter(|j| !j.state.is_terminal()).count();
    let failed = recent
        .iter()
        .filter(|j| j.state == doppel_platform::jobs::JobState::Failed)
        .count();
    let body = html! {
        h1 { "Admin" }
        (tabs("/admin"))
        div class="scores" {
            div class="score" { span class="label" { "Accounts" } div class="value" { (accounts.len()) } p { (accounts.iter().filter(|u| u.disabled_at.is_some()).count()) " disabled" } }
            div class="score" { span class="label" { "Jobs" } div class="value" { (recent.len()) } p { (running) " queued or running, " (failed) " failed (latest 1,000)" } }
        }
    };
    Ok(layout::page(&ctx, Nav::Admin, "Admin", body))
}

/// `GET /admin/users`.
#[handler]
pub(crate) async fn users(
    state: Data<&Arc<AppState>>,
    ctx: Ctx,
    Viewer(v): Viewer,
    Query(c): Query<Cursor>,
) -> PageResult<Response> {
    let rows = doppel_app::admin::users(&state, &v, c.after.as_deref(), PAGE + 1).await?;
    let (rows, next) = page_of(rows, PAGE, |a| a.id.clone());
    let body = html! {
        h1 { "Users" }
        (tabs("/admin/users"))
        div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
            table {
                thead { tr { th { "E-mail" } th { "Role" } th { "Two-factor" } th { "Joined" } th { "State" } th { "" } } }
                tbody {
                    @for a in &rows {
                        tr {
                            td { (a.email) br; span class="muted" { code { (a.id) } } }
                            td { (a.role.as_str()) }
                            td { @if a.totp_enabled { "on" } @else { "off" } }
                            td { (time(a.created_at)) }
                            td { @if a.disabled_at.is_some() { (badge("disabled")) } @else { (badge("active")) } }
                            td {
                                @if a.id != v.account_id {
                                    @let (action, label) = if a.disabled_at.is_some() { ("enable", "Enable") } else { ("disable", "Disable") };
                                    form method="post" action=(format!("/admin/users/{}/{action}", a.id)) class="inline"
                                        data-confirm=(format!("{label} {}?", a.email)) {
                                        (csrf_field(&ctx))
                                        button type="submit" class=(if action == "disable" { "danger" } else { "secondary" }) {
                                            (label) span class="sr" { " " (a.email) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (pager("/admin/users", next.as_deref()))
    };
    Ok(layout::page(&ctx, Nav::Admin, "Users", body))
}

/// `POST /admin/users/{id}/{enable|disable}`.
#[handler]
pub(crate) async fn set_user(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    req: &Request,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path((id, action)): Path<(String, String)>,
) -> PageResult<Response> {
    let disabled = match action.as_str() {
        "disable" => true,
        "enable" => false,
        _ => return Err(PageError::Core(doppel_platform::Error::NotFound("action".into()))),
    };
    doppel_app::admin::set_disabled(&state, &meta(req, &ctx), &v, &id, disabled).await?;
    Ok(see_other(&keys, "/admin/users", Some(Flash::UserChanged)))
}

/// `GET /admin/jobs`.
#[handler]
pub(crate) async fn jobs(
    state: Data<&Arc<AppState>>,
    ctx: Ctx,
    Viewer(v): Viewer,
    Query(c): Query<Cursor>,
) -> PageResult<Response> {
    let rows = doppel_app::admin::jobs(&state, &v, c.after.as_deref(), PAGE + 1).await?;
    let (rows, next) = page_of(rows, PAGE, |j| j.id.clone());
    let body = html! {
        h1 { "All jobs" }
        (tabs("/admin/jobs"))
        div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
            table {
                thead { tr { th { "Job" } th { "Owner" } th { "Pipeline" } th { "State" } th { "Attempts" } th { "Submitted" } th { "Error" } } }
                tbody {
                    @for j in &rows {
                        @let view = doppel_app::jobs::JobView::of(j);
                        tr {
                            td { a href=(format!("/jobs/{}", j.id)) { code { (j.id) } } }
                            td { code { (j.owner_id) } }
                            td { (view.pipeline) }
                            td { (badge(&view.state)) }
                            td { (j.attempt) " / " (j.max_attempts) }
                            td { (time(j.created_at)) }
                            td { (j.error_code.clone().unwrap_or_default()) }
                        }
                    }
                }
            }
        }
        (pager("/admin/jobs", next.as_deref()))
    };
    Ok(layout::page(&ctx, Nav::Admin, "All jobs", body))
}

/// `?before=` on the audit log.
#[derive(Debug, Deserialize)]
pub(crate) struct Before {
    before: Option<i64>,
}

/// `GET /admin/audit`.
#[handler]
pub(crate) async fn audit(
    state: Data<&Arc<AppState>>,
    ctx: Ctx,
    Viewer(v): Viewer,
    Query(b): Query<Before>,
) -> PageResult<Response> {
    let rows = doppel_app::admin::audit(&state, &v, b.before, 50).await?;
    let oldest = rows.last().map(|e| e.seq);
    let body = html! {
        h1 { "Audit log" }
        (tabs("/admin/audit"))
        div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
            table {
                thead { tr { th { "When" } th { "Action" } th { "Outcome" } th { "Actor" } th { "Target" } th { "From" } th { "Request" } } }
                tbody {
                    @for e in &rows {
                        tr {
                            td { (time(e.at)) }
                            td { code { (e.action) } }
                            td { (badge(if e.outcome == "success" { "ok" } else { "fail" })) }
                            td { (e.actor.clone().unwrap_or_default()) @if let Some(k) = &e.api_key_id { br; span class="muted" { "key " (k) } } }
                            td { (e.target.clone().unwrap_or_default()) }
                            td { (e.ip.clone().unwrap_or_default()) }
                            td { code { (e.request_id.clone().unwrap_or_default()) } }
                        }
                    }
                }
            }
        }
        @if let (Some(o), true) = (oldest, rows.len() == 50) {
            nav class="pager" aria-label="Pages" { a href=(format!("/admin/audit?before={o}")) { "Older →" } }
        }
    };
    Ok(layout::page(&ctx, Nav::Admin, "Audit log", body))
}

/// `GET /admin/market`.
#[handler]
pub(crate) async fn market(state: Data<&Arc<AppState>>, ctx: Ctx, Viewer(v): Viewer) -> PageResult<Response> {
    let ledger = doppel_app::admin::ledger(&state, &v, None, 200).await?;
    let (listings, _) = state
        .market
        .search(&doppel_market::SearchQuery {
            sort: Some(doppel_market::Sort::Newest),
            limit: 50,
            ..doppel_market::SearchQuery::default()
        })
        .await?;
    // Purchases whose refund is already booked get no refund button.
    let refunded: Vec<&str> = ledger
        .iter()
        .filter(|l| l.kind == "refund")
        .map(|l| l.purchase_id.as_str())
        .collect();
    let body = html! {
        h1 { "Marketplace" }
        (tabs("/admin/market"))
        section class="card" {
            h2 { "Reconcile" }
            p { "Ask the payment provider about pending purchases whose webhook never came (this also runs every " (state.settings.payments.reconcile_seconds) " s)." }
            form method="post" action="/admin/reconcile" {
                (csrf_field(&ctx))
                button type="submit" class="secondary" { "Reconcile now" }
            }
        }
        h2 { "Listings for sale" }
        div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
            table {
                thead { tr { th { "Listing" } th { "Price" } th class="num" { "Privacy" } th class="num" { "Sold" } th { "Suspend" } } }
                tbody {
                    @for l in &listings {
                        tr {
                            td { a href=(format!("/market/{}", l.id)) { (l.title) } br; span class="muted" { "seller " code { (l.seller_id) } } }
                            td { (money(l.price.minor, &l.price.currency)) }
                            td class="num" { (format!("{:.0}", l.privacy_score)) }
                            td class="num" { (l.sales) }
                            td {
                                form method="post" action=(format!("/admin/listings/{}/suspend", l.id)) class="inline" {
                                    (csrf_field(&ctx))
                                    label for=(format!("reason-{}", l.id)) class="sr" { "Reason for suspending " (l.title) }
                                    input id=(format!("reason-{}", l.id)) name="reason" type="text" required placeholder="Reason";
                                    " "
                                    button type="submit" class="danger" { "Suspend" span class="sr" { " " (l.title) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Ledger (latest lines)" }
        div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
            table {
                thead { tr { th { "When" } th { "Purchase" } th { "Account" } th { "Kind" } th class="num" { "Amount" } th { "" } } }
                tbody {
                    @for e in &ledger {
                        tr {
                            td { (time(e.created_at)) }
                            td { code { (e.purchase_id) } }
                            td { code { (e.account) } }
                            td { (e.kind) }
                            td class="num" { (money(e.amount_minor, &e.currency)) }
                            td {
                                @if e.kind == "charge" && e.account.starts_with("clearing:") && !refunded.contains(&e.purchase_id.as_str()) {
                                    form method="post" action=(format!("/admin/purchases/{}/refund", e.purchase_id)) class="inline"
                                        data-confirm="Refund this purchase? The buyer's access ends at once." {
                                        (csrf_field(&ctx))
                                        button type="submit" class="link" { "Refund" span class="sr" { " " (e.purchase_id) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&ctx, Nav::Admin, "Marketplace", body))
}

/// The suspension reason.
#[derive(Debug, Deserialize)]
pub(crate) struct Reason {
    reason: String,
}

/// `POST /admin/listings/{id}/suspend`.
#[handler]
pub(crate) async fn suspend(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    req: &Request,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path(id): Path<String>,
    Form(f): Form<Reason>,
) -> PageResult<Response> {
    doppel_app::admin::suspend(&state, &meta(req, &ctx), &v, &id, &f.reason).await?;
    Ok(see_other(&keys, "/admin/market", Some(Flash::ListingSuspended)))
}

/// `POST /admin/purchases/{id}/refund`.
#[handler]
pub(crate) async fn refund(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    req: &Request,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path(id): Path<String>,
) -> PageResult<Response> {
    doppel_app::admin::refund(&state, &meta(req, &ctx), &v, &id).await?;
    Ok(see_other(&keys, "/admin/market", Some(Flash::Refunded)))
}

/// `POST /admin/reconcile`.
#[handler]
pub(crate) async fn reconcile(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    Viewer(v): Viewer,
) -> PageResult<Response> {
    doppel_app::admin::reconcile(&state, &v).await?;
    Ok(see_other(&keys, "/admin/market", Some(Flash::Reconciled)))
}
