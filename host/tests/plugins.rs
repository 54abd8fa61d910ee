//! Every first-party plugin, run through the real host on real tables.

use std::collections::BTreeMap;

use doppel_host::exec::Output;
use doppel_host::plugin::bindings::types::{MetricValue, VerdictStatus};

use crate::common::{catalog, data, lit, plan_text, run};

fn pii_verdicts(file: &str, with: &str) -> BTreeMap<String, String> {
    pii_verdicts_at(&data(file), with)
}

fn pii_verdicts_at(path: &std::path::Path, with: &str) -> BTreeMap<String, String> {
    let catalog = catalog();
    let p = plan_text(
        &catalog,
        &format!(
            r#"
            version = 1
            [stages.source]
            uses = "builtin:source"
            with = {{ path = {} }}
            [stages.pii]
            uses = "doppel/pii@^0.1"
            inputs = ["source"]
            with = {{ {with} }}
            "#,
            lit(path)
        ),
    );
    let out = run(&p).unwrap();
    let Output::Findings(f) = &out.stage("pii").unwrap().output else {
        panic!("findings")
    };
    f.columns.iter().map(|c| (c.column.clone(), c.entity.clone())).collect()
}

fn assert_labels(labels_file: &std::path::Path, got: &BTreeMap<String, String>) {
    let labels: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(labels_file).unwrap()).unwrap();
    let wrong: Vec<String> = labels
        .iter()
        .filter_map(|(column, want)| {
            let have = got.get(column).map_or("NONE", String::as_str);
            (have != want).then(|| format!("{column}: want {want}, got {have}"))
        })
        .collect();
    assert!(wrong.is_empty(), "misclassified: {wrong:#?}");
}

/// Every entity the plugin knows, beside look-alikes that must stay NONE
/// (6-digit ids, SKUs, random codes, prices, labels, counts, 5-digit scores).
#[test]
fn pii_classifies_every_entity_and_no_lookalike() {
    let fixtures = crate::common::repo().join("plugins/pii/tests/fixtures");
    let got = pii_verdicts_at(&fixtures.join("entities.csv"), "");
    assert_labels(&fixtures.join("entities.labels.json"), &got);
}

#[test]
fn pii_classifies_every_labelled_column() {
    // Floats never reach the detector (a number alone is not personal data):
    // a column it does not report is NONE.
    let got = pii_verdicts("customers_pii.csv", "");
    assert_labels(&data("customers_pii.labels.json"), &got);
}

#[test]
fn pii_reports_spans_inside_free_text() {
    let catalog = catalog();
    let p = plan_text(
        &catalog,
        &format!(
            r#"
            version = 1
            [stages.source]
            uses = "builtin:source"
            with = {{ path = {} }}
            [stages.pii]
            uses = "doppel/pii@^0.1"
            inputs = ["source"]
            columns = ["notes"]
            "#,
            lit(&data("customers_pii.csv"))
        ),
    );
    let out = run(&p).unwrap();
    let Output::Findings(f) = &out.stage("pii").unwrap().output else {
        panic!("findings")
    };
    let notes = &f.columns[0];
    assert_eq!(notes.entity, "MIXED");
    assert!(notes.free_text);
    let kinds: Vec<&str> = notes.entities.iter().map(|e| e.entity.as_str()).collect();
    assert!(
        kinds.contains(&"PERSON") && kinds.contains(&"EMAIL_ADDRESS"),
        "{kinds:?}"
    );
    // Spans cover all 5,000 rows (scan_all_text), each inside its cell.
    assert_eq!(f.rows_scanned, 5000);
    assert!(f.findings.iter().any(|x| x.row > 4000));
    let text = std::fs::read_to_string(data("customers_pii.csv")).unwrap();
    let second = text.lines().nth(2).unwrap();
    assert!(second.ends_with("Customer Natalie Mendoza asked about billing"));
    let span = f.findings.iter().find(|x| x.row == 1).expect("a finding in row 1");
    let cell = "Customer Natalie Mendoza asked about billing";
    assert_eq!(&cell[span.start as usize..span.end as usize], "Natalie Mendoza");
    assert_eq!(span.entity, "PERSON");
}

#[test]
fn pii_finds_nothing_in_adult() {
    let got = pii_verdicts("adult.csv", "");
    let flagged: Vec<_> = got.iter().filter(|(_, e)| *e != "NONE").collect();
    assert!(flagged.is_empty(), "false positives on Adult: {flagged:?}");
}

fn quality(real: &str, synthetic_stage: &str, mode: &str) -> Vec<MetricValue> {
    let catalog = catalog();
    let p = plan_text(
        &catalog,
        &format!(
            r#"
            version = 1
            [stages.source]
            uses = "builtin:source"
            with = {{ path = {} }}
            [stages.copy]
            uses = "builtin:source"
            with = {{ path = {} }}
            [stages.synth]
            uses = "builtin:copula"
            inputs = ["source"]
            with = {{ seed = 1 }}
            [stages.quality]
            uses = "doppel/quality@^0.1"
            inputs = ["source", "{synthetic_stage}"]
            with = {{ mode = "{mode}" }}
            "#,
            lit(&data(real)),
            lit(&data(real)),
        ),
    );
    let out = run(&p).unwrap();
    let Output::Metrics(m) = &out.stage("quality").unwrap().output else {
        panic!("metrics")
    };
    m.as_ref().clone()
}

fn score(m: &[MetricValue], name: &str) -> f64 {
    m.iter().find(|v| v.name == name && v.columns.is_empty()).unwrap().value
}

