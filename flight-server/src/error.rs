//! Errors as pyarrow, ADBC and JDBC users read them.
//!
//! | situation | gRPC status | pyarrow raises |
//! |---|---|---|
//! | missing / bad credentials | `UNAUTHENTICATED` | `FlightUnauthenticatedError` |
//! | lacks a scope, ticket of another account | `PERMISSION_DENIED` | `FlightUnauthorizedError` |
//! | bad SQL, parameters, descriptor or ticket | `INVALID_ARGUMENT` | `ArrowInvalid` |
//! | dataset or job missing (or someone else's) | `NOT_FOUND` | `ArrowKeyError` |
//! | job cancelled | `CANCELLED` | `FlightCancelledError` |
//! | DP job over the dataset's privacy budget | `FAILED_PRECONDITION` | `ArrowException` |
//! | rate limited, store unreachable | `UNAVAILABLE` | `FlightUnavailableError` |
//! | a bug | `INTERNAL` | `FlightInternalError` |
//!
//! A user's mistake is never `INTERNAL`, and `INTERNAL` never carries the
//! cause: that is logged with a reference the message quotes.

use datafusion::error::DataFusionError;
use tonic::Status;

/// A platform error as a status; internal causes are logged, not sent.
pub fn platform(e: doppel_platform::Error) -> Status {
    use doppel_platform::Error as E;
    match &e {
        E::NotFound(_) => Status::not_found(e.to_string()),
        E::Invalid { .. } | E::Conflict(_) | E::BadSignature(_) => Status::invalid_argument(e.to_string()),
        E::BudgetExceeded(_) | E::Refused { .. } | E::NotReady { .. } => Status::failed_precondition(e.to_string()),
        E::Unauthenticated(_) | E::MfaRequired => Status::unauthenticated(e.to_string()),
        E::TooManyAttempts { .. } => Status::resource_exhausted(e.to_string()),
        E::Forbidden(_) => Status::permission_denied(e.to_string()),
        E::Unavailable(_) => {
            tracing::warn!(error = %e, "A dependency is unavailable.");
            Status::unavailable(e.to_string())
        }
        _ => internal(&e),
    }
}

/// An operator problem: log the cause, answer with a reference only.
pub fn internal(e: &dyn std::fmt::Display) -> Status {
    let reference = doppel_platform::util::new_id("err");
    tracing::error!(reference = %reference, error = %e, "Flight request failed.");
    Status::internal(format!(
        "internal error (reference {reference}); the operator has the details"
    ))
}

/// A query-engine error: planning and type problems are the caller's SQL;
/// storage and engine failures are ours.
pub fn datafusion(e: DataFusionError) -> Status {
    match e.find_root() {
        DataFusionError::SQL(..) | DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => {
            Status::invalid_argument(e.find_root().to_string())
        }
        DataFusionError::NotImplemented(m) => Status::unimplemented(format!("not supported: {m}")),
        DataFusionError::ArrowError(a, _) if user_arrow_error(a) => Status::invalid_argument(a.to_string()),
        DataFusionError::Execution(m) => Status::invalid_argument(m.clone()),
        // The statement's memory pool, or a guarded function, said no: the
        // caller's statement is too big for this server, say which limit.
        DataFusionError::ResourcesExhausted(m) if m.contains("limits.") => {
            Status::resource_exhausted(format!("resources exhausted: {m}"))
        }
        DataFusionError::ResourcesExhausted(m) => {
            Status::resource_exhausted(format!("resources exhausted: {m} (limits.sql_memory_mb)"))
        }
        _ => internal(&e),
    }
}

fn user_arrow_error(e: &arrow::error::ArrowError) -> bool {
    use arrow::error::ArrowError as A;
    matches!(
        e,
        A::CastError(_)
            | A::ParseError(_)
            | A::DivideByZero
            | A::ArithmeticOverflow(_)
            | A::InvalidArgumentError(_)
            | A::ComputeError(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn user_mistakes_are_never_internal() {
        use doppel_platform::Error as E;
        assert_eq!(platform(E::NotFound("dataset".into())).code(), Code::NotFound);
        assert_eq!(platform(E::invalid("sql", "bad")).code(), Code::InvalidArgument);
        assert_eq!(platform(E::Unauthenticated("no".into())).code(), Code::Unauthenticated);
        assert_eq!(platform(E::Forbidden("scope".into())).code(), Code::PermissionDenied);
        assert_eq!(platform(E::Unavailable("idp".into())).code(), Code::Unavailable);
        let plan = DataFusionError::Plan("table 'x' not found".into());
        assert_eq!(datafusion(plan).code(), Code::InvalidArgument);
        let wrapped = DataFusionError::Context("planning".into(), Box::new(DataFusionError::Plan("bad".into())));
        assert_eq!(datafusion(wrapped).code(), Code::InvalidArgument);
        let div = DataFusionError::ArrowError(Box::new(arrow::error::ArrowError::DivideByZero), None);
        assert_eq!(datafusion(div).code(), Code::InvalidArgument);
        assert_eq!(
            datafusion(DataFusionError::NotImplemented("x".into())).code(),
            Code::Unimplemented
        );
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let s = platform(doppel_platform::Error::Internal("/srv/secret/path broke".into()));
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("/srv/secret"), "{}", s.message());
        let s = datafusion(DataFusionError::Internal("/srv/secret".into()));
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("/srv/secret"));
    }
}
