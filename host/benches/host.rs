//! Host costs: planning a pipeline, and the two first-party plugins' throughput
//! through the sandbox (batching, IPC, WASM) on the bundled tables.
//!
//! `cargo bench -p doppel-host`.

use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use doppel_host::exec::RunOptions;
use doppel_host::plan::{Catalog, Plan, plan};
use doppel_host::plugin::{HostConfig, PluginHost, PluginRegistry};
use doppel_host::spec::{PipelineSpec, SourceFile};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo")
        .to_path_buf()
}

fn catalog() -> Catalog {
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(repo().join("target").join("bench-component-cache")),
        ..HostConfig::default()
    })
    .expect("host");
    let mut reg = PluginRegistry::new(host);
    for p in doppel_plugins::FIRST_PARTY {
        reg.add_embedded(p.manifest, p.wasm, p.name).expect("manifest");
    }
    Catalog::new(reg)
}

fn plan_of(catalog: &Catalog, text: &str) -> Plan {
    let spec = PipelineSpec::parse(SourceFile::new("bench.toml", text)).expect("parse");
    plan(&spec, catalog).expect("plan")
}

fn bench(c: &mut Criterion) {
    let catalog = catalog();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let quickstart = std::fs::read_to_string(repo().join("pipelines/quickstart.toml")).expect("quickstart");
    c.bench_function("plan/quickstart", |b| b.iter(|| plan_of(&catalog, &quickstart)));

    let customers = repo().join("data/customers_pii.csv");
    let pii = plan_of(
        &catalog,
        &format!(
            "version = 1\n[stages.source]\nuses = \"builtin:source\"\nwith = {{ path = {:?} }}\n[stages.pii]\nuses = \"doppel/pii@^0.1\"\ninputs = [\"source\"]\nwith = {{ sample_rows = 5000 }}\n",
            customers.display().to_string()
        ),
    );
    let mut group = c.benchmark_group("plugins");
    group.sample_size(10);
    // 5,000 rows × 16 columns, every cell validated (sample_rows = 5000).
    group.throughput(Throughput::Elements(5000 * 16));
    group.bench_function("pii/customers_pii (source + scan)", |b| {
        b.iter(|| {
            runtime
                .block_on(doppel_host::exec::run(&pii, &RunOptions::default()))
                .expect("run")
        })
    });
    let adult = repo().join("data/adult.csv");
    let quality = plan_of(
        &catalog,
        &format!(
            "version = 1\n[stages.a]\nuses = \"builtin:source\"\nwith = {{ path = {0:?} }}\n[stages.b]\nuses = \"builtin:source\"\nwith = {{ path = {0:?} }}\n[stages.q]\nuses = \"doppel/quality@^0.1\"\ninputs = [\"a\", \"b\"]\n",
            adult.display().to_string()
        ),
    );
    group.throughput(Throughput::Elements(2 * 32_561));
    group.bench_function("quality/adult vs adult (2 sources + report)", |b| {
        b.iter(|| {
            runtime
                .block_on(doppel_host::exec::run(&quality, &RunOptions::default()))
                .expect("run")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
