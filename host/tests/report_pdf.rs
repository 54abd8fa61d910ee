//! `builtin:report-pdf`: the document a reviewer reads, checked with a real
//! PDF toolchain (poppler's pdfinfo / pdftotext / pdftoppm; `.ci/run`
//! installs them).

use std::path::Path;
use std::process::Command;

use doppel_host::exec::Output;
use doppel_host::plan::plan;
use doppel_host::spec::PipelineSpec;

use crate::common::{catalog, data, repo, run};

fn poppler(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e} (install poppler-utils; .ci/run does)"));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Pixels of page `page` at 40 dpi, as RGB triples.
fn pixels(pdf: &Path, page: usize) -> Vec<[u8; 3]> {
    let p = page.to_string();
    let ppm = poppler("pdftoppm", &["-r", "40", "-f", &p, "-l", &p, pdf.to_str().unwrap()]);
    // P6 header: magic, width, height, max value, each followed by whitespace.
    let mut fields = 0;
    let mut at = 0;
    while fields < 4 {
        while ppm[at].is_ascii_whitespace() {
            at += 1;
        }
        while !ppm[at].is_ascii_whitespace() {
            at += 1;
        }
        fields += 1;
    }
    ppm[at + 1..].chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect()
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

    let info = String::from_utf8(poppler("pdfinfo", &[pdf.to_str().unwrap()])).unwrap();
    assert!(info.contains(&format!("Pages:           {}", doc.pages)), "{info}");
    assert!(info.contains("Title:           Synthetic data report"), "{info}");
    assert!(info.contains("A4"), "{info}");
    assert!(doc.pages >= 6, "{} pages", doc.pages);

    let text = String::from_utf8(poppler("pdftotext", &["-layout", pdf.to_str().unwrap(), "-"])).unwrap();
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
    for section in [
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
    let page = (1..=doc.pages)
        .find(|&n| {
            let t = String::from_utf8(poppler(
                "pdftotext",
                &["-f", &n.to_string(), "-l", &n.to_string(), pdf.to_str().unwrap(), "-"],
            ))
            .unwrap();
            t.contains("Column distributions")
        })
        .unwrap();
    let px = pixels(&pdf, page);
    let near = |c: [u8; 3], want: [u8; 3]| c.iter().zip(want).all(|(a, b)| a.abs_diff(b) < 30);
    let blue = px.iter().filter(|c| near(**c, [41, 99, 184])).count();
    let orange = px.iter().filter(|c| near(**c, [237, 140, 41])).count();
    assert!(blue > 500 && orange > 500, "bars: {blue} blue, {orange} orange pixels");
    // Real and synthetic bars are about as tall: the twin is faithful.
    let ratio = blue as f64 / orange as f64;
    assert!((0.8..1.25).contains(&ratio), "blue/orange {ratio}");
}
