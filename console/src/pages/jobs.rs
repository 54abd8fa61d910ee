//! Synthesis and jobs: the method picker (every method this build has, and
//! plainly why one is missing), the job list, one job's live per-stage
//! progress over server-sent events, cancelling, and the downloads of a
//! finished job. A submission is the core's `jobs::submit` with the shipped
//! pipeline the method maps to and tuning overrides only — the same
//! allow-list, row caps and privacy-budget charge as REST.

use std::sync::Arc;

use doppel_app::AppState;
use doppel_app::jobs::{GeneratorRequest, JobRequest, JobView, SubmitError};
use doppel_app::methods::{self, Checks};
use doppel_platform::authz::Scope;
use doppel_platform::jobs::JobState;
use futures::StreamExt;
use maud::{Markup, html};
use poem::http::StatusCode;
use poem::web::sse::{Event, SSE};
use poem::web::{Data, Form, Path, Query};
use poem::{IntoResponse, Request, Response, handler};
use serde::Deserialize;
use serde_json::Value;

use crate::errors::{self, PageResult, capitalise};
use crate::layout::{self, Ctx, Flash, Nav, badge, count, csrf_field, time};
use crate::pages::{Cursor, PAGE, attachment, page_of, pager};
use crate::session::Keys;
use crate::web::{Viewer, meta, see_other};

/// The synthesize form as sent.
#[derive(Debug, Deserialize, Default, Clone)]
pub(crate) struct SynthForm {
    #[serde(default)]
    method: String,
    #[serde(default)]
    checks: String,
    #[serde(default)]
    rows: String,
    #[serde(default)]
    seed: String,
    #[serde(default)]
    holdout: String,
    #[serde(default)]
    epsilon: String,
    #[serde(default)]
    delta: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    format: String,
    /// Every other field: the generators' own settings (`param.<method>.<name>`);
    /// only the chosen method's are read, and only the names its schema has.
    #[serde(flatten)]
    params: std::collections::BTreeMap<String, String>,
}

/// Parameters the form shows as fields of their own (the others of the
/// chosen generator are its "more settings").
const OWN_FIELDS: &[&str] = &["rows", "seed", "epsilon", "delta"];

/// The form name of a generator parameter's field.
fn param_field(method: &str, name: &str) -> String {
    format!("param.{method}.{name}")
}

/// A form field's text as a number, or which field is not one.
fn number<T: std::str::FromStr>(field: &str, v: &str, whole: bool) -> Result<Option<T>, (String, String)> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let cleaned = if whole {
        v.replace([',', '_', ' '], "")
    } else {
        v.to_owned()
    };
    cleaned.parse::<T>().map(Some).map_err(|_| {
        let what = if whole {
            "enter a whole number"
        } else {
            "enter a number"
        };
        (field.to_owned(), what.to_owned())
    })
}

/// The generator parameters a form asks for: its own fields (rows, seed,
/// and ε, δ for a DP method), then the chosen method's further settings.
/// Checked against the generator's schema by the core, as a REST job's are.
fn generator_params(f: &SynthForm, method: &methods::Method) -> Result<Vec<(String, Value)>, (String, String)> {
    let mut out: Vec<(String, Value)> = Vec::new();
    if let Some(r) = number::<i64>("rows", &f.rows, true)? {
        out.push(("rows".into(), r.into()));
    }
    if let Some(s) = number::<i64>("seed", &f.seed, true)? {
        out.push(("seed".into(), s.into()));
    }
    if method.dp {
        for (name, text) in [("epsilon", &f.epsilon), ("delta", &f.delta)] {
            if let Some(x) = number::<f64>(name, text, false)?.filter(|x| x.is_finite()) {
                out.push((name.into(), x.into()));
            }
        }
    }
    for p in method.params.iter().filter(|p| !OWN_FIELDS.contains(&p.name.as_str())) {
        let Some(text) = f.params.get(&param_field(method.id, &p.name)) else {
            continue;
        };
        let value: Value = match p.kind {
            "integer" => match number::<i64>(&p.name, text, true)? {
                Some(i) => i.into(),
                None => continue,
            },
            "number" => match number::<f64>(&p.name, text, false)? {
                Some(x) => serde_json::Number::from_f64(x)
                    .map(Value::Number)
                    .ok_or_else(|| (p.name.clone(), "enter a number".to_owned()))?,
                None => continue,
            },
            "boolean" => match text.as_str() {
                "" => continue,
                "true" => true.into(),
                "false" => false.into(),
                _ => return Err((p.name.clone(), "choose yes or no".to_owned())),
            },
            "strings" => {
                let items: Vec<Value> = text
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(Value::from)
                    .collect();
                if items.is_empty() {
                    continue;
                }
                Value::Array(items)
            }
            _ if text.trim().is_empty() => continue,
            _ => text.trim().into(),
        };
        out.push((p.name.clone(), value));
    }
    Ok(out)
}

