use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};

use super::*;
use crate::NoProgress;

fn table(n: usize) -> (RecordBatch, Vec<SemanticType>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("plan", DataType::Utf8, true),
        Field::new("seats", DataType::Int64, true),
        Field::new("spend", DataType::Float64, true),
        Field::new("joined", DataType::Date32, true),
        Field::new("active", DataType::Boolean, true),
    ]));
    let plans = ["free", "pro", "team", "enterprise"];
    #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, reason = "small")]
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| 1000 + i as i64))),
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| (i % 17 != 0).then_some(plans[i % 4])),
            )),
            // Seats follow the plan exactly: 1, 5, 20, 100.
            Arc::new(Int64Array::from_iter(
                (0..n).map(|i| (i % 17 != 0).then_some([1, 5, 20, 100][i % 4])),
            )),
            // Spend is continuous, grows with seats, and is null for one row in 11.
            Arc::new(Float64Array::from_iter((0..n).map(|i| {
                (i % 11 != 0).then_some(([1.0, 5.0, 20.0, 100.0][i % 4]) * 9.5 + ((i * 37) % 101) as f64 / 10.0)
            }))),
            Arc::new(Date32Array::from_iter(
                (0..n).map(|i| (i % 13 != 0).then_some(19_000 + (i * 7 % 365) as i32)),
            )),
            Arc::new(BooleanArray::from_iter((0..n).map(|i| Some(i % 4 != 0)))),
        ],
    )
    .unwrap();
    let semantics = vec![
        SemanticType::Id,
        SemanticType::Categorical,
        SemanticType::Numerical,
        SemanticType::Numerical,
        SemanticType::Datetime,
        SemanticType::Boolean,
    ];
    (batch, semantics)
}

fn fit(batch: &RecordBatch, semantics: &[SemanticType], params: &Params) -> Box<dyn Model> {
    let data = TrainingData { batch, semantics };
    Cart.fit(&data, params, 7, &NoProgress).unwrap()
}

#[test]
fn every_type_round_trips_with_its_dependence() {
    let (batch, semantics) = table(2000);
    let model = fit(&batch, &semantics, &Params::new());
    let twin = model.sample(3000, 1, &NoProgress).unwrap();
    assert_eq!(twin.schema(), batch.schema());
    assert_eq!(twin.num_rows(), 3000);
    // Keys are fresh and unique.
    let ids = twin.column(0).as_primitive::<Int64Type>();
    let real: HashSet<i64> = batch
        .column(0)
        .as_primitive::<Int64Type>()
        .values()
        .iter()
        .copied()
        .collect();
    assert!(ids.values().iter().all(|v| !real.contains(v)));
    // Seats follow the plan in every synthetic row, nulls included.
    let plan = twin.column(1).as_string::<i32>();
    let seats = twin.column(2).as_primitive::<Int64Type>();
    let mut nulls = 0;
    for r in 0..twin.num_rows() {
        if plan.is_null(r) {
            nulls += 1;
            assert!(seats.is_null(r), "a null plan has null seats");
            continue;
        }
        let want = match plan.value(r) {
            "free" => 1,
            "pro" => 5,
            "team" => 20,
            _ => 100,
        };
        assert_eq!(seats.value(r), want, "row {r}");
    }
    // Null shares survive (1 in 17 plans).
    assert!((100..260).contains(&nulls), "{nulls} null plans");
    // Spend is smoothed over nearby real values, so a row may leave its plan's
    // exact range, yet it stays within the column's range and each plan's mean
    // spend stays close to the real one (the dependence survives).
    let spend = twin.column(3).as_primitive::<Float64Type>();
    let (mut sum, mut count) = ([0.0f64; 4], [0usize; 4]);
    for r in 0..twin.num_rows() {
        if spend.is_null(r) {
            continue;
        }
        assert!((9.5..=960.0).contains(&spend.value(r)), "{}", spend.value(r));
        if !plan.is_null(r) {
            let k = [1, 5, 20, 100].iter().position(|&s| s == seats.value(r)).unwrap();
            sum[k] += spend.value(r);
            count[k] += 1;
        }
    }
    for (k, seat) in [1.0, 5.0, 20.0, 100.0].into_iter().enumerate() {
        let mean = sum[k] / count[k] as f64;
        let want = seat * 9.5 + 5.0;
        assert!(
            (mean - want).abs() < 0.1 * want + 2.0,
            "plan {k}: mean spend {mean}, real {want}"
        );
    }
    assert!(spend.null_count() > 100);
    // Dates stay dates in range; booleans keep their share.
    let joined = twin.column(4).as_primitive::<arrow::datatypes::Date32Type>();
    assert!(joined.iter().flatten().all(|d| (19_000..19_365).contains(&d)));
    let active = twin.column(5).as_boolean();
    let share = active.true_count() as f64 / 3000.0;
    assert!((0.70..0.80).contains(&share), "{share}");
}

