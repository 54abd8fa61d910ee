//! Errors a generator reports.

use arrow::datatypes::DataType;
use arrow::error::ArrowError;

/// Why fitting or sampling failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A column's Arrow type has no model in this generator.
    #[error(
        "column `{column}` has type {data_type}, which the {generator} generator cannot model; \
         leave it out of the stage's input"
    )]
    UnsupportedType {
        /// Generator name.
        generator: &'static str,
        /// Column name.
        column: String,
        /// The column's type.
        data_type: DataType,
    },
    /// The training table has no rows.
    #[error("the training table has no rows")]
    EmptyTable,
    /// The table and its semantic types disagree (a caller bug).
    #[error("{columns} columns but {semantics} semantic types were given")]
    SemanticsMismatch {
        /// Columns in the table.
        columns: usize,
        /// Semantic types given.
        semantics: usize,
    },
    /// A parameter value is out of range or of the wrong type.
    #[error("parameter `{name}`: {message}")]
    InvalidParam {
        /// Parameter name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A differentially private fit could release no value of a column the
    /// schema declares non-nullable.
    #[error(
        "column `{column}` is non-nullable but no value of it is common enough to release at this \
         privacy budget; raise epsilon, declare its values public, or leave it out"
    )]
    NothingReleased {
        /// Column name.
        column: String,
    },
    /// The operating system's random generator, which keys DP noise, failed.
    #[error("no entropy for differential-privacy noise: {0}")]
    Entropy(String),
    /// libtorch reported an error (out of device memory, a bad tensor shape).
    #[error("libtorch: {0}")]
    Torch(String),
    /// A saved model file is damaged, of another format, or needs another
    /// build.
    #[error("saved model: {0}")]
    InvalidModel(String),
    /// The engine doing a fit's counting failed (see
    /// [`crate::counts::CountSource`]); the message names no server path.
    #[error("counting engine: {0}")]
    Engine(String),
    /// The caller asked to stop.
    #[error("cancelled")]
    Cancelled,
    /// Building an output array failed.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
