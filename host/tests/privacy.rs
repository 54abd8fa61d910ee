//! builtin:privacy and builtin:split against SDMetrics 0.32 on a committed
//! fixture (`tests/fixtures/privacy/make_golden.py`).

use doppel_host::exec::Output;
use doppel_host::plugin::bindings::types::MetricValue;

use crate::common::{catalog, lit, plan_text, repo, run};

fn metric<'a>(m: &'a [MetricValue], name: &str) -> &'a MetricValue {
    m.iter().find(|v| v.name == name).unwrap_or_else(|| panic!("no {name}"))
}

fn extra(v: &MetricValue, key: &str) -> f64 {
    v.extra
        .iter()
        .find(|e| e.0 == key)
        .unwrap_or_else(|| panic!("no {key} on {}", v.name))
        .1
}

#[test]
fn privacy_metrics_match_sdmetrics() {
    let dir = repo().join("host/tests/fixtures/privacy");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("sdmetrics.json")).unwrap()).unwrap();
    let catalog = catalog();
    let p = plan_text(
        &catalog,
        &format!(
            r#"
            version = 1
            [stages.real]
            uses = "builtin:source"
            with = {{ path = {} }}
            [stages.synthetic]
            uses = "builtin:source"
            with = {{ path = {} }}
            [stages.holdout]
            uses = "builtin:source"
            with = {{ path = {} }}
            [stages.privacy]
            uses = "builtin:privacy"
            inputs = ["real", "synthetic", "holdout"]
            with = {{ known_columns = ["age", "sex", "race"], sensitive_columns = ["income"], overfitting_equal_sizes = false }}
            "#,
            lit(&dir.join("real.csv")),
            lit(&dir.join("synthetic.csv")),
            lit(&dir.join("holdout.csv")),
        ),
    );
    let out = run(&p).unwrap();
    let real = out.stage("real").unwrap().output.table().unwrap();
    for (field, semantic) in real.schema.fields().iter().zip(real.semantics.iter()) {
        assert_eq!(
            golden["metadata"]["columns"][field.name()]["sdtype"],
            semantic.as_str(),
            "{}",
            field.name()
        );
    }
    let Output::Metrics(m) = &out.stage("privacy").unwrap().output else {
        panic!("metrics")
    };
    let want = |path: &[&str]| -> f64 {
        let mut v = &golden;
        for p in path {
            v = &v[*p];
        }
        v.as_f64().unwrap_or_else(|| panic!("{path:?}"))
    };
    let exact = |got: f64, want: f64, what: &str| {
        assert!((got - want).abs() < 1e-9, "{what}: doppel {got} vs SDMetrics {want}")
    };

    // Deterministic: exact agreement.
    let baseline = metric(m, "DCRBaselineProtection");
    exact(
        extra(baseline, "median_dcr_synthetic"),
        want(&["DCRBaselineProtection", "median_DCR_to_real_data", "synthetic_data"]),
        "median DCR",
    );
    let overfitting = metric(m, "DCROverfittingProtection");
    exact(
        overfitting.value,
        want(&["DCROverfittingProtection", "score"]),
        "DCROverfittingProtection",
    );
    exact(
        extra(overfitting, "closer_to_training"),
        want(&[
            "DCROverfittingProtection",
            "synthetic_data_percentages",
            "closer_to_training",
        ]),
        "closer to training",
    );
    exact(
        metric(m, "NewRowSynthesis").value,
        want(&["NewRowSynthesis", "score"]),
        "NewRowSynthesis",
    );
    let disclosure = metric(m, "DisclosureProtection");
    exact(
        disclosure.value,
        want(&["DisclosureProtection", "score"]),
        "DisclosureProtection",
    );
    exact(
        extra(disclosure, "cap_protection"),
        want(&["DisclosureProtection", "cap_protection"]),
        "CAP",
    );
    exact(
        extra(disclosure, "baseline_protection"),
        want(&["DisclosureProtection", "baseline_protection"]),
        "CAP baseline",
    );

    // The random baseline is drawn by each tool's own generator: its median
    // agrees within sampling error, and so does the score.
    let random = extra(baseline, "median_dcr_random");
    let their_random = want(&[
        "DCRBaselineProtection",
        "median_DCR_to_real_data",
        "random_data_baseline",
    ]);
    assert!(
        (random - their_random).abs() < 0.02,
        "random-baseline median {random} vs {their_random}"
    );
    assert!(
        (baseline.value - want(&["DCRBaselineProtection", "score"])).abs() < 0.02,
        "{}",
        baseline.value
    );

    let score = metric(m, "Privacy Score");
    assert!((0.0..=100.0).contains(&score.value));
    assert!(score.note.as_deref().is_some_and(|n| n.contains("risk")));
}