/// The pipeline overrides a form asks for besides the generator's
/// parameters: the holdout share and the report title.
fn overrides(f: &SynthForm) -> Result<Vec<String>, (String, String)> {
    use doppel_host::config::{ConfigValue, to_toml};
    let mut out = Vec::new();
    if let Some(h) = number::<f64>("holdout", &f.holdout, false)?.filter(|h| h.is_finite()) {
        out.push(format!("train.holdout={h:?}"));
        out.push(format!("holdout.holdout={h:?}"));
    }
    let title = f.title.trim();
    if !title.is_empty() {
        out.push(format!(
            "report.title={}",
            to_toml(&ConfigValue::String(title.to_owned()))
        ));
    }
    Ok(out)
}

/// One generator parameter as a form field.
fn param_input(method: &str, p: &methods::Param, value: Option<&String>, error: Option<&str>) -> Markup {
    let name = param_field(method, &p.name);
    let id = format!("param-{method}-{}", p.name);
    let value = value.map_or("", String::as_str);
    let default = p.default.as_ref().map(|d| match d {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    });
    let mut hint = p.description.clone();
    match (p.minimum, p.maximum) {
        (Some(lo), Some(hi)) => hint.push_str(&format!(" From {lo} to {hi}.")),
        (Some(lo), None) => hint.push_str(&format!(" At least {lo}.")),
        (None, Some(hi)) => hint.push_str(&format!(" At most {hi}.")),
        (None, None) => {}
    }
    if let Some(d) = &default {
        hint.push_str(&format!(" Default: {d}."));
    }
    let described = if error.is_some() {
        format!("{id}-hint {id}-error")
    } else {
        format!("{id}-hint")
    };
    html! {
        label for=(id) { code { (p.name) } }
        p class="hint" id=(format!("{id}-hint")) { (hint) }
        @match p.kind {
            "boolean" => {
                select id=(id) name=(name) aria-describedby=(described) aria-invalid=[error.map(|_| "true")] {
                    option value="" selected[value.is_empty()] { "Default" }
                    option value="true" selected[value == "true"] { "Yes" }
                    option value="false" selected[value == "false"] { "No" }
                }
            }
            "string" if !p.allowed.is_empty() => {
                select id=(id) name=(name) aria-describedby=(described) aria-invalid=[error.map(|_| "true")] {
                    option value="" selected[value.is_empty()] { "Default" }
                    @for a in &p.allowed {
                        option value=(a) selected[value == a] { (a) }
                    }
                }
            }
            "integer" | "number" => {
                input id=(id) name=(name) type="number" step=(if p.kind == "integer" { "1" } else { "any" })
                    min=[p.minimum] max=[p.maximum] value=(value) placeholder=[default.as_deref()]
                    aria-describedby=(described) aria-invalid=[error.map(|_| "true")];
            }
            _ => {
                input id=(id) name=(name) type="text" maxlength="200" value=(value) placeholder=[default.as_deref()]
                    aria-describedby=(described) aria-invalid=[error.map(|_| "true")];
            }
        }
        (layout::field_error(&id, error))
    }
}

