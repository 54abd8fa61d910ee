//! The marketplace for buyers: search and filters (the same query REST
//! takes), a listing with its preview rows, scores and compliance, checkout
//! through the configured provider and back, "my purchases" and their
//! downloads. Buying goes through the core's `listings::checkout` (scope,
//! return-URL rule) and downloading through `listings::purchased` (a
//! refunded purchase downloads nothing).

use std::sync::Arc;

use doppel_app::AppState;
use doppel_market::payments::minor_from_text;
use doppel_market::{Listing, PurchaseStatus, SearchQuery, Sort};
use doppel_platform::authz::Principal;
use maud::{Markup, html};
use poem::web::{Data, Path, Query};
use poem::{Request, Response, handler};
use serde::Deserialize;
use serde_json::Value;

use crate::errors::{PageError, PageResult};
use crate::layout::{self, Ctx, Nav, badge, count, csrf_field, money, time};
use crate::pages::{Cursor, PAGE, attachment, enc, page_of, pager};
use crate::session::Keys;
use crate::web::{Viewer, meta, see_other};

/// The search form.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct Search {
    q: Option<String>,
    category: Option<String>,
    tags: Option<String>,
    currency: Option<String>,
    min_price: Option<String>,
    max_price: Option<String>,
    min_quality: Option<String>,
    min_privacy: Option<String>,
    sort: Option<String>,
    cursor: Option<String>,
}

fn some(s: &Option<String>) -> Option<String> {
    s.as_ref().map(|x| x.trim().to_owned()).filter(|x| !x.is_empty())
}

fn listing_card(l: &Listing) -> Markup {
    html! {
        article class="card listing-card" {
            h2 { a href=(format!("/market/{}", l.id)) { (l.title) } }
            p class="muted" { (l.category) @for t in &l.tags { " · #" (t) } }
            p { (l.description.chars().take(220).collect::<String>()) @if l.description.chars().count() > 220 { "…" } }
            p {
                span class="price" { (money(l.price.minor, &l.price.currency)) }
                " · privacy " strong { (format!("{:.0}", l.privacy_score)) }
                @if let Some(q) = l.quality_score { " · quality " strong { (format!("{q:.3}")) } }
                " · " (l.sales) " sold"
            }
        }
    }
}

