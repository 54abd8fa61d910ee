//! `builtin:report-pdf`: the run as a document a compliance officer can read.
//!
//! Pages: a cover; an executive summary with the scores and the compliance
//! tally; the personal data found (and what was done to it); real-vs-synthetic
//! distribution charts per column; association heatmaps (real, synthetic and
//! their difference); the privacy metrics; the compliance checklist with
//! evidence and remediation; the pipeline with every plugin's version and
//! SHA-256. Text uses the PDF base-14 fonts, so it is extractable and
//! searchable.
//!
//! Inputs are any stages: tables (the real and the synthetic one, chosen by
//! `real` / `synthetic`), detectors, metric and rule stages.
//!
//! `layout` is the page engine (geometry, fonts, the `Writer`), `charts`
//! draws distributions and heatmaps; this module gathers the run's results
//! and lays out the pages.

use doppel_vocab::entity;
use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use doppel_generators::SemanticType;
use printpdf::{
    BuiltinFont, Color, Line, LinePoint, Mm, Op, PaintMode, PdfDocument, PdfFontHandle, PdfPage, PdfSaveOptions, Point,
    Polygon, PolygonRing, Pt, Rgb, TextItem, WindingOrder,
};

use crate::builtins::protect::ColumnAction;
use crate::config::{ConfigField, ConfigValue, Settings, ValueType, field, get};
use crate::model::{Associations, Charts, DetectorOutput, Distribution, Document, Output, PipelineInfo, Provenance};
use crate::plugin::bindings::types::{MetricValue, Verdict, VerdictStatus};
use crate::table::Table;
use crate::{Error, Result};

mod charts;
mod layout;

use charts::{Area, associations, chart, distribution, heatmap};
use layout::*;

/// The `with` schema of `builtin:report-pdf`.
pub fn schema() -> Vec<ConfigField> {
    let mut title = field("title", ValueType::String, "Title on the cover.");
    title.default = Some(ConfigValue::String("Synthetic data report".into()));
    let mut file = field("file", ValueType::String, "File name written to the output directory.");
    file.default = Some(ConfigValue::String("report.pdf".into()));
    let real = field(
        "real",
        ValueType::String,
        "Stage of the real table (default: the first table input).",
    );
    let synthetic = field(
        "synthetic",
        ValueType::String,
        "Stage of the synthetic table (default: the second table input).",
    );
    let mut charts = field("max_charts", ValueType::Integer, "Distribution charts drawn at most.");
    charts.default = Some(ConfigValue::Integer(24));
    charts.minimum = Some(0.0);
    vec![title, file, real, synthetic, charts]
}

fn find_metric<'a>(m: &'a [MetricValue], name: &str) -> Option<&'a MetricValue> {
    m.iter().find(|v| v.name == name && v.columns.is_empty())
}

