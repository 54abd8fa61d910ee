//! Datasets: the list with a drag-and-drop upload, one dataset's schema
//! (types, semantic types, nulls, distinct values, histograms), the personal
//! data a scan found in it, its first rows, its privacy budget, deleting it.
//! Uploads go through the core's `accept` (scope, size, format, name) and
//! `store_upload` (read in the memory-capped upload reader, stored, profiled)
//! exactly as REST uploads do.

use std::sync::Arc;

use doppel_app::AppState;
use doppel_app::datasets as tables;
use doppel_platform::authz::Scope;
use maud::{Markup, html};
use poem::http::StatusCode;
use poem::web::{Data, Form, Multipart, Path, Query};
use poem::{Request, Response, handler};
use serde::Deserialize;
use serde_json::Value;

use crate::charts;
use crate::errors::{self, PageError, PageResult};
use crate::layout::{self, Ctx, Flash, Nav, count, csrf_field, time};
use crate::pages::{Cursor, PAGE, page_of, pager};
use crate::session::Keys;
use crate::web::{Viewer, meta, see_other};

fn upload_box(ctx: &Ctx, max_mb: u64) -> Markup {
    html! {
        section class="card" data-upload {
            h2 { "Upload a table" }
            form method="post" action="/datasets" enctype="multipart/form-data" {
                (csrf_field(ctx))
                div class="dropzone" {
                    p { strong { "Drop a file here" } " or choose one below." }
                    p class="hint" {
                        "CSV, Parquet, NDJSON, a JSON array of objects, or Excel (.xlsx); up to "
                        (max_mb) " MiB. The file is read on the server, stored as Parquet and profiled."
                    }
                    label for="file" { "File" }
                    input id="file" name="file" type="file"
                        accept=".csv,.tsv,.parquet,.ndjson,.jsonl,.json,.xlsx,text/csv,application/json";
                }
                label for="name" { "Name (optional)" }
                input id="name" name="name" type="text" maxlength="200" placeholder="The file's name";
                p { button type="submit" { "Upload" } }
                progress max="100" value="0" hidden aria-label="Upload progress" {}
                div data-upload-status role="status" aria-live="polite" {}
                noscript {
                    p class="note" {
                        "Uploading needs JavaScript in this browser. Without it, upload with the REST API: "
                        code { "curl -F file=@table.csv -H 'authorization: Bearer KEY' …/v1/datasets" }
                    }
                }
            }
        }
    }
}

/// `GET /datasets`.
#[handler]
pub(crate) async fn list(
    state: Data<&Arc<AppState>>,
    ctx: Ctx,
    Viewer(v): Viewer,
    Query(c): Query<Cursor>,
) -> PageResult<Response> {
    let rows = doppel_app::access::datasets(&state, &v, c.after.as_deref(), PAGE + 1).await?;
    let (rows, next) = page_of(rows, PAGE, |d| d.id.clone());
    let body = html! {
        (layout::heading("Datasets", html! {}))
        (upload_box(&ctx, state.settings.limits.upload_max_mb))
        @if rows.is_empty() && c.after.is_none() {
            (layout::empty(
                "No datasets yet",
                "Upload a table above to profile it, scan it for personal data and make its synthetic twin.",
                None,
            ))
        } @else {
            div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
                table {
                    caption { "Your datasets, newest first" }
                    thead { tr { th { "Name" } th class="num" { "Rows" } th class="num" { "Columns" } th class="num" { "Stored" } th { "Uploaded" } } }
                    tbody {
                        @for d in &rows {
                            tr {
                                td { a href=(format!("/datasets/{}", d.id)) { (d.name) } }
                                td class="num" { (count(d.metadata.get("rows").and_then(Value::as_u64).unwrap_or(0))) }
                                td class="num" { (d.metadata.get("columns").and_then(Value::as_array).map_or(0, Vec::len)) }
                                td class="num" { (layout::bytes(d.size_bytes)) }
                                td { (time(d.created_at)) }
                            }
                        }
                    }
                }
            }
            (pager("/datasets", next.as_deref()))
        }
    };
    Ok(layout::page(&ctx, Nav::Datasets, "Datasets", body))
}

