//! Pipeline errors: every class is reported with its line and column, and all
//! problems of a file come out at once.

use doppel_host::plan::plan;
use doppel_host::spec::{Diagnostics, PipelineSpec, SourceFile};

use crate::common::catalog;

fn diagnose(text: &str) -> Diagnostics {
    let file = SourceFile::new("bad.toml", text);
    match PipelineSpec::parse(file) {
        Err(d) => d,
        Ok(spec) => plan(&spec, &catalog()).expect_err("the pipeline should be rejected"),
    }
}

/// (line, column) of the diagnostic whose message contains `needle`.
fn at(d: &Diagnostics, needle: &str) -> (usize, usize) {
    let found = d
        .find(needle)
        .unwrap_or_else(|| panic!("no diagnostic containing {needle:?} in:\n{d}"));
    d.location_of(found)
        .unwrap_or_else(|| panic!("{needle:?} has no location"))
}

const GOOD_HEAD: &str = "version = 1\n[stages.source]\nuses = \"builtin:source\"\nwith = { path = \"x.csv\" }\n";

#[test]
fn syntax_errors_point_into_the_file() {
    let d = diagnose("version = 1\n[stages.a]\nuses = \"builtin:source\n");
    assert_eq!(d.items.len(), 1, "{d}");
    assert_eq!(d.locations()[0].0, 3, "{d}");
}

#[test]
fn unknown_fields_everywhere() {
    let text = "version = 1\nnmae = \"x\"\n[stages.a]\nusse = \"builtin:source\"\nuses = \"builtin:source\"\nlimits = { memroy_mb = 3 }\n";
    let d = diagnose(text);
    assert_eq!(at(&d, "unknown field `nmae`"), (2, 1));
    assert_eq!(
        d.find("`nmae`").unwrap().help.first().map(String::as_str),
        Some("did you mean `name`?")
    );
    assert_eq!(at(&d, "unknown field `usse`"), (4, 1));
    assert_eq!(
        d.find("`usse`").unwrap().help.first().map(String::as_str),
        Some("did you mean `uses`?")
    );
    assert_eq!(at(&d, "unknown limit `memroy_mb`"), (6, 12));
    assert_eq!(d.items.len(), 3, "{d}");
}

#[test]
fn unknown_inputs_and_outputs() {
    let text = format!(
        "{GOOD_HEAD}[stages.p]\nuses = \"builtin:profile\"\ninputs = [\"sorce\"]\n[outputs]\nsynthetic = \"synth\"\n"
    );
    let d = diagnose(&text);
    assert_eq!(at(&d, "reads `sorce`, which is not a stage"), (7, 11));
    assert_eq!(
        d.find("`sorce`").unwrap().help.first().map(String::as_str),
        Some("did you mean `source`?")
    );
    assert_eq!(at(&d, "names `synth`, which is not a stage"), (9, 13));
}

#[test]
fn cycles_name_their_path() {
    let text = "version = 1\n[stages.a]\nuses = \"builtin:copula\"\ninputs = [\"c\"]\n[stages.b]\nuses = \"builtin:copula\"\ninputs = [\"a\"]\n[stages.c]\nuses = \"builtin:copula\"\ninputs = [\"b\"]\n";
    let d = diagnose(text);
    let cycle = d.find("cycle").unwrap();
    assert!(
        cycle.message.contains("a → b → c → a")
            || cycle.message.contains("b → c → a → b")
            || cycle.message.contains("c → a → b → c"),
        "{d}"
    );
    // The caret sits on an input inside the loop.
    let (line, col) = d.location_of(cycle).unwrap();
    assert!([4, 7, 10].contains(&line) && col == 11, "{line}:{col}");
}

#[test]
fn unknown_plugin_and_unsatisfiable_version() {
    let text = format!(
        "{GOOD_HEAD}[stages.a]\nuses = \"doppel/pij@^0.1\"\ninputs = [\"source\"]\n[stages.b]\nuses = \"doppel/pii@^2\"\ninputs = [\"source\"]\n[stages.c]\nuses = \"doppel/pii\"\ninputs = [\"source\"]\n[stages.d]\nuses = \"builtin:copulla\"\ninputs = [\"source\"]\n"
    );
    let d = diagnose(&text);
    assert_eq!(at(&d, "no plugin named `doppel/pij`"), (6, 8));
    assert_eq!(
        d.find("doppel/pij").unwrap().help.first().map(String::as_str),
        Some("did you mean `doppel/pii`?")
    );
    assert_eq!(at(&d, "no version of `doppel/pii` matches `^2`"), (9, 8));
    assert!(d.find("matches `^2`").unwrap().message.contains("installed: 0.1.0"));
    assert_eq!(at(&d, "needs a version requirement"), (12, 8));
    assert_eq!(at(&d, "unknown builtin `copulla`"), (15, 8));
}

#[test]
fn with_is_checked_against_the_plugins_schema() {
    let text = format!(
        "{GOOD_HEAD}[stages.pii]\nuses = \"doppel/pii@^0.1\"\ninputs = [\"source\"]\nwith = {{ sample_rws = 5, min_share = \"high\", entities = [\"EMAIL\"] }}\n[stages.synth]\nuses = \"builtin:copula\"\ninputs = [\"source\"]\nwith = {{ rows = 0 }}\n[stages.q]\nuses = \"doppel/quality@^0.1\"\ninputs = [\"source\", \"synth\"]\nwith = {{ mode = \"strict\" }}\n[stages.s2]\nuses = \"builtin:source\"\n"
    );
    let d = diagnose(&text);
    assert_eq!(at(&d, "does not accept `sample_rws`"), (8, 10));
    assert_eq!(
        d.find("sample_rws").unwrap().help.first().map(String::as_str),
        Some("did you mean `sample_rows`?")
    );
    assert_eq!(at(&d, "`min_share` must be a number, found a string"), (8, 38));
    assert_eq!(at(&d, "`entities` does not accept `EMAIL`"), (8, 57));
    assert_eq!(at(&d, "`rows` must be at least 1"), (12, 17));
    assert_eq!(at(&d, "`mode` does not accept `strict`"), (16, 17));
    assert_eq!(at(&d, "stage `s2` needs `path`"), (17, 9));
    assert_eq!(d.items.len(), 6, "{d}");
}

