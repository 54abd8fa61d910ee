//! The engine's counts against the in-memory counts, bit for bit: on a
//! local DataFusion context and on a Ballista scheduler with two executors
//! started here on loopback; and a DP fit on the cluster that spends and
//! releases exactly what the same fit in memory does.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use doppel_engine::{Engine, EngineCounts, LocalCluster, StagedTable};
use doppel_generators::counts::{Binning, CountSource, LocalCounts};
use doppel_generators::{Generator, NoProgress, ParamValue, Params, PrivSyn, SemanticType, semantic};

/// A table that looks nothing like a fixture: lower-case names with a long
/// tail, nulls everywhere, NaN, ±∞, both zeros, negative amounts, dates
/// before 1970, and a key.
fn messy(rows: usize) -> (RecordBatch, Vec<SemanticType>) {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut names = Vec::new();
    let mut amounts = Vec::new();
    let mut ages = Vec::new();
    let mut days = Vec::new();
    let mut flags = Vec::new();
    for i in 0..rows {
        let r = next();
        // Zipf-ish: a few common names, a long tail seen once or twice.
        let tail = (r % 1000) as usize;
        names.push(match r % 23 {
            0 => None,
            _ if tail < 600 => Some(["maría", "chen", "o'brien", "ndlovu"][tail % 4].to_owned()),
            _ => Some(format!("case-{:05}", next() % 4000)),
        });
        amounts.push(match next() % 41 {
            0 => None,
            1 => Some(f64::NAN),
            2 => Some(f64::INFINITY),
            3 => Some(f64::NEG_INFINITY),
            4 => Some(-0.0),
            5 => Some(0.0),
            6 => Some(2f64.powi((next() % 40) as i32)),
            k => Some(((next() % 2_000_000) as f64 - 400_000.0) / 100.0 * if k % 2 == 0 { 1.0 } else { 3.7 }),
        });
        ages.push((next() % 19 != 0).then(|| 17 + (next() % 74) as i64));
        days.push((next() % 13 != 0).then(|| (next() % 40_000) as i32 - 15_000));
        flags.push((i % 17 != 0).then(|| next() % 3 == 0));
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("age", DataType::Int64, true),
        Field::new("opened", DataType::Date32, true),
        Field::new("flag", DataType::Boolean, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..rows as i64)),
        Arc::new(StringArray::from(names)),
        Arc::new(Float64Array::from(amounts)),
        Arc::new(Int64Array::from(ages)),
        Arc::new(Date32Array::from(days)),
        Arc::new(BooleanArray::from(flags)),
    ];
    let batch = RecordBatch::try_new(schema, columns).unwrap();
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

fn adult() -> (RecordBatch, Vec<SemanticType>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/adult.csv");
    let format = arrow::csv::reader::Format::default().with_header(true);
    let (schema, _) = format
        .infer_schema(std::fs::File::open(&path).unwrap(), Some(1000))
        .unwrap();
    let reader = arrow::csv::ReaderBuilder::new(Arc::new(schema))
        .with_header(true)
        .with_batch_size(8192)
        .build(std::fs::File::open(&path).unwrap())
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let semantics = semantic::infer_batch(&batch);
    (batch, semantics)
}

