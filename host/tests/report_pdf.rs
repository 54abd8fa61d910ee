//! `builtin:report-pdf`: the document a reviewer reads, read back with a PDF
//! parser (lopdf, the one printpdf writes with): its page count, title and
//! paper size, the text of every page, and the filled shapes of the charts
//! with their colours. No system tool is needed, so the README's test command
//! runs on a machine without poppler.

use std::collections::HashMap;
use std::path::Path;

use doppel_host::exec::Output;
use doppel_host::plan::plan;
use doppel_host::spec::PipelineSpec;
use lopdf::{Document, Object};

use crate::common::{catalog, data, repo, run};

/// A written report, parsed.
struct Pdf {
    doc: Document,
}

impl Pdf {
    fn open(path: &Path) -> Pdf {
        Pdf {
            doc: Document::load(path).unwrap_or_else(|e| panic!("{} is not a readable PDF: {e}", path.display())),
        }
    }

    fn pages(&self) -> usize {
        self.doc.get_pages().len()
    }

    /// The document information dictionary's `/Title`.
    fn title(&self) -> String {
        let info = self.doc.trailer.get(b"Info").expect("an /Info dictionary");
        let info = match info {
            Object::Reference(id) => self.doc.get_dictionary(*id).expect("/Info resolves"),
            Object::Dictionary(d) => d,
            other => panic!("/Info is {other:?}"),
        };
        lopdf::decode_text_string(info.get(b"Title").expect("a /Title")).expect("a text /Title")
    }

    /// Width and height of page `n` (1-based) in points.
    fn size(&self, n: u32) -> (f32, f32) {
        let id = self.doc.get_pages()[&n];
        let page = self.doc.get_dictionary(id).unwrap();
        let b = page.get(b"MediaBox").and_then(Object::as_array).expect("a /MediaBox");
        let v: Vec<f32> = b.iter().map(|o| o.as_float().expect("a number")).collect();
        (v[2] - v[0], v[3] - v[1])
    }

    /// The text of page `n`, one line per text object.
    fn text(&self, n: u32) -> String {
        self.doc
            .extract_text(&[n])
            .unwrap_or_else(|e| panic!("page {n}'s text: {e}"))
    }