/// Render the report.
pub fn render(
    stage: &str,
    inputs: &[(&str, &Output)],
    pipeline: &PipelineInfo,
    settings: &Settings,
) -> Result<Document> {
    let text = |k: &str, d: &str| match get(settings, k) {
        Some(ConfigValue::String(s)) => s.clone(),
        _ => d.to_owned(),
    };
    let title = text("title", "Synthetic data report");
    let file_name = text("file", "report.pdf");
    let max_charts = match get(settings, "max_charts") {
        Some(ConfigValue::Integer(i)) => usize::try_from(*i).unwrap_or(24),
        _ => 24,
    };
    let tables: Vec<(&str, &Table, &Provenance)> = inputs
        .iter()
        .filter_map(|(n, o)| match o {
            Output::Table(t, p) => Some((*n, t.as_ref(), p)),
            _ => None,
        })
        .collect();
    let pick = |key: &str, index: usize| -> Result<Option<(&str, &Table, &Provenance)>> {
        match get(settings, key) {
            Some(ConfigValue::String(id)) => {
                tables
                    .iter()
                    .find(|t| t.0 == id)
                    .copied()
                    .map(Some)
                    .ok_or_else(|| Error::Stage {
                        stage: stage.to_owned(),
                        message: format!("`{key}` names `{id}`, which is not one of this stage's table inputs"),
                    })
            }
            _ => Ok(tables.get(index).copied()),
        }
    };
    let (real, synthetic) = (pick("real", 0)?, pick("synthetic", 1)?);
    let findings: Vec<(&str, &DetectorOutput)> = inputs
        .iter()
        .filter_map(|(n, o)| match o {
            Output::Findings(f) => Some((*n, f.as_ref())),
            _ => None,
        })
        .collect();
    let metric_sets: Vec<(&str, &[MetricValue])> = inputs
        .iter()
        .filter_map(|(n, o)| match o {
            Output::Metrics(m) => Some((*n, m.as_slice())),
            _ => None,
        })
        .collect();
    let quality = metric_sets
        .iter()
        .find(|(_, m)| find_metric(m, "Quality Score").is_some())
        .copied();
    let privacy = metric_sets
        .iter()
        .find(|(_, m)| find_metric(m, "Privacy Score").is_some())
        .copied();
    let fidelity = metric_sets
        .iter()
        .find(|(_, m)| find_metric(m, "C2ST").is_some())
        .copied();
    let verdicts: Vec<(&str, &[Verdict])> = inputs
        .iter()
        .filter_map(|(n, o)| match o {
            Output::Verdicts(v) => Some((*n, v.as_slice())),
            _ => None,
        })
        .collect();
    let protected: Vec<&ColumnAction> = tables
        .iter()
        .filter_map(|(_, _, p)| match p {
            Provenance::Protected(a) => Some(a.iter()),
            _ => None,
        })
        .flatten()
        .collect();

    let charts = chart_data(real, synthetic, quality, max_charts)?;
    let mut w = Writer::new(&title);

    // Cover.
    w.rect(0.0, PAGE_H - 95.0, PAGE_W, 95.0, (0.12, 0.2, 0.34));
    w.text_at(MARGIN, PAGE_H - 45.0, 26.0, true, (1.0, 1.0, 1.0), &title);
    w.text_at(
        MARGIN,
        PAGE_H - 57.0,
        12.0,
        false,
        (0.85, 0.88, 0.93),
        &format!("Pipeline `{}` ({})", pipeline.name, pipeline.file),
    );
    let generated = crate::report::rfc3339_now();
    w.text_at(
        MARGIN,
        PAGE_H - 66.0,
        10.0,
        false,
        (0.85, 0.88, 0.93),
        &format!("Generated {generated} by doppel {}", env!("CARGO_PKG_VERSION")),
    );
    w.y = PAGE_H - 110.0;
    if let Some((id, t, _)) = real {
        w.paragraph(
            &format!(
                "Real table: stage `{id}`, {} rows x {} columns.",
                t.rows(),
                t.schema.fields().len()
            ),
            10.0,
            INK,
            0.0,
        );
    }
    if let Some((id, t, _)) = synthetic {
        w.paragraph(
            &format!(
                "Synthetic table: stage `{id}`, {} rows x {} columns.",
                t.rows(),
                t.schema.fields().len()
            ),
            10.0,
            INK,
            0.0,
        );
    }
    for (k, v) in &pipeline.attributes {
        w.paragraph(&format!("{k}: {}", crate::config::to_json(v)), 9.0, MUTED, 0.0);
    }
    w.paragraph(
        "This document is generated from the pipeline run it describes. It is a draft for review by a qualified person; \
         it is not legal advice.",
        8.0,
        MUTED,
        0.0,
    );
    w.new_page();

    // Executive summary.
    w.heading("Executive summary");
    let mut cards: Vec<(String, String, (f32, f32, f32))> = Vec::new();
    if let Some((_, m)) = quality
        && let Some(q) = find_metric(m, "Quality Score")
    {
        cards.push(("Quality score".into(), format!("{:.1}%", q.value * 100.0), REAL));
    }
    if let Some((_, m)) = fidelity
        && let Some(d) = find_metric(m, "C2ST")
    {
        cards.push((
            "Detection (C2ST, 1 = indistinguishable)".into(),
            format!("{:.3}", d.value),
            REAL,
        ));
    }
    if let Some((_, m)) = fidelity
        && let Some(t) = find_metric(m, "TSTR AUC")
    {
        let real = t.extra.iter().find(|(k, _)| k == "trtr_auc").map_or(f64::NAN, |e| e.1);
        cards.push((
            "Model trained on twin (AUC; on real rows)".into(),
            format!("{:.3} ({real:.3})", t.value),
            REAL,
        ));
    }
    if let Some((_, m)) = privacy
        && let Some(p) = find_metric(m, "Privacy Score")
    {
        let color = risk_color(p.value);
        cards.push(("Privacy score".into(), format!("{:.1} / 100", p.value), color));
    }
    let pii_columns: usize = findings
        .iter()
        .map(|(_, f)| f.columns.iter().filter(|c| c.entity != entity::NONE).count())
        .max()
        .unwrap_or(0);
    cards.push(("Columns with personal data".into(), pii_columns.to_string(), INK));
    let all_verdicts: Vec<&Verdict> = verdicts.iter().flat_map(|(_, v)| v.iter()).collect();
    let count = |s: VerdictStatus| all_verdicts.iter().filter(|v| v.status == s).count();
    if !all_verdicts.is_empty() {
        let fails = count(VerdictStatus::Fail);
        cards.push((
            "Compliance checks".into(),
            format!(
                "{} pass / {} warn / {fails} fail",
                count(VerdictStatus::Pass),
                count(VerdictStatus::Warn)
            ),
            if fails > 0 { FAIL } else { PASS },
        ));
    }
    let card_w = (TEXT_W - 6.0) / 2.0;
    for (i, (label, value, color)) in cards.iter().enumerate() {
        let x = MARGIN + (i % 2) as f32 * (card_w + 6.0);
        if i % 2 == 0 && i > 0 {
            w.y -= 24.0;
        }
        w.rect(x, w.y - 20.0, card_w, 20.0, (0.96, 0.97, 0.98));
        w.rect(x, w.y - 20.0, 1.5, 20.0, *color);
        w.text_at(x + 5.0, w.y - 7.0, 8.0, false, MUTED, label);
        w.text_at(x + 5.0, w.y - 16.0, 15.0, true, *color, value);
    }
    w.y -= 28.0;
    if let Some((_, m)) = privacy
        && let Some(p) = find_metric(m, "Privacy Score")
    {
        w.paragraph(
            &format!("Re-identification risk: {}.", p.note.as_deref().unwrap_or("")),
            10.0,
            INK,
            0.0,
        );
    }
    let failing: Vec<&&Verdict> = all_verdicts
        .iter()
        .filter(|v| v.status == VerdictStatus::Fail)
        .collect();
    if !failing.is_empty() {
        w.subheading("Failing checks");
        for v in failing.iter().take(12) {
            w.paragraph(
                &format!("- {} ({}): {}", v.title, v.reference, v.evidence),
                8.5,
                INK,
                2.0,
            );
        }
    }

    // Personal data.
    w.heading("Personal data found");
    if findings.is_empty() {
        w.paragraph("No detector stage fed this report.", 9.0, MUTED, 0.0);
    }
    for (id, f) in &findings {
        w.subheading(&format!(
            "Detector `{id}`: {} rows scanned, {} spans in free text",
            f.rows_scanned, f.total_findings
        ));
        let rows: Vec<Vec<String>> = f
            .columns
            .iter()
            .map(|c| {
                let action = protected.iter().find(|a| a.column == c.column).map_or_else(
                    || {
                        if c.entity == entity::NONE {
                            String::new()
                        } else {
                            "none".into()
                        }
                    },
                    |a| a.action.clone(),
                );
                #[allow(clippy::cast_precision_loss, reason = "counts for display")]
                let share = if c.scanned == 0 || c.entity == entity::NONE {
                    String::new()
                } else {
                    format!("{:.1}%", c.matched as f64 * 100.0 / c.scanned as f64)
                };
                vec![
                    c.column.clone(),
                    c.entity.clone(),
                    format!("{:.2}", c.confidence),
                    share,
                    action,
                ]
            })
            .collect();
        w.table(
            &["Column", "Entity", "Confidence", "Cells validated", "Action"],
            &[3.0, 3.0, 1.6, 1.8, 1.6],
            &rows,
        );
    }

    // Distributions.
    if let Some(c) = charts.as_ref().filter(|c| !c.distributions.is_empty()) {
        w.new_page();
        w.heading("Column distributions: real vs synthetic");
        w.paragraph(
            &format!(
                "Blue: real (`{}`). Orange: synthetic (`{}`). Shares of rows.",
                c.real, c.synthetic
            ),
            8.5,
            MUTED,
            0.0,
        );
        let chart_w = (TEXT_W - 10.0) / 2.0;
        let chart_h = 32.0;
        for (drawn, d) in c.distributions.iter().enumerate() {
            if drawn % 2 == 0 {
                w.room(chart_h + 14.0);
                w.y -= chart_h + 10.0;
            }
            #[allow(clippy::cast_precision_loss, reason = "0 or 1")]
            let x = MARGIN + (drawn % 2) as f32 * (chart_w + 10.0);
            let y = w.y;
            let area = Area {
                x,
                y,
                width: chart_w,
                height: chart_h,
            };
            chart(&mut w, area, d);
        }
        w.y -= 8.0;
    }

    // Heatmaps.
    if let (Some((qid, m)), Some(a)) = (quality, charts.as_ref().and_then(|c| c.associations.as_ref())) {
        let plain = |m: &[Vec<Option<f64>>]| -> Vec<Vec<f64>> {
            m.iter()
                .map(|r| r.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
                .collect()
        };
        let (names, real_m, synth_m) = (a.columns.clone(), plain(&a.real), plain(&a.synthetic));
        if names.len() >= 2 {
            w.new_page();
            w.heading("Associations between columns");
            w.paragraph(
                &format!(
                    "From quality stage `{qid}`: |Pearson correlation| for two numeric columns, Cramer's V otherwise (numbers in 10 bins). \
                     Darker is stronger; the difference panel shows |real - synthetic|."
                ),
                8.5,
                MUTED,
                0.0,
            );
            let size = (TEXT_W - 8.0) / 2.0;
            let top = w.y - 6.0;
            let height = heatmap(&mut w, "Real", &names, &real_m, (MARGIN, top), size, false);
            heatmap(
                &mut w,
                "Synthetic",
                &names,
                &synth_m,
                (MARGIN + size + 8.0, top),
                size,
                false,
            );
            let diff: Vec<Vec<f64>> = real_m
                .iter()
                .zip(&synth_m)
                .map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()).collect())
                .collect();
            let second = top - height - 12.0;
            heatmap(&mut w, "Difference", &names, &diff, (MARGIN, second), size, true);
            // Beside the difference panel: the pairs the twin got most wrong.
            let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
            for (i, row) in diff.iter().enumerate() {
                for (j, d) in row.iter().enumerate().skip(i + 1) {
                    if !d.is_nan() {
                        pairs.push((*d, i, j));
                    }
                }
            }
            pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mean = pairs.iter().map(|p| p.0).sum::<f64>() / pairs.len().max(1) as f64;
            let (saved_y, x) = (w.y, MARGIN + size + 8.0);
            w.text_at(x, second + 2.0, 9.0, true, INK, "Largest differences");
            let mut y = second - 4.0;
            w.text_at(
                x,
                y,
                7.5,
                false,
                MUTED,
                &format!("mean |difference| over {} pairs: {mean:.3}", pairs.len()),
            );
            for (d, i, j) in pairs.iter().take(10) {
                y -= 4.5;
                let label = format!("{} / {}", names[*i], names[*j]);
                w.text_at(x, y, 7.5, false, INK, &label.chars().take(44).collect::<String>());
                let value = format!("{d:.3}");
                w.text_at(x + size - text_width(&value, 7.5, false), y, 7.5, false, INK, &value);
            }
            w.y = saved_y.min(second - height - 6.0);
            w.subheading("Quality scores (SDMetrics QualityReport)");
            let rows: Vec<Vec<String>> = m
                .iter()
                .filter(|v| v.columns.len() <= 1)
                .map(|v| vec![v.name.clone(), v.columns.join(", "), fmt(v.value, 4)])
                .collect();
            w.table(&["Metric", "Column", "Score"], &[3.0, 3.0, 1.5], &rows);
        }
    }

    // Fidelity beyond shapes and trends.
    if let Some((fid, m)) = fidelity {
        w.subheading(&format!("Can the twin be told apart? (stage `{fid}`)"));
        w.paragraph(
            "Shapes and trends alone can be fooled: independently shuffled columns keep every shape. \
             These tests train classifiers and measure distances on the rows themselves.",
            9.0,
            MUTED,
            0.0,
        );
        let explain = |name: &str| match name {
            "C2ST" => {
                "Detection: 1 - 2|AUC - 0.5| of a boosted classifier telling real from synthetic rows; 1 = indistinguishable, 0 = always told apart."
            }
            "TSTR AUC" => {
                "Train on the twin, test on unseen real rows (ROC AUC); compare with the same model trained on real rows."
            }
            "AlphaPrecision" => "Share of the twin that lies where real rows are, at the right density (1 = all).",
            "BetaRecall" => "How much of the real table the twin covers; a fresh sample of real rows scores about 0.5.",
            "DCRShare" => {
                "Share of synthetic rows closer to a training row than to an unseen real row; 0.5 = no memorising."
            }
            _ => "",
        };
        let rows: Vec<Vec<String>> = m
            .iter()
            .map(|v| {
                let reference = v
                    .extra
                    .iter()
                    .find(|(k, _)| k == "trtr_auc")
                    .map(|(_, x)| format!(" Trained on real rows: {x:.3}."))
                    .unwrap_or_default();
                let note = if v.columns.is_empty() {
                    v.note.clone().unwrap_or_default()
                } else {
                    String::new()
                };
                vec![
                    v.name.clone(),
                    v.columns.join(", "),
                    fmt(v.value, 3),
                    format!("{}{reference} {note}", explain(&v.name)),
                ]
            })
            .collect();
        w.table(&["Metric", "Target", "Value", "Meaning"], &[2.0, 1.6, 1.0, 5.8], &rows);
    }

    // Privacy.
    w.heading("Privacy");
    let spends = tables.iter().filter_map(|(id, _, p)| match p {
        Provenance::Generated(m) => m.privacy.as_ref().map(|dp| (*id, dp)),
        _ => None,
    });
    for (id, dp) in spends {
        let how = match &dp.sgd {
            None => format!("zCDP rho = {:.5}", dp.rho),
            Some(sgd) => format!(
                "measurements of the domain at zCDP rho = {:.5}, then {} DP-SGD steps with sampling rate {:.4}, \
                 noise multiplier {:.3} and clipping norm {}, composed in Renyi DP",
                dp.rho, sgd.steps, sgd.sampling_rate, sgd.noise_multiplier, sgd.clip
            ),
        };
        w.paragraph(
            &format!(
                "Differential privacy (stage `{id}`): the twin is ({:.3}, {:.1e})-differentially private \
                 ({how}); {}.",
                dp.epsilon,
                dp.delta,
                dp.notes.join("; ")
            ),
            10.0,
            INK,
            0.0,
        );
        let rows: Vec<Vec<String>> = dp
            .steps
            .iter()
            .map(|(step, rho)| vec![step.clone(), format!("{rho:.5}")])
            .collect();
        w.table(&["Measurement", "rho spent"], &[6.0, 2.0], &rows);
    }
    match privacy {
        None => w.paragraph("No privacy stage fed this report.", 9.0, MUTED, 0.0),
        Some((pid, m)) => {
            if let Some(p) = find_metric(m, "Privacy Score") {
                w.paragraph(
                    &format!(
                        "Privacy score (stage `{pid}`): {:.1} / 100 - {}.",
                        p.value,
                        p.note.as_deref().unwrap_or("")
                    ),
                    10.0,
                    INK,
                    0.0,
                );
                let bar_y = w.y - 6.0;
                w.rect(MARGIN, bar_y, TEXT_W, 4.0, (0.93, 0.93, 0.95));
                #[allow(clippy::cast_possible_truncation, reason = "a bar length")]
                let len = (p.value / 100.0).clamp(0.0, 1.0) as f32 * TEXT_W;
                w.rect(MARGIN, bar_y, len, 4.0, risk_color(p.value));
                w.y = bar_y - 4.0;
            }
            let explain = |name: &str| match name {
                "DCRBaselineProtection" => {
                    "Synthetic rows' median distance to the closest real row, relative to random rows (1 = as far as random)."
                }
                "DCROverfittingProtection" => {
                    "1 when synthetic rows are no closer to training rows than to unseen holdout rows."
                }
                "DCRHoldoutProtection" => {
                    "1 when synthetic rows are no nearer to the training rows than real people the generator never saw are; 0.4 when 30% of them are near-copies."
                }
                "NewRowSynthesis" => "Share of synthetic rows that match no real row.",
                "DisclosureProtection" => {
                    "How well known columns hide sensitive ones from a CAP attacker, relative to guessing."
                }
                "ExactCopyRate" => "Share of synthetic rows identical to a real row.",
                "PIICopyRate" => "Share of a personal-data column's synthetic values that are real values.",
                _ => "",
            };
            let rows: Vec<Vec<String>> = m
                .iter()
                .filter(|v| v.name != "Privacy Score")
                .map(|v| {
                    let note = v.note.clone().unwrap_or_default();
                    vec![
                        v.name.clone(),
                        v.columns.join(", "),
                        fmt(v.value, 4),
                        format!("{} {note}", explain(&v.name)),
                    ]
                })
                .collect();
            w.table(&["Metric", "Columns", "Value", "Meaning"], &[2.6, 1.8, 1.0, 5.0], &rows);
        }
    }

    // Compliance.
    w.new_page();
    w.heading("Compliance checklist");
    if verdicts.is_empty() {
        w.paragraph("No rule stage fed this report.", 9.0, MUTED, 0.0);
    }
    for (id, list) in &verdicts {
        w.subheading(&format!("Rule stage `{id}`"));
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|v| {
                vec![
                    status_text(v.status).to_owned(),
                    format!("{} - {}\n{}", v.rule_id, v.title, v.reference),
                    v.evidence.clone(),
                    v.remediation.clone(),
                ]
            })
            .collect();
        w.table(
            &["Status", "Rule", "Evidence", "Remediation"],
            &[0.9, 3.2, 4.0, 3.2],
            &rows,
        );
    }

    // Pipeline.
    w.heading("Pipeline and versions");
    let rows: Vec<Vec<String>> = pipeline
        .stages
        .iter()
        .map(|s| {
            let (plugin, sha) = s.plugin.clone().unwrap_or_else(|| ("built in".into(), String::new()));
            vec![s.id.clone(), s.uses.clone(), plugin, sha.chars().take(16).collect()]
        })
        .collect();
    w.table(
        &["Stage", "Uses", "Resolved", "SHA-256 (first 16)"],
        &[2.0, 3.0, 3.0, 3.0],
        &rows,
    );
    w.paragraph(
        &format!(
            "doppel {}; plugin contract doppel:plugin@0.1.",
            env!("CARGO_PKG_VERSION")
        ),
        8.0,
        MUTED,
        0.0,
    );

    let (bytes, pages) = w.into_pdf(&title, &format!("Pipeline {} ({})", pipeline.name, pipeline.file));
    Ok(Document {
        file_name,
        bytes,
        pages,
        charts: charts.map(std::sync::Arc::new),
    })
}