#[test]
fn input_kinds_must_fit() {
    let text = format!(
        "{GOOD_HEAD}[stages.pii]\nuses = \"doppel/pii@^0.1\"\ninputs = [\"source\"]\n[stages.q]\nuses = \"doppel/quality@^0.1\"\ninputs = [\"source\"]\n[stages.p]\nuses = \"builtin:profile\"\ninputs = [\"pii\"]\n[stages.s2]\nuses = \"builtin:source\"\ninputs = [\"source\"]\nwith = {{ path = \"y.csv\" }}\n[outputs]\nreport = \"pii\"\n"
    );
    let d = diagnose(&text);
    let metric = d.find("needs 2 table inputs").unwrap();
    assert!(
        metric.message.contains("(real, synthetic in that order)") && metric.message.contains("lists 1"),
        "{d}"
    );
    assert_eq!(d.location_of(metric), Some((10, 11)));
    assert_eq!(at(&d, "needs a table, but `pii` produces findings"), (13, 11));
    assert_eq!(at(&d, "reads a file and takes no inputs"), (16, 11));
    assert_eq!(at(&d, "output `report` needs a table"), (19, 10));
}

#[test]
fn limits_are_bounded_and_only_for_plugins() {
    let text = format!(
        "{GOOD_HEAD}limits = {{ memory_mb = 10 }}\n[stages.pii]\nuses = \"doppel/pii@^0.1\"\ninputs = [\"source\"]\nlimits = {{ memory_mb = 999999, timeout_ms = -1 }}\n"
    );
    let d = diagnose(&text);
    assert_eq!(at(&d, "`limits.timeout_ms` must be a positive integer"), (9, 45));
    let text = format!(
        "{GOOD_HEAD}limits = {{ memory_mb = 10 }}\n[stages.pii]\nuses = \"doppel/pii@^0.1\"\ninputs = [\"source\"]\nlimits = {{ memory_mb = 999999 }}\n"
    );
    let d = diagnose(&text);
    assert_eq!(at(&d, "limits apply to plugin stages only"), (5, 24));
    assert_eq!(at(&d, "exceeds the operator's maximum"), (9, 24));
}

#[test]
fn missing_version_and_stages() {
    let d = diagnose("name = \"x\"\n");
    assert!(
        d.find("missing `version`").is_some() && d.find("no `[stages]`").is_some(),
        "{d}"
    );
    let d = diagnose("version = 2\n[stages.a]\nuses = \"builtin:source\"\n");
    assert_eq!(at(&d, "unsupported pipeline format version 2"), (1, 11));
}

#[test]
fn rendering_shows_file_line_and_caret() {
    let text = format!("{GOOD_HEAD}[stages.p]\nuses = \"builtin:profile\"\ninputs = [\"sorce\"]\n");
    let rendered = diagnose(&text).to_string();
    assert!(rendered.contains("--> bad.toml:7:11"), "{rendered}");
    assert!(rendered.contains("7 | inputs = [\"sorce\"]"), "{rendered}");
    assert!(rendered.contains("  |           ^^^^^^^ unknown input"), "{rendered}");
}

#[test]
fn report_pdf_names_its_file_and_its_tables() {
    let text = format!(
        "{GOOD_HEAD}[stages.synth]\nuses = \"builtin:copula\"\ninputs = [\"source\"]\n\
         [stages.a]\nuses = \"builtin:report-pdf\"\ninputs = [\"source\", \"synth\"]\n\
         with = {{ file = \"../escape.pdf\", real = \"synht\" }}\n\
         [stages.b]\nuses = \"builtin:report-pdf\"\ninputs = [\"source\", \"synth\", \"a\"]\n\
         [stages.c]\nuses = \"builtin:report-pdf\"\ninputs = [\"synth\"]\nwith = {{ file = \"c.pdf\" }}\n"
    );
    let d = diagnose(&text);
    // A path that would leave the output directory.
    assert_eq!(at(&d, "plain file name ending in `.pdf`"), (11, 17));
    assert_eq!(at(&d, "`real` names `synht`"), (11, 41));
    // One document cannot report on another.
    assert_eq!(at(&d, "cannot report on `a`, another document"), (14, 30));
    // Distributions compare two tables; one alone is a mistake.
    assert_eq!(at(&d, "compares two tables"), (17, 11));
    assert_eq!(d.items.len(), 4, "{d}");
}

#[test]
fn two_reports_cannot_write_the_same_file() {
    let text = format!(
        "{GOOD_HEAD}[stages.synth]\nuses = \"builtin:copula\"\ninputs = [\"source\"]\n\
         [stages.a]\nuses = \"builtin:report-pdf\"\ninputs = [\"source\", \"synth\"]\n\
         [stages.b]\nuses = \"builtin:report-pdf\"\ninputs = [\"source\", \"synth\"]\n"
    );
    let d = diagnose(&text);
    assert_eq!(at(&d, "stages `a` and `b` would both write `report.pdf`"), (11, 9));
}
