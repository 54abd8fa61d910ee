//! A job's report as a page: the headline scores and what they mean, the
//! personal data found and what was done to it, real-vs-synthetic charts per
//! column, association heatmaps (real, synthetic, difference), every privacy
//! metric explained, the GDPR/HIPAA checklist with evidence and remedies,
//! how the generator modelled each column, and the downloads. Everything
//! comes from the job's typed `report.json`; the charts draw the numbers the
//! PDF draws.

use std::sync::Arc;

use doppel_app::AppState;
use doppel_host::report::Report;
use doppel_platform::authz::Scope;
use maud::{Markup, html};
use poem::web::{Data, Path};
use poem::{Response, handler};
use serde_json::Value;

use crate::charts;
use crate::errors::PageResult;
use crate::layout::{self, Ctx, Nav, badge, count};
use crate::pages::datasets::entity_label;
use crate::web::Viewer;

/// What a metric measures, in a sentence.
fn explain(name: &str) -> &'static str {
    match name {
        "Privacy Score" => {
            "The overall privacy score, 0–100: the weakest of the checks below, capped when real personal or rare values were released."
        }
        "DCRBaselineProtection" => {
            "How far synthetic rows are from the real rows they learned from, compared with random rows (1: as far as random)."
        }
        "DCROverfittingProtection" => {
            "Whether synthetic rows sit closer to the training rows than to real rows set aside (1: no sign of memorising)."
        }
        "DCRHoldoutProtection" => {
            "Whether synthetic rows lie nearer to the training rows than real people the generator never saw do (1: no nearer; 0: copies)."
        }
        "NewRowSynthesis" => "The share of synthetic rows that are not a copy of a real row.",
        "DisclosureProtection" => {
            "How hard it is to infer a sensitive attribute of a real person from the twin (CAP attack; 1: no better than guessing)."
        }
        "ExactCopies" | "ExactCopyRate" => "Synthetic rows identical to a real row.",
        "RareValueCopyRate" => {
            "The share of a column's released values that are rare real values (held by a few real rows); any copy caps the score."
        }
        "PiiCopyRate" => "The share of released personal values that are real ones.",
        "Quality Score" => {
            "The overall fidelity, 0–1: the mean of column shapes and column-pair trends (SDMetrics' QualityReport)."
        }
        "Column Shapes" => {
            "How closely each column's distribution matches (KS complement for numbers, total-variation complement for categories)."
        }
        "Column Pair Trends" => {
            "How well relationships between pairs of columns are kept (correlation and contingency similarity)."
        }
        _ => "",
    }
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "n/a".to_owned(), |x| format!("{x:.digits$}"))
}

fn stage<'a>(r: &'a Report, id: &str) -> Option<&'a Value> {
    r.stages
        .iter()
        .find(|s| s.get("id").and_then(Value::as_str) == Some(id))
}

fn stages_of_kind<'a>(r: &'a Report, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    r.stages
        .iter()
        .filter(move |s| s.get("kind").and_then(Value::as_str) == Some(kind))
}

fn metrics(s: &Value) -> Vec<&Value> {
    s.get("result")
        .and_then(|r| r.get("metrics"))
        .and_then(Value::as_array)
        .map(|m| m.iter().collect())
        .unwrap_or_default()
}

fn level(score: Option<f64>) -> &'static str {
    score.map_or("not measured", doppel_host::builtins::privacy::level)
}

fn headline(r: &Report) -> Markup {
    let privacy = r.summary.privacy_score;
    let synth_rows: usize = r.outputs.values().map(|o| o.rows).sum();
    html! {
        div class="scores" {
            div class="score" {
                span class="label" { "Quality" }
                div class="value" { (fmt(r.summary.quality_score, 3)) }
                p { "How faithful the twin is: 1 means every column and every pair of columns looks the same as in the real table." }
            }
            div class="score" {
                span class="label" { "Privacy" }
                div class="value" { (fmt(privacy, 1)) " " (badge(level(privacy))) }
                p { "How safe the twin is to share, 0–100. Below 40 it may not be sold on the marketplace." }
            }
            div class="score" {
                span class="label" { "Rows" }
                div class="value" { (count(synth_rows as u64)) }
                p {
                    "synthetic rows"
                    @if let Some(i) = &r.input { ", from " (count(i.rows as u64)) " real rows × " (i.columns) " columns" }
                    "."
                }
            }
            div class="score" {
                span class="label" { "Compliance" }
                div class="value" {
                    @if r.summary.failed_rules.is_empty() { (badge("pass")) } @else { (badge("fail")) }
                }
                p {
                    @if r.summary.failed_rules.is_empty() {
                        "No GDPR or HIPAA check failed."
                    } @else {
                        (r.summary.failed_rules.len()) " check(s) failed; see the checklist below."
                    }
                }
            }
        }
    }
}

