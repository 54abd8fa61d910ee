//! The Flight service: plain Flight for datasets, job outputs and job
//! actions, and Flight SQL, on one port.
//!
//! [`DoppelFlight`] is what tonic serves. It answers `ListFlights`,
//! `PollFlightInfo` and `GetSchema` itself and hands every other call to
//! [`FlightSql`], whose [`FlightSqlService`] implementation decodes Flight SQL
//! commands and sends anything else (path descriptors, our own commands and
//! tickets, our actions) to its `*_fallback` methods.

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

/// A boxed stream of results, as tonic wants them.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Rows per batch when streaming a stored table.
const BATCH_ROWS: usize = 64 * 1024;

/// Our `DoAction` verbs: `(type, description)`.
pub const ACTIONS: [(&str, &str); 4] = [
    (
        "job.submit",
        "Run a shipped pipeline on a dataset. Body (JSON): {\"pipeline\": \"quickstart\", \"dataset\": \"<name or ds_ id>\", \"version\"?: n, \"overrides\"?: [\"stage.key=value\"], \"format\"?: \"parquet\"|\"csv\"}. Result: the job (JSON).",
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

/// How deeply a column type nests (a plain type is 0), without recursion
/// limits of its own: Arrow schemas arrive through flatbuffers, whose
/// verifier already bounds their depth.
fn nesting(dt: &arrow::datatypes::DataType) -> usize {
    use arrow::datatypes::DataType as D;
    match dt {
        D::List(f) | D::LargeList(f) | D::FixedSizeList(f, _) | D::ListView(f) | D::LargeListView(f) | D::Map(f, _) => {
            1 + nesting(f.data_type())
        }
        D::Struct(fields) => 1 + fields.iter().map(|f| nesting(f.data_type())).max().unwrap_or(0),
        D::Union(fields, _) => 1 + fields.iter().map(|(_, f)| nesting(f.data_type())).max().unwrap_or(0),
        D::Dictionary(_, v) => nesting(v),
        D::RunEndEncoded(_, v) => nesting(v.data_type()),
        _ => 0,
    }
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
    async fn principal<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
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
    fn limit(&self, account: Option<&str>, ip: Option<&str>) -> Result<(), Status> {
        let key = doppel_app::rate::limit_key(account, ip);
        self.state
            .check_rate(&key)
            .map_err(|_| Status::unavailable("too many requests; retry in a second"))
    }

    /// Sign-in attempts spend from the address's budget: keying them by the
    /// credentials would give every guessed password a fresh budget.
    fn limit_address<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let ip = req.remote_addr().map(|a| a.ip().to_string());
        self.limit(None, ip.as_deref())
    }

    fn ticket_ttl_ms(&self) -> i64 {
        i64::try_from(self.state.settings.limits.download_ttl_seconds.max(1))
            .unwrap_or(3600)
            .saturating_mul(1000)
    }

    fn sign(&self, p: &Principal, target: Grants) -> Vec<u8> {
        self.signer.sign(&Claims {
            target,
            acct: p.account_id.clone(),
            exp: now_ms().saturating_add(self.ticket_ttl_ms()),
        })
    }

    /// Verify a ticket or handle and check it was issued to `p`.
    fn redeem(&self, p: &Principal, bytes: &[u8]) -> Result<Grants, Status> {
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

    async fn dataset(&self, p: &Principal, key: &str, version: Option<u32>) -> Result<Dataset, Status> {
        doppel_app::access::dataset_by_key(&self.state, p, key, version)
            .await
            .map_err(error::platform)
    }

    /// Which upload of its name `d` is (1-based).
    async fn version_of(&self, d: &Dataset) -> Result<usize, Status> {
        doppel_app::access::version_of(&self.state, d)
            .await
            .map_err(error::platform)
    }

    async fn job(&self, p: &Principal, id: &str, need: Scope) -> Result<Job, Status> {
        doppel_app::access::job(&self.state, p, id, need)
            .await
            .map_err(error::platform)
    }

    /// A succeeded job's table output, or why there is none yet.
    fn output(job: &Job, name: Option<&str>) -> Result<OutputFile, Status> {
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

    /// FlightInfo for a dataset or job output, with a fresh signed ticket.
    async fn info(&self, p: &Principal, target: Target) -> Result<FlightInfo, Status> {
        match target {
            Target::Dataset { key, version } => {
                let d = self.dataset(p, &key, version).await?;
                let v = self.version_of(&d).await?;
                self.dataset_info(p, d, v).await
            }
            Target::Job { id, output } => {
                let job = self.job(p, &id, Scope::DatasetsRead).await?;
                let file = Self::output(&job, output.as_deref())?;
                self.output_info(p, &job, file).await
            }
            Target::Purchase { id } => {
                let (purchase, listing) = self.bought(p, &id).await?;
                let app = serde_json::json!({
                    "kind": "purchase", "purchase_id": purchase.id, "listing_id": listing.id,
                    "title": listing.title, "license": listing.license,
                });
                self.ticketed_info(
                    p,
                    Grants::Purchase {
                        id: purchase.id.clone(),
                    },
                    &listing.output_key,
                    FlightDescriptor::new_path(vec!["purchases".into(), purchase.id]),
                    -1,
                    &app,
                )
                .await
            }
        }
    }

    /// A completed purchase of the caller's and the listing it bought;
    /// another account's purchase is not found, an unpaid or refunded one
    /// gives no access.
    async fn bought(
        &self,
        p: &Principal,
        id: &str,
    ) -> Result<(doppel_market::Purchase, doppel_market::Listing), Status> {
        let purchase = self.state.market.own_purchase(p, id).await.map_err(error::platform)?;
        if purchase.status != doppel_market::PurchaseStatus::Completed {
            return Err(Status::failed_precondition(format!(
                "purchase {id} is {}; only a completed purchase can be read",
                purchase.status.as_str()
            )));
        }
        let listing = self
            .state
            .market
            .listing(&purchase.listing_id)
            .await
            .map_err(error::platform)?;
        Ok((purchase, listing))
    }

    /// FlightInfo for version `v` of an already authorized dataset.
    async fn dataset_info(&self, p: &Principal, d: Dataset, v: usize) -> Result<FlightInfo, Status> {
        let app = serde_json::json!({
            "kind": "dataset", "dataset_id": d.id, "name": d.name, "version": v,
            "created_at": d.created_at,
        });
        self.ticketed_info(
            p,
            Grants::Dataset { id: d.id.clone() },
            &d.object_key,
            FlightDescriptor::new_path(vec!["datasets".into(), d.name, v.to_string()]),
            d.size_bytes,
            &app,
        )
        .await
    }

    /// FlightInfo for one table output of an already authorized job.
    async fn output_info(&self, p: &Principal, job: &Job, file: OutputFile) -> Result<FlightInfo, Status> {
        let app = serde_json::json!({
            "kind": "job_output", "job_id": job.id, "output": file.name,
            "pipeline": job.spec.get("pipeline"), "summary": job.manifest.as_ref().map(|m| &m.summary),
        });
        self.ticketed_info(
            p,
            Grants::Output {
                job: job.id.clone(),
                name: file.name.clone(),
            },
            &file.key,
            FlightDescriptor::new_path(vec!["jobs".into(), job.id.clone(), file.name]),
            i64::try_from(file.size).unwrap_or(i64::MAX),
            &app,
        )
        .await
    }

    /// Schema and rows from the Parquet footer, one endpoint with a signed ticket.
    async fn ticketed_info(
        &self,
        p: &Principal,
        grant: Grants,
        key: &str,
        descriptor: FlightDescriptor,
        bytes: i64,
        app: &serde_json::Value,
    ) -> Result<FlightInfo, Status> {
        let (schema, rows) = self.sql.parquet_meta(key).await?;
        let ticket = Any {
            type_url: TICKET_TYPE_URL.to_owned(),
            value: self.sign(p, grant).into(),
        };
        FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| error::internal(&e))
            .map(|i| {
                i.with_descriptor(descriptor)
                    .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket.encode_to_vec())))
                    .with_total_records(rows)
                    .with_total_bytes(bytes)
                    .with_ordered(true)
                    .with_app_metadata(app.to_string().into_bytes())
            })
    }

    /// Stream a stored Parquet object as Flight data.
    async fn stream_object(&self, key: &str) -> Result<BoxStream<FlightData>, Status> {
        let (schema, batches) = crate::reader::batches(
            self.state.storage.object_store(),
            self.state.storage.path(key),
            BATCH_ROWS,
        )
        .await
        .map_err(|e| error::internal(&e))?;
        Ok(encode(
            schema,
            batches.map_err(|e| FlightError::ExternalError(Box::new(e))),
        ))
    }

    /// Stream a dataset from its Arrow IPC serving copy (stored messages
    /// forwarded as they are), or from its Parquet table when it has none.
    async fn stream_dataset(&self, d: &Dataset) -> Result<BoxStream<FlightData>, Status> {
        if let Some(folder) = d.object_key.strip_suffix(tables::PARQUET_FILE) {
            let ipc = self.state.storage.path(&format!("{folder}{}", tables::IPC_FILE));
            match crate::reader::ipc_flight_data(self.state.storage.object_store(), ipc).await {
                Ok((schema, messages)) => {
                    let first = FlightData::from(SchemaAsIpc::new(&schema, &IpcWriteOptions::default()));
                    let stream = futures::stream::iter([Ok(first)])
                        .chain(messages.map_err(|e| error::platform(doppel_platform::Error::from(e))));
                    return Ok(Box::pin(stream));
                }
                // Datasets stored before serving copies existed have none.
                Err(crate::reader::IpcError::Store(object_store::Error::NotFound { .. })) => {}
                Err(e) => {
                    tracing::warn!(dataset = %d.id, error = %e, "Serving copy unusable; reading the Parquet table.");
                }
            }
        }
        self.stream_object(&d.object_key).await
    }

    /// Redeem a ticket of ours: re-authorize, then stream.
    async fn do_get_ticket(&self, p: &Principal, ticket: &[u8]) -> Result<BoxStream<FlightData>, Status> {
        match self.redeem(p, ticket)? {
            Grants::Dataset { id } => {
                let d = self.dataset(p, &id, None).await?;
                self.stream_dataset(&d).await
            }
            Grants::Output { job, name } => {
                let job = self.job(p, &job, Scope::DatasetsRead).await?;
                let file = Self::output(&job, Some(&name))?;
                self.stream_object(&file.key).await
            }
            Grants::Purchase { id } => {
                let (purchase, listing) = self.bought(p, &id).await?;
                self.state
                    .market
                    .record_download(&purchase)
                    .await
                    .map_err(error::platform)?;
                self.stream_object(&listing.output_key).await
            }
            Grants::Sql { sql, params } => self.execute(p, &sql, params.as_deref()).await,
        }
    }

    /// Plan and run a statement, streaming its result.
    async fn execute(&self, p: &Principal, sql: &str, params: Option<&str>) -> Result<BoxStream<FlightData>, Status> {
        let (ctx, plan) = self.plan(p, sql, params).await?;
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let stream = self.sql.execute(ctx, plan).await?;
        let batches = stream.map_err(|s| FlightError::Tonic(Box::new(s)));
        Ok(encode(schema, batches))
    }

    async fn plan(
        &self,
        p: &Principal,
        sql: &str,
        params: Option<&str>,
    ) -> Result<
        (
            datafusion::prelude::SessionContext,
            datafusion::logical_expr::LogicalPlan,
        ),
        Status,
    > {
        let values = match params {
            Some(b64) => Some(decode_params(b64)?),
            None => None,
        };
        let (ctx, plan) = self.sql.plan(p, sql, None).await?;
        let Some(values) = values else {
            return Ok((ctx, plan));
        };
        // Cast each bound value to the type the statement expects there, so
        // an int32 from a client fills an int64 slot.
        let types = plan.get_parameter_types().map_err(error::datafusion)?;
        let mut cast = Vec::with_capacity(values.len());
        for (i, v) in values.into_iter().enumerate() {
            let want = types.get(&format!("${}", i + 1)).cloned().flatten();
            cast.push(match want {
                Some(t) if v.data_type() != t && !v.is_null() => v.cast_to(&t).map_err(|e| {
                    Status::invalid_argument(format!("parameter {}: cannot be read as {t}: {e}", i + 1))
                })?,
                _ => v,
            });
        }
        let plan = plan.with_param_values(cast).map_err(error::datafusion)?;
        Ok((ctx, plan))
    }

    async fn sql_info_for(&self, p: &Principal, sql: &str, params: Option<&str>) -> Result<SchemaRef, Status> {
        let (_, plan) = self.plan(p, sql, params).await?;
        Ok(Arc::new(plan.schema().as_arrow().clone()))
    }

    // ------------------------------------------------------------ uploads

    async fn put_dataset(
        &self,
        mut request: Request<PeekableFlightDataStream>,
    ) -> Result<Response<BoxStream<PutResult>>, Status> {
        let p = self.principal(&request).await?;
        require(&p, Scope::DatasetsWrite).map_err(error::platform)?;
        let meta = meta_of(&request);
        let descriptor = match request.get_mut().peek().await {
            Some(Ok(first)) => first.flight_descriptor.clone(),
            Some(Err(e)) => return Err(e.clone()),
            None => None,
        }
        .ok_or_else(|| Status::invalid_argument("DoPut needs a descriptor: path [\"datasets\", name]"))?;
        let name = match target::parse(&descriptor)? {
            Target::Dataset { key, version: None } => key,
            _ => {
                return Err(Status::invalid_argument(
                    "DoPut uploads a dataset: use the path [\"datasets\", name]; each upload under a name is its next version",
                ));
            }
        };
        let name = tables::check_name(&name).map_err(error::platform)?.to_owned();
        let limit = self.state.settings.limits.upload_max_mb.saturating_mul(1024 * 1024);
        let work = tempfile::tempdir().map_err(|e| error::internal(&e))?;
        let received = work.path().join("received.parquet");
        let mut batches =
            FlightRecordBatchStream::new_from_flight_data(request.into_inner().map_err(FlightError::from));
        // A blocking thread encodes Parquet while this task keeps reading
        // the network; the bounded channel is the back-pressure.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(4);
        let writer = {
            let path = received.clone();
            tokio::task::spawn_blocking(move || -> Result<Option<SchemaRef>, String> {
                let mut w: Option<parquet::arrow::ArrowWriter<std::fs::File>> = None;
                let mut schema = None;
                while let Some(batch) = rx.blocking_recv() {
                    if w.is_none() {
                        let f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
                        let props = parquet::file::properties::WriterProperties::builder()
                            .set_compression(parquet::basic::Compression::SNAPPY)
                            .build();
                        schema = Some(batch.schema());
                        w = Some(
                            parquet::arrow::ArrowWriter::try_new(f, batch.schema(), Some(props))
                                .map_err(|e| e.to_string())?,
                        );
                    }
                    if let Some(w) = w.as_mut() {
                        w.write(&batch).map_err(|e| e.to_string())?;
                    }
                }
                if let Some(w) = w {
                    w.close().map_err(|e| e.to_string())?;
                }
                Ok(schema)
            })
        };
        let mut bytes = 0u64;
        let mut rows = 0usize;
        let limits = *self.state.ingest.limits();
        let too_large = |e: doppel_host::limits::LimitError| Status::invalid_argument(format!("upload: {e}"));
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(flight_status)?;
            if rows == 0 && bytes == 0 {
                // The schema is known with the first batch: refuse a shape
                // over the limits before storing anything.
                let schema = batch.schema();
                limits
                    .check_shape(schema.fields().iter().map(|f| f.name().as_str()), None)
                    .map_err(too_large)?;
                let depth = schema
                    .fields()
                    .iter()
                    .map(|f| nesting(f.data_type()))
                    .max()
                    .unwrap_or(0);
                if depth > limits.max_depth {
                    return Err(Status::invalid_argument(format!(
                        "upload: columns nest {depth} levels deep; the limit is {} (limits.max_depth)",
                        limits.max_depth
                    )));
                }
            }
            bytes += batch.get_array_memory_size() as u64;
            rows += batch.num_rows();
            limits
                .check_cells(rows as u64, batch.num_columns())
                .map_err(too_large)?;
            if bytes > limit {
                return Err(Status::invalid_argument(format!(
                    "upload: larger than the {} MiB limit",
                    self.state.settings.limits.upload_max_mb
                )));
            }
            if tx.send(batch).await.is_err() {
                break;
            }
        }
        drop(tx);
        let written = writer
            .await
            .map_err(|e| error::internal(&e))?
            .map_err(|e| error::internal(&e))?;
        if written.is_none() {
            return Err(Status::invalid_argument(
                "upload: no record batches were sent; write at least one (it may be empty)",
            ));
        }
        let ingested = self
            .state
            .ingest
            .ingest(
                &received,
                &name,
                doppel_host::builtins::source::Format::Parquet,
                work.path(),
            )
            .await
            .map_err(|e| match e {
                tables::IngestError::Internal(m) => error::internal(&m),
                other => Status::invalid_argument(other.to_string()),
            })?;
        let d = tables::register(&self.state, &meta, &p, &name, &ingested)
            .await
            .map_err(error::platform)?;
        let version = datasets::versions(&self.state.db, &p.account_id, &name)
            .await
            .map_err(error::platform)?
            .len();
        let reply = serde_json::json!({
            "dataset_id": d.id, "name": d.name, "version": version, "rows": rows,
            "size_bytes": d.size_bytes,
        });
        tracing::info!(dataset = %d.id, rows, "Dataset uploaded over Flight.");
        let out = futures::stream::iter([Ok(PutResult {
            app_metadata: reply.to_string().into_bytes().into(),
        })]);
        Ok(Response::new(Box::pin(out)))
    }

    // ------------------------------------------------------------ actions

    async fn action(&self, p: &Principal, meta: &RequestMeta, action: &Action) -> Result<serde_json::Value, Status> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Submit {
            pipeline: String,
            #[serde(alias = "dataset_id")]
            dataset: String,
            #[serde(default)]
            version: Option<u32>,
            #[serde(default)]
            overrides: Vec<String>,
            #[serde(default)]
            format: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct JobId {
            id: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct DatasetId {
            #[serde(alias = "id")]
            dataset: String,
            #[serde(default)]
            version: Option<u32>,
        }
        let body = &action.body;
        let what = format!("{} body", action.r#type);
        match action.r#type.as_str() {
            "job.submit" => {
                let s: Submit = serde_json::from_slice(body).map_err(|e| json_status(&e, &what))?;
                let csv = match s.format.as_deref() {
                    None | Some("parquet") => false,
                    Some("csv") => true,
                    Some(other) => {
                        return Err(Status::invalid_argument(format!(
                            "format: `{other}` is not parquet or csv"
                        )));
                    }
                };
                let d = self.dataset(p, &s.dataset, s.version).await.map_err(|e| {
                    if e.code() == tonic::Code::NotFound {
                        Status::invalid_argument(format!("dataset: {}", e.message()))
                    } else {
                        e
                    }
                })?;
                let job = runner::submit(
                    &self.state,
                    meta,
                    p,
                    runner::JobRequest {
                        pipeline: s.pipeline,
                        dataset_id: Some(d.id),
                        model: None,
                        overrides: s.overrides,
                        csv,
                    },
                )
                .await
                .map_err(|e| match e {
                    runner::SubmitError::InvalidPipeline(m) => Status::invalid_argument(m),
                    e @ runner::SubmitError::NotAllowed { .. } => Status::invalid_argument(e.to_string()),
                    runner::SubmitError::Platform(e) => error::platform(e),
                })?;
                Ok(job_json(&job))
            }
            "job.status" => {
                let j: JobId = serde_json::from_slice(body).map_err(|e| json_status(&e, &what))?;
                Ok(job_json(&self.job(p, &j.id, Scope::DatasetsRead).await?))
            }
            "job.cancel" => {
                let j: JobId = serde_json::from_slice(body).map_err(|e| json_status(&e, &what))?;
                let job = self.job(p, &j.id, Scope::JobsRun).await?;
                let job = self
                    .state
                    .queue
                    .cancel(meta, p, &job.id)
                    .await
                    .map_err(error::platform)?;
                Ok(job_json(&job))
            }
            "dataset.delete" => {
                let d: DatasetId = serde_json::from_slice(body).map_err(|e| json_status(&e, &what))?;
                require(p, Scope::DatasetsWrite).map_err(error::platform)?;
                let found = self.dataset(p, &d.dataset, d.version).await?;
                tables::delete(&self.state, meta, p, &found.id)
                    .await
                    .map_err(error::platform)?;
                Ok(serde_json::json!({"deleted": found.id}))
            }
            other => {
                let names: Vec<&str> = ACTIONS.iter().map(|(n, _)| *n).collect();
                Err(Status::invalid_argument(format!(
                    "unknown action `{other}`; this server has {} and the Flight SQL actions",
                    names.join(", ")
                )))
            }
        }
    }

    // ------------------------------------------------------------ listing

    async fn list(&self, p: &Principal, prefix: &str) -> Result<Vec<FlightInfo>, Status> {
        require(p, Scope::DatasetsRead).map_err(error::platform)?;
        let mut out = Vec::new();
        let all = sql::all_datasets(&self.state, &p.account_id).await?;
        // Versions count per name in upload order (the list is newest first).
        let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for d in &all {
            *counts.entry(d.name.as_str()).or_default() += 1;
        }
        let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for d in &all {
            let n = seen.entry(d.name.as_str()).or_default();
            let version = counts[d.name.as_str()] - *n;
            *n += 1;
            if d.name.starts_with(prefix) {
                out.push(self.dataset_info(p, d.clone(), version).await?);
            }
        }
        for (job, files) in sql::succeeded_outputs(&self.state, &p.account_id).await? {
            if !job.id.starts_with(prefix) {
                continue;
            }
            for f in files {
                out.push(self.output_info(p, &job, f).await?);
            }
        }
        Ok(out)
    }
}

