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
use crate::model::{DetectorOutput, Document, Output, PipelineInfo, Provenance};
use crate::plugin::bindings::types::{MetricValue, Verdict, VerdictStatus};
use crate::table::Table;
use crate::{Error, Result};

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

const PAGE_W: f32 = 210.0;
const PAGE_H: f32 = 297.0;
const MARGIN: f32 = 18.0;
const TEXT_W: f32 = PAGE_W - 2.0 * MARGIN;

/// Helvetica advance widths (1/1000 em) for ASCII 32..=126, from its AFM.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556, 556, 556, 556, 556,
    556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833,
    722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556,
    556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334,
    260, 334, 584,
];

/// Width of `text` in mm at `size` pt (bold is ~6 % wider).
fn text_width(text: &str, size: f32, bold: bool) -> f32 {
    let units: u32 = text
        .chars()
        .map(|c| {
            let i = c as u32;
            if (32..=126).contains(&i) {
                u32::from(HELVETICA[(i - 32) as usize])
            } else {
                556
            }
        })
        .sum();
    #[allow(clippy::cast_precision_loss, reason = "text widths are small")]
    let w = units as f32 / 1000.0 * size * 0.352_778;
    if bold { w * 1.06 } else { w }
}

/// The base-14 fonts speak WinAnsi: spell out what it lacks.
fn winansi(text: &str) -> String {
    text.replace('≥', ">=")
        .replace('≤', "<=")
        .replace('→', "->")
        .replace('←', "<-")
        .replace('≈', "~")
        .replace('×', "x")
        .replace('Σ', "sum")
        .replace(['ρ', '√'], "")
        .chars()
        .map(|c| {
            if (c as u32) < 0x2000 || "–—‘’“”•…€‰™".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Wrap `text` into lines no wider than `width` mm.
fn wrap(text: &str, size: f32, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            let candidate = if line.is_empty() {
                word.to_owned()
            } else {
                format!("{line} {word}")
            };
            if text_width(&candidate, size, false) <= width || line.is_empty() {
                line = candidate;
            } else {
                lines.push(std::mem::take(&mut line));
                line = word.to_owned();
            }
        }
        lines.push(line);
    }
    lines
}

fn rgb(r: f32, g: f32, b: f32) -> Color {
    Color::Rgb(Rgb {
        r,
        g,
        b,
        icc_profile: None,
    })
}

const INK: (f32, f32, f32) = (0.13, 0.15, 0.2);
const MUTED: (f32, f32, f32) = (0.42, 0.45, 0.5);
const REAL: (f32, f32, f32) = (0.16, 0.39, 0.72);
const SYNTH: (f32, f32, f32) = (0.93, 0.55, 0.16);
const PASS: (f32, f32, f32) = (0.18, 0.55, 0.3);
const WARN: (f32, f32, f32) = (0.85, 0.6, 0.1);
const FAIL: (f32, f32, f32) = (0.78, 0.18, 0.18);

/// A very small page-layout engine over printpdf's operations. `y` is the
/// cursor, in mm from the bottom of the page.
struct Writer {
    pages: Vec<PdfPage>,
    ops: Vec<Op>,
    y: f32,
    title: String,
}

impl Writer {
    fn new(title: &str) -> Self {
        Writer {
            pages: Vec::new(),
            ops: Vec::new(),
            y: PAGE_H - MARGIN,
            title: title.to_owned(),
        }
    }

    fn finish_page(&mut self) {
        if self.ops.is_empty() {
            return;
        }
        let number = self.pages.len() + 1;
        let footer = format!("{} - page {number}", self.title);
        self.text_at(MARGIN, 10.0, 7.0, false, MUTED, &footer);
        let ops = std::mem::take(&mut self.ops);
        self.pages.push(PdfPage::new(Mm(PAGE_W), Mm(PAGE_H), ops));
        self.y = PAGE_H - MARGIN;
    }

    fn new_page(&mut self) {
        self.finish_page();
    }

    /// Start a new page unless `height` mm fit above the bottom margin.
    fn room(&mut self, height: f32) {
        if self.y - height < MARGIN + 6.0 {
            self.new_page();
        }
    }

    fn text_at(&mut self, x: f32, y: f32, size: f32, bold: bool, color: (f32, f32, f32), text: &str) {
        let font = if bold {
            BuiltinFont::HelveticaBold
        } else {
            BuiltinFont::Helvetica
        };
        self.ops.extend([
            Op::StartTextSection,
            Op::SetFillColor {
                col: rgb(color.0, color.1, color.2),
            },
            Op::SetFont {
                font: PdfFontHandle::Builtin(font),
                size: Pt(size),
            },
            Op::SetTextCursor {
                pos: Point::new(Mm(x), Mm(y)),
            },
            Op::ShowText {
                items: vec![TextItem::Text(winansi(text))],
            },
            Op::EndTextSection,
        ]);
    }

    fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, color: (f32, f32, f32)) {
        let p = |x: f32, y: f32| LinePoint {
            p: Point::new(Mm(x), Mm(y)),
            bezier: false,
        };
        self.ops.push(Op::SetFillColor {
            col: rgb(color.0, color.1, color.2),
        });
        self.ops.push(Op::DrawPolygon {
            polygon: Polygon {
                rings: vec![PolygonRing {
                    points: vec![p(x, y), p(x + w, y), p(x + w, y + h), p(x, y + h)],
                }],
                mode: PaintMode::Fill,
                winding_order: WindingOrder::NonZero,
            },
        });
    }

    fn line(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, color: (f32, f32, f32)) {
        let p = |x: f32, y: f32| LinePoint {
            p: Point::new(Mm(x), Mm(y)),
            bezier: false,
        };
        self.ops.extend([
            Op::SetOutlineColor {
                col: rgb(color.0, color.1, color.2),
            },
            Op::SetOutlineThickness { pt: Pt(0.5) },
            Op::DrawLine {
                line: Line {
                    points: vec![p(x1, y1), p(x2, y2)],
                    is_closed: false,
                },
            },
        ]);
    }

    fn heading(&mut self, text: &str) {
        self.room(16.0);
        self.y -= 8.0;
        self.text_at(MARGIN, self.y, 15.0, true, INK, text);
        self.y -= 3.0;
        self.line(MARGIN, self.y, PAGE_W - MARGIN, self.y, (0.8, 0.82, 0.86));
        self.y -= 5.0;
    }

    fn subheading(&mut self, text: &str) {
        self.room(10.0);
        self.y -= 5.0;
        self.text_at(MARGIN, self.y, 11.0, true, INK, text);
        self.y -= 4.0;
    }

    fn paragraph(&mut self, text: &str, size: f32, color: (f32, f32, f32), indent: f32) {
        let leading = size * 0.48;
        for line in wrap(&winansi(text), size, TEXT_W - indent) {
            self.room(leading);
            self.y -= leading;
            self.text_at(MARGIN + indent, self.y, size, false, color, &line);
        }
        self.y -= leading * 0.4;
    }

    /// A table; columns are shares of the text width. Long cells wrap.
    fn table(&mut self, headers: &[&str], widths: &[f32], rows: &[Vec<String>]) {
        let size = 7.5;
        let leading = 3.6;
        let total: f32 = widths.iter().sum();
        let cols: Vec<f32> = widths.iter().map(|w| w / total * TEXT_W).collect();
        let draw_header = |w: &mut Writer| {
            w.room(8.0);
            w.rect(MARGIN, w.y - 5.0, TEXT_W, 5.5, (0.92, 0.93, 0.95));
            let mut x = MARGIN + 1.0;
            for (h, cw) in headers.iter().zip(&cols) {
                w.text_at(x, w.y - 3.6, size, true, INK, h);
                x += cw;
            }
            w.y -= 6.5;
        };
        draw_header(self);
        for row in rows {
            let wrapped: Vec<Vec<String>> = row
                .iter()
                .zip(&cols)
                .map(|(c, cw)| wrap(&winansi(c), size, cw - 2.0))
                .collect();
            let height = wrapped.iter().map(Vec::len).max().unwrap_or(1) as f32 * leading + 1.2;
            if self.y - height < MARGIN + 6.0 {
                self.new_page();
                draw_header(self);
            }
            let mut x = MARGIN + 1.0;
            for (lines, cw) in wrapped.iter().zip(&cols) {
                for (k, line) in lines.iter().enumerate() {
                    let color = status_color(line).unwrap_or(INK);
                    self.text_at(x, self.y - 2.8 - k as f32 * leading, size, false, color, line);
                }
                x += cw;
            }
            self.y -= height;
            self.line(MARGIN, self.y + 0.4, PAGE_W - MARGIN, self.y + 0.4, (0.9, 0.91, 0.93));
        }
        self.y -= 2.0;
    }

    fn into_pdf(mut self, title: &str, subject: &str) -> (Vec<u8>, usize) {
        self.finish_page();
        let pages = self.pages.len();
        let mut doc = PdfDocument::new(title);
        let now = printpdf::DateTime::now();
        let info = &mut doc.metadata.info;
        info.creation_date = now;
        info.modification_date = now;
        info.metadata_date = now;
        info.creator = format!("doppel {}", env!("CARGO_PKG_VERSION"));
        info.producer = info.creator.clone();
        info.subject = subject.to_owned();
        let bytes = doc
            .with_pages(self.pages)
            .save(&PdfSaveOptions::default(), &mut Vec::new());
        (bytes, pages)
    }
}

