//! The start page: for a visitor, what doppel is and how to begin; for a
//! signed-in person, their latest datasets, jobs and notifications.

use std::sync::Arc;

use doppel_app::AppState;
use maud::html;
use poem::web::Data;
use poem::{Response, handler};

use crate::errors::PageResult;
use crate::layout::{self, Ctx, Nav, badge, time};
use crate::pages::auth;

/// `GET /`.
#[handler]
pub(crate) async fn home(state: Data<&Arc<AppState>>, ctx: Ctx) -> PageResult<Response> {
    let Some(v) = &ctx.viewer else {
        return Ok(auth::welcome(&ctx));
    };
    let datasets = doppel_platform::datasets::list(&state.db, &v.account_id, None, 5).await?;
    let jobs = state.queue.list(Some(&v.account_id), None, 5).await?;
    let notes = doppel_platform::notifications::notifications(&state.db, &v.account_id, true, None, 5).await?;
    let body = html! {
        (layout::heading("Your workspace", html! {
            a class="button" href="/datasets" { "Upload a table" }
            a class="button secondary" href="/market" { "Browse the marketplace" }
        }))
        @if datasets.is_empty() && jobs.is_empty() {
            (layout::empty(
                "Start with a table",
                "Upload a CSV, Parquet, NDJSON, JSON or Excel file. doppel profiles it, finds personal data, and makes a synthetic twin with a report on how faithful and how private it is.",
                Some(("/datasets", "Upload a table")),
            ))
        } @else {
            div class="grid-2" {
                section class="card" {
                    h2 { "Latest datasets" }
                    @if datasets.is_empty() {
                        p class="muted" { "None yet." }
                    } @else {
                        ul class="plain" {
                            @for d in &datasets {
                                li {
                                    a href=(format!("/datasets/{}", d.id)) { (d.name) }
                                    " "
                                    span class="muted" { (layout::count(d.metadata.get("rows").and_then(serde_json::Value::as_u64).unwrap_or(0))) " rows" }
                                }
                            }
                        }
                    }
                    p { a href="/datasets" { "All datasets" } }
                }
                section class="card" {
                    h2 { "Latest jobs" }
                    @if jobs.is_empty() {
                        p class="muted" { "None yet. Open a dataset and choose Synthesize." }
                    } @else {
                        ul class="plain" {
                            @for j in &jobs {
                                @let view = doppel_app::jobs::JobView::of(j);
                                li {
                                    a href=(format!("/jobs/{}", j.id)) { (view.pipeline) " · " (time(j.created_at)) }
                                    " " (badge(&view.state))
                                }
                            }
                        }
                    }
                    p { a href="/jobs" { "All jobs" } }
                }
            }
        }
        @if !notes.is_empty() {
            section class="card" {
                h2 { "Unread notifications" }
                ul class="plain" {
                    @for n in &notes {
                        li { (n.message) " " span class="muted" { (time(n.created_at)) } }
                    }
                }
                p { a href="/notifications" { "All notifications" } }
            }
        }
    };
    Ok(layout::page(&ctx, Nav::Home, "Your workspace", body))
}