/// The numbers the report's charts show: a distribution per numeric,
/// date, categorical or boolean column of the real table (at most
/// `max_charts`), and the association matrices of the quality stage.
fn chart_data(
    real: Option<(&str, &Table, &Provenance)>,
    synthetic: Option<(&str, &Table, &Provenance)>,
    quality: Option<(&str, &[MetricValue])>,
    max_charts: usize,
) -> Result<Option<Charts>> {
    let (Some((rid, rt, _)), Some((sid, st, _))) = (real, synthetic) else {
        return Ok(None);
    };
    let (rb, sb) = (rt.concat()?, st.concat()?);
    let mut distributions = Vec::new();
    for (i, (field, semantic)) in rt.schema.fields().iter().zip(rt.semantics.iter()).enumerate() {
        let numeric = matches!(semantic, SemanticType::Numerical | SemanticType::Datetime);
        let categorical = matches!(semantic, SemanticType::Categorical | SemanticType::Boolean);
        if !(numeric || categorical) || distributions.len() >= max_charts {
            continue;
        }
        let Some(s_col) = sb.column_by_name(field.name()) else {
            continue;
        };
        let (labels, real, synthetic) = distribution(rb.column(i), s_col, numeric)?;
        distributions.push(Distribution {
            column: field.name().clone(),
            numeric,
            labels,
            real,
            synthetic,
        });
    }
    let associations = quality.map(|(_, m)| {
        let (columns, real, synthetic) = associations(m);
        let opt = |m: Vec<Vec<f64>>| -> Vec<Vec<Option<f64>>> {
            m.into_iter()
                .map(|r| r.into_iter().map(|v| v.is_finite().then_some(v)).collect())
                .collect()
        };
        Associations {
            columns,
            real: opt(real),
            synthetic: opt(synthetic),
        }
    });
    Ok(Some(Charts {
        real: rid.to_owned(),
        synthetic: sid.to_owned(),
        distributions,
        associations: associations.filter(|a| a.columns.len() >= 2),
    }))
}

