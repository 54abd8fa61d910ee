//! The Flight service: plain Flight for datasets, job outputs and job
//! actions, and Flight SQL, on one port.
//!
//! [`DoppelFlight`] is what tonic serves. It answers `ListFlights`,
//! `PollFlightInfo` and `GetSchema` itself and hands every other call to
//! [`FlightSql`], whose [`FlightSqlService`] implementation decodes Flight SQL
//! commands and sends anything else (path descriptors, our own commands and
//! tickets, our actions) to its `*_fallback` methods.
//!
//! This module holds the service types, authentication, tickets and the
//! lookups (all through `doppel_app::access`); the rest is one file per part
//! of the protocol: `get` (FlightInfo, tickets, DoGet streams), `put`
//! (DoPut), `actions` (DoAction), `list` (ListFlights) and `flight_sql`
//! (statements, prepared statements, metadata commands).

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    Any, CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandPreparedStatementQuery, CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    SqlSupportedTransaction, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, IpcMessage, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use datafusion::scalar::ScalarValue;
use doppel_app::AppState;
use doppel_app::datasets as tables;
use doppel_app::jobs as runner;
use doppel_platform::audit::RequestMeta;
use doppel_platform::authz::{Principal, Scope, require};
use doppel_platform::datasets::{self, Dataset};
use doppel_platform::jobs::{Job, JobState, OutputFile};
use doppel_platform::util::now_ms;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use serde::Deserialize;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::error;
use crate::sql::{self, SqlEngine};
use crate::target::{self, DatasetRef, JobRef, Target};
use crate::ticket::{Claims, Signer, TICKET_TYPE_URL, Target as Grants};

mod actions;
mod flight_sql;
mod get;
mod list;
mod put;

/// A boxed stream of results, as tonic wants them.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Rows per batch when streaming a stored table.
const BATCH_ROWS: usize = 64 * 1024;

/// Our `DoAction` verbs: `(type, description)`.
pub const ACTIONS: [(&str, &str); 5] = [
    (
        "job.submit",
        "Run a shipped pipeline, or a generator by name, on a dataset. Body (JSON): {\"pipeline\"?: \"quickstart\", \"generator\"?: {\"name\": \"privsyn\", \"params\"?: {\"epsilon\": 0.5}}, \"dataset\": \"<name or ds_ id>\", \"version\"?: n, \"overrides\"?: [\"stage.key=value\"], \"format\"?: \"parquet\"|\"csv\"}; give `pipeline`, `generator` or both. Result: the job (JSON).",
    ),
    (
        "generators.list",
        "The generators a job can choose, as REST's GET /v1/generators. Body: empty or {}. Result: a JSON list, each with id, label, dp, available, unavailable_reason, pipeline, pipelines and params (name, type, default, allowed, minimum, maximum).",
    ),
    (
        "job.status",
        "A job's state and progress. Body: {\"id\": \"job_…\"}. Result: the job (JSON): state, progress 0-1, message, error, outputs.",
    ),
    (
        "job.cancel",
        "Ask a queued or running job to stop. Body: {\"id\": \"job_…\"}. Result: the job (JSON).",
    ),
    (
        "dataset.delete",
        "Delete a dataset and its stored table. Body: {\"dataset\": \"<name or ds_ id>\", \"version\"?: n}. Result: {\"deleted\": \"ds_…\"}.",
    ),
];

/// The Flight SQL half (and the fallbacks that carry plain Flight).
pub struct FlightSql {
    state: Arc<AppState>,
    signer: Signer,
    sql: SqlEngine,
    sql_info: SqlInfoData,
}

impl std::fmt::Debug for FlightSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightSql")
            .field("sql", &self.sql)
            .finish_non_exhaustive()
    }
}

/// The service tonic serves.
#[derive(Debug, Clone)]
pub struct DoppelFlight {
    inner: Arc<FlightSql>,
}

impl DoppelFlight {
    /// A service over the server's shared state.
    pub fn new(state: Arc<AppState>) -> Result<DoppelFlight, doppel_platform::Error> {
        let key = state.settings.signing_key()?;
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "doppel");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(
            SqlInfo::FlightSqlServerTransaction,
            SqlSupportedTransaction::None as i32,
        );
        info.append(SqlInfo::FlightSqlServerCancel, false);
        info.append(SqlInfo::SqlDdlCatalog, false);
        info.append(SqlInfo::SqlDdlSchema, false);
        info.append(SqlInfo::SqlDdlTable, false);
        info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        info.append(SqlInfo::SqlTransactionsSupported, false);
        let sql_info = info
            .build()
            .map_err(|e| doppel_platform::Error::Internal(e.to_string()))?;
        Ok(DoppelFlight {
            inner: Arc::new(FlightSql {
                signer: Signer::new(&key),
                sql: SqlEngine::new(Arc::clone(&state)).map_err(|e| doppel_platform::Error::Internal(e.to_string()))?,
                state,
                sql_info,
            }),
        })
    }
}

