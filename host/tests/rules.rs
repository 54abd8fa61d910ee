//! The GDPR and HIPAA rule plugins, run in the sandbox on real pipelines:
//! their verdicts follow what actually reaches the released table.

use doppel_host::exec::{Output, RunResult};
use doppel_host::plugin::bindings::types::{Verdict, VerdictStatus};

use crate::common::{catalog, data, plan_text, run};

/// What a pipeline releases from customers_pii.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Released {
    /// The real table itself: what a generator that samples identifiers as
    /// categories used to hand out.
    Real,
    /// A copula twin of the raw table (no protect stage).
    Raw,
    /// A copula twin of the protected table.
    Protected,
}

/// customers_pii → (protect?) → copula → scan of the output → privacy → rules.
fn release(what: Released) -> RunResult {
    let learn_from = if what == Released::Protected {
        "protect"
    } else {
        "source"
    };
    let released = if what == Released::Real { "copy" } else { "synth" };
    let text = format!(
        r#"
version = 1
name = "release"
[stages.source]
uses = "builtin:source"
with = {{ path = "{path}" }}
[stages.pii]
uses = "doppel/pii@^0.1"
inputs = ["source"]
[stages.protect]
uses = "builtin:protect"
inputs = ["source", "pii"]
with = {{ seed = 3 }}
[stages.synth]
uses = "builtin:copula"
inputs = ["{learn_from}"]
with = {{ seed = 3, rows = 2000 }}
[stages.copy]
uses = "builtin:split"
inputs = ["source"]
with = {{ part = "train", holdout = 0.6, seed = 3 }}
[stages.pii_output]
uses = "doppel/pii@^0.1"
inputs = ["{released}"]
[stages.privacy]
uses = "builtin:privacy"
inputs = ["source", "{released}", "pii"]
with = {{ subsample = 2000 }}
[stages.hipaa]
uses = "doppel/hipaa@^0.1"
inputs = ["{released}", "pii_output", "privacy"]
with = {{ released = "{released}" }}
[stages.gdpr]
uses = "doppel/gdpr@^0.1"
inputs = ["source", "{released}", "pii_output", "privacy"]
with = {{ released = "{released}" }}
[attributes]
purpose = "churn model training"
"#,
        path = data("customers_pii.csv").display()
    );
    run(&plan_text(&catalog(), &text)).unwrap()
}

fn verdicts<'a>(run: &'a RunResult, stage: &str) -> &'a [Verdict] {
    match &run.stage(stage).unwrap().output {
        Output::Verdicts(v) => v.as_slice(),
        other => panic!("{stage}: {other:?}"),
    }
}

fn verdict<'a>(list: &'a [Verdict], id: &str) -> &'a Verdict {
    list.iter()
        .find(|v| v.rule_id == id)
        .unwrap_or_else(|| panic!("no verdict {id}"))
}

#[test]
fn releasing_real_identifiers_fails_hipaa_and_gdpr() {
    let run = release(Released::Real);
    let hipaa = verdicts(&run, "hipaa");
    assert_eq!(hipaa.len(), 20, "18 identifiers, the summary and expert determination");
    // Real names and e-mail addresses reach the release, and the rules say so.
    for id in ["HIPAA-SH-A", "HIPAA-SH-F", "HIPAA-SH"] {
        let v = verdict(hipaa, id);
        assert_eq!(v.status, VerdictStatus::Fail, "{id}: {}", v.evidence);
    }
    let email = verdict(hipaa, "HIPAA-SH-F");
    assert!(email.evidence.contains("of its values are real"), "{}", email.evidence);
    assert_eq!(email.columns, ["email"]);
    // Dates of birth are dates related to an individual.
    let dates = verdict(hipaa, "HIPAA-SH-C");
    assert_eq!(dates.status, VerdictStatus::Fail, "{}", dates.evidence);
    assert!(
        dates.columns.contains(&"date_of_birth".to_owned()),
        "{:?}",
        dates.columns
    );

    let gdpr = verdicts(&run, "gdpr");
    let anon = verdict(gdpr, "GDPR-ANON");
    assert_eq!(anon.status, VerdictStatus::Fail, "{}", anon.evidence);
    assert!(
        anon.evidence.contains("real identifiers or rare values released"),
        "{}",
        anon.evidence
    );
    assert_eq!(verdict(gdpr, "GDPR-ART5-1B").status, VerdictStatus::Pass);
    assert_eq!(
        verdict(gdpr, "GDPR-ART5-1E").status,
        VerdictStatus::Warn,
        "no retention declared"
    );
}

/// Without a protect stage the release rule still keeps real identifiers
/// out of a twin: the copy checks pass on values the generator made, while
/// full dates of birth (dates are not identifiers to the rule) still fail
/// Safe Harbor.
#[test]
fn a_twin_of_the_raw_table_holds_no_real_identifier() {
    let run = release(Released::Raw);
    let hipaa = verdicts(&run, "hipaa");
    for id in ["HIPAA-SH-A", "HIPAA-SH-F", "HIPAA-SH-G"] {
        let v = verdict(hipaa, id);
        assert_eq!(v.status, VerdictStatus::Pass, "{id}: {}", v.evidence);
    }
    assert_eq!(verdict(hipaa, "HIPAA-SH-C").status, VerdictStatus::Fail);
    let anon = verdict(verdicts(&run, "gdpr"), "GDPR-ANON");
    assert!(!anon.evidence.contains("released:"), "{}", anon.evidence);
}

#[test]
fn protecting_identifiers_before_synthesis_clears_the_copy_checks() {
    let run = release(Released::Protected);
    let hipaa = verdicts(&run, "hipaa");
    for id in ["HIPAA-SH-F", "HIPAA-SH-G", "HIPAA-SH-A"] {
        let v = verdict(hipaa, id);
        assert_eq!(v.status, VerdictStatus::Pass, "{id}: {}", v.evidence);
        assert!(v.evidence.contains("no value is a real one"), "{id}: {}", v.evidence);
    }
    let gdpr = verdicts(&run, "gdpr");
    let anon = verdict(gdpr, "GDPR-ANON");
    assert_ne!(anon.status, VerdictStatus::Fail, "{}", anon.evidence);
    assert!(!anon.evidence.contains("rare values released"), "{}", anon.evidence);
    // Faked identifiers are still identifier-shaped columns: minimisation asks
    // whether the purpose needs them.
    let minimisation = verdict(gdpr, "GDPR-ART5-1C");
    assert_eq!(minimisation.status, VerdictStatus::Warn);
    assert!(minimisation.columns.contains(&"email".to_owned()));
}