/// `builtin:report-pdf`.
#[derive(Debug, Clone, Copy)]
pub struct ReportPdf;

impl super::Builtin for ReportPdf {
    fn name(&self) -> &str {
        "report-pdf"
    }

    fn summary(&self) -> &str {
        "PDF for reviewers: scores, personal data, charts, heatmaps, privacy, compliance checklist, versions."
    }

    fn kind(&self) -> super::Kind {
        super::Kind::Report
    }

    fn schema(&self) -> Vec<ConfigField> {
        schema()
    }

    fn user_settable(&self) -> Vec<&'static str> {
        vec!["title"]
    }

    fn output_file(&self, settings: &Settings) -> Option<String> {
        Some(match get(settings, "file") {
            Some(ConfigValue::String(f)) => f.clone(),
            _ => "report.pdf".to_owned(),
        })
    }

    /// Any stages but documents; when it names tables, the real and the
    /// synthetic one; `file` a plain `.pdf` name.
    fn check_inputs(&self, check: &mut crate::stage::InputCheck<'_>) {
        use crate::spec::Diagnostic;
        use crate::stage::Produces;
        let id = check.id().to_owned();
        if check.is_empty() {
            let d = Diagnostic::at(
                check.stage_span(),
                format!("stage `{id}` (builtin:report-pdf) reports on other stages; give it `inputs`"),
            )
            .label("no inputs");
            check.push(d);
        }
        let kinds = check.kinds();
        for (k, produces) in kinds.iter().enumerate() {
            if *produces == Produces::Document {
                let d = Diagnostic::at(
                    check.input_span(k),
                    format!(
                        "stage `{id}` cannot report on `{}`, another document",
                        check.input_id(k)
                    ),
                );
                check.push(d);
            }
        }
        if let Some((span, ConfigValue::String(file))) = check.with_value("file") {
            let plain = file.strip_suffix(".pdf").is_some_and(|stem| {
                !stem.is_empty() && stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
            if !plain {
                let d = Diagnostic::at(
                    span,
                    format!("`file` must be a plain file name ending in `.pdf`, not `{file}`"),
                )
                .label("not a plain .pdf name")
                .help("the report is written into the output directory, next to report.json");
                check.push(d);
            }
        }
        for key in ["real", "synthetic"] {
            if let Some((span, ConfigValue::String(named))) = check.with_value(key) {
                let is_table_input =
                    (0..kinds.len()).any(|k| kinds[k] == Produces::Table && check.input_id(k) == named);
                if !is_table_input {
                    let d = Diagnostic::at(
                        span,
                        format!("`{key}` names `{named}`, which is not one of stage `{id}`'s table inputs"),
                    )
                    .label("not a table input");
                    check.push(d);
                }
            }
        }
        if kinds.iter().filter(|p| **p == Produces::Table).count() == 1 {
            let d = Diagnostic::at(
                check.at(),
                format!(
                    "stage `{id}` (builtin:report-pdf) compares two tables; give it the real and the synthetic one, or none"
                ),
            )
            .label("one table input");
            check.push(d);
        }
    }

    fn run(&self, ctx: &crate::stage::StageContext) -> Result<Output> {
        let inputs: Vec<(&str, &Output)> = ctx.inputs.iter().map(|(n, o)| (n.as_str(), o)).collect();
        render(ctx.id(), &inputs, &ctx.pipeline, ctx.settings()).map(|d| Output::Document(std::sync::Arc::new(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_respects_the_width() {
        let text = "Synthetic rows' median distance to the closest real row, relative to random rows.";
        for line in wrap(text, 8.0, 40.0) {
            assert!(text_width(&line, 8.0, false) <= 40.0 || !line.contains(' '), "{line}");
        }
        assert_eq!(wrap("a\nb", 8.0, 100.0), vec!["a", "b"]);
    }

    #[test]
    fn text_is_made_winansi() {
        assert_eq!(winansi("score ≥ 80 → low"), "score >= 80 -> low");
        assert_eq!(winansi("§164.514 – ok"), "§164.514 – ok");
    }
}