fn meta_of<T>(req: &Request<T>) -> RequestMeta {
    RequestMeta {
        request_id: doppel_platform::util::new_id("req"),
        ip: req.remote_addr().map(|a| a.ip().to_string()),
    }
}

fn bearer<T>(req: &Request<T>) -> Result<&str, Status> {
    let header = req.metadata().get("authorization").ok_or_else(|| {
        Status::unauthenticated(
            "no credentials: send `authorization: Bearer <API key or session token>`, or Handshake with Basic credentials first",
        )
    })?;
    let value = header
        .to_str()
        .map_err(|_| Status::unauthenticated("the authorization header is not text"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| Status::unauthenticated("the authorization header must be `Bearer <token>`"))?;
    Ok(token.trim())
}

fn json_status(e: &serde_json::Error, what: &str) -> Status {
    Status::invalid_argument(format!("{what}: {e}"))
}

fn flight_status(e: FlightError) -> Status {
    match e {
        FlightError::Tonic(s) => *s,
        FlightError::Arrow(a) => Status::invalid_argument(format!("the Arrow data sent is invalid: {a}")),
        FlightError::ProtocolError(m) | FlightError::DecodeError(m) => {
            Status::invalid_argument(format!("the Arrow data sent is invalid: {m}"))
        }
        other => error::internal(&other),
    }
}

impl FlightSql {
    /// Authenticate the call, then spend from the account's request budget
    /// (the one REST spends from). A call whose credentials do not resolve
    /// spends from its address's budget, so junk tokens buy nothing.
    pub(super) async fn principal<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        let ip = req.remote_addr().map(|a| a.ip().to_string());
        let resolved = match bearer(req) {
            Ok(token) => self.state.accounts.authenticate(token, ip.as_deref()).await,
            Err(e) => {
                self.limit(None, ip.as_deref())?;
                return Err(e);
            }
        };
        match resolved {
            Ok(p) => {
                self.limit(Some(&p.account_id), ip.as_deref())?;
                Ok(p)
            }
            Err(e) => {
                self.limit(None, ip.as_deref())?;
                Err(error::platform(e))
            }
        }
    }

    /// Spend one request from the account's budget, or the address's.
    pub(super) fn limit(&self, account: Option<&str>, ip: Option<&str>) -> Result<(), Status> {
        let key = doppel_app::rate::limit_key(account, ip);
        self.state
            .check_rate(&key)
            .map_err(|_| Status::unavailable("too many requests; retry in a second"))
    }

    /// Sign-in attempts spend from the address's budget: keying them by the
    /// credentials would give every guessed password a fresh budget.
    pub(super) fn limit_address<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let ip = req.remote_addr().map(|a| a.ip().to_string());
        self.limit(None, ip.as_deref())
    }

    pub(super) fn ticket_ttl_ms(&self) -> i64 {
        i64::try_from(self.state.settings.limits.download_ttl_seconds.max(1))
            .unwrap_or(3600)
            .saturating_mul(1000)
    }

    pub(super) fn sign(&self, p: &Principal, target: Grants) -> Vec<u8> {
        self.signer.sign(&Claims {
            target,
            acct: p.account_id.clone(),
            exp: now_ms().saturating_add(self.ticket_ttl_ms()),
        })
    }

    /// Verify a ticket or handle and check it was issued to `p`.
    pub(super) fn redeem(&self, p: &Principal, bytes: &[u8]) -> Result<Grants, Status> {
        let claims = self
            .signer
            .verify(bytes, now_ms())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if claims.acct != p.account_id {
            return Err(Status::permission_denied("this ticket was issued to another account"));
        }
        Ok(claims.target)
    }

    // ------------------------------------------------------------ resolving

    pub(super) async fn dataset(&self, p: &Principal, key: &str, version: Option<u32>) -> Result<Dataset, Status> {
        doppel_app::access::dataset_by_key(&self.state, p, key, version)
            .await
            .map_err(error::platform)
    }

    /// Which upload of its name `d` is (1-based).
    pub(super) async fn version_of(&self, d: &Dataset) -> Result<usize, Status> {
        doppel_app::access::version_of(&self.state, d)
            .await
            .map_err(error::platform)
    }

    pub(super) async fn job(&self, p: &Principal, id: &str, need: Scope) -> Result<Job, Status> {
        doppel_app::access::job(&self.state, p, id, need)
            .await
            .map_err(error::platform)
    }

    /// A succeeded job's table output, or why there is none yet.
    pub(super) fn output(job: &Job, name: Option<&str>) -> Result<OutputFile, Status> {
        match job.state {
            JobState::Succeeded => {}
            JobState::Cancelled => return Err(Status::cancelled(format!("job {} was cancelled", job.id))),
            JobState::Failed => {
                return Err(Status::invalid_argument(format!(
                    "job {} failed ({}): {}",
                    job.id,
                    job.error_code.as_deref().unwrap_or("error"),
                    job.error.as_deref().unwrap_or("no detail")
                )));
            }
            state => {
                return Err(Status::invalid_argument(format!(
                    "job {} is {} ({:.0}%); its outputs exist once it has succeeded — poll it with job.status or PollFlightInfo",
                    job.id,
                    state.as_str(),
                    job.progress * 100.0
                )));
            }
        }
        let manifest = job
            .manifest
            .as_ref()
            .ok_or_else(|| error::internal(&"succeeded job without a manifest"))?;
        let tables = runner::table_outputs(manifest);
        let file = match name {
            None => tables.first().copied(),
            Some(n) => tables.iter().copied().find(|f| f.name == n),
        };
        file.cloned().ok_or_else(|| {
            let names: Vec<&str> = tables.iter().map(|f| f.name.as_str()).collect();
            if names.is_empty() {
                Status::not_found(format!(
                    "job {} has no Parquet table outputs (submit it with format parquet)",
                    job.id
                ))
            } else {
                Status::not_found(format!(
                    "job {} has no table output `{}`; it has {}",
                    job.id,
                    name.unwrap_or_default(),
                    names.join(", ")
                ))
            }
        })
    }
}

