//! Selling: the seller dashboard (sales, revenue and downloads per day as
//! charts, what the platform owes), listing a succeeded job's twin (the
//! privacy gate's refusal shown with its reason), editing, pausing and
//! delisting, and the payout account the provider needs. Listing goes
//! through the core's `listings::list_job`, the same gate REST uses.

use std::sync::Arc;

use doppel_app::AppState;
use doppel_market::{ListingPatch, ListingStatus};
use doppel_platform::authz::Principal;
use doppel_platform::jobs::JobState;
use maud::{Markup, html};
use poem::http::StatusCode;
use poem::web::{Data, Form, Path, Query};
use poem::{Request, Response, handler};
use serde::Deserialize;

use crate::charts;
use crate::errors::{self, PageResult};
use crate::layout::{self, Ctx, Flash, Nav, badge, csrf_field, money, time};
use crate::session::Keys;
use crate::web::{Viewer, meta, see_other};

/// `GET /selling`.
#[handler]
pub(crate) async fn dashboard(state: Data<&Arc<AppState>>, ctx: Ctx, Viewer(v): Viewer) -> PageResult<Response> {
    let (stats, payable) = doppel_app::listings::dashboard(&state, &v).await?;
    let account = state.market.payout_account(&v).await?;
    let needs_details = state.market.provider().needs_payout_details();
    // The last 30 days, every listing together.
    let today = doppel_platform::util::now_ms().div_euclid(86_400_000);
    let days: Vec<i64> = (today - 29..=today).collect();
    let label = |d: i64| {
        let (y, m, day) = doppel_host::generators::fake::civil_from_days(d);
        format!("{y:04}-{m:02}-{day:02}")
    };
    let series = |pick: fn(&(i64, i64, i64)) -> i64| -> Vec<(String, f64)> {
        days.iter()
            .map(|d| {
                #[allow(clippy::cast_precision_loss, reason = "counts per day")]
                let total: f64 = stats
                    .iter()
                    .flat_map(|s| s.daily.iter())
                    .filter(|x| x.0 == *d)
                    .map(|x| pick(x) as f64)
                    .sum();
                (label(*d), total)
            })
            .collect()
    };
    let sales = series(|x| x.1);
    let downloads = series(|x| x.2);
    let body = html! {
        (layout::heading("Selling", html! {
            a class="button" href="/selling/new" { "List a twin" }
            a class="button secondary" href="/selling/payout" { "Payout account" }
        }))
        @if needs_details && account.as_ref().and_then(|a| a.payout_summary.as_ref()).is_none() {
            p class="note" { "Before your first listing, " a href="/selling/payout" { "set up your payout account" } ": " (state.market.provider().name()) " pays your share into it." }
        }
        div class="scores" {
            div class="score" {
                span class="label" { "Owed to you" }
                div class="value" {
                    @if payable.is_empty() { "0" }
                    @for (i, m) in payable.iter().enumerate() { @if i > 0 { " + " } (m.display()) }
                }
                p { "Your share of completed sales, net of refunds and the platform fee." }
            }
            div class="score" {
                span class="label" { "Sales" }
                div class="value" { (stats.iter().map(|s| s.sales).sum::<i64>()) }
                p { (stats.iter().map(|s| s.refunds).sum::<i64>()) " refunded" }
            }
            div class="score" {
                span class="label" { "Downloads" }
                div class="value" { (stats.iter().map(|s| s.downloads).sum::<i64>()) }
                p { "By buyers, all listings." }
            }
        }
        div class="grid-2" {
            figure class="card" {
                figcaption { "Sales per day, last 30 days" }
                (layout::svg(charts::daily("Sales per day over the last 30 days", &sales, "sales")))
            }
            figure class="card" {
                figcaption { "Downloads per day, last 30 days" }
                (layout::svg(charts::daily("Downloads per day over the last 30 days", &downloads, "downloads")))
            }
        }
        h2 { "Your listings" }
        @if stats.is_empty() {
            (layout::empty("Nothing listed yet", "List the twin of one of your succeeded jobs; buyers see its preview rows, scores and compliance summary, never your real data.", Some(("/selling/new", "List a twin"))))
        } @else {
            div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
                table {
                    thead { tr { th { "Listing" } th class="num" { "Sales" } th class="num" { "Refunds" } th class="num" { "Revenue" } th class="num" { "Downloads" } th { "" } } }
                    tbody {
                        @for s in &stats {
                            tr {
                                td { a href=(format!("/market/{}", s.listing_id)) { (s.title) } }
                                td class="num" { (s.sales) }
                                td class="num" { (s.refunds) }
                                td class="num" { (money(s.revenue_minor, &s.currency)) }
                                td class="num" { (s.downloads) }
                                td { a href=(format!("/selling/{}", s.listing_id)) { "Edit" } }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&ctx, Nav::Selling, "Selling", body))
}

/// `?job=` on the new-listing page.
#[derive(Debug, Deserialize)]
pub(crate) struct JobParam {
    job: Option<String>,
}

/// The new-listing form.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct NewForm {
    #[serde(default)]
    job_id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    license: String,
}

async fn listable_jobs(state: &AppState, v: &Principal) -> PageResult<Vec<(String, String)>> {
    let jobs = state.queue.list(Some(&v.account_id), None, 100).await?;
    Ok(jobs
        .into_iter()
        .filter(|j| j.state == JobState::Succeeded)
        .filter(|j| {
            j.manifest
                .as_ref()
                .is_some_and(|m| m.files.iter().any(|f| f.name.starts_with("synthetic")))
        })
        .map(|j| {
            let view = doppel_app::jobs::JobView::of(&j);
            let privacy = view
                .summary
                .get("privacy.Privacy Score")
                .and_then(serde_json::Value::as_f64)
                .map_or_else(|| "no privacy score".to_owned(), |p| format!("privacy {p:.0}"));
            (
                j.id.clone(),
                format!("{} · {} · {} · {privacy}", j.id, view.pipeline, time(j.created_at)),
            )
        })
        .collect())
}

fn new_page(
    ctx: &Ctx,
    jobs: &[(String, String)],
    f: &NewForm,
    error: Option<(&str, String)>,
    status: StatusCode,
) -> Response {
    let field_error = |name: &str| match &error {
        Some((f_, m)) if *f_ == name => Some(m.as_str()),
        _ => None,
    };
    let general = match &error {
        Some((f_, m))
            if ![
                "title",
                "description",
                "tags",
                "category",
                "price",
                "currency",
                "license",
            ]
            .contains(f_) =>
        {
            Some(m.as_str())
        }
        _ => None,
    };
    let text = |id: &str, label: &str, value: &str, required: bool| -> Markup {
        let e = field_error(id);
        html! {
            label for=(id) { (label) }
            input id=(id) name=(id) type="text" value=(value) required[required]
                aria-invalid=[e.map(|_| "true")] aria-describedby=[e.map(|_| format!("{id}-error"))];
            (layout::field_error(id, e))
        }
    };
    let body = html! {
        h1 { "List a twin" }
        (layout::alert(general))
        @if jobs.is_empty() {
            (layout::empty("No twin to list", "Only the synthetic table of a succeeded job can be listed. Synthesize a dataset first.", Some(("/datasets", "Go to datasets"))))
        } @else {
            form method="post" action="/selling/new" class="stack" {
                (csrf_field(ctx))
                label for="job_id" { "Twin" }
                p class="hint" { "A succeeded job's synthetic table. Twins with a privacy score below 40, or a failed compliance check, are refused." }
                select id="job_id" name="job_id" {
                    @for (id, label) in jobs {
                        option value=(id) selected[*id == f.job_id] { (label) }
                    }
                }
                (text("title", "Title", &f.title, true))
                label for="description" { "Description" }
                textarea id="description" name="description" required
                    aria-invalid=[field_error("description").map(|_| "true")] { (f.description) }
                (layout::field_error("description", field_error("description")))
                (text("tags", "Tags (comma-separated)", &f.tags, false))
                (text("category", "Category", &f.category, true))
                (text("price", "Price", &f.price, true))
                (text("currency", "Currency (ISO 4217)", if f.currency.is_empty() { "USD" } else { &f.currency }, true))
                (text("license", "License", if f.license.is_empty() { "CC-BY-4.0" } else { &f.license }, true))
                button type="submit" { "List it" }
            }
        }
    };
    layout::page_with_status(ctx, Nav::Selling, "List a twin", status, body)
}

/// `GET /selling/new`.
#[handler]
pub(crate) async fn new_form(
    state: Data<&Arc<AppState>>,
    ctx: Ctx,
    Viewer(v): Viewer,
    Query(q): Query<JobParam>,
) -> PageResult<Response> {
    let jobs = listable_jobs(&state, &v).await?;
    let f = NewForm {
        job_id: q.job.unwrap_or_default(),
        ..NewForm::default()
    };
    Ok(new_page(&ctx, &jobs, &f, None, StatusCode::OK))
}

/// A typed price in minor units (the market's exact parse); the message says
/// what is wrong. Whether the price is acceptable (positive, in range) is the
/// market's to say when the listing is saved.
fn price_minor(text: &str, currency: &str) -> Result<i64, String> {
    doppel_market::payments::minor_from_text("price", text, &currency.trim().to_ascii_uppercase()).map_err(
        |e| match e {
            doppel_platform::Error::Invalid { message, .. } => message,
            other => other.to_string(),
        },
    )
}

/// `POST /selling/new`.
#[handler]
pub(crate) async fn create(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    req: &Request,
    ctx: Ctx,
    Viewer(v): Viewer,
    Form(f): Form<NewForm>,
) -> PageResult<Response> {
    let jobs = listable_jobs(&state, &v).await?;
    let price = match price_minor(&f.price, &f.currency) {
        Ok(p) => p,
        Err(m) => {
            return Ok(new_page(
                &ctx,
                &jobs,
                &f,
                Some(("price", format!("{m}."))),
                StatusCode::BAD_REQUEST,
            ));
        }
    };
    let listed = doppel_app::listings::list_job(
        &state,
        &meta(req, &ctx),
        &v,
        doppel_app::listings::ListJob {
            job_id: f.job_id.clone(),
            output: None,
            title: f.title.clone(),
            description: f.description.clone(),
            tags: f
                .tags
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
            category: f.category.clone(),
            price_minor: price,
            currency: f.currency.trim().to_ascii_uppercase(),
            license: f.license.clone(),
        },
    )
    .await;
    match listed {
        Ok(l) => Ok(see_other(
            &keys,
            &format!("/market/{}", l.id),
            Some(Flash::ListingSaved),
        )),
        Err(e) => {
            let (status, message) = errors::explain(&e);
            if status.is_server_error() {
                return Err(e.into());
            }
            let field = match &e {
                doppel_platform::Error::Invalid { field, .. } => match field.as_str() {
                    "price_minor" => "price",
                    other => match ["title", "description", "tags", "category", "currency", "license"]
                        .iter()
                        .find(|k| **k == other)
                    {
                        Some(k) => k,
                        None => "",
                    },
                },
                _ => "",
            };
            Ok(new_page(&ctx, &jobs, &f, Some((field, message)), status))
        }
    }
}

/// The edit form.
#[derive(Debug, Deserialize)]
pub(crate) struct EditForm {
    title: String,
    description: String,
    #[serde(default)]
    tags: String,
    category: String,
    price: String,
    license: String,
    status: String,
}

async fn edit_page(
    state: &AppState,
    ctx: &Ctx,
    v: &Principal,
    id: &str,
    error: Option<String>,
) -> PageResult<Response> {
    let l = doppel_app::access::listing(state, v, id).await?;
    if l.seller_id != v.account_id {
        // Someone else's listing is not editable, and not even "forbidden":
        // it is simply not one of theirs.
        return Err(doppel_platform::Error::NotFound(format!("listing {id}")).into());
    }
    let exp = l.price.exponent();
    #[allow(clippy::cast_precision_loss, reason = "prices are far below 2^53")]
    let price = format!(
        "{:.*}",
        usize::try_from(exp).unwrap_or(2),
        l.price.minor as f64 / 10f64.powi(i32::try_from(exp).unwrap_or(2))
    );
    let body = html! {
        h1 { "Edit “" (l.title) "”" }
        p { "State: " (badge(l.status.as_str())) " · " (l.sales) " sold · " a href=(format!("/market/{}", l.id)) { "See it as buyers do" } }
        (layout::alert(error.as_deref()))
        @if l.status == ListingStatus::Suspended {
            p class="alert" { "An administrator suspended this listing; it cannot be edited or sold." }
        } @else {
            form method="post" action=(format!("/selling/{}", l.id)) class="stack" {
                (csrf_field(ctx))
                label for="title" { "Title" } input id="title" name="title" type="text" value=(l.title) required;
                label for="description" { "Description" } textarea id="description" name="description" required { (l.description) }
                label for="tags" { "Tags (comma-separated)" } input id="tags" name="tags" type="text" value=(l.tags.join(", "));
                label for="category" { "Category" } input id="category" name="category" type="text" value=(l.category) required;
                label for="price" { "Price (" (l.price.currency) ")" } input id="price" name="price" type="text" value=(price) required;
                label for="license" { "License" } input id="license" name="license" type="text" value=(l.license) required;
                fieldset {
                    legend { "State" }
                    @for (value, label) in [("active", "For sale"), ("paused", "Paused (hidden, can be resumed)"), ("delisted", "Delisted (for good; buyers keep what they bought)")] {
                        label class="choice" for=(format!("status-{value}")) {
                            input type="radio" name="status" id=(format!("status-{value}")) value=(value) checked[l.status.as_str() == value];
                            span { (label) }
                        }
                    }
                }
                button type="submit" { "Save" }
            }
        }
    };
    Ok(layout::page(ctx, Nav::Selling, "Edit listing", body))
}

/// `GET /selling/{id}`.
#[handler]
pub(crate) async fn edit_form(
    state: Data<&Arc<AppState>>,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path(id): Path<String>,
) -> PageResult<Response> {
    edit_page(&state, &ctx, &v, &id, None).await
}

/// `POST /selling/{id}`.
#[handler]
pub(crate) async fn update(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    req: &Request,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path(id): Path<String>,
    Form(f): Form<EditForm>,
) -> PageResult<Response> {
    let current = doppel_app::access::listing(&state, &v, &id).await?;
    let price = match price_minor(&f.price, &current.price.currency) {
        Ok(p) => p,
        Err(m) => return edit_page(&state, &ctx, &v, &id, Some(format!("Price: {m}."))).await,
    };
    let status = match f.status.as_str() {
        "active" => Some(ListingStatus::Active),
        "paused" => Some(ListingStatus::Paused),
        "delisted" => Some(ListingStatus::Delisted),
        _ => None,
    };
    let patch = ListingPatch {
        title: Some(f.title),
        description: Some(f.description),
        tags: Some(
            f.tags
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
        ),
        category: Some(f.category),
        price_minor: Some(price),
        license: Some(f.license),
        status,
    };
    match state.market.update_listing(&meta(req, &ctx), &v, &id, patch).await {
        Ok(l) => Ok(see_other(
            &keys,
            &format!("/selling/{}", l.id),
            Some(Flash::ListingSaved),
        )),
        Err(e) => {
            let (status, message) = errors::explain(&e);
            if status.is_server_error() || status == StatusCode::NOT_FOUND {
                return Err(e.into());
            }
            edit_page(&state, &ctx, &v, &id, Some(message)).await
        }
    }
}

/// The payout-account form (providers that pay into a bank account).
#[derive(Debug, Deserialize)]
pub(crate) struct PayoutForm {
    business_name: String,
    bank_code: String,
    account_number: String,
    country: String,
}

async fn payout_page(state: &AppState, ctx: &Ctx, v: &Principal, error: Option<String>) -> PageResult<Response> {
    let account = state.market.payout_account(v).await?;
    let provider = state.market.provider();
    let body = html! {
        h1 { "Payout account" }
        (layout::alert(error.as_deref()))
        p { "Payments go through " strong { (provider.name()) } ". Your share of each sale (the platform keeps its fee) is paid to you by the provider." }
        @if let Some(a) = &account {
            section class="card" {
                dl class="facts" {
                    dt { "Seller account" } dd { code { (a.provider_account_id) } }
                    @if let Some(s) = &a.payout_summary { dt { "Paid into" } dd { (s) } }
                    dt { "Opened" } dd { (time(a.created_at)) }
                }
            }
        }
        @if provider.needs_payout_details() {
            form method="post" action="/selling/payout" class="stack" {
                (csrf_field(ctx))
                label for="business_name" { "Name on the account" } input id="business_name" name="business_name" type="text" required;
                label for="bank_code" { "Bank code" } input id="bank_code" name="bank_code" type="text" required;
                label for="account_number" { "Account number" } input id="account_number" name="account_number" type="text" inputmode="numeric" autocomplete="off" required;
                label for="country" { "Country (two letters)" } input id="country" name="country" type="text" maxlength="2" required;
                p class="hint" { "Only a masked summary is kept here; the provider holds the details." }
                button type="submit" { "Save payout account" }
            }
        } @else if provider.name() == "stripe" {
            form method="post" action="/selling/payout/onboarding" {
                (csrf_field(ctx))
                p { "Stripe collects your identity and bank details on its own pages." }
                button type="submit" { "Continue on Stripe" }
            }
        } @else {
            p class="muted" { "This server's provider needs no bank details from you." }
        }
    };
    Ok(layout::page(ctx, Nav::Selling, "Payout account", body))
}

/// `GET /selling/payout`.
#[handler]
pub(crate) async fn payout_form(state: Data<&Arc<AppState>>, ctx: Ctx, Viewer(v): Viewer) -> PageResult<Response> {
    payout_page(&state, &ctx, &v, None).await
}

/// `POST /selling/payout`.
#[handler]
pub(crate) async fn payout(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    req: &Request,
    ctx: Ctx,
    Viewer(v): Viewer,
    Form(f): Form<PayoutForm>,
) -> PageResult<Response> {
    let details = match doppel_market::payments::PayoutDetails::new(
        &f.business_name,
        &f.bank_code,
        &f.account_number,
        &f.country,
    ) {
        Ok(d) => d,
        Err(e) => return payout_page(&state, &ctx, &v, Some(errors::message(&e))).await,
    };
    match state.market.set_payout_account(&meta(req, &ctx), &v, &details).await {
        Ok(_) => Ok(see_other(&keys, "/selling", Some(Flash::PayoutSaved))),
        Err(e) => {
            let (status, message) = errors::explain(&e);
            if status.is_server_error() {
                return Err(e.into());
            }
            payout_page(&state, &ctx, &v, Some(message)).await
        }
    }
}

/// `POST /selling/payout/onboarding`: a fresh link to Stripe's onboarding
/// pages. It is shown as a link rather than a redirect: the console's CSP
/// lets a form lead only back to the console, and browsers apply that to the
/// redirect after a form too.
#[handler]
pub(crate) async fn onboarding(state: Data<&Arc<AppState>>, ctx: Ctx, Viewer(v): Viewer) -> PageResult<Response> {
    let back = format!("{}/selling/payout", state.settings.public_url());
    doppel_app::listings::check_return_url(&state, &back)?;
    let url = state.market.onboarding_link(&v, &back).await?;
    let body = html! {
        div class="narrow" {
            h1 { "Continue on Stripe" }
            p { "Stripe asks for your identity and bank details on its own pages, then sends you back here." }
            p { a class="button" href=(url) { "Open Stripe onboarding" } }
        }
    };
    Ok(layout::page(&ctx, Nav::Selling, "Continue on Stripe", body))
}
