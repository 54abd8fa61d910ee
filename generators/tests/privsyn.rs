//! Behaviour users rely on from `builtin:privsyn`: the budget asked for is
//! the budget spent and reported; values only one person has never leave;
//! declared public knowledge is honoured; Adult's structure survives ε = 1.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float64Array, RecordBatch, StringArray};
use arrow::csv::ReaderBuilder;
use arrow::csv::reader::Format;
use arrow::datatypes::{DataType, Field, Schema};
use doppel_generators::{Error, Generator, Model, NoProgress, ParamValue, Params, PrivSyn, TrainingData, semantic};

fn adult() -> RecordBatch {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/adult.csv");
    let mut file = File::open(path).expect("data/adult.csv");
    let format = Format::default().with_header(true);
    let (schema, _) = format.infer_schema(&mut file, Some(1000)).expect("schema");
    let reader = ReaderBuilder::new(Arc::new(schema))
        .with_format(format)
        .build(File::open(path).expect("data/adult.csv"))
        .expect("reader");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat")
}

fn fit(batch: &RecordBatch, params: Params, seed: u64) -> Box<dyn Model> {
    let semantics = semantic::infer_batch(batch);
    let data = TrainingData {
        batch,
        semantics: &semantics,
    };
    let params = params.set("reproducible_noise", ParamValue::Boolean(true));
    PrivSyn.fit(&data, &params, seed, &NoProgress).expect("fit")
}

fn eps(e: f64) -> Params {
    Params::new().set("epsilon", ParamValue::Float(e))
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let col = batch.column_by_name(name).expect("column");
    let col = arrow::compute::cast(col, &DataType::Utf8).expect("utf8");
    col.as_string::<i32>().iter().map(|v| v.map(str::to_owned)).collect()
}

/// Distribution of a column (or pair of columns) as shares.
fn shares(batch: &RecordBatch, names: &[&str]) -> HashMap<Vec<Option<String>>, f64> {
    let cols: Vec<Vec<Option<String>>> = names.iter().map(|n| strings(batch, n)).collect();
    let mut out = HashMap::new();
    for r in 0..batch.num_rows() {
        *out.entry(cols.iter().map(|c| c[r].clone()).collect()).or_insert(0.0) += 1.0;
    }
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let n = batch.num_rows() as f64;
    out.values_mut().for_each(|v| *v /= n);
    out
}

/// Total variation distance between two tables' distributions of `names`.
fn tvd(real: &RecordBatch, synth: &RecordBatch, names: &[&str]) -> f64 {
    let (a, b) = (shares(real, names), shares(synth, names));
    let keys: std::collections::HashSet<_> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .map(|k| (a.get(k).unwrap_or(&0.0) - b.get(k).unwrap_or(&0.0)).abs())
        .sum::<f64>()
        / 2.0
}

#[test]
fn adult_at_epsilon_one_keeps_marginals_and_associations() {
    let real = adult();
    let model = fit(&real, eps(1.0), 1);
    let spend = model.privacy().expect("a DP model reports its spend");
    assert!(
        (spend.epsilon - 1.0).abs() < 1e-6,
        "asked ε = 1, spent {}",
        spend.epsilon
    );
    assert!((spend.delta - 1e-9).abs() < 1e-18);
    let rho: f64 = spend.steps.iter().map(|(_, r)| r).sum();
    assert!((rho - spend.rho).abs() < 1e-12, "steps add up to the total ρ");

    let rows = model.suggested_rows().expect("noisy row count");
    assert!(rows.abs_diff(real.num_rows()) < 500, "noisy total {rows}");
    let synth = model.sample(rows, 1, &NoProgress).unwrap();
    assert_eq!(synth.schema(), real.schema());
    assert_eq!(synth.num_rows(), rows);

    // Columns whose every value is common: only noise separates them.
    for col in ["marital_status", "relationship", "sex", "income"] {
        let d = tvd(&real, &synth, &[col]);
        assert!(d < 0.03, "1-way TVD of {col} is {d:.3}");
    }
    // Columns with rare values (education has 5 with under 550 rows, 4.6 %
    // of the table) lose them to null: that mass is the price of not
    // releasing rare values.
    for col in ["workclass", "education", "race"] {
        let d = tvd(&real, &synth, &[col]);
        assert!(d < 0.08, "1-way TVD of {col} is {d:.3}");
    }
    // Strong pairs are selected and measured: wives are women, husbands men.
    for pair in [["relationship", "sex"], ["marital_status", "relationship"]] {
        let d = tvd(&real, &synth, &pair);
        assert!(d < 0.1, "2-way TVD of {pair:?} is {d:.3}");
    }
    // Numeric columns stay in range with a similar centre.
    let ages = arrow::compute::cast(synth.column_by_name("age").unwrap(), &DataType::Float64).unwrap();
    let ages: &Float64Array = ages.as_primitive();
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let mean = ages.iter().flatten().sum::<f64>() / ages.len() as f64;
    assert!((mean - 38.6).abs() < 2.5, "mean age {mean}");
}