/// A job as JSON: the application core's view, as REST shows it.
fn job_json(job: &Job) -> serde_json::Value {
    serde_json::to_value(runner::JobView::of(job)).unwrap_or_default()
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

/// One bound parameter row, as an Arrow IPC stream in base64.
fn encode_params(batch: &RecordBatch) -> Result<String, Status> {
    let mut buf = Vec::new();
    {
        let mut w =
            arrow::ipc::writer::StreamWriter::try_new(&mut buf, &batch.schema()).map_err(|e| error::internal(&e))?;
        w.write(batch).map_err(|e| error::internal(&e))?;
        w.finish().map_err(|e| error::internal(&e))?;
    }
    Ok(STANDARD.encode(buf))
}

fn decode_params(b64: &str) -> Result<Vec<ScalarValue>, Status> {
    let bad = |e: &dyn std::fmt::Display| Status::invalid_argument(format!("bound parameters: {e}"));
    let bytes = STANDARD.decode(b64).map_err(|e| bad(&e))?;
    let mut reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).map_err(|e| bad(&e))?;
    let Some(batch) = reader.next().transpose().map_err(|e| bad(&e))? else {
        return Ok(Vec::new());
    };
    batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, 0).map_err(|e| bad(&e)))
        .collect()
}

fn parameter_schema(plan: &datafusion::logical_expr::LogicalPlan) -> Result<Schema, Status> {
    let types = plan.get_parameter_types().map_err(error::datafusion)?;
    let mut named: Vec<(usize, String, DataType)> = types
        .into_iter()
        .map(|(name, t)| {
            let n = name.trim_start_matches('$').parse::<usize>().unwrap_or(usize::MAX);
            (n, name, t.unwrap_or(DataType::Null))
        })
        .collect();
    named.sort();
    Ok(Schema::new(
        named
            .into_iter()
            .map(|(_, name, t)| Field::new(name, t, true))
            .collect::<Vec<_>>(),
    ))
}