fn synth_page(
    ctx: &Ctx,
    state: &AppState,
    d: &doppel_platform::datasets::Dataset,
    ledger: &doppel_platform::privacy::Ledger,
    f: &SynthForm,
    error: Option<(Option<String>, String)>,
) -> Response {
    let all = methods::methods(state);
    let chosen = if f.method.is_empty() { "cart" } else { f.method.as_str() };
    let rows = d.metadata.get("rows").and_then(Value::as_u64).unwrap_or(0);
    let err_for = |field: &str| -> Option<&str> {
        match &error {
            Some((Some(f_), m)) if f_ == field || f_.ends_with(&format!(".{field}")) => Some(m.as_str()),
            _ => None,
        }
    };
    let chosen_params: Vec<&str> = all
        .iter()
        .find(|m| m.id == chosen)
        .map(|m| m.params.iter().map(|p| p.name.as_str()).collect())
        .unwrap_or_default();
    let general = match &error {
        Some((None, m)) => Some(m.as_str()),
        Some((Some(f_), m))
            if !["rows", "seed", "holdout", "epsilon", "delta", "title"]
                .iter()
                .chain(&chosen_params)
                .any(|k| f_ == k || f_.ends_with(&format!(".{k}"))) =>
        {
            Some(m.as_str())
        }
        _ => None,
    };
    let number = |id: &str, label: &str, hint: &str, value: &str, placeholder: &str, step: &str| -> Markup {
        let e = err_for(id);
        html! {
            label for=(id) { (label) }
            p class="hint" id=(format!("{id}-hint")) { (hint) }
            input id=(id) name=(id) type="number" step=(step) value=(value) placeholder=(placeholder)
                aria-describedby=(if e.is_some() { format!("{id}-hint {id}-error") } else { format!("{id}-hint") })
                aria-invalid=[e.map(|_| "true")];
            (layout::field_error(id, e))
        }
    };
    let body = html! {
        h1 { "Synthesize “" (d.name) "”" }
        (layout::alert(general))
        form method="post" action=(format!("/datasets/{}/synthesize", d.id)) class="stack" data-method-picker {
            (csrf_field(ctx))
            fieldset {
                legend { "Method" }
                @for m in &all {
                    @let id = format!("method-{}", m.id);
                    label class="choice" for=(id) {
                        input type="radio" name="method" id=(id) value=(m.id)
                            checked[m.id == chosen] disabled[m.unavailable.is_some()]
                            aria-describedby=(format!("{id}-about"));
                        span {
                            strong { (m.label) }
                            @if m.dp { " " span class="badge good" { "differentially private" } }
                            br;
                            span class="hint" id=(format!("{id}-about")) {
                                (m.summary)
                                @if let Some(why) = &m.unavailable {
                                    br; strong { "Not available: " } (why) "."
                                }
                            }
                        }
                    }
                }
            }
            fieldset data-for-method="copula" {
                legend { "Compliance checks" }
                @for (value, label) in [("both", "HIPAA Safe Harbor and GDPR"), ("hipaa", "HIPAA Safe Harbor"), ("gdpr", "GDPR")] {
                    @let id = format!("checks-{value}");
                    label class="choice" for=(id) {
                        input type="radio" name="checks" id=(id) value=(value)
                            checked[(f.checks.is_empty() && value == "both") || f.checks == value];
                        span { (label) }
                    }
                }
                p class="hint" { "The other methods are checked against both." }
            }
            div data-for-method=(all.iter().filter(|m| m.dp).map(|m| m.id).collect::<Vec<_>>().join(" ")) {
                p class="note" {
                    "This dataset has ε = " (format!("{:.3}", ledger.remaining.epsilon))
                    " and δ = " (format!("{:.1e}", ledger.remaining.delta))
                    " of privacy budget left (every version of “" (d.name) "”). The job is refused before it runs if it would spend more."
                }
                (number("epsilon", "ε (epsilon)", "Smaller is more private and less faithful; 1 is a common choice.",
                    if f.epsilon.is_empty() { "1" } else { &f.epsilon }, "1", "any"))
                (number("delta", "δ (delta)", "The chance the guarantee fails; far below 1 / rows.",
                    if f.delta.is_empty() { "1e-9" } else { &f.delta }, "1e-9", "any"))
            }
            @for m in all.iter().filter(|m| m.unavailable.is_none()) {
                @let extra: Vec<&methods::Param> = m.params.iter().filter(|p| !OWN_FIELDS.contains(&p.name.as_str())).collect();
                @if !extra.is_empty() {
                    @let mine = m.id == chosen;
                    details class="more" data-for-method=(m.id)
                        open[mine && extra.iter().any(|p| err_for(&p.name).is_some())] {
                        summary { "More " (m.label) " settings" }
                        p class="hint" { "Leave a field empty for its default. A job may set only these; the rest stay as the shipped pipeline has them." }
                        @for p in &extra {
                            (param_input(m.id, p, f.params.get(&param_field(m.id, &p.name)),
                                if mine { err_for(&p.name) } else { None }))
                        }
                    }
                }
            }
            (number("rows", "Rows", &format!("How many synthetic rows; empty: as many as the dataset ({}). At most {} on this server.",
                count(rows), count(state.settings.limits.max_synthetic_rows)), &f.rows, &rows.to_string(), "1"))
            (number("seed", "Seed", "The same seed, data and settings give the same twin.",
                if f.seed.is_empty() { "42" } else { &f.seed }, "42", "1"))
            (number("holdout", "Holdout share", "Real rows set aside (never learned from) to check the twin does not copy the rows it learned.",
                if f.holdout.is_empty() { "0.2" } else { &f.holdout }, "0.2", "any"))
            label for="title" { "Report title (optional)" }
            input id="title" name="title" type="text" maxlength="120" value=(f.title)
                aria-invalid=[err_for("title").map(|_| "true")];
            (layout::field_error("title", err_for("title")))
            fieldset {
                legend { "Twin file format" }
                @for (value, label) in [("parquet", "Parquet (keeps every type)"), ("csv", "CSV")] {
                    @let id = format!("format-{value}");
                    label class="choice" for=(id) {
                        input type="radio" name="format" id=(id) value=(value)
                            checked[(f.format.is_empty() && value == "parquet") || f.format == value];
                        span { (label) }
                    }
                }
            }
            button type="submit" { "Start" }
        }
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    layout::page_with_status(ctx, Nav::Datasets, "Synthesize", status, body)
}

/// `GET /datasets/{id}/synthesize`.
#[handler]
pub(crate) async fn synthesize_form(
    state: Data<&Arc<AppState>>,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let d = doppel_app::access::dataset(&state, &v, &id, Scope::DatasetsRead).await?;
    let ledger = doppel_platform::privacy::ledger(&state.db, state.settings.privacy, &d.owner_id, &d.name).await?;
    Ok(synth_page(&ctx, &state, &d, &ledger, &SynthForm::default(), None))
}

/// `POST /datasets/{id}/synthesize`.
#[handler]
pub(crate) async fn synthesize(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    req: &Request,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path(id): Path<String>,
    Form(f): Form<SynthForm>,
) -> PageResult<Response> {
    let d = doppel_app::access::dataset(&state, &v, &id, Scope::DatasetsRead).await?;
    let ledger = doppel_platform::privacy::ledger(&state.db, state.settings.privacy, &d.owner_id, &d.name).await?;
    let again = |error: (Option<String>, String)| Ok(synth_page(&ctx, &state, &d, &ledger, &f, Some(error)));
    let method = methods::methods(&state).into_iter().find(|m| m.id == f.method);
    let Some(method) = method else {
        return again((None, "Choose a method.".to_owned()));
    };
    if let Some(why) = &method.unavailable {
        return again((None, format!("{} is not available here: {why}.", method.label)));
    }
    let checks = Checks::parse(if f.checks.is_empty() { "both" } else { &f.checks }).unwrap_or(Checks::Both);
    let Some((pipeline, _)) = methods::pipeline_for(&state, method.id, checks) else {
        return again((None, "That method cannot run on this server.".to_owned()));
    };
    let (params, overrides) = match generator_params(&f, &method).and_then(|p| Ok((p, overrides(&f)?))) {
        Ok(both) => both,
        Err((field, message)) => return again((Some(field), format!("{message}."))),
    };
    let submitted = doppel_app::jobs::submit(
        &state,
        &meta(req, &ctx),
        &v,
        JobRequest {
            pipeline: Some(pipeline.to_owned()),
            generator: Some(GeneratorRequest {
                name: method.id.to_owned(),
                params,
            }),
            dataset_id: Some(d.id.clone()),
            model: None,
            overrides,
            csv: f.format == "csv",
        },
    )
    .await;
    match submitted {
        Ok(job) => Ok(see_other(&keys, &format!("/jobs/{}", job.id), None)),
        Err(SubmitError::NotAllowed { field, message }) => {
            // `synth.rows` in the core's words is the Rows field here.
            let key = field.rsplit('.').next().unwrap_or(&field).to_owned();
            again((Some(key), format!("{}.", capitalise(&message))))
        }
        Err(SubmitError::InvalidPipeline(problems)) => again((None, format!("The settings were refused: {problems}"))),
        Err(SubmitError::Platform(e)) => {
            let (status, message) = errors::explain(&e);
            if status.is_server_error() {
                return Err(e.into());
            }
            let field = match &e {
                doppel_platform::Error::Invalid { field, .. } => {
                    Some(field.rsplit('.').next().unwrap_or(field).to_owned())
                }
                _ => None,
            };
            again((field, message))
        }
    }
}

/// `GET /jobs`.
#[handler]
pub(crate) async fn list(
    state: Data<&Arc<AppState>>,
    ctx: Ctx,
    Viewer(v): Viewer,
    Query(c): Query<Cursor>,
) -> PageResult<Response> {
    let rows = doppel_app::access::jobs(&state, &v, c.after.as_deref(), PAGE + 1).await?;
    let (rows, next) = page_of(rows, PAGE, |j| j.id.clone());
    let body = html! {
        (layout::heading("Jobs", html! {}))
        @if rows.is_empty() && c.after.is_none() {
            (layout::empty("No jobs yet", "Open a dataset and choose Synthesize to make its twin.", Some(("/datasets", "Go to datasets"))))
        } @else {
            div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
                table {
                    caption { "Your jobs, newest first" }
                    thead { tr { th { "Job" } th { "Pipeline" } th { "Generator" } th { "State" } th { "Quality" } th { "Privacy" } th { "Started" } } }
                    tbody {
                        @for j in &rows {
                            @let view = JobView::of(j);
                            tr {
                                td { a href=(format!("/jobs/{}", j.id)) { code { (j.id) } } }
                                td { (view.pipeline) }
                                td { (view.generator.clone().unwrap_or_default()) }
                                td { (badge(&view.state)) }
                                td { (score(&view.summary, "quality.Quality Score", 4)) }
                                td { (score(&view.summary, "privacy.Privacy Score", 1)) }
                                td { (time(j.created_at)) }
                            }
                        }
                    }
                }
            }
            (pager("/jobs", next.as_deref()))
        }
    };
    Ok(layout::page(&ctx, Nav::Jobs, "Jobs", body))
}

