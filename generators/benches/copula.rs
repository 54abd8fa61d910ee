//! Gaussian copula and PrivSyn fit and sample on UCI Adult (32,561 rows × 15
//! columns).
//!
//! `cargo bench -p doppel-generators`; compare with SDV using
//! `generators/benches/compare_sdv.py` and with smartnoise's MST/AIM using
//! `generators/benches/compare_dp.py`.

use std::fs::File;
use std::sync::Arc;

use arrow::csv::ReaderBuilder;
use arrow::csv::reader::Format;
use arrow::record_batch::RecordBatch;
use criterion::{Criterion, criterion_group, criterion_main};
use doppel_generators::{
    GaussianCopula, Generator, NoProgress, ParamValue, Params, PrivSyn, SemanticType, TrainingData, semantic,
};

fn adult() -> (RecordBatch, Vec<SemanticType>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/adult.csv");
    let mut file = File::open(path).expect("data/adult.csv");
    let format = Format::default().with_header(true);
    let (schema, _) = format.infer_schema(&mut file, Some(1000)).expect("schema");
    let file = File::open(path).expect("data/adult.csv");
    let reader = ReaderBuilder::new(Arc::new(schema))
        .with_format(format)
        .build(file)
        .expect("reader");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat");
    let semantics = semantic::infer_batch(&batch);
    (batch, semantics)
}

fn bench(c: &mut Criterion) {
    let (batch, semantics) = adult();
    let data = TrainingData {
        batch: &batch,
        semantics: &semantics,
    };
    let mut group = c.benchmark_group("copula/adult");
    group.sample_size(10);
    group.bench_function("fit", |b| {
        b.iter(|| GaussianCopula.fit(&data, &Params::new(), 1, &NoProgress).expect("fit"))
    });
    let model = GaussianCopula.fit(&data, &Params::new(), 1, &NoProgress).expect("fit");
    group.bench_function("sample_32561", |b| {
        b.iter(|| model.sample(batch.num_rows(), 1, &NoProgress).expect("sample"))
    });
    group.bench_function("fit_and_sample", |b| {
        b.iter(|| {
            let m = GaussianCopula.fit(&data, &Params::new(), 1, &NoProgress).expect("fit");
            m.sample(batch.num_rows(), 1, &NoProgress).expect("sample")
        })
    });
    group.finish();

    // DP noise from the seed so every iteration does the same work.
    let params = Params::new()
        .set("epsilon", ParamValue::Float(1.0))
        .set("reproducible_noise", ParamValue::Boolean(true));
    let mut group = c.benchmark_group("privsyn/adult");
    group.sample_size(10);
    group.bench_function("fit_eps1", |b| {
        b.iter(|| PrivSyn.fit(&data, &params, 1, &NoProgress).expect("fit"))
    });
    let model = PrivSyn.fit(&data, &params, 1, &NoProgress).expect("fit");
    group.bench_function("sample_32561", |b| {
        b.iter(|| model.sample(batch.num_rows(), 1, &NoProgress).expect("sample"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