#[test]
fn same_seed_same_table_and_no_training_row_copied() {
    let (batch, semantics) = table(1500);
    // Drop the id column: without it, rows can be copied.
    let batch = batch.project(&[1, 2, 3, 4, 5]).unwrap();
    let semantics = &semantics[1..];
    let model = fit(
        &batch,
        semantics,
        &Params::new().set("smoothing", ParamValue::Boolean(false)),
    );
    let a = model.sample(4000, 3, &NoProgress).unwrap();
    let b = model.sample(4000, 3, &NoProgress).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, model.sample(4000, 4, &NoProgress).unwrap());
    let key = |t: &RecordBatch, r: usize| -> String {
        (0..t.num_columns())
            .map(|c| arrow::util::display::array_value_to_string(t.column(c), r).unwrap())
            .collect::<Vec<_>>()
            .join("|")
    };
    let real: HashSet<String> = (0..batch.num_rows()).map(|r| key(&batch, r)).collect();
    let copies = (0..a.num_rows()).filter(|&r| real.contains(&key(&a, r))).count();
    assert_eq!(copies, 0);
    // Allowed, the same model would copy many (the table repeats itself).
    let loose = fit(
        &batch,
        semantics,
        &Params::new()
            .set("smoothing", ParamValue::Boolean(false))
            .set("allow_copies", ParamValue::Boolean(true)),
    );
    let c = loose.sample(4000, 3, &NoProgress).unwrap();
    assert!((0..c.num_rows()).filter(|&r| real.contains(&key(&c, r))).count() > 100);
}

#[test]
fn leaves_hold_at_least_min_leaf_rows() {
    let (batch, semantics) = table(1000);
    let data = TrainingData {
        batch: &batch,
        semantics: &semantics,
    };
    let model = CartModel::fit(
        &data,
        &Params::new().set("min_leaf", ParamValue::Integer(25)),
        0,
        &NoProgress,
    )
    .unwrap();
    for t in &model.trees {
        let sizes = t.leaf_sizes();
        assert!(sizes.iter().all(|&n| n >= 25), "{sizes:?}");
        assert_eq!(sizes.iter().sum::<u32>(), 1000);
        // Distributions, not rows: the model keeps no row number.
        assert!(t.donors.is_empty());
    }
    let notes = model.notes().join("\n");
    assert!(notes.contains("at least 25"), "{notes}");
    // Asking for leaves of a person or two is refused, not obeyed.
    let err = CartModel::fit(
        &data,
        &Params::new().set("min_leaf", ParamValue::Integer(2)),
        0,
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("min_leaf") && err.contains("below 5"), "{err}");
}

#[test]
fn first_columns_lead_the_order_and_bad_names_are_refused() {
    let (batch, semantics) = table(300);
    let data = TrainingData {
        batch: &batch,
        semantics: &semantics,
    };
    let model = CartModel::fit(
        &data,
        &Params::new().set("first", ParamValue::Strings(vec!["spend".into()])),
        0,
        &NoProgress,
    )
    .unwrap();
    assert!(
        model.notes()[0].starts_with("visit order: spend →"),
        "{:?}",
        model.notes()
    );
    let err = CartModel::fit(
        &data,
        &Params::new().set("first", ParamValue::Strings(vec!["nope".into()])),
        0,
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no column `nope`"), "{err}");
    let err = CartModel::fit(
        &data,
        &Params::new().set("first", ParamValue::Strings(vec!["id".into()])),
        0,
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not modelled"), "{err}");
}

#[test]
fn atoms_are_values_many_rows_share() {
    assert_eq!(atoms(&[0.0, 0.0, 0.0, 1.0, 2.0, f64::NAN], 0.3), vec![0.0]);
    assert!(atoms(&[1.0, 2.0, 3.0], 0.5).is_empty());
}

#[test]
fn smoothed_numbers_stay_in_the_columns_range_and_leave_real_values() {
    // A near-unique continuous column: released values are redrawn near
    // their donor's rank, so most are no real value at all.
    let n = 2000;
    let schema = Arc::new(Schema::new(vec![Field::new("w", DataType::Float64, false)]));
    #[allow(clippy::cast_precision_loss, reason = "small")]
    let values: Vec<f64> = (0..n).map(|i| 100.0 + (i * i % 9973) as f64 * 1.37).collect();
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Float64Array::from(values.clone()))]).unwrap();
    let model = fit(&batch, &[SemanticType::Numerical], &Params::new());
    let twin = model.sample(n, 5, &NoProgress).unwrap();
    let out = twin.column(0).as_primitive::<Float64Type>();
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
    let real: HashSet<u64> = values.iter().map(|v| v.to_bits()).collect();
    let copied = out.values().iter().filter(|v| real.contains(&v.to_bits())).count();
    assert!(out.values().iter().all(|v| (lo..=hi).contains(v)));
    assert!(copied < n / 10, "{copied} real values released as they are");
}