fn score(summary: &Value, key: &str, digits: usize) -> String {
    summary
        .get(key)
        .and_then(Value::as_f64)
        .map_or_else(String::new, |x| format!("{x:.digits$}"))
}

/// `GET /jobs/{id}`.
#[handler]
pub(crate) async fn show(
    state: Data<&Arc<AppState>>,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let job = doppel_app::access::job(&state, &v, &id, Scope::DatasetsRead).await?;
    let view = JobView::of(&job);
    let running = !job.state.is_terminal();
    let body = html! {
        (layout::heading(&format!("Job {}", job.id), html! {
            @if running {
                form method="post" action=(format!("/jobs/{}/cancel", job.id)) class="inline" data-confirm="Stop this job?" {
                    (csrf_field(&ctx))
                    button type="submit" class="danger" { "Cancel" }
                }
            }
            @if job.state == JobState::Succeeded {
                a class="button" href=(format!("/jobs/{}/report", job.id)) { "Open the report" }
            }
        }))
        section class="card" data-job-events=[running.then(|| format!("/jobs/{}/events", job.id))] {
            dl class="facts" {
                dt { "State" } dd { span data-job-state { (badge(&view.state)) } }
                dt { "Pipeline" } dd { (view.pipeline) }
                @if let Some(g) = &view.generator {
                    dt { "Generator" } dd { (g) }
                }
                @if let Some(ds) = &view.dataset_id {
                    dt { "Dataset" } dd { a href=(format!("/datasets/{ds}")) { code { (ds) } } }
                }
                dt { "Submitted" } dd { (time(job.created_at)) }
                @if let Some(t) = job.finished_at { dt { "Finished" } dd { (time(t)) } }
                @if job.attempt > 1 { dt { "Attempt" } dd { (job.attempt) } }
            }
            @if running {
                h2 { "Progress" }
                progress max="100" value=(format!("{:.0}", job.progress * 100.0)) aria-label="Job progress" {}
                p data-job-message role="status" aria-live="polite" {
                    (job.message.clone().unwrap_or_else(|| if job.state == JobState::Queued {
                        "Waiting for a worker…".to_owned()
                    } else {
                        "Starting…".to_owned()
                    }))
                }
                @if job.cancel_requested { p class="note" { "Cancelling at the next stage boundary…" } }
            }
            @if !job.steps.is_empty() {
                h2 { "Stages" }
                ol class="stages" {
                    @for s in &job.steps {
                        li data-step=(s.name) {
                            span class="stage-name" { (s.name) }
                            span data-step-detail class="muted" { (s.detail.clone().unwrap_or_default()) }
                            (badge(&s.state))
                        }
                    }
                }
            }
            @if job.state == JobState::Failed {
                div class="alert" role="alert" {
                    strong { "The job failed" }
                    @if let Some(code) = &job.error_code { " (" code { (code) } ")" }
                    ": " (job.error.clone().unwrap_or_default())
                }
            }
            @if job.state == JobState::Cancelled {
                p class="note" { "The job was cancelled; nothing was kept." }
            }
        }
        @if job.state == JobState::Succeeded {
            @let files = job.manifest.as_ref().map(|m| m.files.clone()).unwrap_or_default();
            h2 { "Results" }
            div class="scores" {
                div class="score" {
                    span class="label" { "Quality" }
                    div class="value" { (score(&view.summary, "quality.Quality Score", 3)) }
                    p { "How closely the twin follows the real columns and their relationships (1 is identical)." }
                }
                div class="score" {
                    span class="label" { "Privacy" }
                    div class="value" { (score(&view.summary, "privacy.Privacy Score", 1)) }
                    p { "0–100; below 40 a twin may not be sold. The report explains each part." }
                }
            }
            h2 { "Downloads" }
            ul class="plain" {
                @for f in &files {
                    li {
                        a href=(format!("/jobs/{}/files/{}", job.id, f.name)) download { (f.name) }
                        " " span class="muted" { (layout::bytes(i64::try_from(f.size).unwrap_or(i64::MAX))) }
                    }
                    @if f.name.ends_with(".parquet") && !f.name.starts_with("model-") {
                        li {
                            a href=(format!("/jobs/{}/files/{}.csv", job.id, f.name.trim_end_matches(".parquet"))) download {
                                (f.name.trim_end_matches(".parquet")) ".csv"
                            }
                            " " span class="muted" { "converted from Parquet as it downloads" }
                        }
                    }
                }
            }
            p {
                a class="button secondary" href=(format!("/selling/new?job={}", job.id)) { "List this twin on the marketplace" }
            }
        }
    };
    Ok(layout::page(&ctx, Nav::Jobs, &format!("Job {}", job.id), body))
}