/// The privacy score's risk levels: low (≥ 80), medium, high (< 60), critical (< 40).
fn risk_color(score: f64) -> (f32, f32, f32) {
    if score >= 80.0 {
        PASS
    } else if score >= 60.0 {
        WARN
    } else if score >= 40.0 {
        (0.9, 0.42, 0.12)
    } else {
        FAIL
    }
}

/// Axis labels: integers as integers, other numbers to 4 significant digits.
fn compact(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        let digits = (3 - x.abs().log10().floor() as i32).clamp(0, 6) as usize;
        format!("{x:.digits$}")
    }
}

fn status_color(text: &str) -> Option<(f32, f32, f32)> {
    match text {
        "PASS" => Some(PASS),
        "WARN" => Some(WARN),
        "FAIL" => Some(FAIL),
        "N/A" => Some(MUTED),
        _ => None,
    }
}

fn status_text(s: VerdictStatus) -> &'static str {
    match s {
        VerdictStatus::Pass => "PASS",
        VerdictStatus::Warn => "WARN",
        VerdictStatus::Fail => "FAIL",
        VerdictStatus::NotApplicable => "N/A",
    }
}

fn fmt(x: f64, digits: usize) -> String {
    if x.is_nan() {
        "n/a".to_owned()
    } else {
        format!("{x:.digits$}")
    }
}