/// A JSON answer for the upload script.
fn json(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

/// `POST /datasets` (multipart, from the upload script): `{location}` on
/// success, `{error}` with a sentence otherwise.
#[handler]
pub(crate) async fn upload(state: Data<&Arc<AppState>>, req: &Request, ctx: Ctx, mut form: Multipart) -> Response {
    let Some(v) = ctx.viewer.clone() else {
        return json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": "Your session ended. Sign in again, then upload."}),
        );
    };
    let fail = |e: &doppel_platform::Error| {
        let (status, message) = errors::explain(e);
        if status.is_server_error() {
            tracing::error!(request_id = %ctx.request_id, error = %e, "Console upload failed.");
        }
        json(status, &serde_json::json!({ "error": message }))
    };
    let work = match tempfile::tempdir() {
        Ok(w) => w,
        Err(e) => return fail(&doppel_platform::Error::Internal(e.to_string())),
    };
    let mut name: Option<String> = None;
    let mut file: Option<(String, Option<String>, std::path::PathBuf, u64)> = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({"error": "The upload could not be read. Try again."}),
                );
            }
        };
        match field.name() {
            Some("name") => {
                let text = field.text().await.unwrap_or_default();
                name = Some(text.chars().take(tables::MAX_NAME_CHARS + 1).collect());
            }
            Some("file") if file.is_none() => {
                let file_name = field.file_name().unwrap_or("upload").to_owned();
                let content_type = field.content_type().map(str::to_owned);
                let local = work.path().join("upload.bin");
                // Stream to disk: a large file is never held in memory (the
                // middleware already bounds the body at the upload limit).
                let written = async {
                    use tokio::io::AsyncWriteExt;
                    let mut out = tokio::fs::File::create(&local).await?;
                    let mut reader = field.into_async_read();
                    let n = tokio::io::copy(&mut reader, &mut out).await?;
                    out.flush().await?;
                    std::io::Result::Ok(n)
                }
                .await;
                match written {
                    Ok(n) => file = Some((file_name, content_type, local, n)),
                    Err(_) => {
                        return json(
                            StatusCode::BAD_REQUEST,
                            &serde_json::json!({"error": "The upload was cut short. Try again."}),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    let Some((file_name, content_type, local, size)) = file else {
        return json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "Choose a file to upload."}),
        );
    };
    // An empty name field means "use the file's name".
    let name = name.filter(|n| !n.trim().is_empty());
    let (format, name) = match tables::accept(&state, &v, &file_name, content_type.as_deref(), size, name.as_deref()) {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    match tables::store_upload(
        &state,
        &meta(req, &ctx),
        &v,
        &name,
        &local,
        &file_name,
        format,
        work.path(),
    )
    .await
    {
        Ok(d) => json(
            StatusCode::CREATED,
            &serde_json::json!({ "id": d.id, "location": format!("/datasets/{}", d.id) }),
        ),
        Err(e) => fail(&e),
    }
}

/// The profile entry of column `name`.
fn profile_of<'a>(d: &'a doppel_platform::datasets::Dataset, name: &str) -> Option<&'a Value> {
    d.metadata
        .get("profile")?
        .get("columns")?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
}

fn shape(name: &str, p: Option<&Value>) -> Markup {
    let Some(p) = p else { return html! {} };
    if let Some(counts) = p
        .get("histogram")
        .and_then(|h| h.get("counts"))
        .and_then(Value::as_array)
    {
        let c: Vec<f64> = counts.iter().filter_map(Value::as_f64).collect();
        return layout::svg(charts::spark(&format!("Distribution of {name}"), &c));
    }
    if let Some(top) = p.get("top").and_then(Value::as_array)
        && top.len() > 1
    {
        let c: Vec<f64> = top.iter().filter_map(|t| t.get("count")?.as_f64()).collect();
        return layout::svg(charts::spark(&format!("Most frequent values of {name}"), &c));
    }
    html! {}
}

