//! The platform's error type.

/// What went wrong in the platform layer. Variants a caller turns into a user
/// answer (`NotFound`, `Conflict`, `Invalid`, …) carry a message safe to show;
/// the rest are operator problems and their sources are logged, not shown.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing asked for does not exist (or the caller may not know it does).
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with current state (duplicate e-mail, reused key…).
    #[error("{0}")]
    Conflict(String),
    /// A differentially private job would spend more than the dataset's
    /// privacy budget has left; the message says how much is left.
    #[error("{0}")]
    BudgetExceeded(String),
    /// A business rule says no (an output too risky to list, a listing not
    /// for sale); the message says why.
    #[error("{message}")]
    Refused {
        /// Stable code (`listing_refused`, `not_for_sale`).
        code: &'static str,
        /// Why, for the caller.
        message: String,
    },
    /// The resource is not yet in the state the request needs (a job that
    /// has not succeeded has no outputs to fetch or list).
    #[error("{message}")]
    NotReady {
        /// Stable code (`job_not_finished`).
        code: &'static str,
        /// Why, and when it will be.
        message: String,
    },
    /// A webhook whose signature, timestamp or secret does not check out.
    #[error("{0}")]
    BadSignature(String),
    /// Bad input: the message names the field.
    #[error("{field}: {message}")]
    Invalid {
        /// Field or parameter at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// Credentials missing, wrong, expired or revoked.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// A service we depend on (an identity provider) is unreachable or misbehaves.
    #[error("{0}")]
    Unavailable(String),
    /// A second factor is required to finish signing in.
    #[error("a TOTP code or recovery code is required")]
    MfaRequired,
    /// Too many attempts: wrong second-factor codes, or a server too busy
    /// hashing passwords. Retry after `retry_after_s` seconds.
    #[error("{message}")]
    TooManyAttempts {
        /// Why, for the caller.
        message: String,
        /// When to try again.
        retry_after_s: u64,
    },
    /// Settings could not be read.
    #[error("settings: {0}")]
    Settings(String),
    /// The metadata store failed.
    #[error("metadata store: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration {version} ({name}): {source}")]
    Migration {
        /// Migration number.
        version: i64,
        /// Migration name.
        name: &'static str,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// Object storage failed.
    #[error("object storage: {0}")]
    Storage(#[from] object_store::Error),
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A broken invariant (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An [`Error::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Stable machine code, the same in REST and Flight answers.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::BudgetExceeded(_) => "privacy_budget_exceeded",
            Error::Refused { code, .. } | Error::NotReady { code, .. } => code,
            Error::BadSignature(_) => "invalid_signature",
            Error::Invalid { .. } => "invalid_request",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::Forbidden(_) => "forbidden",
            Error::MfaRequired => "mfa_required",
            Error::TooManyAttempts { .. } => "too_many_attempts",
            Error::Unavailable(_) => "unavailable",
            Error::Settings(_)
            | Error::Db(_)
            | Error::Migration { .. }
            | Error::Storage(_)
            | Error::Io { .. }
            | Error::Internal(_) => "internal",
        }
    }

    /// Whether the message may be shown to the caller as it is.
    pub fn is_user_facing(&self) -> bool {
        self.code() != "internal"
    }
}

/// Platform result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