#[test]
fn more_budget_gives_a_more_faithful_twin() {
    let real = adult();
    let mut errors = Vec::new();
    for e in [0.05, 10.0] {
        let model = fit(&real, eps(e), 3);
        let synth = model.sample(real.num_rows(), 3, &NoProgress).unwrap();
        errors.push(tvd(&real, &synth, &["education", "occupation"]));
    }
    assert!(
        errors[1] < errors[0],
        "TVD at ε=0.05 {} vs ε=10 {}",
        errors[0],
        errors[1]
    );
}

#[test]
fn a_value_only_one_row_has_is_never_released() {
    let n = 4000;
    let city: ArrayRef = Arc::new(StringArray::from_iter_values((0..n).map(|i| {
        if i == 17 {
            "Zanzibar"
        } else if i % 3 == 0 {
            "Oslo"
        } else {
            "Lima"
        }
    })));
    let plan: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..n).map(|i| if i % 2 == 0 { "free" } else { "pro" }),
    ));
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("city", DataType::Utf8, false),
            Field::new("plan", DataType::Utf8, false),
        ])),
        vec![city, plan],
    )
    .unwrap();
    for seed in 0..20 {
        // Even with a large ε, a value of one person sits far below the
        // release threshold.
        let model = fit(&batch, eps(8.0), seed);
        let synth = model.sample(n, seed, &NoProgress).unwrap();
        let cities = strings(&synth, "city");
        assert!(!cities.iter().any(|c| c.as_deref() == Some("Zanzibar")), "seed {seed}");
        assert!(cities.iter().any(|c| c.as_deref() == Some("Oslo")));
    }
}

#[test]
fn declared_bounds_clip_and_public_categories_keep_every_value() {
    let n = 3000;
    let score: ArrayRef = Arc::new(Float64Array::from_iter_values((0..n).map(|i| f64::from(i % 500))));
    let tier: ArrayRef = Arc::new(StringArray::from_iter_values((0..n).map(|i| {
        if i == 5 {
            "platinum"
        } else if i % 2 == 0 {
            "gold"
        } else {
            "silver"
        }
    })));
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("score", DataType::Float64, false),
            Field::new("tier", DataType::Utf8, false),
        ])),
        vec![score, tier],
    )
    .unwrap();
    let params = eps(4.0)
        .set("bounds", ParamValue::Strings(vec!["score=100..200".into()]))
        .set("public_categories", ParamValue::Strings(vec!["tier".into()]));
    let model = fit(&batch, params, 9);
    let spend = model.privacy().unwrap();
    assert!(
        spend.steps.iter().all(|(s, _)| !s.starts_with("bounds")),
        "declared bounds cost nothing: {:?}",
        spend.steps
    );
    assert!(
        spend
            .notes
            .iter()
            .any(|n| n.contains("bounds declared public for score"))
    );
    let synth = model.sample(n as usize, 9, &NoProgress).unwrap();
    let scores: &Float64Array = synth.column(0).as_primitive();
    assert!(scores.iter().flatten().all(|v| (100.0..=200.0).contains(&v)));
    // `platinum` is declared public, so it stays in the domain (it may or may
    // not be drawn); the twin never invents values outside it.
    let tiers = strings(&synth, "tier");
    assert!(
        tiers
            .iter()
            .flatten()
            .all(|t| ["gold", "silver", "platinum"].contains(&t.as_str()))
    );
    assert!(model.columns()[1].model.contains("3 released categories"));
}

#[test]
fn bad_parameters_name_the_parameter() {
    let batch = adult();
    let semantics = semantic::infer_batch(&batch);
    let data = TrainingData {
        batch: &batch,
        semantics: &semantics,
    };
    let cases = [
        Params::new().set("bounds", ParamValue::Strings(vec!["age=90..17".into()])),
        Params::new().set("bounds", ParamValue::Strings(vec!["nope=1..2".into()])),
        Params::new().set("public_categories", ParamValue::Strings(vec!["nope".into()])),
        Params::new().set("epsilon", ParamValue::Float(-1.0)),
    ];
    for params in cases {
        match PrivSyn.fit(&data, &params, 0, &NoProgress) {
            Err(Error::InvalidParam { name, message }) => {
                assert!(!message.is_empty(), "{name}");
            }
            other => panic!("expected InvalidParam, got {:?}", other.map(|_| ())),
        }
    }
    let cost = PrivSyn
        .privacy_cost(&eps(0.5).set("delta", ParamValue::Float(1e-7)))
        .unwrap()
        .unwrap();
    assert_eq!((cost.epsilon, cost.delta), (0.5, 1e-7));
}