#[test]
fn a_holdout_split_and_the_privacy_score() {
    let catalog = catalog();
    let data = repo().join("data/customers_pii.csv");
    let p = plan_text(
        &catalog,
        &format!(
            r#"
            version = 1
            [stages.source]
            uses = "builtin:source"
            with = {{ path = {} }}
            [stages.train]
            uses = "builtin:split"
            inputs = ["source"]
            with = {{ part = "train", holdout = 0.3, seed = 4 }}
            [stages.holdout]
            uses = "builtin:split"
            inputs = ["source"]
            with = {{ part = "holdout", holdout = 0.3, seed = 4 }}
            [stages.pii]
            uses = "doppel/pii@^0.1"
            inputs = ["train"]
            [stages.synth]
            uses = "builtin:copula"
            inputs = ["train"]
            [stages.leaky]
            uses = "builtin:privacy"
            inputs = ["train", "train", "holdout", "pii"]
            [stages.privacy]
            uses = "builtin:privacy"
            inputs = ["train", "synth", "holdout", "pii"]
            [stages.protect]
            uses = "builtin:protect"
            inputs = ["train", "pii"]
            [stages.synth_protected]
            uses = "builtin:copula"
            inputs = ["protect"]
            [stages.protected]
            uses = "builtin:privacy"
            inputs = ["train", "synth_protected", "holdout", "pii"]
            "#,
            lit(&data)
        ),
    );
    let out = run(&p).unwrap();
    let rows = |id: &str| out.stage(id).unwrap().output.table().unwrap().rows();
    assert_eq!((rows("train"), rows("holdout")), (3500, 1500));
    let metrics = |id: &str| match &out.stage(id).unwrap().output {
        Output::Metrics(m) => m.as_ref().clone(),
        _ => panic!("metrics"),
    };
    // Releasing the training table itself: every row copied, every PII value copied.
    let leaky = metrics("leaky");
    assert_eq!(metric(&leaky, "ExactCopyRate").value, 1.0);
    assert_eq!(metric(&leaky, "NewRowSynthesis").value, 0.0);
    assert_eq!(metric(&leaky, "DCRBaselineProtection").value, 0.0);
    let email = leaky
        .iter()
        .find(|v| v.name == "PIICopyRate" && v.columns == ["email"])
        .unwrap();
    assert_eq!(email.value, 1.0);
    let score = metric(&leaky, "Privacy Score");
    assert!(
        score.value < 40.0 && score.note.as_deref().unwrap().starts_with("critical risk"),
        "{score:?}"
    );
    // The copula alone, without protect: the release rule still keeps every
    // real identifier and rare value out (the copula used to resample real
    // e-mails as categories), and the score measures exactly that.
    let unprotected = metrics("privacy");
    assert!(metric(&unprotected, "NewRowSynthesis").value > 0.95);
    let email = unprotected
        .iter()
        .find(|v| v.name == "PIICopyRate" && v.columns == ["email"])
        .unwrap();
    assert_eq!(email.value, 0.0, "{email:?}");
    let rare: Vec<&MetricValue> = unprotected
        .iter()
        .filter(|v| v.name == "RareValueCopyRate" && v.value > 0.0)
        .collect();
    assert!(rare.is_empty(), "{rare:?}");
    // The copy of the real table released them all: every text column named.
    let leaked = metric(&leaky, "Privacy Score").note.clone().unwrap_or_default();
    assert!(leaked.contains("`full_name`") && leaked.contains("`email`"), "{leaked}");
    // Protected first, nothing personal is copied and the score is not capped.
    let protected = metrics("protected");
    let copies: Vec<(&[String], f64)> = protected
        .iter()
        .filter(|v| v.name == "PIICopyRate" && v.value > 0.0)
        .map(|v| (v.columns.as_slice(), v.value))
        .collect();
    // Dates shift by up to half a year, so some land on real birth dates.
    assert!(
        copies.iter().all(|(c, _)| c == &["date_of_birth".to_owned()]),
        "{copies:?}"
    );
    let overfit = metric(&protected, "DCROverfittingProtection");
    assert!(overfit.value > 0.5, "{overfit:?}");
    let score = metric(&protected, "Privacy Score");
    assert!(score.value >= 40.0, "{score:?}");
}
