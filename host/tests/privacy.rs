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

/// The score's distance part judges memorising, not fidelity: unseen real
/// people released as the "twin" tell nothing about the training people and
/// score low risk, a twin holding near-copies of 30 % of the training rows
/// does not (medium risk), whatever else it holds.
#[test]
fn the_distance_part_of_the_score_measures_memorising_not_fidelity() {
    // Adult's columns whose values are all common (so the rare-value cap,
    // tested above, stays out of the way), 10,000 rows dealt 3:1:1 into
    // training, holdout and unseen rows.
    let keep = [
        "age",
        "fnlwgt",
        "education",
        "education_num",
        "relationship",
        "race",
        "sex",
        "capital_gain",
        "capital_loss",
        "hours_per_week",
        "income",
    ];
    let text = std::fs::read_to_string(repo().join("data/adult.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let idx: Vec<usize> = keep
        .iter()
        .map(|k| header.iter().position(|h| h == k).unwrap())
        .collect();
    let pick = |l: &str| {
        let f: Vec<&str> = l.split(',').collect();
        idx.iter().map(|&i| f[i]).collect::<Vec<_>>().join(",")
    };
    let (mut train, mut holdout, mut unseen) = (Vec::new(), Vec::new(), Vec::new());
    for (i, l) in lines.take(10_000).enumerate() {
        match i % 5 {
            0..=2 => train.push(pick(l)),
            3 => holdout.push(pick(l)),
            _ => unseen.push(pick(l)),
        }
    }
    // Near-copies: 600 training rows with `fnlwgt` moved by one (no exact
    // copy, so only distances can tell), then 1,400 unseen rows.
    let fnlwgt = keep.iter().position(|k| *k == "fnlwgt").unwrap();
    let mut near: Vec<String> = train
        .iter()
        .step_by(3)
        .take(600)
        .map(|l| {
            let mut f: Vec<String> = l.split(',').map(str::to_owned).collect();
            f[fnlwgt] = (f[fnlwgt].parse::<i64>().unwrap() + 1).to_string();
            f.join(",")
        })
        .collect();
    near.extend(unseen.iter().take(1400).cloned());
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, rows: &[String]| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{}\n{}\n", keep.join(","), rows.join("\n"))).unwrap();
        path
    };
    let paths = [
        write("train.csv", &train),
        write("holdout.csv", &holdout),
        write("unseen.csv", &unseen),
        write("near.csv", &near),
    ];
    let catalog = catalog();
    let p = plan_text(
        &catalog,
        &format!(
            r#"
            version = 1
            [stages.train]
            uses = "builtin:source"
            with = {{ path = {} }}
            [stages.holdout]
            uses = "builtin:source"
            with = {{ path = {} }}
            [stages.unseen]
            uses = "builtin:source"
            with = {{ path = {} }}
            [stages.near]
            uses = "builtin:source"
            with = {{ path = {} }}
            [stages.unseen_score]
            uses = "builtin:privacy"
            inputs = ["train", "unseen", "holdout"]
            [stages.near_score]
            uses = "builtin:privacy"
            inputs = ["train", "near", "holdout"]
            [stages.near_sampled]
            uses = "builtin:privacy"
            inputs = ["train", "near", "holdout"]
            with = {{ max_queries = 1000 }}
            [stages.copy_score]
            uses = "builtin:privacy"
            inputs = ["train", "train", "holdout"]
            [stages.no_holdout]
            uses = "builtin:privacy"
            inputs = ["train", "unseen"]
            "#,
            lit(&paths[0]),
            lit(&paths[1]),
            lit(&paths[2]),
            lit(&paths[3]),
        ),
    );
    let out = run(&p).unwrap();
    let metrics = |id: &str| match &out.stage(id).unwrap().output {
        Output::Metrics(m) => m.as_ref().clone(),
        _ => panic!("metrics"),
    };
    let (unseen, near, copy, no_holdout) = (
        metrics("unseen_score"),
        metrics("near_score"),
        metrics("copy_score"),
        metrics("no_holdout"),
    );
    // Unseen real rows sit as near the training rows as any real rows do:
    // the random baseline calls that a risk, the holdout does not.
    assert!(metric(&unseen, "DCRBaselineProtection").value < 0.2, "{unseen:?}");
    let h = metric(&unseen, "DCRHoldoutProtection");
    assert!(h.value > 0.9, "{h:?}");
    let score = metric(&unseen, "Privacy Score");
    assert!(score.value >= 80.0, "{score:?}");
    assert!(extra(score, "dcr_holdout") > 0.9);
    assert!(score.extra.iter().all(|e| e.0 != "dcr_baseline"), "{score:?}");
    // 30 % near-copies: an excess of about 0.3 at distance ≈ 0.
    let h = metric(&near, "DCRHoldoutProtection");
    assert!((0.25..0.55).contains(&h.value), "{h:?}");
    assert!((extra(h, "excess_share_near_training") - 0.3).abs() < 0.05, "{h:?}");
    let near_score = metric(&near, "Privacy Score");
    assert!(near_score.value < 80.0, "{near_score:?}");
    assert!(near_score.value < score.value - 15.0, "{near_score:?} vs {score:?}");
    // Half the synthetic and holdout rows looked up (`max_queries`): the
    // near-copies are still found, each distance metric states its sample
    // and an interval holding the whole-table value, and the score is the
    // low end of its interval, never above the whole table's by chance.
    let sampled = metrics("near_sampled");
    let (hs, h) = (
        metric(&sampled, "DCRHoldoutProtection"),
        metric(&near, "DCRHoldoutProtection"),
    );
    let note = hs.note.as_deref().unwrap();
    assert!(
        note.contains("1000 of 2000 synthetic and 1000 of 2000 holdout rows"),
        "{note}"
    );
    assert!((extra(hs, "excess_share_near_training") - 0.3).abs() < 0.08, "{hs:?}");
    let interval = |note: &str| -> (f64, f64) {
        let tail = note.rsplit("95 % interval ").next().unwrap();
        let (lo, hi) = tail.split_once('–').unwrap();
        let num = |t: &str| {
            t.trim_matches(|c: char| !c.is_ascii_digit() && c != '.')
                .parse::<f64>()
                .unwrap()
        };
        (num(lo), num(hi.split([' ', ')', ';']).next().unwrap()))
    };
    let (lo, hi) = interval(note);
    assert!(lo <= h.value && h.value <= hi, "{} not in {lo}–{hi}", h.value);
    let (os, o) = (
        metric(&sampled, "DCROverfittingProtection"),
        metric(&near, "DCROverfittingProtection"),
    );
    let (lo, hi) = interval(os.note.as_deref().unwrap());
    assert!(lo <= o.value && o.value <= hi, "{} not in {lo}–{hi}: {os:?}", o.value);
    let (lo, hi) = interval(metric(&sampled, "DCRBaselineProtection").note.as_deref().unwrap());
    let b = metric(&near, "DCRBaselineProtection").value;
    assert!(lo <= b && b <= hi, "{b} not in {lo}–{hi}");
    assert_eq!(extra(metric(&sampled, "DCRBaselineProtection"), "query_rows"), 1000.0);
    // Copies are found by hashing every row, sample or not.
    for name in ["NewRowSynthesis", "ExactCopyRate"] {
        assert_eq!(metric(&sampled, name).value, metric(&near, name).value, "{name}");
    }
    let sampled_score = metric(&sampled, "Privacy Score");
    assert!(
        sampled_score.value <= near_score.value + 1.0,
        "{sampled_score:?} vs {near_score:?}"
    );
    assert!(sampled_score.value < 80.0, "{sampled_score:?}");
    assert!(
        sampled_score
            .note
            .as_deref()
            .unwrap()
            .contains("low end of a 95 % interval"),
        "{sampled_score:?}"
    );
    // Tables within the limit are looked up whole, and say nothing of it.
    assert!(h.note.is_none() && o.note.is_none(), "{h:?} {o:?}");
    assert_eq!(extra(metric(&near, "DCRBaselineProtection"), "query_rows"), 2000.0);
    // The training rows themselves: nothing protected.
    assert!(metric(&copy, "DCRHoldoutProtection").value < 0.05);
    assert!(metric(&copy, "Privacy Score").value < 40.0);
    // Without a holdout the random baseline is all there is, and it counts.
    let score = metric(&no_holdout, "Privacy Score");
    assert!(extra(score, "dcr_baseline") < 0.2, "{score:?}");
    assert!(metric(&no_holdout, "DCRHoldoutProtection").value.is_nan());
}