fn range(p: Option<&Value>) -> String {
    let Some(p) = p else { return String::new() };
    let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned);
    match (text("min"), text("max")) {
        (Some(a), Some(b)) if a != b => format!("{} … {}", charts::clip(&a, 24), charts::clip(&b, 24)),
        (Some(a), _) => charts::clip(&a, 24),
        _ => String::new(),
    }
}

/// A preview row's value as a table cell, cut to `n` characters.
pub(crate) fn preview_cell(v: Option<&Value>, n: usize) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => charts::clip(s, n),
        Some(other) => charts::clip(&other.to_string(), n),
    }
}

/// `GET /datasets/{id}`.
#[handler]
pub(crate) async fn show(
    state: Data<&Arc<AppState>>,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let d = doppel_app::access::dataset(&state, &v, &id, Scope::DatasetsRead).await?;
    let rows = d.metadata.get("rows").and_then(Value::as_u64).unwrap_or(0);
    let columns: Vec<Value> = d
        .metadata
        .get("columns")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let profile_rows = d.metadata.get("profile_rows").and_then(Value::as_u64).unwrap_or(rows);
    let (names, preview) = tables::preview_rows(&d, tables::PREVIEW_ROWS);
    let version = doppel_app::access::version_of(&state, &d).await?;
    let ledger = doppel_platform::privacy::ledger(&state.db, state.settings.privacy, &d.owner_id, &d.name).await?;
    // What a scan of this dataset found: the latest succeeded job on it whose
    // report has a `pii` stage (every shipped pipeline scans the real rows there).
    let jobs = doppel_app::jobs::of_dataset(&state, &v, &d.id, 200).await?;
    let mut latest_scan: Option<(String, Vec<doppel_host::report::PiiColumn>)> = None;
    let mut scanning: Option<String> = None;
    // At most the ten latest finished jobs' reports are read (each a
    // storage fetch): a scan older than that is stale anyway.
    let mut reports_read = 0;
    for j in &jobs {
        if j.state == doppel_platform::jobs::JobState::Succeeded {
            reports_read += 1;
            if reports_read > 10 {
                break;
            }
            if let Ok(r) = doppel_app::jobs::report(&state, j).await
                && r.stages
                    .iter()
                    .any(|s| s.get("id").and_then(Value::as_str) == Some("pii"))
            {
                let found = r.summary.pii_columns.into_iter().filter(|c| c.stage == "pii").collect();
                latest_scan = Some((j.id.clone(), found));
                break;
            }
        } else if !j.state.is_terminal() && scanning.is_none() {
            scanning = Some(j.id.clone());
        }
    }
    let body = html! {
        (layout::heading(&d.name, html! {
            a class="button" href=(format!("/datasets/{}/synthesize", d.id)) { "Synthesize" }
            a class="button secondary" href=(format!("/datasets/{}/delete", d.id)) { "Delete" }
        }))
        section class="card" {
            dl class="facts" {
                dt { "Rows" } dd { (count(rows)) }
                dt { "Columns" } dd { (columns.len()) }
                dt { "Stored" } dd { (layout::bytes(d.size_bytes)) " (Parquet)" }
                dt { "From" } dd {
                    (d.metadata.get("source_name").and_then(Value::as_str).unwrap_or(""))
                    " (" (d.metadata.get("source_format").and_then(Value::as_str).unwrap_or("")) ")"
                }
                dt { "Version" } dd { (version) " of “" (d.name) "”" }
                dt { "Uploaded" } dd { (time(d.created_at)) }
                dt { "Id" } dd { code { (d.id) } }
            }
        }
        h2 { "Schema" }
        @if profile_rows < rows {
            p class="hint" { "Profiled on " (count(profile_rows)) " evenly spaced rows of " (count(rows)) "." }
        }
        div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
            table {
                thead { tr {
                    th { "Column" } th { "Type" } th { "Meaning" } th class="num" { "Missing" }
                    th class="num" { "Distinct" } th { "Range" } th { "Shape" }
                } }
                tbody {
                    @for c in &columns {
                        @let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                        @let p = profile_of(&d, name);
                        tr {
                            th scope="row" { (name) }
                            td { code { (c.get("type").and_then(Value::as_str).unwrap_or("")) } }
                            td { (c.get("semantic_type").and_then(Value::as_str).unwrap_or("")) }
                            td class="num" {
                                (format!("{:.1}%", p.and_then(|p| p.get("null_share")?.as_f64()).unwrap_or(0.0) * 100.0))
                            }
                            td class="num" { (count(p.and_then(|p| p.get("distinct")?.as_u64()).unwrap_or(0))) }
                            td { (range(p)) }
                            td { (shape(name, p)) }
                        }
                    }
                }
            }
        }
        h2 { "Personal data" }
        @match &latest_scan {
            Some((job, found)) if found.is_empty() => {
                p { "The latest scan (" a href=(format!("/jobs/{job}")) { "job " (job) } ") found no personal data in any column." }
            }
            Some((job, found)) => {
                p { "The latest scan (" a href=(format!("/jobs/{job}")) { "job " (job) } ") flagged these columns; a synthesis replaces them before the generator learns." }
                div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
                    table {
                        thead { tr { th { "Column" } th { "Holds" } th class="num" { "Confidence" } } }
                        tbody {
                            @for f in found {
                                tr {
                                    th scope="row" { (f.column) }
                                    td { (entity_label(&f.entity)) " " span class="muted" { code { (f.entity) } } }
                                    td class="num" { (format!("{:.0}%", f.confidence * 100.0)) }
                                }
                            }
                        }
                    }
                }
            }
            None => {
                @if let Some(job) = &scanning {
                    p { "A job on this dataset is running (" a href=(format!("/jobs/{job}")) { "watch it" } "); its scan will show here." }
                } @else {
                    p { "Not scanned yet. A scan classifies every column (names, e-mails, phone numbers, identifiers, dates of birth…) and finds personal data inside free text." }
                }
                form method="post" action=(format!("/datasets/{}/scan", d.id)) {
                    (csrf_field(&ctx))
                    button type="submit" class="secondary" { "Scan for personal data" }
                }
            }
        }
        h2 { "First rows" }
        @if preview.is_empty() {
            p class="muted" { "No rows." }
        } @else {
            div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
                table {
                    thead { tr { @for n in &names { th { (n) } } } }
                    tbody {
                        @for row in &preview {
                            tr { @for n in &names { td { (preview_cell(row.get(n), 24)) } } }
                        }
                    }
                }
            }
        }
        h2 { "Privacy budget" }
        section class="card" {
            p {
                "Differentially private jobs on “" (d.name) "” (every version) spend from one budget. "
                "Remaining: ε = " strong { (format!("{:.3}", ledger.remaining.epsilon)) }
                " of " (format!("{:.3}", ledger.budget.epsilon))
                ", δ = " (format!("{:.1e}", ledger.remaining.delta)) " of " (format!("{:.1e}", ledger.budget.delta)) "."
            }
            @if !ledger.charges.is_empty() {
                div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
                    table {
                        thead { tr { th { "When" } th { "Job" } th { "Mechanism" } th class="num" { "ε" } th class="num" { "δ" } } }
                        tbody {
                            @for c in &ledger.charges {
                                tr {
                                    td { (time(c.created_at)) }
                                    td { @if let Some(j) = &c.job_id { a href=(format!("/jobs/{j}")) { (j) } } }
                                    td { (c.mechanism) }
                                    td class="num" { (format!("{:.3}", c.epsilon)) }
                                    td class="num" { (format!("{:.1e}", c.delta)) }
                                }
                            }
                        }
                    }
                }
            }
            form method="post" action=(format!("/datasets/{}/budget", d.id)) class="stack" {
                (csrf_field(&ctx))
                label for="epsilon" { "Total ε" }
                input id="epsilon" name="epsilon" type="number" step="any" min="0" value=(ledger.budget.epsilon);
                label for="delta" { "Total δ" }
                input id="delta" name="delta" type="number" step="any" min="0" max="1" value=(ledger.budget.delta);
                button type="submit" class="secondary" { "Save budget" }
            }
        }
    };
    Ok(layout::page(&ctx, Nav::Datasets, &d.name, body))
}

