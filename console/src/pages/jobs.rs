//! Synthesis and jobs: the method picker (every method this build has, and
//! plainly why one is missing), the job list, one job's live per-stage
//! progress over server-sent events, cancelling, and the downloads of a
//! finished job. A submission is the core's `jobs::submit` with the shipped
//! pipeline the method maps to and tuning overrides only — the same
//! allow-list, row caps and privacy-budget charge as REST.

use std::sync::Arc;

use doppel_app::AppState;
use doppel_app::jobs::{JobRequest, JobView, SubmitError};
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
}

/// A TOML string literal (job overrides are TOML values).
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The overrides a form asks for, field by field; a field that is not a
/// number says so by name.
fn overrides(f: &SynthForm, synth: &str, dp: bool) -> Result<Vec<String>, (String, String)> {
    let mut out = Vec::new();
    let int = |field: &str, v: &str| -> Result<Option<i64>, (String, String)> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        v.replace([',', '_', ' '], "")
            .parse::<i64>()
            .map(Some)
            .map_err(|_| (field.to_owned(), "enter a whole number".to_owned()))
    };
    let float = |field: &str, v: &str| -> Result<Option<f64>, (String, String)> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        v.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| (field.to_owned(), "enter a number".to_owned()))
    };
    if let Some(r) = int("rows", &f.rows)? {
        out.push(format!("{synth}.rows={r}"));
    }
    if let Some(s) = int("seed", &f.seed)? {
        out.push(format!("{synth}.seed={s}"));
    }
    if let Some(h) = float("holdout", &f.holdout)? {
        out.push(format!("train.holdout={h:?}"));
        out.push(format!("holdout.holdout={h:?}"));
    }
    if dp {
        if let Some(e) = float("epsilon", &f.epsilon)? {
            out.push(format!("{synth}.epsilon={e:?}"));
        }
        if let Some(d) = float("delta", &f.delta)? {
            out.push(format!("{synth}.delta={d:?}"));
        }
    }
    let title = f.title.trim();
    if !title.is_empty() {
        out.push(format!("report.title={}", toml_string(title)));
    }
    Ok(out)
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
    let general = match &error {
        Some((None, m)) => Some(m.as_str()),
        Some((Some(f_), m))
            if !["rows", "seed", "holdout", "epsilon", "delta", "title"]
                .iter()
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
            div data-for-method="privsyn" {
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
    let Some((pipeline, synth)) = methods::pipeline_for(&state, method.id, checks) else {
        return again((None, "That method cannot run on this server.".to_owned()));
    };
    let overrides = match overrides(&f, synth, method.dp) {
        Ok(o) => o,
        Err((field, message)) => return again((Some(field), format!("{message}."))),
    };
    let submitted = doppel_app::jobs::submit(
        &state,
        &meta(req, &ctx),
        &v,
        JobRequest {
            pipeline: pipeline.to_owned(),
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
                    thead { tr { th { "Job" } th { "Pipeline" } th { "State" } th { "Quality" } th { "Privacy" } th { "Started" } } }
                    tbody {
                        @for j in &rows {
                            @let view = JobView::of(j);
                            tr {
                                td { a href=(format!("/jobs/{}", j.id)) { code { (j.id) } } }
                                td { (view.pipeline) }
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

    #[test]
    fn toml_strings_survive_quotes_and_controls() {
        assert_eq!(toml_string("plain"), "\"plain\"");
        assert_eq!(toml_string("a \"b\" \\ c"), "\"a \\\"b\\\" \\\\ c\"");
        assert_eq!(toml_string("x\ny"), "\"x\\u000Ay\"");
    }

    #[test]
    fn forms_become_tuning_overrides_only() {
        let f = SynthForm {
            rows: "1,000".into(),
            seed: "7".into(),
            holdout: "0.25".into(),
            epsilon: "2".into(),
            delta: "1e-9".into(),
            title: "Q3 \"twin\"".into(),
            ..SynthForm::default()
        };
        let o = overrides(&f, "synth", true).unwrap();
        assert_eq!(
            o,
            [
                "synth.rows=1000",
                "synth.seed=7",
                "train.holdout=0.25",
                "holdout.holdout=0.25",
                "synth.epsilon=2.0",
                "synth.delta=1e-9",
                "report.title=\"Q3 \\\"twin\\\"\"",
            ]
        );
        assert!(
            overrides(&f, "synth", false)
                .unwrap()
                .iter()
                .all(|o| !o.contains("epsilon"))
        );
        let bad = SynthForm {
            rows: "many".into(),
            ..SynthForm::default()
        };
        assert_eq!(overrides(&bad, "synth", false).unwrap_err().0, "rows");
    }

    proptest::proptest! {
        /// Whatever a person types as a title, it stays one TOML string.
        #[test]
        fn any_title_is_one_toml_string(title in "\\PC{0,80}") {
            let s = toml_string(&title);
            proptest::prop_assert!(s.starts_with('"') && s.ends_with('"'));
            let inner = &s[1..s.len() - 1];
            let mut escaped = false;
            for c in inner.chars() {
                if escaped { escaped = false; continue; }
                if c == '\\' { escaped = true; continue; }
                proptest::prop_assert!(c != '"', "an unescaped quote in {}", s);
                proptest::prop_assert!(!c.is_control());
            }
        }
    }
}
