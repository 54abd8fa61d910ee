//! Shared setup: a plugin host with the first-party plugins and the test
//! guests, and the repository's data files.

use std::path::{Path, PathBuf};

use doppel_host::plan::{Catalog, Plan, plan};
use doppel_host::plugin::{Grants, HostConfig, PluginHost, PluginRegistry};
use doppel_host::spec::{PipelineSpec, SourceFile};

/// Repository root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is in the repo")
        .to_path_buf()
}

/// A file under `data/`.
pub(crate) fn data(name: &str) -> PathBuf {
    repo().join("data").join(name)
}

/// Host config whose compiled-component cache is shared by every test run, so
/// each component is compiled once per build.
pub(crate) fn config() -> HostConfig {
    HostConfig {
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-cache")),
        ..HostConfig::default()
    }
}

/// A registry with every first-party plugin and every test guest.
pub(crate) fn registry_with(config: HostConfig) -> PluginRegistry {
    let host = PluginHost::new(config).expect("plugin host");
    let mut reg = PluginRegistry::new(host);
    for p in doppel_plugins::FIRST_PARTY {
        reg.add_embedded(p.manifest, p.wasm, p.name)
            .expect("first-party manifest");
    }
    for g in doppel_test_guests::GUESTS {
        reg.add_embedded(g.manifest, g.wasm, g.name)
            .expect("test guest manifest");
    }
    reg
}

/// The default catalog.
pub(crate) fn catalog() -> Catalog {
    Catalog::new(registry_with(config()))
}

/// A catalog whose host grants `grants`.
pub(crate) fn catalog_granting(grants: Grants) -> Catalog {
    Catalog::new(registry_with(HostConfig { grants, ..config() }))
}

/// Parse and plan inline pipeline text.
pub(crate) fn plan_text(catalog: &Catalog, text: &str) -> Plan {
    let spec = PipelineSpec::parse(SourceFile::new("test.toml", text)).unwrap_or_else(|d| panic!("{d}"));
    plan(&spec, catalog).unwrap_or_else(|d| panic!("{d}"))
}

/// Run a plan on a fresh runtime.
pub(crate) fn run(plan: &Plan) -> doppel_host::Result<doppel_host::exec::RunResult> {
    run_with(plan, &Default::default())
}

/// Run with options.
pub(crate) fn run_with(
    plan: &Plan,
    options: &doppel_host::exec::RunOptions,
) -> doppel_host::Result<doppel_host::exec::RunResult> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(doppel_host::exec::run(plan, options))
}

/// TOML string literal for a path.
pub(crate) fn lit(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}
