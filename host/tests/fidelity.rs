//! builtin:fidelity against the scikit-learn reference
//! (`generators/benches/fidelity.py`, run by
//! `tests/fixtures/fidelity/make_golden.py`) on a committed fixture, and on
//! twins whose faults it must catch.

use doppel_host::exec::Output;
use doppel_host::plugin::bindings::types::MetricValue;

use crate::common::{catalog, lit, plan_text, repo, run};

fn metric<'a>(m: &'a [MetricValue], name: &str) -> &'a MetricValue {
    m.iter()
        .find(|v| v.name == name && v.columns.is_empty())
        .unwrap_or_else(|| panic!("no {name}"))
}

fn extra(v: &MetricValue, key: &str) -> f64 {
    v.extra
        .iter()
        .find(|e| e.0 == key)
        .unwrap_or_else(|| panic!("no {key} on {}", v.name))
        .1
}

fn fidelity(train: &str, synthetic: &str, holdout: &str, with: &str) -> Vec<MetricValue> {
    let catalog = catalog();
    let p = plan_text(
        &catalog,
        &format!(
            r#"
            version = 1
            [stages.train]
            uses = "builtin:source"
            with = {{ path = {train} }}
            [stages.synthetic]
            uses = "builtin:source"
            with = {{ path = {synthetic} }}
            [stages.holdout]
            uses = "builtin:source"
            with = {{ path = {holdout} }}
            [stages.fidelity]
            uses = "builtin:fidelity"
            inputs = ["train", "synthetic", "holdout"]
            with = {{ {with} }}
            "#
        ),
    );
    let out = run(&p).unwrap();
    match &out.stage("fidelity").unwrap().output {
        Output::Metrics(m) => m.as_ref().clone(),
        _ => panic!("metrics"),
    }
}

#[test]
fn fidelity_metrics_match_the_scikit_learn_reference() {
    let dir = repo().join("host/tests/fixtures/fidelity");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    let want = |k: &str| golden[k].as_f64().unwrap_or_else(|| panic!("{k}"));
    let m = fidelity(
        &lit(&dir.join("train.csv")),
        &lit(&dir.join("synthetic.csv")),
        &lit(&dir.join("holdout.csv")),
        r#"target = "income""#,
    );
    // The tables fit inside every sample, so the distance metrics see the
    // same rows as the reference: exact agreement.
    for (name, key) in [
        ("AlphaPrecision", "alpha_precision"),
        ("BetaRecall", "beta_recall"),
        ("DCRShare", "dcr_share"),
    ] {
        let got = metric(&m, name).value;
        assert!(
            (got - want(key)).abs() < 1e-9,
            "{name}: doppel {got} vs reference {}",
            want(key)
        );
    }
    // Classifiers differ (forust against scikit-learn's histogram booster)
    // and so do the random folds; scikit-learn's own AUC moves by
    // `c2st_auc_spread` (0.02) across seeds. Tolerance: 0.05 in AUC.
    let c2st = metric(&m, "C2ST");
    let auc = extra(c2st, "auc");
    assert!(
        (auc - want("c2st_auc")).abs() < 0.05,
        "C2ST AUC {auc} vs {}",
        want("c2st_auc")
    );
    assert!((c2st.value - (1.0 - 2.0 * (auc - 0.5).abs())).abs() < 1e-12);
    let tstr = metric(&m, "TSTR AUC");
    assert!(
        (tstr.value - want("tstr_auc")).abs() < 0.05,
        "TSTR {} vs {}",
        tstr.value,
        want("tstr_auc")
    );
    let trtr = extra(tstr, "trtr_auc");
    assert!(
        (trtr - want("trtr_auc")).abs() < 0.05,
        "TRTR {trtr} vs {}",
        want("trtr_auc")
    );
    // The per-target line names its column.
    assert!(m.iter().any(|v| v.name == "TSTR AUC" && v.columns == ["income"]));
}

#[test]
fn copies_and_shuffled_columns_are_caught() {
    let dir = repo().join("host/tests/fixtures/fidelity");
    let (train, holdout) = (lit(&dir.join("train.csv")), lit(&dir.join("holdout.csv")));
    // Releasing the training rows themselves: every synthetic row is at
    // distance 0 from training, so the DCR share is 1 (memorised). (Detection
    // does not see copies: a row's twin in the training folds carries the
    // other label, so its AUC falls below one half, as scikit-learn's does.)
    let copy = fidelity(&train, &train, &holdout, "");
    assert_eq!(metric(&copy, "DCRShare").value, 1.0);
    // Other real rows of the same population are the ideal twin: detection
    // cannot tell them from the training rows.
    let fresh = fidelity(&train, &holdout, &holdout, "");
    assert!(metric(&fresh, "C2ST").value > 0.8, "{}", metric(&fresh, "C2ST").value);
    // Every column shuffled on its own keeps every marginal (SDMetrics' shape
    // score 1.0) and breaks every dependence: detection sees it, and a model
    // trained on it predicts income no better than chance.
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(dir.join("train.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let width = rows[0].len();
    let mut out = String::from(header);
    out.push('\n');
    for r in 0..rows.len() {
        // A fixed permutation per column: row r takes column c from row (r·(2c+1)+c) mod n.
        let cells: Vec<&str> = (0..width)
            .map(|c| rows[(r * (2 * c + 1) + c * 7) % rows.len()][c])
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    let shuffled = tmp.path().join("shuffled.csv");
    std::fs::write(&shuffled, out).unwrap();
    let m = fidelity(&train, &lit(&shuffled), &holdout, r#"target = "income""#);
    assert!(metric(&m, "C2ST").value < 0.6, "C2ST {}", metric(&m, "C2ST").value);
    let tstr = metric(&m, "TSTR AUC");
    assert!(tstr.value < 0.65 && extra(tstr, "trtr_auc") > 0.8, "{tstr:?}");
}

#[test]
fn a_bad_target_is_named() {
    let dir = repo().join("host/tests/fixtures/fidelity");
    let catalog = catalog();
    for (target, says) in [("nope", "`nope`"), ("age", "numerical")] {
        let p = plan_text(
            &catalog,
            &format!(
                r#"
                version = 1
                [stages.train]
                uses = "builtin:source"
                with = {{ path = {0} }}
                [stages.fidelity]
                uses = "builtin:fidelity"
                inputs = ["train", "train", "train"]
                with = {{ target = "{target}" }}
                "#,
                lit(&dir.join("train.csv"))
            ),
        );
        let err = run(&p).unwrap_err().to_string();
        assert!(err.contains(says) && err.contains("target"), "{err}");
    }
}