fn personal_data(r: &Report) -> Markup {
    let actions: Vec<&Value> = stages_of_kind(r, "protect")
        .filter_map(|s| s.get("result")?.get("protected")?.as_array())
        .flatten()
        .collect();
    let found: Vec<_> = r.summary.pii_columns.iter().filter(|c| c.stage == "pii").collect();
    let released: Vec<_> = r.summary.pii_columns.iter().filter(|c| c.stage != "pii").collect();
    html! {
        h2 id="personal-data" { "Personal data" }
        @if found.is_empty() {
            p { "The scan of the real table found no personal data." }
        } @else {
            div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
                table {
                    caption { "Found in the real table, and what was done before the generator learned" }
                    thead { tr { th { "Column" } th { "Holds" } th class="num" { "Confidence" } th { "Done" } th class="num" { "Cells changed" } } }
                    tbody {
                        @for f in &found {
                            @let act = actions.iter().find(|a| a.get("column").and_then(Value::as_str) == Some(f.column.as_str()));
                            tr {
                                th scope="row" { (f.column) }
                                td { (entity_label(&f.entity)) }
                                td class="num" { (format!("{:.0}%", f.confidence * 100.0)) }
                                td { (act.and_then(|a| a.get("action")?.as_str()).unwrap_or("kept out by the release rule")) }
                                td class="num" { (act.and_then(|a| a.get("changed")?.as_u64()).map(count).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
        @if !released.is_empty() {
            div class="note" {
                "A scan of the twin still reads these columns as personal data (they hold generated values of that kind): "
                @for (i, c) in released.iter().enumerate() {
                    @if i > 0 { ", " }
                    (c.column) " (" (entity_label(&c.entity)) ")"
                }
                ". The privacy metrics below measure whether any real value was released."
            }
        }
    }
}

fn distributions(r: &Report) -> Markup {
    let Some(c) = &r.charts else {
        return html! { p class="muted" { "This report has no charts (its pipeline has no report stage)." } };
    };
    html! {
        h2 id="distributions" { "Columns: real and synthetic" }
        div class="legend" aria-hidden="true" {
            span { span class="swatch real" {} "real (" (c.real) ")" }
            span { span class="swatch synth" {} "synthetic (" (c.synthetic) ")" }
        }
        div class="charts" {
            @for d in &c.distributions {
                figure {
                    figcaption { (d.column) }
                    (layout::svg(charts::paired_bars(&d.column, &d.labels, &d.real, &d.synthetic, d.numeric)))
                }
            }
        }
    }
}

fn heatmaps(r: &Report) -> Markup {
    let Some(a) = r.charts.as_ref().and_then(|c| c.associations.as_ref()) else {
        return html! {};
    };
    let plain = |m: &[Vec<Option<f64>>]| -> Vec<Vec<f64>> {
        m.iter()
            .map(|row| row.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
            .collect()
    };
    let (real, synth) = (plain(&a.real), plain(&a.synthetic));
    let diff: Vec<Vec<f64>> = real
        .iter()
        .zip(&synth)
        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| p - q).collect())
        .collect();
    html! {
        h2 id="associations" { "How columns relate" }
        p class="hint" {
            "|Pearson correlation| for two numeric columns, Cramér's V otherwise; darker is stronger. "
            "The difference is real minus synthetic: blue where the twin's link is weaker, orange where stronger."
        }
        div class="charts" {
            figure { figcaption { "Real" } (layout::svg(charts::heatmap("Associations in the real table", &a.columns, &real, false))) }
            figure { figcaption { "Synthetic" } (layout::svg(charts::heatmap("Associations in the twin", &a.columns, &synth, false))) }
            figure { figcaption { "Difference" } (layout::svg(charts::heatmap("Real minus synthetic associations", &a.columns, &diff, true))) }
        }
    }
}

fn quality_table(r: &Report) -> Markup {
    let rows: Vec<(&str, &str, f64)> = stages_of_kind(r, "metric")
        .filter(|s| {
            s.get("uses")
                .and_then(Value::as_str)
                .is_some_and(|u| !u.starts_with("builtin:"))
        })
        .flat_map(metrics)
        .filter_map(|m| {
            let cols = m.get("columns")?.as_array()?;
            if cols.len() != 1 {
                return None;
            }
            Some((cols[0].as_str()?, m.get("name")?.as_str()?, m.get("value")?.as_f64()?))
        })
        .collect();
    html! {
        @if !rows.is_empty() {
            details {
                summary { "Column shape scores (" (rows.len()) ")" }
                div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
                    table {
                        thead { tr { th { "Column" } th { "Metric" } th class="num" { "Score" } } }
                        tbody {
                            @for (c, n, v) in &rows {
                                tr { th scope="row" { (c) } td { (n) } td class="num" { (format!("{v:.4}")) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn privacy(r: &Report) -> Markup {
    let Some(s) =
        stages_of_kind(r, "metric").find(|s| s.get("uses").and_then(Value::as_str) == Some("builtin:privacy"))
    else {
        return html! { p class="muted" { "No privacy stage ran." } };
    };
    let all = metrics(s);
    let overall: Vec<&Value> = all
        .iter()
        .copied()
        .filter(|m| m.get("columns").and_then(Value::as_array).is_some_and(Vec::is_empty))
        .collect();
    let per_column: Vec<&Value> = all
        .iter()
        .copied()
        .filter(|m| {
            m.get("columns")
                .and_then(Value::as_array)
                .is_some_and(|c| !c.is_empty())
                && m.get("value").and_then(Value::as_f64).is_some_and(|v| v > 0.0)
        })
        .collect();
    html! {
        h2 id="privacy" { "Privacy" }
        div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
            table {
                thead { tr { th { "Check" } th class="num" { "Value" } th { "What it means" } } }
                tbody {
                    @for m in &overall {
                        @let name = m.get("name").and_then(Value::as_str).unwrap_or("");
                        tr {
                            th scope="row" { (name) }
                            td class="num" { (fmt(m.get("value").and_then(Value::as_f64), 3)) }
                            td {
                                (explain(name))
                                @if let Some(n) = m.get("note").and_then(Value::as_str) { " " span class="muted" { "(" (n) ")" } }
                            }
                        }
                    }
                }
            }
        }
        @if !per_column.is_empty() {
            div class="alert" {
                "Real values were released in these columns: "
                @for (i, m) in per_column.iter().enumerate() {
                    @if i > 0 { ", " }
                    (m.get("columns").and_then(|c| c.get(0)).and_then(Value::as_str).unwrap_or(""))
                    " (" (m.get("name").and_then(Value::as_str).unwrap_or("")) " "
                    (fmt(m.get("value").and_then(Value::as_f64), 3)) ")"
                }
                ". The privacy score is capped; do not share this twin."
            }
        }
    }
}

fn checklist(r: &Report) -> Markup {
    let rules: Vec<(&str, &Value)> = stages_of_kind(r, "rule")
        .filter_map(|s| Some((s.get("id")?.as_str()?, s.get("result")?.get("verdicts")?)))
        .collect();
    html! {
        h2 id="compliance" { "Compliance checklist" }
        @if rules.is_empty() {
            p class="muted" { "No compliance rules ran." }
        }
        @for (stage, verdicts) in &rules {
            h3 { (stage.to_uppercase()) }
            div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
                table {
                    thead { tr { th { "Check" } th { "Result" } th { "Evidence" } th { "What to do" } } }
                    tbody {
                        @for v in verdicts.as_array().into_iter().flatten() {
                            @let status = v.get("status").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase().replace('_', " ");
                            tr {
                                th scope="row" {
                                    (v.get("title").and_then(Value::as_str).unwrap_or(""))
                                    br;
                                    span class="muted" { (v.get("reference").and_then(Value::as_str).unwrap_or("")) }
                                }
                                td { (badge(&status)) }
                                td { (v.get("evidence").and_then(Value::as_str).unwrap_or("")) }
                                td { (v.get("remediation").and_then(Value::as_str).unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn model(r: &Report) -> Markup {
    let Some(m) = stages_of_kind(r, "generator").find_map(|s| s.get("result")?.get("model")) else {
        return html! {};
    };
    html! {
        h2 id="model" { "How the twin was made" }
        section class="card" {
            dl class="facts" {
                dt { "Generator" } dd { (m.get("generator").and_then(Value::as_str).unwrap_or("")) }
                dt { "Seed" } dd { (m.get("seed").and_then(Value::as_u64).unwrap_or(0)) }
                dt { "Fit" } dd { (fmt(m.get("fit_ms").and_then(Value::as_f64), 0)) " ms" }
                dt { "Sample" } dd { (fmt(m.get("sample_ms").and_then(Value::as_f64), 0)) " ms" }
                @if let Some(p) = m.get("privacy") {
                    dt { "Privacy spent" } dd {
                        "ε = " (fmt(p.get("epsilon").and_then(Value::as_f64), 3))
                        ", δ = " (fmt(p.get("delta").and_then(Value::as_f64), 12))
                    }
                }
            }
            @if let Some(notes) = m.get("notes").and_then(Value::as_array).filter(|n| !n.is_empty()) {
                details {
                    summary { "Notes from the fit (" (notes.len()) ")" }
                    ul { @for n in notes { li { (n.as_str().unwrap_or("")) } } }
                }
            }
            @if let Some(cols) = m.get("columns").and_then(Value::as_array) {
                details {
                    summary { "Per column" }
                    div class="table-wrap" tabindex="0" role="region" aria-label="Table (scrolls sideways)" {
                        table {
                            thead { tr { th { "Column" } th { "Meaning" } th { "Model" } } }
                            tbody {
                                @for c in cols {
                                    tr {
                                        th scope="row" { (c.get("column").and_then(Value::as_str).unwrap_or("")) }
                                        td { (c.get("semantic_type").and_then(Value::as_str).unwrap_or("")) }
                                        td { (c.get("model").and_then(Value::as_str).unwrap_or("")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /jobs/{id}/report`.
#[handler]
pub(crate) async fn show(
    state: Data<&Arc<AppState>>,
    ctx: Ctx,
    Viewer(v): Viewer,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let job = doppel_app::access::job(&state, &v, &id, Scope::DatasetsRead).await?;
    let r = doppel_app::jobs::report(&state, &job).await?;
    let files = job.manifest.as_ref().map(|m| m.files.clone()).unwrap_or_default();
    let twin = files
        .iter()
        .find(|f| f.name.starts_with("synthetic") && !f.name.ends_with(".json"))
        .map(|f| f.name.clone());
    let body = html! {
        (layout::heading(&format!("Report: {}", r.pipeline.name), html! {
            @if files.iter().any(|f| f.name == "report.pdf") {
                a class="button" href=(format!("/jobs/{}/files/report.pdf", job.id)) download { "PDF" }
            }
            a class="button secondary" href=(format!("/jobs/{}/files/report.json", job.id)) download { "report.json" }
            @if let Some(t) = &twin {
                a class="button secondary" href=(format!("/jobs/{}/files/{t}", job.id)) download { "Twin (" (t.rsplit('.').next().unwrap_or("")) ")" }
                @if t.ends_with(".parquet") {
                    a class="button secondary" href=(format!("/jobs/{}/files/{}.csv", job.id, t.trim_end_matches(".parquet"))) download { "Twin (csv)" }
                }
            }
        }))
        p class="muted" {
            "Job " a href=(format!("/jobs/{}", job.id)) { code { (job.id) } }
            @if let Some(i) = &r.input { " · " (i.path.clone().unwrap_or_default()) }
            " · finished " (r.finished_at) " in " (fmt(Some(r.elapsed_ms / 1000.0), 1)) " s · doppel " (r.doppel.version)
        }
        nav aria-label="Report sections" {
            p {
                a href="#personal-data" { "Personal data" } " · "
                a href="#distributions" { "Columns" } " · "
                a href="#associations" { "Relationships" } " · "
                a href="#privacy" { "Privacy" } " · "
                a href="#compliance" { "Compliance" } " · "
                a href="#model" { "Model" }
            }
        }
        (headline(&r))
        (personal_data(&r))
        (distributions(&r))
        (quality_table(&r))
        (heatmaps(&r))
        (privacy(&r))
        (checklist(&r))
        (model(&r))
        @if let Some(s) = stage(&r, "report") {
            p class="hint" { "The PDF (" (s.get("result").and_then(|x| x.get("pages")).and_then(Value::as_u64).unwrap_or(0)) " pages) says the same for the people who sign off a release." }
        }
    };
    Ok(layout::page(&ctx, Nav::Jobs, "Report", body))
}