#[test]
fn given_values_fix_columns_and_the_rest_follows_them() {
    let (batch, semantics) = table(2000);
    let data = TrainingData {
        batch: &batch,
        semantics: &semantics,
    };
    let given = |pairs: &[&str]| {
        CartModel::fit(
            &data,
            &Params::new().set(
                "given",
                ParamValue::Strings(pairs.iter().map(|p| (*p).to_owned()).collect()),
            ),
            0,
            &NoProgress,
        )
    };
    let model = given(&["plan=team", "joined=2022-01-10"]).unwrap();
    let twin = model.sample(500, 2, &NoProgress).unwrap();
    let plan = twin.column(1).as_string::<i32>();
    let seats = twin.column(2).as_primitive::<Int64Type>();
    let joined = twin.column(4).as_primitive::<arrow::datatypes::Date32Type>();
    for r in 0..twin.num_rows() {
        assert_eq!(plan.value(r), "team");
        // Seats follow the plan exactly in the real table: the trees keep it.
        assert_eq!(seats.value(r), 20, "row {r}");
        assert_eq!(joined.value(r), 19_002);
    }
    assert!(
        model.notes().iter().any(|n| n.contains("plan = team")),
        "{:?}",
        model.notes()
    );
    // Numbers are given in the column's own terms.
    let twin = given(&["seats=100"]).unwrap().sample(200, 1, &NoProgress).unwrap();
    let plan = twin.column(1).as_string::<i32>();
    assert!((0..200).all(|r| plan.value(r) == "enterprise"));
    for (pairs, says) in [
        (&["plan=platinum"][..], "never holds `platinum`"),
        (&["plan"][..], "not `column=value`"),
        (&["seats=many"][..], "not a value of column `seats`"),
        (&["nope=1"][..], "no column `nope`"),
        (&["plan=pro", "plan=team"][..], "given twice"),
    ] {
        let err = given(pairs).unwrap_err().to_string();
        assert!(err.contains(says) && err.contains("given"), "{err}");
    }
}

#[test]
fn timestamps_decimals_small_ints_text_and_long_tails_keep_their_types() {
    use arrow::array::{Decimal128Array, Float32Array, TimestampMillisecondArray, UInt8Array};
    use arrow::datatypes::TimeUnit;
    let n = 3000;
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("price", DataType::Decimal128(10, 2), true),
        Field::new("score", DataType::Float32, false),
        Field::new("level", DataType::UInt8, false),
        Field::new("city", DataType::Utf8, false),
        Field::new("comment", DataType::Utf8, true),
    ]));
    #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, reason = "small")]
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(
                TimestampMillisecondArray::from_iter(
                    (0..n).map(|i| (i % 9 != 0).then_some(1_700_000_000_000 + (i as i64 * 7_919_000) % 86_400_000_000)),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(
                Decimal128Array::from_iter((0..n).map(|i| (i % 7 != 0).then_some(((i * 31) % 10_000) as i128)))
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
            Arc::new(Float32Array::from_iter_values((0..n).map(|i| (i % 97) as f32 / 7.0))),
            Arc::new(UInt8Array::from_iter_values((0..n).map(|i| (i % 5) as u8))),
            // A long tail: one city in three is "north", the rest spread over 400.
            Arc::new(StringArray::from_iter_values((0..n).map(|i| {
                if i % 3 == 0 {
                    "north".to_owned()
                } else {
                    format!("town {}", (i * 13) % 400)
                }
            }))),
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| (i % 4 != 0).then(|| ["fine", "late again", "ok"][i % 3])),
            )),
        ],
    )
    .unwrap();
    let semantics = vec![
        SemanticType::Datetime,
        SemanticType::Numerical,
        SemanticType::Numerical,
        SemanticType::Categorical,
        SemanticType::Categorical,
        SemanticType::Text,
    ];
    let model = fit(&batch, &semantics, &Params::new());
    let twin = model.sample(n, 5, &NoProgress).unwrap();
    assert_eq!(twin.schema(), schema);
    let at = twin
        .column(0)
        .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
    let real_at = batch
        .column(0)
        .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
    let (lo, hi) = (
        arrow::compute::min(real_at).unwrap(),
        arrow::compute::max(real_at).unwrap(),
    );
    assert!(at.iter().flatten().all(|t| (lo..=hi).contains(&t)));
    assert!((200..500).contains(&at.null_count()), "{}", at.null_count());
    let price = twin.column(1).as_primitive::<arrow::datatypes::Decimal128Type>();
    let bad: Vec<i128> = price
        .iter()
        .flatten()
        .filter(|p| !(0..10_000).contains(p))
        .take(5)
        .collect();
    assert!(bad.is_empty(), "{bad:?} {:?}", price.iter().take(5).collect::<Vec<_>>());
    let city = twin.column(4).as_string::<i32>();
    let north = (0..n).filter(|&r| city.value(r) == "north").count();
    assert!((850..1150).contains(&north), "{north}");
    let comment = twin.column(5).as_string::<i32>();
    assert!(
        comment
            .iter()
            .flatten()
            .all(|c| ["fine", "late again", "ok"].contains(&c))
    );
}

