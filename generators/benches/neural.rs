//! CTGAN and TVAE: one training epoch on UCI Adult (32,561 rows), on the
//! device `Device::cuda_if_available()` picks.
//!
//! `LIBTORCH_USE_PYTORCH=1 cargo bench -p doppel-generators --features torch --bench neural`;
//! compare with SDV using `generators/benches/compare_ctgan.py`.

use std::fs::File;
use std::sync::Arc;

use arrow::csv::ReaderBuilder;
use arrow::csv::reader::Format;
use arrow::record_batch::RecordBatch;
use criterion::{Criterion, criterion_group, criterion_main};
use doppel_generators::{Ctgan, Generator, NoProgress, ParamValue, Params, SemanticType, TrainingData, Tvae, semantic};

fn adult() -> (RecordBatch, Vec<SemanticType>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/adult.csv");
    let mut file = File::open(path).expect("data/adult.csv");
    let format = Format::default().with_header(true);
    let (schema, _) = format.infer_schema(&mut file, Some(1000)).expect("schema");
    let reader = ReaderBuilder::new(Arc::new(schema))
        .with_format(format)
        .build(File::open(path).expect("data/adult.csv"))
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
    let params = Params::new().set("epochs", ParamValue::Integer(1));
    let mut group = c.benchmark_group("neural/adult");
    group.sample_size(10);
    for g in [&Ctgan as &dyn Generator, &Tvae] {
        group.bench_function(format!("{}_one_epoch", g.name()), |b| {
            b.iter(|| g.fit(&data, &params, 1, &NoProgress).expect("fit"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