    fn all_text(&self) -> String {
        (1..=self.pages() as u32)
            .map(|n| self.text(n))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Filled area (square points) per fill colour on page `n`: the content
    /// stream's paths (`m`/`l`/`re`), measured by the shoelace formula when
    /// filled. The charts are rectangles, so this is what a reader sees.
    fn filled_area(&self, n: u32) -> HashMap<[u8; 3], f64> {
        let id = self.doc.get_pages()[&n];
        let content = self
            .doc
            .get_and_decode_page_content(id)
            .expect("decodable page content");
        let num = |o: &Object| f64::from(o.as_float().expect("a numeric operand"));
        let mut fill = [0u8; 3];
        let mut path: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut areas = HashMap::new();
        for op in &content.operations {
            let a = &op.operands;
            match op.operator.as_str() {
                "rg" => {
                    let c = |i: usize| (num(&a[i]) * 255.0).round().clamp(0.0, 255.0) as u8;
                    fill = [c(0), c(1), c(2)];
                }
                "m" => path.push(vec![(num(&a[0]), num(&a[1]))]),
                "l" => {
                    if let Some(sub) = path.last_mut() {
                        sub.push((num(&a[0]), num(&a[1])));
                    }
                }
                "re" => {
                    let (x, y, w, h) = (num(&a[0]), num(&a[1]), num(&a[2]), num(&a[3]));
                    path.push(vec![(x, y), (x + w, y), (x + w, y + h), (x, y + h)]);
                }
                "f" | "F" | "f*" | "B" | "B*" | "b" | "b*" => {
                    let area: f64 = path
                        .drain(..)
                        .map(|sub| {
                            let twice: f64 = (0..sub.len())
                                .map(|i| {
                                    let (p, q) = (sub[i], sub[(i + 1) % sub.len()]);
                                    p.0 * q.1 - q.0 * p.1
                                })
                                .sum();
                            twice.abs() / 2.0
                        })
                        .sum();
                    *areas.entry(fill).or_insert(0.0) += area;
                }
                "n" | "S" | "s" => path.clear(),
                _ => {}
            }
        }
        areas
    }
}

#[test]
fn quickstart_writes_a_report_a_reviewer_can_read() {
    let mut spec = PipelineSpec::load(&repo().join("pipelines/quickstart.toml")).unwrap();
    spec.set(&format!("source.path={}", data("adult.csv").display()))
        .unwrap();
    let plan = plan(&spec, &catalog()).unwrap_or_else(|d| panic!("{d}"));
    let out = run(&plan).unwrap();
    let dir = tempfile::tempdir().unwrap();
    doppel_host::report::write_all(&plan, &out, dir.path(), Default::default()).unwrap();
    let pdf = dir.path().join("report.pdf");
    let Output::Document(doc) = &out.stage("report").unwrap().output else {
        panic!("no document")
    };

    let read = Pdf::open(&pdf);
    assert_eq!(read.pages(), doc.pages);
    assert_eq!(read.title(), "Synthetic data report");
    // A4 is 595 × 842 points.
    for n in 1..=doc.pages as u32 {
        let (w, h) = read.size(n);
        assert!(
            (w - 595.3).abs() < 1.0 && (h - 841.9).abs() < 1.0,
            "page {n} is {w} × {h} pt"
        );
    }
    assert!(doc.pages >= 6, "{} pages", doc.pages);

    let text = read.all_text();
    let scores = |stage: &str, name: &str| match &out.stage(stage).unwrap().output {
        Output::Metrics(m) => m.iter().find(|v| v.name == name && v.columns.is_empty()).unwrap().value,
        _ => panic!(),
    };
    // The numbers in the document are the run's numbers.
    let quality = scores("quality", "Quality Score");
    assert!(
        text.contains(&format!("{:.1}%", quality * 100.0)),
        "quality {quality} missing"
    );
    let privacy = scores("privacy", "Privacy Score");
    assert!(
        text.contains(&format!("{privacy:.1} / 100")),
        "privacy {privacy} missing"
    );
    let c2st = scores("fidelity", "C2ST");
    assert!(text.contains(&format!("{c2st:.3}")), "C2ST {c2st} missing");
    for section in [
        "Can the twin be told apart?",
        "Detection (C2ST, 1 = indistinguishable)",
        "DCRShare",
        "Executive summary",
        "Personal data found",
        "Column distributions: real vs synthetic",
        "Associations between columns",
        "Largest differences",
        "Privacy",
        "DCROverfittingProtection",
        "Compliance checklist",
        "HIPAA-SH-C",
        "45 CFR §164.514(b)(2)",
        "GDPR-ANON",
        "Recital 26",
        "Pipeline and versions",
        "doppel/quality@0.1.0",
    ] {
        assert!(text.contains(section), "`{section}` missing");
    }
    // Every column of Adult gets a distribution chart.
    for column in ["age", "workclass", "fnlwgt", "education", "native_country", "income"] {
        assert!(
            text.lines().any(|l| l.split_whitespace().any(|w| w == column)),
            "no chart for {column}"
        );
    }
    // The checklist carries each verdict's evidence (Adult's ages stop at 90).
    assert!(text.contains("ages up to 90"), "HIPAA evidence missing");
    // Each plugin's hash prefix identifies the exact build that ran.
    let quality_stage = plan.stages.iter().find(|s| s.id == "quality").unwrap();
    let doppel_host::plan::Operation::Plugin(p) = &quality_stage.operation else {
        panic!()
    };
    assert!(text.contains(&p.sha256[..16]), "sha256 prefix missing");

    // The charts are drawn: the distributions page has both series' colours.
    let page = (1..=doc.pages as u32)
        .find(|&n| read.text(n).contains("Column distributions"))
        .unwrap();
    let areas = read.filled_area(page);
    let near = |c: [u8; 3], want: [u8; 3]| c.iter().zip(want).all(|(a, b)| a.abs_diff(b) < 30);
    let area_of = |want: [u8; 3]| -> f64 { areas.iter().filter(|(c, _)| near(**c, want)).map(|(_, a)| a).sum() };
    let (blue, orange) = (area_of([41, 99, 184]), area_of([237, 140, 41]));
    // At least the 500 pixels at 40 dpi (3.24 pt² each) the rendered page
    // was once required to show of each colour.
    assert!(
        blue > 1620.0 && orange > 1620.0,
        "bars: {blue:.0} pt² blue, {orange:.0} pt² orange"
    );
    // Real and synthetic bars are about as tall: the twin is faithful.
    let ratio = blue / orange;
    assert!((0.8..1.25).contains(&ratio), "blue/orange {ratio}");
}
