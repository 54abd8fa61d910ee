//! Criterion benches for the Flight server's own costs (no network): what a
//! `DoGet` of a stored table costs the server per byte (Parquet object →
//! decoded batches → Flight data), signing and redeeming a ticket, and the
//! placeholder rewrite every statement goes through. The end-to-end
//! comparison with pyarrow's Flight server over loopback is
//! tests/flight/bench_doget.py.

#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use doppel_flight_server::ticket::{Claims, Signer, Target};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

const ROWS: usize = 1_000_000;

fn table() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("a", DataType::Int64, false),
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
        Field::new("city", DataType::Utf8, false),
    ]));
    // A cheap deterministic generator: values that neither compress to nothing nor repeat.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let ids: Int64Array = (0..ROWS as i64).collect();
    let a: Int64Array = (0..ROWS).map(|_| (next() % 1_000_000) as i64).collect();
    let x: Float64Array = (0..ROWS).map(|_| (next() % 10_000_000) as f64 / 7.0).collect();
    let y: Float64Array = (0..ROWS).map(|_| (next() % 10_000_000) as f64 / 3.0).collect();
    let city: StringArray = (0..ROWS)
        .map(|_| Some(["Lagos", "Lyon", "Lima", "Leeds", "Lusaka"][(next() % 5) as usize]))
        .collect();
    RecordBatch::try_new(
        schema,
        vec![Arc::new(ids), Arc::new(a), Arc::new(x), Arc::new(y), Arc::new(city)],
    )
    .unwrap()
}

fn do_get(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let batch = table();
    let file = std::fs::File::create(dir.path().join("t.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut g = c.benchmark_group("do_get");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(batch.get_array_memory_size() as u64));
    g.bench_function("parquet object to flight data (1M rows, 5 columns)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (schema, batches) =
                    doppel_flight_server::reader::batches(Arc::clone(&store), Path::from("t.parquet"), 64 * 1024)
                        .await
                        .unwrap();
                let stream = doppel_flight_server::service::encode(
                    schema,
                    batches.map_err(|e| arrow_flight::error::FlightError::ExternalError(Box::new(e))),
                );
                let frames: Vec<_> = stream.try_collect().await.unwrap();
                assert!(frames.len() > 16);
            });
        });
    });
    g.finish();
}

fn tickets(c: &mut Criterion) {
    let signer = Signer::new(b"bench signing key");
    let claims = Claims {
        target: Target::Sql {
            sql: "SELECT workclass, COUNT(*) FROM adult WHERE age > $1 GROUP BY 1".into(),
            params: None,
        },
        acct: "acc_01m8mr0hh2qgyy348e1240ywkp".into(),
        exp: i64::MAX,
    };
    c.bench_function("ticket sign + verify", |b| {
        b.iter(|| {
            let t = signer.sign(std::hint::black_box(&claims));
            signer.verify(&t, 0).unwrap()
        });
    });
    c.bench_function("placeholder rewrite", |b| {
        b.iter(|| {
            doppel_flight_server::sql::number_placeholders(std::hint::black_box(
                "SELECT a, b FROM t WHERE a = ? AND b LIKE '%?%' AND c > ? -- why?\nORDER BY 1",
            ))
        });
    });
}

criterion_group!(benches, do_get, tickets);
criterion_main!(benches);
