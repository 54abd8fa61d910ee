//! Plugin errors: loading problems name the plugin, run-time failures name the
//! stage and the plugin.

use super::bindings::types::StageError;

/// Why a stage's plugin call failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// One call ran past `limits.timeout_ms`.
    #[error("timed out: one call ran longer than {limit_ms} ms (limits.timeout_ms)")]
    Timeout {
        /// The limit.
        limit_ms: u64,
    },
    /// Linear memory would have grown past `limits.memory_mb`.
    #[error("exceeded its memory limit of {limit_mb} MiB (tried to grow to {wanted_mb:.1} MiB; limits.memory_mb)")]
    Memory {
        /// The limit.
        limit_mb: u64,
        /// What it asked for.
        wanted_mb: f64,
    },
    /// Ran out of fuel.
    #[error("ran out of fuel: one call used more than {fuel} units (limits.fuel)")]
    Fuel {
        /// The limit.
        fuel: u64,
    },
    /// The run was cancelled.
    #[error("was cancelled")]
    Cancelled,
    /// The guest trapped (panic, unreachable, out-of-bounds access, ...).
    #[error("crashed: {message}{}", if stderr.is_empty() { String::new() } else { format!(" (plugin stderr: {stderr})") })]
    Trap {
        /// wasmtime's description.
        message: String,
        /// The last lines the plugin wrote to stderr.
        stderr: String,
    },
    /// The plugin returned a `stage-error` on purpose.
    #[error("{0}")]
    Reported(StageError),
    /// The plugin returned more than the host accepts.
    #[error("returned too much: {0}")]
    OutputCap(String),
    /// The plugin returned something inconsistent.
    #[error("returned invalid data: {0}")]
    InvalidOutput(String),
    /// A previous failure discarded the instance.
    #[error("cannot be called again after a failure (its instance was discarded)")]
    Discarded,
}

/// Errors from loading or running plugins.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The manifest is missing or malformed.
    #[error("invalid plugin manifest {0}")]
    Manifest(String),
    /// The `.wasm` file could not be read.
    #[error("plugin `{plugin}`: cannot read {path}: {source}")]
    ReadWasm {
        /// Plugin label.
        plugin: String,
        /// Path.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid component for this host.
    #[error("plugin `{plugin}` is not a valid WASM component: {message}")]
    Compile {
        /// Plugin label.
        plugin: String,
        /// wasmtime's explanation.
        message: String,
    },
    /// The component exports no `doppel:plugin` interface this host knows.
    #[error("plugin `{plugin}` exports {found}; this host supports doppel:plugin@0.1 (detector, metric or rule)")]
    UnsupportedContract {
        /// Plugin label.
        plugin: String,
        /// What it exports.
        found: String,
    },
    /// Manifest and component disagree.
    #[error("plugin `{plugin}`: {message}")]
    Mismatch {
        /// Plugin label.
        plugin: String,
        /// The disagreement.
        message: String,
    },
    /// The component imports more than it may have.
    #[error("plugin `{plugin}` was refused: {}", reasons.join("; "))]
    Refused {
        /// Plugin label.
        plugin: String,
        /// One line per refused import.
        reasons: Vec<String>,
    },
    /// A call into the plugin failed.
    #[error("stage `{stage}` (plugin `{plugin}`) {failure}")]
    Stage {
        /// Stage id.
        stage: String,
        /// Plugin label.
        plugin: String,
        /// What happened.
        failure: Failure,
    },
    /// The compiled-component cache could not be used.
    #[error("plugin cache {path}: {source}")]
    Cache {
        /// Cache file or directory.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Building the wasmtime engine or linker failed (a host bug).
    #[error("cannot set up the plugin runtime: {0}")]
    Runtime(String),
}

impl PluginError {
    /// The run-time failure, if this is one.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            PluginError::Stage { failure, .. } => Some(failure),
            _ => None,
        }
    }
}