/// `GET /market`.
#[handler]
pub(crate) async fn search(
    state: Data<&Arc<AppState>>,
    ctx: Ctx,
    Viewer(v): Viewer,
    Query(s): Query<Search>,
) -> PageResult<Response> {
    let currency = some(&s.currency);
    let price_in = currency.clone().unwrap_or_else(|| "USD".to_owned());
    let float = |x: &Option<String>| some(x).and_then(|t| t.parse::<f64>().ok());
    let sort = match some(&s.sort).as_deref() {
        Some("newest") => Some(Sort::Newest),
        Some("price_asc") => Some(Sort::PriceAsc),
        Some("price_desc") => Some(Sort::PriceDesc),
        Some("popularity") => Some(Sort::Popularity),
        Some("relevance") => Some(Sort::Relevance),
        _ => None,
    };
    let query = SearchQuery {
        text: some(&s.q),
        category: some(&s.category),
        tags: some(&s.tags)
            .map(|t| {
                t.split(',')
                    .map(|x| x.trim().to_owned())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        currency: currency.clone(),
        min_price: some(&s.min_price).and_then(|p| minor_from_text("min_price", &p, &price_in).ok()),
        max_price: some(&s.max_price).and_then(|p| minor_from_text("max_price", &p, &price_in).ok()),
        min_quality: float(&s.min_quality),
        min_privacy: float(&s.min_privacy),
        sort,
        cursor: some(&s.cursor),
        limit: 20,
    };
    let (rows, next) = doppel_app::access::search(&state, &v, &query).await?;
    let keep = |k: &str, v: &Option<String>| some(v).map(|x| format!("&{k}={}", enc(&x))).unwrap_or_default();
    let base_query = format!(
        "{}{}{}{}{}{}{}{}{}",
        keep("q", &s.q),
        keep("category", &s.category),
        keep("tags", &s.tags),
        keep("currency", &s.currency),
        keep("min_price", &s.min_price),
        keep("max_price", &s.max_price),
        keep("min_quality", &s.min_quality),
        keep("min_privacy", &s.min_privacy),
        keep("sort", &s.sort)
    );
    let val = |x: &Option<String>| x.clone().unwrap_or_default();
    let body = html! {
        (layout::heading("Marketplace", html! { a class="button secondary" href="/purchases" { "My purchases" } }))
        form method="get" action="/market" class="card" role="search" {
            div class="filters" {
                label for="q" { "Search" input id="q" name="q" type="search" value=(val(&s.q)) placeholder="census, claims, patients…"; }
                label for="category" { "Category" input id="category" name="category" type="text" value=(val(&s.category)); }
                label for="tags" { "Tags (comma-separated)" input id="tags" name="tags" type="text" value=(val(&s.tags)); }
                label for="currency" { "Currency" input id="currency" name="currency" type="text" maxlength="3" value=(val(&s.currency)) placeholder="USD"; }
                label for="min_price" { "Price from" input id="min_price" name="min_price" type="number" step="any" min="0" value=(val(&s.min_price)); }
                label for="max_price" { "Price up to" input id="max_price" name="max_price" type="number" step="any" min="0" value=(val(&s.max_price)); }
                label for="min_quality" { "Quality at least" input id="min_quality" name="min_quality" type="number" step="0.01" min="0" max="1" value=(val(&s.min_quality)); }
                label for="min_privacy" { "Privacy at least" input id="min_privacy" name="min_privacy" type="number" step="1" min="0" max="100" value=(val(&s.min_privacy)); }
                label for="sort" { "Order"
                    select id="sort" name="sort" {
                        @for (value, label) in [("relevance", "Best match"), ("newest", "Newest"), ("price_asc", "Price, low to high"), ("price_desc", "Price, high to low"), ("popularity", "Most bought")] {
                            option value=(value) selected[s.sort.as_deref() == Some(value)] { (label) }
                        }
                    }
                }
                button type="submit" { "Search" }
            }
        }
        @if rows.is_empty() {
            (layout::empty("Nothing found", "No listing matches these filters. Loosen them, or sell a twin of your own.", Some(("/selling", "Sell a twin"))))
        } @else {
            @for l in &rows { (listing_card(l)) }
            @if let Some(n) = &next {
                nav class="pager" aria-label="Pages" {
                    a href=(format!("/market?cursor={}{base_query}", enc(n))) { "More →" }
                }
            }
        }
    };
    Ok(layout::page(&ctx, Nav::Market, "Marketplace", body))
}

fn preview_table(preview: &Value) -> Markup {
    let table = preview.get("table");
    let cols: Vec<String> = table
        .and_then(|t| t.get("columns"))
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(|x| x.get("name")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let rows: Vec<&Value> = table
        .and_then(|t| t.get("rows"))
        .and_then(Value::as_array)
        .map(|r| r.iter().collect())
        .unwrap_or_default();
    html! {
        @if !cols.is_empty() {
            div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
                table {
                    caption { "The first synthetic rows (these are generated, not real people)" }
                    thead { tr { @for c in &cols { th { (c) } } } }
                    tbody { @for r in &rows { tr { @for c in &cols { td { (crate::pages::datasets::preview_cell(r.get(c), 30)) } } } } }
                }
            }
        }
    }
}

/// `GET /market/{id}`.
#[handler]
pub(crate) async fn show(
    state: Data<&Arc<AppState>>,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let l = doppel_app::access::listing(&state, &v, &id).await?;
    let mine = l.seller_id == v.account_id;
    let bought = state.market.access(&v, &l.id).await?;
    let rows_total = l
        .preview
        .get("table")
        .and_then(|t| t.get("rows_total"))
        .and_then(Value::as_u64);
    let failed: Vec<String> = l
        .preview
        .get("compliance")
        .and_then(|c| c.get("failed_rules"))
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let body = html! {
        (layout::heading(&l.title, html! {
            @if mine {
                a class="button secondary" href=(format!("/selling/{}", l.id)) { "Edit your listing" }
            }
        }))
        p class="muted" { (l.category) @for t in &l.tags { " · #" (t) } " · listed " (time(l.created_at)) }
        @if l.status.as_str() != "active" { p class="note" { "This listing is " (l.status.as_str()) "; it is not for sale now." } }
        div class="scores" {
            div class="score" { span class="label" { "Price" } div class="value" { (money(l.price.minor, &l.price.currency)) } p { "License: " (l.license) } }
            div class="score" { span class="label" { "Privacy" } div class="value" { (format!("{:.0}", l.privacy_score)) } p { "0–100, measured when the twin was made; twins below 40 cannot be listed." } }
            div class="score" { span class="label" { "Quality" } div class="value" { (l.quality_score.map_or_else(|| "n/a".to_owned(), |q| format!("{q:.3}"))) } p { "How faithful to the real table (1 is identical)." } }
            div class="score" { span class="label" { "Rows" } div class="value" { (rows_total.map(count).unwrap_or_default()) } p { "Compliance: " @if failed.is_empty() { "no check failed" } @else { (failed.join("; ")) } } }
        }
        section class="card" { h2 { "About" } p { (l.description) } }
        (preview_table(&l.preview))
        @if let Some(p) = &bought {
            p { "You bought this on " (time(p.created_at)) ". " a href=(format!("/purchases/{}", p.id)) { "Go to your purchase" } "." }
        } @else if !mine && l.status.as_str() == "active" {
            form method="post" action=(format!("/market/{}/buy", l.id)) class="stack" {
                (csrf_field(&ctx))
                p { "You pay " strong { (money(l.price.minor, &l.price.currency)) } " through " (state.market.provider().name()) "; you can download the twin once the payment is confirmed." }
                button type="submit" { "Buy for " (money(l.price.minor, &l.price.currency)) }
            }
        }
    };
    Ok(layout::page(&ctx, Nav::Market, &l.title, body))
}

/// `POST /market/{id}/buy`: open a checkout and go pay.
#[handler]
pub(crate) async fn buy(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    req: &Request,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let return_url = format!("{}/purchases/return", state.settings.public_url());
    let p = doppel_app::listings::checkout(&state, &meta(req, &ctx), &v, &id, &return_url).await?;
    let Some(url) = p.checkout_url.clone() else {
        return Ok(see_other(&keys, &format!("/purchases/{}", p.id), None));
    };
    // The provider's hosted page on our own origin (the built-in provider)
    // is a plain redirect; another origin gets a page with a link, because
    // the console's CSP lets forms lead only back to the console.
    if url.starts_with(&format!("{}/", state.settings.public_url())) {
        return Ok(see_other(&keys, &url, None));
    }
    Ok(see_other(&keys, &format!("/purchases/{}", p.id), None))
}

fn purchase_rows(rows: &[doppel_market::Purchase], titles: &[(String, String)]) -> Markup {
    html! {
        div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
            table {
                thead { tr { th { "Listing" } th { "Paid" } th { "State" } th { "When" } th { "" } } }
                tbody {
                    @for p in rows {
                        tr {
                            td { (titles.iter().find(|(id, _)| *id == p.listing_id).map_or(p.listing_id.as_str(), |(_, t)| t.as_str())) }
                            td { (money(p.amount.minor, &p.amount.currency)) }
                            td { (badge(p.status.as_str())) }
                            td { (time(p.created_at)) }
                            td { a href=(format!("/purchases/{}", p.id)) { "Open" } }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /purchases`.
#[handler]
pub(crate) async fn purchases(
    state: Data<&Arc<AppState>>,
    ctx: Ctx,
    Viewer(v): Viewer,
    Query(c): Query<Cursor>,
) -> PageResult<Response> {
    let rows = doppel_app::access::purchases(&state, &v, c.after.as_deref(), PAGE + 1).await?;
    let (rows, next) = page_of(rows, PAGE, |p| p.id.clone());
    let mut titles = Vec::new();
    for p in &rows {
        if let Ok(l) = state.market.listing(&p.listing_id).await {
            titles.push((l.id, l.title));
        }
    }
    let body = html! {
        (layout::heading("My purchases", html! {}))
        @if rows.is_empty() && c.after.is_none() {
            (layout::empty("No purchases yet", "Twins you buy on the marketplace show here, ready to download.", Some(("/market", "Browse the marketplace"))))
        } @else {
            (purchase_rows(&rows, &titles))
            (pager("/purchases", next.as_deref()))
        }
    };
    Ok(layout::page(&ctx, Nav::Market, "My purchases", body))
}

async fn purchase_page(state: &AppState, ctx: &Ctx, v: &Principal, id: &str) -> PageResult<Response> {
    let p = state.market.own_purchase(v, id).await?;
    let listing = state.market.listing(&p.listing_id).await?;
    let ext = listing.output_name.rsplit('.').next().unwrap_or("parquet").to_owned();
    let body = html! {
        (layout::heading(&format!("Purchase: {}", listing.title), html! {}))
        section class="card" {
            dl class="facts" {
                dt { "State" } dd { span id="purchase-state" data-status=(p.status.as_str()) { (badge(p.status.as_str())) } }
                dt { "Paid" } dd { (money(p.amount.minor, &p.amount.currency)) " via " (p.provider) }
                dt { "Opened" } dd { (time(p.created_at)) }
                @if let Some(t) = p.completed_at { dt { "Completed" } dd { (time(t)) } }
                @if let Some(t) = p.refunded_at { dt { "Refunded" } dd { (time(t)) } }
                dt { "Listing" } dd { a href=(format!("/market/{}", listing.id)) { (listing.title) } }
            }
        }
        @match p.status {
            PurchaseStatus::Completed => {
                h2 { "Download" }
                p {
                    a class="button" href=(format!("/purchases/{}/download", p.id)) download { "Download (" (ext) ")" }
                    @if ext == "parquet" {
                        " " a class="button secondary" href=(format!("/purchases/{}/download?format=csv", p.id)) download { "Download (csv)" }
                    }
                }
                p class="hint" { "Also over Arrow Flight: the descriptor " code { "[\"purchases\", \"" (p.id) "\"]" } ", or Flight SQL " code { "SELECT * FROM purchases." (p.id) } "." }
            }
            PurchaseStatus::Pending => {
                p { "The payment is not confirmed yet. This page does not need to stay open; the purchase completes when the provider confirms it." }
                @if let Some(url) = &p.checkout_url {
                    p { a class="button" href=(url) { "Continue to payment" } }
                }
                form method="post" action=(format!("/purchases/{}/verify", p.id)) {
                    (csrf_field(ctx))
                    button type="submit" class="secondary" { "Check the payment again" }
                }
            }
            PurchaseStatus::Failed => { p class="alert" { "The payment did not go through; nothing was charged. You can buy again from the listing." } }
            PurchaseStatus::Refunded => { p class="note" { "This purchase was refunded; its downloads no longer work." } }
        }
    };
    Ok(layout::page(ctx, Nav::Market, "Purchase", body))
}

/// `GET /purchases/{id}`.
#[handler]
pub(crate) async fn purchase(
    state: Data<&Arc<AppState>>,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path(id): Path<String>,
) -> PageResult<Response> {
    purchase_page(&state, &ctx, &v, &id).await
}

/// Where the provider sends the buyer back.
#[derive(Debug, Deserialize)]
pub(crate) struct Return {
    purchase: Option<String>,
    transaction_id: Option<String>,
}

/// `GET /purchases/return?purchase=…`: the redirect proves nothing, so the
/// payment is fetched from the provider before the purchase page shows.
#[handler]
pub(crate) async fn checkout_return(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    Viewer(v): Viewer,
    Query(q): Query<Return>,
) -> PageResult<Response> {
    let id = q
        .purchase
        .ok_or_else(|| PageError::Bad("The payment provider sent no purchase back.".into()))?;
    let p = state.market.own_purchase(&v, &id).await?;
    let charge = q.transaction_id.filter(|t| !t.is_empty());
    let p = state.market.sync_charge(&p.id, charge.as_deref()).await?;
    Ok(see_other(&keys, &format!("/purchases/{}", p.id), None))
}

/// `POST /purchases/{id}/verify`.
#[handler]
pub(crate) async fn verify(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    Viewer(v): Viewer,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let p = state.market.own_purchase(&v, &id).await?;
    state.market.sync(&p.id).await?;
    Ok(see_other(&keys, &format!("/purchases/{}", p.id), None))
}

/// `?format=csv` on a download.
#[derive(Debug, Deserialize)]
pub(crate) struct Format {
    format: Option<String>,
}

/// `GET /purchases/{id}/download`: stream what was bought (checked now: a
/// refund ends it).
#[handler]
pub(crate) async fn download(
    state: Data<&Arc<AppState>>,
    Viewer(v): Viewer,
    Path(id): Path<String>,
    Query(f): Query<Format>,
) -> PageResult<Response> {
    let (bought, listing) = doppel_app::listings::purchased(&state, &v, &id).await?;
    state.market.record_download(&bought).await?;
    let name = &listing.output_name;
    if f.format.as_deref() == Some("csv") && name.ends_with(".parquet") {
        let csv = format!("{}-{}.csv", bought.id, name.trim_end_matches(".parquet"));
        return attachment(&state, &listing.output_key, true, "text/csv", &csv).await;
    }
    let file_name = format!("{}-{name}", bought.id);
    attachment(
        &state,
        &listing.output_key,
        false,
        "application/octet-stream",
        &file_name,
    )
    .await
}