/// What an entity name means to people.
pub(crate) fn entity_label(entity: &str) -> &'static str {
    use doppel_vocab::entity;
    match entity {
        entity::PERSON => "Person names",
        entity::EMAIL_ADDRESS => "E-mail addresses",
        entity::PHONE_NUMBER => "Phone numbers",
        entity::US_SSN => "US Social Security numbers",
        entity::CREDIT_CARD => "Payment card numbers",
        entity::IBAN_CODE => "Bank account numbers (IBAN)",
        entity::IP_ADDRESS => "IP addresses",
        entity::MAC_ADDRESS => "Device (MAC) addresses",
        entity::URL => "Web addresses",
        entity::DATE_TIME => "Dates tied to a person",
        entity::LOCATION => "Addresses and places",
        entity::US_PASSPORT => "Passport numbers",
        entity::US_DRIVER_LICENSE => "Driver's licence numbers",
        entity::UK_NHS => "NHS numbers",
        entity::UK_NINO => "National Insurance numbers",
        entity::CRYPTO => "Crypto wallet addresses",
        entity::MEDICAL_LICENSE => "Medical licence numbers",
        entity::ID_NUMBER => "Record, case or member numbers",
        entity::MIXED => "Free text with personal data inside",
        _ => "Personal data",
    }
}