/// Every question PrivSyn asks, answered by both sources, must agree.
fn assert_same_counts(engine: &dyn CountSource, local: &dyn CountSource, batch: &RecordBatch) {
    let schema = batch.schema();
    let numeric: Vec<usize> = (0..schema.fields().len())
        .filter(|&c| {
            let t = schema.field(c).data_type();
            t.is_numeric() || matches!(t, DataType::Date32)
        })
        .collect();
    let text: Vec<usize> = (0..schema.fields().len()).filter(|c| !numeric.contains(c)).collect();
    let all_values = engine.value_counts(&text).unwrap();
    for (got, want) in all_values.iter().zip(local.value_counts(&text).unwrap()) {
        assert_eq!(got.counts, want.counts, "value counts in one pass");
        assert_eq!(got.values.as_ref(), want.values.as_ref());
    }
    let buckets = engine.bucket_counts(&numeric).unwrap();
    assert_eq!(buckets, local.bucket_counts(&numeric).unwrap(), "bounds buckets");
    assert!(buckets.iter().all(|b| b.iter().sum::<u64>() > 0));

    let mut binned = Vec::new();
    for c in 0..schema.fields().len() {
        let t = schema.field(c).data_type();
        if t.is_numeric() || matches!(t, DataType::Date32) {
            // Edges at awkward places: zero, negative, a power of two, and
            // a value the column holds.
            let mut edges = vec![-5000.0, -0.0, 0.5, 64.0, 1024.0, 35.0 * 1.1, 200_000.0];
            edges.sort_by(f64::total_cmp);
            binned.push((
                c,
                Binning::Numeric {
                    edges: edges.clone(),
                    zero_bin: false,
                },
            ));
            binned.push((c, Binning::Numeric { edges, zero_bin: true }));
        } else {
            let values = local.value_counts(&[c]).unwrap().remove(0);
            let engine_values = engine.value_counts(&[c]).unwrap().remove(0);
            assert_eq!(
                values.counts,
                engine_values.counts,
                "value counts of {}",
                schema.field(c).name()
            );
            assert_eq!(values.values.as_ref(), engine_values.values.as_ref());
            // Release every other value (nulls and the rest fall in the last bin).
            let keep: Vec<u32> = (0..values.values.len() as u32).filter(|i| i % 2 == 1).collect();
            let kept = arrow::compute::take(&values.values, &arrow::array::UInt32Array::from(keep), None).unwrap();
            binned.push((c, Binning::Values(kept)));
        }
    }
    let n = binned.len();
    let mut sets: Vec<Vec<usize>> = (0..n).map(|a| vec![a]).collect();
    sets.extend((0..n).flat_map(|a| (a + 1..n).map(move |b| vec![a, b])));
    let ours = engine.tables(&binned, &sets).unwrap();
    let theirs = local.tables(&binned, &sets).unwrap();
    for (k, set) in sets.iter().enumerate() {
        assert_eq!(ours[k], theirs[k], "table {set:?}");
        assert_eq!(
            ours[k].iter().sum::<u64>(),
            batch.num_rows() as u64,
            "table {set:?} counts every row"
        );
    }
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn local_datafusion_counts_what_the_rows_in_memory_count() {
    let dir = scratch();
    for (batch, semantics) in [messy(20_000), adult()] {
        // Several parts, so partial aggregates are merged.
        let staged = StagedTable::write(std::slice::from_ref(&batch), dir.path(), 7_000).unwrap();
        assert!(staged.parts() >= 3);
        let engine = EngineCounts::open(&Engine::Local, &staged, semantics.clone()).unwrap();
        assert_same_counts(&engine, &LocalCounts::new(&batch, &semantics), &batch);
    }
}

fn dp_params() -> Params {
    Params::new()
        .set("epsilon", ParamValue::Float(2.0))
        .set("reproducible_noise", ParamValue::Boolean(true))
}

#[test]
fn a_ballista_cluster_of_two_executors_counts_bit_for_bit_and_a_dp_fit_spends_the_same() {
    let cluster = LocalCluster::start(2, 2).unwrap();
    let dir = scratch();
    for (batch, semantics) in [messy(20_000), adult()] {
        let staged = StagedTable::write(std::slice::from_ref(&batch), dir.path(), 5_000).unwrap();
        let engine = EngineCounts::open(cluster.engine(), &staged, semantics.clone()).unwrap();
        let local = LocalCounts::new(&batch, &semantics);
        assert_same_counts(&engine, &local, &batch);

        // The fit adds its noise where it runs, to the same exact counts.
        let on_cluster = PrivSyn.fit_counts(&engine, &dp_params(), 11, &NoProgress).unwrap();
        let in_memory = PrivSyn.fit_counts(&local, &dp_params(), 11, &NoProgress).unwrap();
        let (spent_cluster, spent_memory) = (on_cluster.privacy().unwrap(), in_memory.privacy().unwrap());
        assert_eq!(spent_cluster.rho.to_bits(), spent_memory.rho.to_bits());
        assert_eq!(spent_cluster.epsilon.to_bits(), spent_memory.epsilon.to_bits());
        assert_eq!(spent_cluster.delta.to_bits(), spent_memory.delta.to_bits());
        assert_eq!(spent_cluster.steps, spent_memory.steps);
        assert_eq!(
            PrivSyn.privacy_cost(&dp_params()).unwrap().unwrap().epsilon,
            2.0,
            "the ledger is charged what was asked for, before either fit"
        );
        assert_eq!(on_cluster.suggested_rows(), in_memory.suggested_rows());
        assert_eq!(on_cluster.notes(), in_memory.notes());
        let a = on_cluster.sample(3_000, 5, &NoProgress).unwrap();
        let b = in_memory.sample(3_000, 5, &NoProgress).unwrap();
        assert_eq!(a, b, "the same twin from either engine");
    }
}

#[test]
fn engine_settings_are_checked() {
    assert_eq!("local".parse::<Engine>().unwrap(), Engine::Local);
    assert_eq!(
        "ballista://sched.internal:50051".parse::<Engine>().unwrap(),
        Engine::Ballista {
            host: "sched.internal".into(),
            port: 50051
        }
    );
    assert_eq!(
        "ballista://10.0.0.7".parse::<Engine>().unwrap().to_string(),
        "ballista://10.0.0.7:50050"
    );
    assert_eq!(
        "ballista://[::1]:50051".parse::<Engine>().unwrap().to_string(),
        "ballista://[::1]:50051"
    );
    for bad in [
        "",
        "spark://x:1",
        "ballista://",
        "ballista://host:0",
        "ballista://host:99999",
        "ballista://user@host:1",
        "ballista://host:1/path",
        "ballista://u:p@host:1",
        "ballista://host:1?x=y",
        "ballista://host:1#f",
        "file:///etc/passwd",
    ] {
        let err = bad.parse::<Engine>().unwrap_err().to_string();
        assert!(
            err.contains("expected `local` or `ballista://host:port`"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn an_unreachable_scheduler_is_a_clear_error_that_names_no_path() {
    let dir = scratch();
    let (batch, semantics) = messy(500);
    let staged = StagedTable::write(&[batch], dir.path(), 1_000).unwrap();
    // A port nothing listens on: bind one and let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let engine: Engine = format!("ballista://127.0.0.1:{port}").parse().unwrap();
    let err = EngineCounts::open(&engine, &staged, semantics)
        .and_then(|c| {
            c.value_counts(&[1])
                .map_err(|e| doppel_engine::Error::Stage(e.to_string()))
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("ballista://127.0.0.1:{port}")), "{err}");
    assert!(!err.contains(dir.path().to_str().unwrap()), "{err}");
}
