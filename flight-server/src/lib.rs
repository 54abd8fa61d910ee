//! doppel's Arrow Flight and Flight SQL door: notebooks and BI tools move
//! tables in and out of doppel in Arrow, and query them with SQL. Like the
//! REST door it holds no rule of the product: uploads, lookups, job
//! submission and deletion are the application core's (`doppel-app`); this
//! crate is the gRPC wire format, Flight SQL planning and error mapping.
//!
//! # Overview
//!
//! - [`service::DoppelFlight`]: the gRPC service. Plain Flight —
//!   `DoPut` of a dataset (`["datasets", name]`, stored as Parquet and
//!   profiled exactly like a REST upload), `DoGet` of datasets and job
//!   outputs, `ListFlights` of what the caller may read, `GetFlightInfo`,
//!   `GetSchema`, `PollFlightInfo` on `["jobs", id]`, and `DoAction`
//!   (`job.submit`, `generators.list`, `job.status`, `job.cancel`, `dataset.delete`). Flight
//!   SQL — statements, prepared statements with parameters, `GetSqlInfo`,
//!   `GetCatalogs`, `GetDbSchemas`, `GetTables`, `GetTableTypes` — read-only
//!   over the caller's tables ([`sql::SqlEngine`], DataFusion).
//! - Auth is the REST API's: `authorization: Bearer <API key | session>` on
//!   every call, or `Handshake` with Basic (e-mail + password, or user
//!   `token` + API key), which answers with the bearer to use. Scopes and
//!   ownership are decided by `doppel_app::access`, the same lookups REST
//!   uses.
//! - [`ticket`]: tickets are stateless and HMAC-signed (what, whom, until
//!   when) and are re-authorized on every `DoGet`.
//! - [`error`]: how failures map to gRPC codes (and so to pyarrow's
//!   exception classes).
//! - [`target`]: descriptor paths and our `Any` commands.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo(state: std::sync::Arc<doppel_app::AppState>) -> Result<(), Box<dyn std::error::Error>> {
//! let addr = "127.0.0.1:50051".parse()?;
//! doppel_flight_server::serve(state, addr, std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! and from Python:
//!
//! ```text
//! import pyarrow.flight as fl
//! c = fl.connect("grpc://127.0.0.1:50051")
//! opts = fl.FlightCallOptions(headers=[c.authenticate_basic_token("token", API_KEY)])
//! table = c.do_get(c.get_flight_info(fl.FlightDescriptor.for_path("datasets", "adult"), opts).endpoints[0].ticket, opts).read_all()
//! ```

pub mod error;
pub mod guard;
pub mod reader;
pub mod service;
pub mod sql;
pub mod target;
pub mod ticket;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use doppel_app::AppState;

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The service could not be built from the settings.
    #[error(transparent)]
    Platform(#[from] doppel_platform::Error),
    /// The listener failed.
    #[error("Flight server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The tonic service for `state`, ready to add to a server.
/// Its largest gRPC message (`limits.flight_message_mb`) is one record batch
/// decoded whole: larger than tonic's 4 MiB default, since `DoPut` of wide
/// tables sends large batches, and small enough that concurrent uploads
/// cannot hold much each.
pub fn service(state: Arc<AppState>) -> Result<FlightServiceServer<service::DoppelFlight>, doppel_platform::Error> {
    let max = state.settings.limits.flight_message_mb.clamp(4, 1024) * 1024 * 1024;
    Ok(FlightServiceServer::new(service::DoppelFlight::new(state)?)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max))
}

/// Serve Flight on `addr` until `shutdown` resolves.
pub async fn serve(
    state: Arc<AppState>,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| doppel_platform::Error::Io {
            path: addr.to_string(),
            source: e,
        })?;
    serve_listener(state, listener, shutdown).await
}

/// Serve Flight on an already bound listener (so a taken port is reported
/// when the process starts) until `shutdown` resolves.
pub async fn serve_listener(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let svc = service(state)?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        // Bulk uploads: HTTP/2 flow-control windows sized for loopback and
        // LAN bandwidth-delay products instead of the 64 KiB default, and
        // grown further when the link allows.
        .initial_stream_window_size(Some(8 * 1024 * 1024))
        .initial_connection_window_size(Some(16 * 1024 * 1024))
        .http2_adaptive_window(Some(true))
        .max_frame_size(Some(1024 * 1024))
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