#[test]
fn a_saved_model_samples_what_the_fitted_one_does() {
    let (batch, semantics) = table(2000);
    let copies = Params::new().set("allow_copies", ParamValue::Boolean(true));
    Cart.check_save(&copies).unwrap();
    let model = fit(&batch, &semantics, &copies);
    let file = model.save().expect("cart saves").unwrap();
    assert_eq!(crate::saved_generator(&file).unwrap(), "cart");
    let loaded = crate::load_model(&file).unwrap();
    assert_eq!(loaded.suggested_rows(), Some(2000));
    assert!(loaded.notes().iter().any(|n| n.contains("loaded from a saved model")));
    let (a, b) = (
        model.sample(3000, 9, &NoProgress).unwrap(),
        loaded.sample(3000, 9, &NoProgress).unwrap(),
    );
    assert_eq!(a.schema(), b.schema());
    // Every modelled column is the same row for row; the key column is
    // fresh either way (the file keeps no real key to shape new ones on).
    for c in 1..a.num_columns() {
        assert_eq!(a.column(c), b.column(c), "column {c}");
    }
    let keys = b.column(0).as_primitive::<Int64Type>();
    let unique: HashSet<i64> = keys.values().iter().copied().collect();
    assert_eq!(unique.len(), 3000);
    // What was loaded saves again, to a model that samples the same.
    let twice = crate::load_model(&loaded.save().unwrap().unwrap()).unwrap();
    assert!(twice.sample(3000, 9, &NoProgress).unwrap() == b);

    // Conditional sampling survives the file.
    let given = fit(
        &batch,
        &semantics,
        &copies
            .clone()
            .set("given", ParamValue::Strings(vec!["plan=team".into()])),
    );
    let again = crate::load_model(&given.save().unwrap().unwrap()).unwrap();
    let twin = again.sample(500, 1, &NoProgress).unwrap();
    let plan = twin.column(1).as_string::<i32>();
    assert!((0..500).all(|r| plan.value(r) == "team"));
}

#[test]
fn saving_is_refused_before_a_fit_when_it_would_drop_a_safeguard() {
    let err = Cart.check_save(&Params::new()).unwrap_err().to_string();
    assert!(err.contains("allow_copies"), "{err}");
    let err = Cart
        .check_save(
            &Params::new()
                .set("allow_copies", ParamValue::Boolean(true))
                .set("smoothing", ParamValue::Boolean(false)),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("smoothing"), "{err}");
    // A model fitted with copies refused says why it cannot be saved.
    let (batch, semantics) = table(300);
    let model = fit(&batch, &semantics, &Params::new());
    let err = model.save().unwrap().unwrap_err().to_string();
    assert!(err.contains("allow_copies"), "{err}");
}

#[test]
fn a_damaged_file_is_an_error_not_a_panic() {
    let (batch, semantics) = table(600);
    let model = fit(
        &batch,
        &semantics,
        &Params::new().set("allow_copies", ParamValue::Boolean(true)),
    );
    let file = model.save().unwrap().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut loaded = 0;
    for _ in 0..400 {
        let mut bad = file.clone();
        for _ in 0..rng.random_range(1..4) {
            let i = rng.random_range(0..bad.len());
            bad[i] ^= 1 << rng.random_range(0..8);
        }
        // Either refused, or a model that samples without panicking.
        if let Ok(m) = crate::load_model(&bad) {
            loaded += 1;
            let _ = m.sample(64, 1, &NoProgress);
        }
    }
    // Flips in padding or in the middle of a value load: that is fine, as
    // long as nothing panicked. Most must be caught.
    assert!(loaded < 400, "no damage was noticed");
    // Truncated files are refused.
    for cut in [0, 8, file.len() / 2, file.len() - 1] {
        assert!(crate::load_model(&file[..cut]).is_err());
    }
}