/// Share of values per bar: numeric columns in 16 bins over both tables'
/// range, other columns their 8 most frequent real categories.
fn distribution(real: &ArrayRef, synthetic: &ArrayRef, numeric: bool) -> Result<(Vec<String>, Vec<f64>, Vec<f64>)> {
    if numeric {
        let as_f64 = |a: &ArrayRef| -> Result<Vec<f64>> {
            let widened = match a.data_type() {
                DataType::Date32 => arrow::compute::cast(a, &DataType::Int32)?,
                DataType::Date64 | DataType::Timestamp(_, _) => arrow::compute::cast(a, &DataType::Int64)?,
                _ => ArrayRef::clone(a),
            };
            let f = arrow::compute::cast(&widened, &DataType::Float64)?;
            Ok(f.as_primitive::<Float64Type>()
                .iter()
                .flatten()
                .filter(|x| x.is_finite())
                .collect())
        };
        let (r, s) = (as_f64(real)?, as_f64(synthetic)?);
        let (lo, hi) = r
            .iter()
            .chain(&s)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(*x), h.max(*x)));
        const BINS: usize = 16;
        let hist = |v: &[f64]| -> Vec<f64> {
            let mut h = [0.0; BINS];
            for x in v {
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "clamped to the bins"
                )]
                let b = if hi > lo {
                    (((x - lo) / (hi - lo)) * BINS as f64) as usize
                } else {
                    0
                };
                h[b.min(BINS - 1)] += 1.0;
            }
            let n = v.len().max(1) as f64;
            h.iter().map(|c| c / n).collect()
        };
        let labels = if lo.is_finite() {
            vec![compact(lo), compact(hi)]
        } else {
            vec![]
        };
        return Ok((labels, hist(&r), hist(&s)));
    }
    let counts = |a: &ArrayRef| -> Result<HashMap<String, f64>> {
        let text = arrow::compute::cast(a, &DataType::Utf8)?;
        let mut m: HashMap<String, f64> = HashMap::new();
        for v in text.as_string::<i32>().iter() {
            *m.entry(v.unwrap_or("(null)").to_owned()).or_default() += 1.0;
        }
        Ok(m)
    };
    let (rc, sc) = (counts(real)?, counts(synthetic)?);
    let mut top: Vec<(&String, &f64)> = rc.iter().collect();
    top.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
    top.truncate(8);
    let (rn, sn) = (real.len().max(1) as f64, synthetic.len().max(1) as f64);
    let labels: Vec<String> = top.iter().map(|(k, _)| (*k).clone()).collect();
    let r: Vec<f64> = top.iter().map(|(_, v)| *v / rn).collect();
    let s: Vec<f64> = labels.iter().map(|k| sc.get(k).copied().unwrap_or(0.0) / sn).collect();
    Ok((labels, r, s))
}