/// `GET /jobs/{id}/events`: the job as server-sent events (JSON per change)
/// until it ends.
#[handler]
pub(crate) async fn events(
    state: Data<&Arc<AppState>>,
    Viewer(v): Viewer,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let job = doppel_app::access::job(&state, &v, &id, Scope::DatasetsRead).await?;
    let stream = doppel_app::jobs::watch(state.queue.clone(), job)
        .map(|j| Event::message(serde_json::to_string(&JobView::of(&j)).unwrap_or_default()));
    Ok(SSE::new(stream)
        .keep_alive(std::time::Duration::from_secs(15))
        .into_response())
}

/// `POST /jobs/{id}/cancel`.
#[handler]
pub(crate) async fn cancel(
    state: Data<&Arc<AppState>>,
    keys: Data<&Keys>,
    req: &Request,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let job = doppel_app::access::job(&state, &v, &id, Scope::JobsRun).await?;
    state.queue.cancel(&meta(req, &ctx), &v, &job.id).await?;
    Ok(see_other(
        &keys,
        &format!("/jobs/{}", job.id),
        Some(Flash::JobCancelled),
    ))
}

/// `GET /jobs/{id}/files/{name}`: an output of a succeeded job, or
/// `<table>.csv` converted from its Parquet output as it streams.
#[handler]
pub(crate) async fn download(
    state: Data<&Arc<AppState>>,
    Viewer(v): Viewer,
    Path((id, name)): Path<(String, String)>,
) -> PageResult<Response> {
    let job = doppel_app::access::job(&state, &v, &id, Scope::DatasetsRead).await?;
    let file_name = format!("{}-{name}", job.id);
    match doppel_app::listings::output(&job, &name) {
        Ok(file) => attachment(&state, &file.key, false, &file.media_type, &file_name).await,
        Err(doppel_platform::Error::NotFound(_)) if name.ends_with(".csv") => {
            let parquet = format!("{}.parquet", name.trim_end_matches(".csv"));
            let file = doppel_app::listings::output(&job, &parquet)?;
            attachment(&state, &file.key, true, "text/csv", &file_name).await
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(dp: bool, params: &[(&str, &'static str)]) -> methods::Method {
        methods::Method {
            id: "m",
            label: "M",
            summary: "",
            dp,
            choose_checks: false,
            unavailable: None,
            pipeline: "quickstart",
            params: params
                .iter()
                .map(|&(name, kind)| methods::Param {
                    name: name.to_owned(),
                    description: String::new(),
                    kind,
                    default: None,
                    allowed: Vec::new(),
                    minimum: None,
                    maximum: None,
                })
                .collect(),
        }
    }

    #[test]
    fn forms_become_generator_parameters_and_tuning_overrides_only() {
        let f = SynthForm {
            rows: "1,000".into(),
            seed: "7".into(),
            holdout: "0.25".into(),
            epsilon: "2".into(),
            delta: "1e-9".into(),
            title: "Q3 \"twin\"".into(),
            params: [
                ("param.m.epochs", "12"),
                ("param.m.save_model", "true"),
                ("param.m.columns", "a, b,"),
                ("param.m.mode", ""),
                // Another method's field, and a name the schema lacks, are
                // never read.
                ("param.other.epochs", "3"),
                ("param.m.path", "/etc/passwd"),
                ("csrf", "token"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            ..SynthForm::default()
        };
        let m = method(
            true,
            &[
                ("rows", "integer"),
                ("epochs", "integer"),
                ("save_model", "boolean"),
                ("columns", "strings"),
                ("mode", "string"),
            ],
        );
        let params = generator_params(&f, &m).unwrap();
        assert_eq!(
            params,
            [
                ("rows".to_owned(), serde_json::json!(1000)),
                ("seed".to_owned(), serde_json::json!(7)),
                ("epsilon".to_owned(), serde_json::json!(2.0)),
                ("delta".to_owned(), serde_json::json!(1e-9)),
                ("epochs".to_owned(), serde_json::json!(12)),
                ("save_model".to_owned(), serde_json::json!(true)),
                ("columns".to_owned(), serde_json::json!(["a", "b"])),
            ]
        );
        assert!(
            generator_params(&f, &method(false, &[]))
                .unwrap()
                .iter()
                .all(|(k, _)| k != "epsilon"),
            "ε only for a DP method"
        );
        assert_eq!(
            overrides(&f).unwrap(),
            [
                "train.holdout=0.25",
                "holdout.holdout=0.25",
                // A TOML literal string: the quotes need no escapes.
                "report.title='Q3 \"twin\"'",
            ]
        );
        let bad = SynthForm {
            rows: "many".into(),
            ..SynthForm::default()
        };
        assert_eq!(generator_params(&bad, &m).unwrap_err().0, "rows");
        let bad = SynthForm {
            params: [("param.m.epochs".to_owned(), "lots".to_owned())].into_iter().collect(),
            ..SynthForm::default()
        };
        assert_eq!(generator_params(&bad, &m).unwrap_err().0, "epochs");
    }

    #[test]
    fn the_form_reads_generator_fields_from_a_posted_body() {
        let f: SynthForm = serde_urlencoded::from_str("method=ctgan&rows=10&param.ctgan.epochs=5&csrf=x").unwrap();
        assert_eq!((f.method.as_str(), f.rows.as_str()), ("ctgan", "10"));
        assert_eq!(f.params.get("param.ctgan.epochs").map(String::as_str), Some("5"));
    }

    proptest::proptest! {
        /// Whatever a person types as a title, it stays one TOML string.
        #[test]
        fn any_title_is_one_toml_string(title in "\\PC{0,80}") {
            let f = SynthForm { title: title.clone(), ..SynthForm::default() };
            let o = overrides(&f).unwrap();
            let trimmed = title.trim();
            if trimmed.is_empty() {
                proptest::prop_assert!(o.is_empty());
            } else {
                let text = "version = 1\nname = \"p\"\n[stages.report]\nuses = \"builtin:report-pdf\"\n";
                let mut spec = doppel_host::spec::PipelineSpec::parse(doppel_host::spec::SourceFile::new("p.toml", text)).unwrap();
                spec.set(&o[0]).unwrap();
                let (_, v) = spec.stage("report").unwrap().with.iter().find(|(k, _)| k.value == "title").unwrap();
                proptest::prop_assert_eq!(&v.value, &doppel_host::config::ConfigValue::String(trimmed.to_owned()));
            }
        }
    }
}