fn one_batch<E: std::fmt::Display>(batch: Result<RecordBatch, E>) -> Result<BoxStream<FlightData>, Status> {
    let batch = batch.map_err(|e| error::internal(&e))?;
    let schema = batch.schema();
    Ok(encode(schema, futures::stream::iter([Ok(batch)])))
}

fn info_for_command(
    schema: &Schema,
    command: Any,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| error::internal(&e))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(command.encode_to_vec())))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        self.limit_address(&request)?;
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Status::unauthenticated("Handshake needs `authorization: Basic base64(email:password)` or Basic with user `token` and an API key")
            })?;
        let token = if let Some(b64) = header.strip_prefix("Basic ") {
            let decoded = STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| Status::unauthenticated("the Basic credentials are not base64 of `user:password`"))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| Status::unauthenticated("the Basic credentials are not `user:password`"))?;
            if user == "token" {
                // An API key (or session token) as the password: check it and
                // hand it back as the bearer to use.
                self.state
                    .accounts
                    .authenticate(password, request.remote_addr().map(|a| a.ip().to_string()).as_deref())
                    .await
                    .map_err(error::platform)?;
                password.to_owned()
            } else {
                let meta = meta_of(&request);
                match self.state.accounts.log_in(&meta, user, password, None, None).await {
                    Ok(session) => session.token,
                    Err(doppel_platform::Error::MfaRequired) => {
                        return Err(Status::unauthenticated(
                            "this account signs in with a second factor: Handshake with user `token` and an API key instead",
                        ));
                    }
                    Err(e) => return Err(error::platform(e)),
                }
            }
        } else if header.starts_with("Bearer ") {
            // Already a bearer: validate it and echo it.
            self.principal(&request).await?;
            bearer(&request)?.to_owned()
        } else {
            return Err(Status::unauthenticated("Handshake needs Basic credentials"));
        };
        let value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|e| error::internal(&e))?;
        let out = futures::stream::iter([Ok(HandshakeResponse {
            protocol_version: 0,
            payload: token.into_bytes().into(),
        })]);
        let mut response: Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>> =
            Response::new(Box::pin(out));
        response.metadata_mut().insert("authorization", value);
        Ok(response)
    }

    async fn get_flight_info_fallback(
        &self,
        command: arrow_flight::sql::Command,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let p = self.principal(&request).await?;
        let any = command.into_any();
        let target = if any.type_url.is_empty() {
            target::parse(request.get_ref())?
        } else {
            target::parse_any(&any)?
        };
        Ok(Response::new(self.info(&p, target).await?))
    }

    async fn do_get_fallback(
        &self,
        request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let p = self.principal(&request).await?;
        if message.type_url != TICKET_TYPE_URL {
            return Err(Status::invalid_argument(
                "unknown ticket: use a ticket from GetFlightInfo or ListFlights",
            ));
        }
        Ok(Response::new(self.do_get_ticket(&p, &message.value).await?))
    }

    async fn do_put_fallback(
        &self,
        request: Request<PeekableFlightDataStream>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        if !message.type_url.is_empty() && message.type_url != target::DATASET_REF_URL {
            self.principal(&request).await?;
            return Err(Status::invalid_argument(format!(
                "DoPut: unknown command `{}`; upload a dataset with the path [\"datasets\", name]",
                message.type_url
            )));
        }
        self.put_dataset(request).await
    }

    async fn do_put_error_callback(
        &self,
        request: Request<PeekableFlightDataStream>,
        error: arrow_flight::sql::server::DoPutError,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        self.principal(&request).await?;
        Err(Status::invalid_argument(format!("DoPut: {error}")))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let p = self.principal(&request).await?;
        let meta = meta_of(&request);
        let result = self.action(&p, &meta, request.get_ref()).await?;
        let out = futures::stream::iter([Ok(arrow_flight::Result {
            body: result.to_string().into_bytes().into(),
        })]);
        Ok(Response::new(Box::pin(out)))
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        Some(
            ACTIONS
                .iter()
                .map(|(t, d)| {
                    Ok(ActionType {
                        r#type: (*t).to_owned(),
                        description: (*d).to_owned(),
                    })
                })
                .collect(),
        )
    }

    // ------------------------------------------------------------ Flight SQL

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let p = self.principal(&request).await?;
        let schema = self.sql_info_for(&p, &query.query, None).await?;
        let handle = self.sign(
            &p,
            Grants::Sql {
                sql: query.query,
                params: None,
            },
        );
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        };
        info_for_command(&schema, ticket.as_any(), request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let p = self.principal(&request).await?;
        Ok(Response::new(self.do_get_ticket(&p, &ticket.statement_handle).await?))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let p = self.principal(&request).await?;
        let (_, plan) = self.sql.plan(&p, &query.query, None).await?;
        let dataset_schema = ipc_schema(plan.schema().as_arrow())?;
        let parameters = parameter_schema(&plan)?;
        let parameter_schema = if parameters.fields().is_empty() {
            bytes::Bytes::new()
        } else {
            ipc_schema(&parameters)?
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: self
                .sign(
                    &p,
                    Grants::Sql {
                        sql: query.query,
                        params: None,
                    },
                )
                .into(),
            dataset_schema,
            parameter_schema,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        // Handles are stateless: nothing to free.
        self.principal(&request).await?;
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let p = self.principal(&request).await?;
        let Grants::Sql { sql, .. } = self.redeem(&p, &query.prepared_statement_handle)? else {
            return Err(Status::invalid_argument("not a prepared statement handle"));
        };
        // One row of values is all a query binds: the upload is read up to
        // `limits.sql_parameters_kb`, never buffered whole.
        let max = self.state.settings.limits.sql_parameters_kb.saturating_mul(1024);
        let mut stream = FlightRecordBatchStream::new_from_flight_data(request.into_inner().map_err(FlightError::from));
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut held = 0usize;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(flight_status)?;
            held += batch.get_array_memory_size();
            if held > max {
                return Err(Status::invalid_argument(format!(
                    "bound parameters: more than {} KiB (limits.sql_parameters_kb)",
                    max / 1024
                )));
            }
            batches.push(batch);
        }
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let params = match (batches.iter().find(|b| b.num_rows() > 0), rows) {
            (None, _) => None,
            (Some(b), 1) => Some(encode_params(b)?),
            (Some(_), n) => {
                return Err(Status::invalid_argument(format!(
                    "bind one row of parameters to a query (got {n}); run the statement once per row"
                )));
            }
        };
        // Check the statement plans with these values before handing out a handle.
        self.plan(&p, &sql, params.as_deref()).await?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(self.sign(&p, Grants::Sql { sql, params }).into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let p = self.principal(&request).await?;
        let Grants::Sql { sql, params } = self.redeem(&p, &cmd.prepared_statement_handle)? else {
            return Err(Status::invalid_argument("not a prepared statement handle"));
        };
        let schema = self.sql_info_for(&p, &sql, params.as_deref()).await?;
        info_for_command(&schema, cmd.as_any(), request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let p = self.principal(&request).await?;
        Ok(Response::new(
            self.do_get_ticket(&p, &cmd.prepared_statement_handle).await?,
        ))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        let schema = query.into_builder().schema();
        info_for_command(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        let mut b = query.into_builder();
        b.append(sql::CATALOG);
        Ok(Response::new(one_batch(b.build())?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        let schema = query.clone().into_builder().schema();
        info_for_command(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        let mut b = query.into_builder();
        b.append(sql::CATALOG, sql::DATASETS);
        b.append(sql::CATALOG, sql::OUTPUTS);
        b.append(sql::CATALOG, sql::PURCHASES);
        Ok(Response::new(one_batch(b.build())?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        let schema = query.clone().into_builder().schema();
        info_for_command(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let p = self.principal(&request).await?;
        let mut b = query.into_builder();
        for t in self.sql.tables(&p).await? {
            b.append(sql::CATALOG, t.schema_name, &t.name, sql::TABLE_TYPE, &t.schema)
                .map_err(|e| error::internal(&e))?;
        }
        Ok(Response::new(one_batch(b.build())?))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        let schema = query.into_builder().schema();
        info_for_command(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        let mut b = query.into_builder();
        b.append(sql::TABLE_TYPE);
        Ok(Response::new(one_batch(b.build())?))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        info_for_command(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        Ok(Response::new(one_batch(query.into_builder(&self.sql_info).build())?))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
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