/// A box on the page, in mm from its bottom-left corner.
#[derive(Debug, Clone, Copy)]
struct Area {
    x: f32,
    y: f32,
    width: f32,
    height: f32,
}

/// A small paired bar chart in `area`.
fn chart(w: &mut Writer, title: &str, area: Area, data: &(Vec<String>, Vec<f64>, Vec<f64>), numeric: bool) {
    let Area { x, y, width, height } = area;
    let (labels, r, s) = data;
    w.text_at(
        x,
        y + height + 2.0,
        8.0,
        true,
        INK,
        &title.chars().take(40).collect::<String>(),
    );
    w.line(x, y, x + width, y, MUTED);
    let max = r.iter().chain(s).copied().fold(0.0f64, f64::max).max(1e-12);
    let n = r.len().max(1) as f32;
    let slot = width / n;
    for (i, (a, b)) in r.iter().zip(s).enumerate() {
        let x0 = x + i as f32 * slot;
        let bar = slot * 0.42;
        #[allow(clippy::cast_possible_truncation, reason = "chart heights")]
        let (ha, hb) = ((a / max) as f32 * (height - 2.0), (b / max) as f32 * (height - 2.0));
        w.rect(x0 + slot * 0.06, y, bar, ha.max(0.2), REAL);
        w.rect(x0 + slot * 0.06 + bar, y, bar, hb.max(0.2), SYNTH);
        if !numeric {
            let label: String = labels.get(i).map(|l| l.chars().take(9).collect()).unwrap_or_default();
            w.text_at(x0 + 0.5, y - 3.0, 5.0, false, MUTED, &label);
        }
    }
    if numeric && labels.len() == 2 {
        w.text_at(x, y - 3.0, 5.5, false, MUTED, &labels[0]);
        let right = &labels[1];
        w.text_at(
            x + width - text_width(right, 5.5, false),
            y - 3.0,
            5.5,
            false,
            MUTED,
            right,
        );
    }
}

/// Heatmap of a symmetric matrix of values in [0, 1] (`red`: a red scale,
/// for differences); returns the height used below `y_top`.
fn heatmap(
    w: &mut Writer,
    title: &str,
    names: &[String],
    m: &[Vec<f64>],
    top_left: (f32, f32),
    size: f32,
    red: bool,
) -> f32 {
    let (x, y_top) = top_left;
    let n = names.len().max(1);
    let label_w = 22.0;
    let header = 5.0;
    let cell = (size - label_w) / n as f32;
    w.text_at(x, y_top + 2.0, 9.0, true, INK, title);
    // Column labels on top, abbreviated.
    for (j, name) in names.iter().enumerate() {
        let short: String = name.chars().take(4).collect();
        w.text_at(
            x + label_w + j as f32 * cell,
            y_top - header + 1.5,
            4.5,
            false,
            MUTED,
            &short,
        );
    }
    for (i, name) in names.iter().enumerate() {
        let yy = y_top - header - (i + 1) as f32 * cell;
        let short: String = name.chars().take(14).collect();
        w.text_at(x, yy + cell * 0.3, 5.0, false, MUTED, &short);
        for (j, v) in m[i].iter().enumerate() {
            let xx = x + label_w + j as f32 * cell;
            #[allow(clippy::cast_possible_truncation, reason = "a colour")]
            let t = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) as f32 };
            let color = if v.is_nan() {
                (0.95, 0.95, 0.95)
            } else if red {
                (1.0, 1.0 - 0.8 * t, 1.0 - 0.8 * t)
            } else {
                (1.0 - 0.84 * t, 1.0 - 0.6 * t, 1.0 - 0.28 * t)
            };
            w.rect(xx, yy, cell * 0.96, cell * 0.96, color);
        }
    }
    header + n as f32 * cell
}