#[test]
fn quality_of_a_table_against_itself_is_perfect() {
    let m = quality("adult.csv", "copy", "current");
    assert_eq!(score(&m, "Quality Score"), 1.0);
    assert_eq!(score(&m, "Column Shapes"), 1.0);
    assert_eq!(score(&m, "Column Pair Trends"), 1.0);
    // 15 columns: one shape score each.
    assert_eq!(m.iter().filter(|v| v.columns.len() == 1).count(), 15);
    assert_eq!(m.iter().filter(|v| v.columns.len() == 2).count(), 105);
}

#[test]
fn quality_of_the_copula_on_adult_and_both_modes() {
    let current = quality("adult.csv", "synth", "current");
    let legacy = quality("adult.csv", "synth", "legacy");
    let q = score(&current, "Quality Score");
    assert!(q > 0.8 && q < 1.0, "quality {q}");
    // Legacy mode averages every pair, the current one only trending pairs.
    let counted = |m: &[MetricValue]| {
        m.iter()
            .find(|v| v.name == "Column Pair Trends")
            .unwrap()
            .extra
            .iter()
            .find(|e| e.0 == "pairs_counted")
            .unwrap()
            .1
    };
    assert_eq!(counted(&legacy), 105.0);
    assert!(counted(&current) < 105.0);
    assert_eq!(score(&current, "Column Shapes"), score(&legacy, "Column Shapes"));
}

#[test]
fn rule_plugins_judge_upstream_facts() {
    let catalog = catalog();
    let p = plan_text(
        &catalog,
        &format!(
            r#"
            version = 1
            [attributes]
            purpose = "test"
            retention_days = 30
            [stages.source]
            uses = "builtin:source"
            with = {{ path = {} }}
            [stages.pii]
            uses = "doppel/pii@^0.1"
            inputs = ["source"]
            [stages.profile]
            uses = "builtin:profile"
            inputs = ["source"]
            [stages.rule]
            uses = "test/facts-rule@^0.1"
            inputs = ["pii", "profile", "source"]
            "#,
            lit(&data("customers_pii.csv"))
        ),
    );
    let out = run(&p).unwrap();
    let Output::Verdicts(v) = &out.stage("rule").unwrap().output else {
        panic!("verdicts")
    };
    assert_eq!(v.len(), 1);
    assert!(matches!(v[0].status, VerdictStatus::Fail));
    assert!(
        v[0].columns.contains(&"pii.email".to_owned()) && v[0].columns.contains(&"pii.ssn".to_owned()),
        "{:?}",
        v[0].columns
    );
    assert!(
        v[0].evidence.contains("profile:5000") && v[0].evidence.contains("source:5000"),
        "{}",
        v[0].evidence
    );
    assert!(v[0].evidence.ends_with("attributes: 2"), "{}", v[0].evidence);
}

/// The quality plugin against SDMetrics 0.32 on a committed pair (real and
/// synthetic, with numerical, categorical, boolean, date and null-bearing
/// columns); golden numbers from `plugins/quality/tests/fixtures/make_golden.py`.
#[test]
fn quality_matches_sdmetrics_golden_numbers() {
    let fixtures = crate::common::repo().join("plugins/quality/tests/fixtures");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("sdmetrics.json")).unwrap()).unwrap();
    let catalog = catalog();
    for mode in ["current", "legacy"] {
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
                [stages.quality]
                uses = "doppel/quality@^0.1"
                inputs = ["real", "synthetic"]
                with = {{ mode = "{mode}" }}
                "#,
                lit(&fixtures.join("real.csv")),
                lit(&fixtures.join("synthetic.csv")),
            ),
        );
        let out = run(&p).unwrap();
        // The real table's inferred semantic types are the ones SDMetrics was given.
        let real = out.stage("real").unwrap().output.table().unwrap();
        for (field, semantic) in real.schema.fields().iter().zip(real.semantics.iter()) {
            assert_eq!(
                golden["metadata"]["columns"][field.name()]["sdtype"],
                semantic.as_str(),
                "{}",
                field.name()
            );
        }
        let Output::Metrics(m) = &out.stage("quality").unwrap().output else {
            panic!("metrics")
        };
        let want = &golden[mode];
        let close =
            |a: f64, b: f64, what: &str| assert!((a - b).abs() < 1e-9, "{mode} {what}: doppel {a} vs SDMetrics {b}");
        for name in ["Quality Score", "Column Shapes", "Column Pair Trends"] {
            close(score(m, name), want[name].as_f64().unwrap(), name);
        }
        for (column, expected) in want["columns"].as_object().unwrap() {
            let got = m
                .iter()
                .find(|v| v.columns.len() == 1 && v.columns[0] == *column)
                .unwrap();
            close(got.value, expected.as_f64().unwrap(), column);
        }
        let pairs = want["pairs"].as_array().unwrap();
        assert_eq!(pairs.len(), m.iter().filter(|v| v.columns.len() == 2).count());
        for pair in pairs {
            let (a, b) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
            let got = m
                .iter()
                .find(|v| v.columns == [a, b])
                .unwrap_or_else(|| panic!("pair {a}, {b}"));
            match pair[2].as_f64() {
                Some(s) => close(got.value, s, &format!("{a} × {b}")),
                None => assert!(
                    got.value.is_nan(),
                    "{mode} {a} × {b}: {} where SDMetrics has NaN",
                    got.value
                ),
            }
            let meets = got.extra.iter().find(|e| e.0 == "meets_threshold").unwrap().1 == 1.0;
            assert_eq!(meets, pair[3].as_bool().unwrap(), "{mode} {a} × {b} meets threshold");
        }
    }
}
