//! doppel's pipeline runtime: pipeline files, the executor, native builtins and
//! the sandboxed WASM plugin host.
//!
//! # Overview
//! A pipeline is a TOML file of named stages ([`spec`]). [`plan::plan`] checks
//! it against a [`plan::Catalog`] (builtins, generators, installed plugins) and
//! reports every problem with `file:line:col`; [`exec::run`] runs the
//! resulting [`plan::Plan`], independent stages concurrently, streaming tables
//! to plugins in Arrow IPC batches; [`report::write_all`] writes the output
//! tables and `report.json`.
//!
//! - [`spec::PipelineSpec`]: parsed file, every value with its position.
//! - [`plugin::PluginHost`]: one wasmtime engine per process, deny-by-default
//!   linking, per-stage memory / time / fuel limits, a compiled-component cache.
//! - [`plugin::PluginRegistry`]: installed plugins by `id@version`.
//! - [`builtins`]: one type per `builtin:<name>` implementing
//!   [`builtins::Builtin`] (`source`, `profile`, `split`, `protect`,
//!   `privacy`, `report-pdf`, `sample`, and one per
//!   [`doppel_generators::Generator`]); [`stage`] is what a stage sees while
//!   planned ([`stage::InputCheck`]) and while running
//!   ([`stage::StageContext`]). The executor only schedules.
//! - [`table::Table`]: Arrow batches plus semantic column types.
//! - [`shipped`]: the pipelines in `pipelines/`, embedded for servers and workers.
//!
//! # Example
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use doppel_host::plan::{Catalog, plan};
//! use doppel_host::plugin::{HostConfig, PluginHost, PluginRegistry};
//! use doppel_host::spec::{PipelineSpec, SourceFile};
//!
//! let dir = tempfile::tempdir()?;
//! let csv = dir.path().join("people.csv");
//! let mut text = String::from("age,plan\n");
//! for i in 0..200 { text.push_str(&format!("{},{}\n", 20 + i % 50, ["free", "pro"][i % 2])); }
//! std::fs::write(&csv, text)?;
//!
//! let pipeline = format!(r#"
//!     version = 1
//!     [stages.source]
//!     uses = "builtin:source"
//!     with = {{ path = "{}" }}
//!     [stages.synth]
//!     uses = "builtin:copula"
//!     inputs = ["source"]
//!     with = {{ rows = 500, seed = 7 }}
//!     [outputs]
//!     synthetic = "synth"
//! "#, csv.display());
//! let spec = PipelineSpec::parse(SourceFile::new("inline.toml", pipeline))?;
//! let host = PluginHost::new(HostConfig { cache_dir: None, ..HostConfig::default() })?;
//! let catalog = Catalog::new(PluginRegistry::new(host));
//! let plan = plan(&spec, &catalog)?;
//! let run = tokio::runtime::Runtime::new()?.block_on(doppel_host::exec::run(&plan, &Default::default()))?;
//! assert_eq!(run.stage("synth").unwrap().output.table().unwrap().rows(), 500);
//! # Ok(()) }
//! ```

pub mod builtins;
pub mod config;
mod error;
pub mod exec;
pub mod limits;
pub mod model;
mod nearest;
pub mod plan;
pub mod plugin;
pub mod release;
pub mod report;
pub mod shipped;
pub mod spec;
pub mod stage;
pub mod table;

pub use doppel_generators as generators;
pub use error::{Error, Result};
