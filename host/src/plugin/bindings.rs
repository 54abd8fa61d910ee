//! Host bindings for each supported version of the `doppel:plugin` contract.
//!
//! One module per contract version (`v0_1` for `doppel:plugin@0.1.x`); a future
//! 0.2 gets its own module next to it and the loader dispatches on the version
//! found in the component's export names.

/// `doppel:plugin@0.1.x`.
#[allow(missing_docs, reason = "generated from the WIT, whose comments document it")]
pub(crate) mod v0_1 {
    /// Types and the `host` import, generated once and shared by every world.
    pub(crate) mod shared {
        wasmtime::component::bindgen!({
            inline: "
                package doppel:host;
                world shared {
                    import doppel:plugin/types@0.1.0;
                    import doppel:plugin/host@0.1.0;
                }
            ",
            path: "../wit",
            world: "doppel:host/shared",
            additional_derives: [serde::Serialize, PartialEq],
        });
    }

    /// The detector world.
    pub(crate) mod detector {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "doppel:plugin/detector-plugin@0.1.0",
            with: {
                "doppel:plugin/types@0.1.0": super::shared::doppel::plugin::types,
                "doppel:plugin/host@0.1.0": super::shared::doppel::plugin::host,
            },
            additional_derives: [serde::Serialize],
        });
    }

    /// The metric world.
    pub(crate) mod metric {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "doppel:plugin/metric-plugin@0.1.0",
            with: {
                "doppel:plugin/types@0.1.0": super::shared::doppel::plugin::types,
                "doppel:plugin/host@0.1.0": super::shared::doppel::plugin::host,
            },
            additional_derives: [serde::Serialize],
        });
    }

    /// The rule world.
    pub(crate) mod rule {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "doppel:plugin/rule-plugin@0.1.0",
            with: {
                "doppel:plugin/types@0.1.0": super::shared::doppel::plugin::types,
                "doppel:plugin/host@0.1.0": super::shared::doppel::plugin::host,
            },
            additional_derives: [serde::Serialize],
        });
    }

    pub(crate) use shared::doppel::plugin::types;
}

/// The contract's data types (records, variants, enums), used throughout the
/// host as its own vocabulary: stage configs, findings, scores, verdicts.
pub mod types {
    pub use super::v0_1::detector::exports::doppel::plugin::detector::ScanOutcome;
    pub use super::v0_1::types::{
        Batch, ColumnFact, ColumnFinding, ColumnType, ConfigField, ConfigValue, EntityCount, Facts, Finding,
        MetricValue, PluginInfo, Severity, StageError, StageKind, TableFacts, TableRole, ValueType, Verdict,
        VerdictStatus,
    };
}

impl std::fmt::Display for types::StageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, message) = match self {
            types::StageError::InvalidConfig(m) => ("invalid config", m),
            types::StageError::InvalidInput(m) => ("invalid input", m),
            types::StageError::UnsupportedSchema(m) => ("unsupported schema", m),
            types::StageError::Internal(m) => ("internal error", m),
        };
        write!(f, "reported {kind}: {message}")
    }
}
