//! The host's error type.

use std::path::PathBuf;

use crate::plugin::PluginError;
use crate::spec::Diagnostics;

/// Anything that stops a pipeline from validating or running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The pipeline file has problems (all of them are listed).
    #[error("{0}")]
    Pipeline(#[from] Diagnostics),
    /// An input table could not be read.
    #[error(transparent)]
    Source(#[from] crate::builtins::SourceError),
    /// A stage named a column its input does not have.
    #[error("stage `{stage}`: no column `{column}` in its input (columns: {available})")]
    UnknownColumn {
        /// Stage id.
        stage: String,
        /// Missing column.
        column: String,
        /// What the input has.
        available: String,
    },
    /// A plugin failed to load or run.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// A generator failed.
    #[error("stage `{stage}` ({generator}): {source}")]
    Generator {
        /// Stage id.
        stage: String,
        /// Generator name.
        generator: String,
        /// Cause.
        #[source]
        source: doppel_generators::Error,
    },
    /// A stage failed for a reason of its own.
    #[error("stage `{stage}`: {message}")]
    Stage {
        /// Stage id.
        stage: String,
        /// What happened.
        message: String,
    },
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// Arrow could not build or convert a batch.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Parquet could not be written.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A broken invariant: a bug in doppel.
    #[error("internal error (please report): {0}")]
    Internal(String),
}

/// Result with the host's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    #[test]
    fn error_stays_small() {
        // Errors travel through every stage future; keep them cheap to move.
        assert!(
            std::mem::size_of::<super::Error>() <= 128,
            "{}",
            std::mem::size_of::<super::Error>()
        );
    }
}