/// `POST /datasets/{id}/scan`: a `pii-scan` job on the dataset.
#[handler]
pub(crate) async fn scan(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    req: &Request,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let job = doppel_app::jobs::submit(
        &state,
        &meta(req, &ctx),
        &v,
        doppel_app::jobs::JobRequest {
            pipeline: Some("pii-scan".into()),
            generator: None,
            dataset_id: Some(id),
            model: None,
            overrides: Vec::new(),
            csv: false,
        },
    )
    .await?;
    Ok(see_other(&keys, &format!("/jobs/{}", job.id), None))
}

/// `GET /datasets/{id}/delete`: are you sure?
#[handler]
pub(crate) async fn confirm_delete(
    state: Data<&Arc<AppState>>,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let d = doppel_app::access::dataset(&state, &v, &id, Scope::DatasetsWrite).await?;
    let body = html! {
        div class="narrow" {
            h1 { "Delete “" (d.name) "”?" }
            p { "The stored table and its profile are deleted for good. Jobs that ran on it keep their reports and twins." }
            form method="post" action=(format!("/datasets/{}/delete", d.id)) class="stack" {
                (csrf_field(&ctx))
                button type="submit" class="danger" { "Delete the dataset" }
            }
            p { a href=(format!("/datasets/{}", d.id)) { "Keep it" } }
        }
    };
    Ok(layout::page(&ctx, Nav::Datasets, "Delete dataset", body))
}

/// `POST /datasets/{id}/delete`.
#[handler]
pub(crate) async fn delete(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    req: &Request,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path(id): Path<String>,
) -> PageResult<Response> {
    tables::delete(&state, &meta(req, &ctx), &v, &id).await?;
    Ok(see_other(&keys, "/datasets", Some(Flash::DatasetDeleted)))
}

/// The budget form.
#[derive(Debug, Deserialize)]
pub(crate) struct BudgetForm {
    epsilon: String,
    delta: String,
}

/// `POST /datasets/{id}/budget`.
#[handler]
pub(crate) async fn budget(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    req: &Request,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path(id): Path<String>,
    Form(f): Form<BudgetForm>,
) -> PageResult<Response> {
    let d = doppel_app::access::dataset(&state, &v, &id, Scope::DatasetsWrite).await?;
    let number = |field: &str, text: &str| {
        text.trim()
            .parse::<f64>()
            .map_err(|_| PageError::Core(doppel_platform::Error::invalid(field, "enter a number")))
    };
    doppel_platform::privacy::set_budget(
        &state.db,
        &meta(req, &ctx),
        &v,
        state.settings.privacy,
        &d.owner_id,
        &d.name,
        doppel_platform::privacy::Amount {
            epsilon: number("epsilon", &f.epsilon)?,
            delta: number("delta", &f.delta)?,
        },
    )
    .await?;
    Ok(see_other(
        &keys,
        &format!("/datasets/{}", d.id),
        Some(Flash::BudgetSaved),
    ))
}
