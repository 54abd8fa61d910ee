//! A very small page layout over printpdf's operations: A4 geometry, the
//! base-14 Helvetica metrics and WinAnsi text, wrapping, colours, and the
//! [`Writer`] that places text, rules, boxes and page breaks.

use super::*;

pub(super) const PAGE_W: f32 = 210.0;
pub(super) const PAGE_H: f32 = 297.0;
pub(super) const MARGIN: f32 = 18.0;
pub(super) const TEXT_W: f32 = PAGE_W - 2.0 * MARGIN;

/// Helvetica advance widths (1/1000 em) for ASCII 32..=126, from its AFM.
pub(super) const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556, 556, 556, 556, 556,
    556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833,
    722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556,
    556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334,
    260, 334, 584,
];

/// Width of `text` in mm at `size` pt (bold is ~6 % wider).
pub(super) fn text_width(text: &str, size: f32, bold: bool) -> f32 {
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
pub(super) fn winansi(text: &str) -> String {
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
pub(super) fn wrap(text: &str, size: f32, width: f32) -> Vec<String> {
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

pub(super) fn rgb(r: f32, g: f32, b: f32) -> Color {
    Color::Rgb(Rgb {
        r,
        g,
        b,
        icc_profile: None,
    })
}

pub(super) const INK: (f32, f32, f32) = (0.13, 0.15, 0.2);
pub(super) const MUTED: (f32, f32, f32) = (0.42, 0.45, 0.5);
pub(super) const REAL: (f32, f32, f32) = (0.16, 0.39, 0.72);
pub(super) const SYNTH: (f32, f32, f32) = (0.93, 0.55, 0.16);
pub(super) const PASS: (f32, f32, f32) = (0.18, 0.55, 0.3);
pub(super) const WARN: (f32, f32, f32) = (0.85, 0.6, 0.1);
pub(super) const FAIL: (f32, f32, f32) = (0.78, 0.18, 0.18);

/// A very small page-layout engine over printpdf's operations. `y` is the
/// cursor, in mm from the bottom of the page.
pub(super) struct Writer {
    pub(super) pages: Vec<PdfPage>,
    pub(super) ops: Vec<Op>,
    pub(super) y: f32,
    pub(super) title: String,
}

impl Writer {
    pub(super) fn new(title: &str) -> Self {
        Writer {
            pages: Vec::new(),
            ops: Vec::new(),
            y: PAGE_H - MARGIN,
            title: title.to_owned(),
        }
    }

    pub(super) fn finish_page(&mut self) {
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

    pub(super) fn new_page(&mut self) {
        self.finish_page();
    }

    /// Start a new page unless `height` mm fit above the bottom margin.
    pub(super) fn room(&mut self, height: f32) {
        if self.y - height < MARGIN + 6.0 {
            self.new_page();
        }
    }

    pub(super) fn text_at(&mut self, x: f32, y: f32, size: f32, bold: bool, color: (f32, f32, f32), text: &str) {
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

    pub(super) fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, color: (f32, f32, f32)) {
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

    pub(super) fn line(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, color: (f32, f32, f32)) {
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

    pub(super) fn heading(&mut self, text: &str) {
        self.room(16.0);
        self.y -= 8.0;
        self.text_at(MARGIN, self.y, 15.0, true, INK, text);
        self.y -= 3.0;
        self.line(MARGIN, self.y, PAGE_W - MARGIN, self.y, (0.8, 0.82, 0.86));
        self.y -= 5.0;
    }

    pub(super) fn subheading(&mut self, text: &str) {
        self.room(10.0);
        self.y -= 5.0;
        self.text_at(MARGIN, self.y, 11.0, true, INK, text);
        self.y -= 4.0;
    }

    pub(super) fn paragraph(&mut self, text: &str, size: f32, color: (f32, f32, f32), indent: f32) {
        let leading = size * 0.48;
        for line in wrap(&winansi(text), size, TEXT_W - indent) {
            self.room(leading);
            self.y -= leading;
            self.text_at(MARGIN + indent, self.y, size, false, color, &line);
        }
        self.y -= leading * 0.4;
    }

    /// A table; columns are shares of the text width. Long cells wrap.
    pub(super) fn table(&mut self, headers: &[&str], widths: &[f32], rows: &[Vec<String>]) {
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

    pub(super) fn into_pdf(mut self, title: &str, subject: &str) -> (Vec<u8>, usize) {
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
pub(super) fn risk_color(score: f64) -> (f32, f32, f32) {
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
pub(super) fn compact(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        let digits = (3 - x.abs().log10().floor() as i32).clamp(0, 6) as usize;
        format!("{x:.digits$}")
    }
}

pub(super) fn status_color(text: &str) -> Option<(f32, f32, f32)> {
    match text {
        "PASS" => Some(PASS),
        "WARN" => Some(WARN),
        "FAIL" => Some(FAIL),
        "N/A" => Some(MUTED),
        _ => None,
    }
}

pub(super) fn status_text(s: VerdictStatus) -> &'static str {
    match s {
        VerdictStatus::Pass => "PASS",
        VerdictStatus::Warn => "WARN",
        VerdictStatus::Fail => "FAIL",
        VerdictStatus::NotApplicable => "N/A",
    }
}

pub(super) fn fmt(x: f64, digits: usize) -> String {
    if x.is_nan() {
        "n/a".to_owned()
    } else {
        format!("{x:.digits$}")
    }
}
