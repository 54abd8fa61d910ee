//! Write doppel pipeline plugins in plain Rust.
//!
//! A doppel plugin is a sandboxed WASM component that judges data: a **detector**
//! reads one table and says which columns hold personal data, a **metric**
//! compares tables (real vs synthetic), a **rule** judges the facts other stages
//! produced. This crate hides the component model: you implement one trait over
//! Arrow [`RecordBatch`]es, call one export macro, and build for
//! `wasm32-wasip2`. The same code builds natively, so `cargo test` exercises
//! your plugin without any WASM tooling.
//!
//! # Overview
//! - [`Plugin`]: name, version, config schema ([`PluginInfo`]) and an optional
//!   up-front [`Plugin::check`] of the config against the input schemas.
//! - [`Detector`], [`Metric`], [`Rule`]: one per stage kind; a plugin implements
//!   exactly one of them.
//! - [`export_detector!`], [`export_metric!`], [`export_rule!`]: export your type.
//! - [`Config`]: typed access to the stage's `with` table (already validated and
//!   completed with defaults by the host).
//! - [`log`]: the one thing a plugin may ask of the host.
//!
//! # How the pieces fit
//! The export macro expands, in your crate, to the component's ABI functions and
//! to the custom section describing its world, so a crate exports exactly one
//! world. Batches arrive as Arrow IPC and are decoded zero-copy ([`ipc`]).
//!
//! # Example
//! A detector that flags columns whose name contains `email`:
//! ```
//! use doppel_sdk::*;
//!
//! struct NameHint { columns: Vec<String> }
//!
//! impl Plugin for NameHint {
//!     fn info() -> PluginInfo {
//!         PluginInfo::new("acme/name-hint", "0.1.0", StageKind::Detector)
//!             .summary("Flags columns named like e-mail addresses.")
//!             .reads(&[ColumnType::Text])
//!     }
//! }
//!
//! impl Detector for NameHint {
//!     fn create(_config: &Config) -> Result<Self, StageError> {
//!         Ok(NameHint { columns: Vec::new() })
//!     }
//!     fn scan(&mut self, batch: &RecordBatch, _row_offset: u64) -> Result<ScanOutcome, StageError> {
//!         for field in batch.schema().fields() {
//!             if field.name().contains("email") && !self.columns.contains(field.name()) {
//!                 self.columns.push(field.name().clone());
//!             }
//!         }
//!         // Names are all we need: ask the host to stop sending batches.
//!         Ok(ScanOutcome { findings: vec![], needs_more: false })
//!     }
//!     fn finish(&mut self) -> Result<Vec<ColumnFinding>, StageError> {
//!         Ok(self.columns.iter().map(|c| ColumnFinding::new(c, "EMAIL_ADDRESS", 0.5)).collect())
//!     }
//! }
//!
//! export_detector!(NameHint);
//! # fn main() {}
//! ```

// The generated bindings use `unsafe` for the canonical ABI; the rest of the
// crate is safe code.
#![allow(unsafe_code, reason = "wit-bindgen's generated ABI glue")]

use std::sync::Arc;

// Lets generated code and exported macros name this crate the same way from
// inside it and from plugin crates.
extern crate self as doppel_sdk;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use arrow_array::{self, RecordBatch};
pub use arrow_schema::{self, DataType, Field, Schema, SchemaRef};
/// The shared words: PII entity names and semantic column types.
pub use doppel_vocab as vocab;

mod config;
mod facts;
pub mod ipc;
pub mod names;
mod types;
pub mod values;

pub use config::Config;
pub use types::*;

#[doc(hidden)]
pub mod shared {
    //! Bindings for the types and host import every world shares. Generated once
    //! so that the world-specific bindings below can all point at them.
    wit_bindgen::generate!({
        inline: "package doppel:sdk; world shared { import doppel:plugin/types@0.1.0; import doppel:plugin/host@0.1.0; }",
        path: "../wit",
        world: "doppel:sdk/shared",
        generate_all,
        runtime_path: "::doppel_sdk::__wit_bindgen::rt",
    });
}

pub mod detector;
pub mod metric;
pub mod rule;

pub use detector::{Detector, ScanOutcome};
pub use metric::Metric;
pub use rule::Rule;

/// What every plugin says about itself, whatever its kind.
pub trait Plugin {
    /// Name, version, kind, the column families it reads and its config schema.
    fn info() -> PluginInfo;

    /// Check the config against the schemas of the stage's input tables before
    /// any data flows. The host already enforced the declared config schema, so
    /// only cross-field and schema-dependent checks belong here.
    fn check(config: &Config, schemas: &[SchemaRef]) -> Result<(), StageError> {
        let _ = (config, schemas);
        Ok(())
    }
}

/// Severity of a log line sent to the host.
pub use shared::doppel::plugin::host::LogLevel;

/// Send one log line to the host, which tags it with the stage and plugin.
///
/// The host caps how much a plugin may log; lines past the cap are dropped.
/// Natively (in unit tests) the line goes to stderr.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    shared::doppel::plugin::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    {
        #[allow(clippy::print_stderr, reason = "native builds have no host to log to")]
        {
            eprintln!("[{level:?}] {message}");
        }
    }
}

/// Read the semantic type the host attached to a column (`doppel.semantic-type`).
pub fn semantic_type(field: &Field) -> Option<&str> {
    field.metadata().get(SEMANTIC_TYPE_KEY).map(String::as_str)
}

/// Field-metadata key carrying a column's semantic type.
pub const SEMANTIC_TYPE_KEY: &str = vocab::semantic::KEY;

/// Shared pointer to a schema, as handed to [`Plugin::check`].
pub type Schemas = Vec<Arc<Schema>>;

/// Decode the schema-only IPC streams the host passes to `check`.
#[doc(hidden)]
pub fn __decode_schemas(schemas: Vec<Vec<u8>>) -> Result<Vec<SchemaRef>, StageError> {
    schemas.iter().map(|bytes| ipc::decode_schema(bytes)).collect()
}