/// Association matrices (real, synthetic) from the quality stage's pair
/// metrics: |ρ| for two continuous columns, Cramér's V otherwise.
fn associations(quality: &[MetricValue]) -> (Vec<String>, Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let mut names: Vec<String> = quality
        .iter()
        .filter(|m| m.columns.len() == 1)
        .map(|m| m.columns[0].clone())
        .collect();
    names.truncate(16);
    let n = names.len();
    let mut real = vec![vec![f64::NAN; n]; n];
    let mut synth = vec![vec![f64::NAN; n]; n];
    for i in 0..n {
        real[i][i] = 1.0;
        synth[i][i] = 1.0;
    }
    let extra = |m: &MetricValue, k: &str| m.extra.iter().find(|e| e.0 == k).map(|e| e.1);
    for m in quality.iter().filter(|m| m.columns.len() == 2) {
        let (Some(i), Some(j)) = (
            names.iter().position(|c| *c == m.columns[0]),
            names.iter().position(|c| *c == m.columns[1]),
        ) else {
            continue;
        };
        let (a, b) = if m.name == "CorrelationSimilarity" {
            (
                extra(m, "real_correlation").map(f64::abs),
                extra(m, "synthetic_correlation").map(f64::abs),
            )
        } else {
            (extra(m, "real_association"), extra(m, "synthetic_association"))
        };
        let (a, b) = (a.unwrap_or(f64::NAN), b.unwrap_or(f64::NAN));
        real[i][j] = a;
        real[j][i] = a;
        synth[i][j] = b;
        synth[j][i] = b;
    }
    (names, real, synth)
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
    if let Some((_, m)) = privacy
        && let Some(p) = find_metric(m, "Privacy Score")
    {
        let color = risk_color(p.value);
        cards.push(("Privacy score".into(), format!("{:.1} / 100", p.value), color));
    }
    let pii_columns: usize = findings
        .iter()
        .map(|(_, f)| f.columns.iter().filter(|c| c.entity != "NONE").count())
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
                        if c.entity == "NONE" {
                            String::new()
                        } else {
                            "none".into()
                        }
                    },
                    |a| a.action.clone(),
                );
                #[allow(clippy::cast_precision_loss, reason = "counts for display")]
                let share = if c.scanned == 0 || c.entity == "NONE" {
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
    if let (Some((rid, rt, _)), Some((sid, st, _))) = (real, synthetic) {
        w.new_page();
        w.heading("Column distributions: real vs synthetic");
        w.paragraph(
            &format!("Blue: real (`{rid}`). Orange: synthetic (`{sid}`). Shares of rows."),
            8.5,
            MUTED,
            0.0,
        );
        let (rb, sb) = (rt.concat()?, st.concat()?);
        let chart_w = (TEXT_W - 10.0) / 2.0;
        let chart_h = 32.0;
        let mut drawn = 0;
        for (i, (field, semantic)) in rt.schema.fields().iter().zip(rt.semantics.iter()).enumerate() {
            let numeric = matches!(semantic, SemanticType::Numerical | SemanticType::Datetime);
            let categorical = matches!(semantic, SemanticType::Categorical | SemanticType::Boolean);
            if !(numeric || categorical) || drawn >= max_charts {
                continue;
            }
            let Some(s_col) = sb.column_by_name(field.name()) else {
                continue;
            };
            let data = distribution(rb.column(i), s_col, numeric)?;
            if drawn % 2 == 0 {
                w.room(chart_h + 14.0);
                w.y -= chart_h + 10.0;
            }
            let x = MARGIN + (drawn % 2) as f32 * (chart_w + 10.0);
            let y = w.y;
            let area = Area {
                x,
                y,
                width: chart_w,
                height: chart_h,
            };
            chart(&mut w, field.name(), area, &data, numeric);
            drawn += 1;
        }
        w.y -= 8.0;
    }

    // Heatmaps.
    if let Some((qid, m)) = quality {
        let (names, real_m, synth_m) = associations(m);
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

    // Privacy.
    w.heading("Privacy");
    let spends = tables.iter().filter_map(|(id, _, p)| match p {
        Provenance::Generated(m) => m.privacy.as_ref().map(|dp| (*id, dp)),
        _ => None,
    });
    for (id, dp) in spends {
        w.paragraph(
            &format!(
                "Differential privacy (stage `{id}`): the twin is ({:.3}, {:.1e})-differentially private \
                 (zCDP rho = {:.5}); {}.",
                dp.epsilon,
                dp.delta,
                dp.rho,
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
    })
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