/// Record batches as Flight data (schema first, even for no rows); errors
/// already mapped to a status pass through, others are internal.
pub fn encode<S>(schema: SchemaRef, batches: S) -> BoxStream<FlightData>
where
    S: Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
{
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(|e| match e {
            FlightError::Tonic(s) => *s,
            other => error::internal(&other),
        });
    Box::pin(stream)
}

fn ipc_schema(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| error::internal(&e))?;
    Ok(bytes)
}

fn one_batch<E: std::fmt::Display>(batch: Result<RecordBatch, E>) -> Result<BoxStream<FlightData>, Status> {
    let batch = batch.map_err(|e| error::internal(&e))?;
    let schema = batch.schema();
    Ok(encode(schema, futures::stream::iter([Ok(batch)])))
}

#[tonic::async_trait]
impl FlightService for DoppelFlight {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;
    type DoExchangeStream = BoxStream<FlightData>;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        FlightService::handshake(&*self.inner, request).await
    }

    async fn list_flights(&self, request: Request<Criteria>) -> Result<Response<Self::ListFlightsStream>, Status> {
        let p = self.inner.principal(&request).await?;
        let prefix = std::str::from_utf8(&request.get_ref().expression)
            .map_err(|_| Status::invalid_argument("criteria: the expression must be a UTF-8 name prefix"))?
            .to_owned();
        let infos = self.inner.list(&p, &prefix).await?;
        Ok(Response::new(Box::pin(futures::stream::iter(
            infos.into_iter().map(Ok),
        ))))
    }

    async fn get_flight_info(&self, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        FlightService::get_flight_info(&*self.inner, request).await
    }

    async fn poll_flight_info(&self, request: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        let p = self.inner.principal(&request).await?;
        let descriptor = request.into_inner();
        let target = target::parse(&descriptor)?;
        let Target::Job { id, output } = target else {
            // A dataset is complete the moment it exists.
            let info = self.inner.info(&p, target).await?;
            return Ok(Response::new(PollInfo {
                info: Some(info),
                flight_descriptor: None,
                progress: Some(1.0),
                expiration_time: None,
            }));
        };
        let job = self.inner.job(&p, &id, Scope::DatasetsRead).await?;
        if !job.state.is_terminal() {
            // Not done: no endpoints yet; poll again with the same descriptor.
            return Ok(Response::new(PollInfo {
                info: Some(FlightInfo::new().with_descriptor(descriptor.clone())),
                flight_descriptor: Some(descriptor),
                progress: Some(job.progress.clamp(0.0, 1.0)),
                expiration_time: None,
            }));
        }
        let info = self.inner.info(&p, Target::Job { id, output }).await?;
        Ok(Response::new(PollInfo {
            info: Some(info),
            flight_descriptor: None,
            progress: Some(1.0),
            expiration_time: None,
        }))
    }

    async fn get_schema(&self, request: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        let info = FlightService::get_flight_info(&*self.inner, request)
            .await?
            .into_inner();
        Ok(Response::new(SchemaResult { schema: info.schema }))
    }

    async fn do_get(&self, request: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        FlightService::do_get(&*self.inner, request).await
    }

    async fn do_put(&self, request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        FlightService::do_put(&*self.inner, request).await
    }

    async fn do_action(&self, request: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        FlightService::do_action(&*self.inner, request).await
    }

    async fn list_actions(&self, request: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        FlightService::list_actions(&*self.inner, request).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        self.inner.principal(&request).await?;
        Err(Status::unimplemented("DoExchange is not offered by this server"))
    }
}

/// Commands for programs that prefer them to paths.
pub fn dataset_command(dataset: &str, version: u32) -> Vec<u8> {
    DatasetRef {
        dataset: dataset.to_owned(),
        version,
    }
    .as_any()
    .encode_to_vec()
}

/// A [`JobRef`] command.
pub fn job_command(job_id: &str, output: &str) -> Vec<u8> {
    JobRef {
        job_id: job_id.to_owned(),
        output: output.to_owned(),
    }
    .as_any()
    .encode_to_vec()
}
