//! Read-only SQL over what the caller may read, on DataFusion.
//!
//! Every statement gets a fresh [`SessionContext`] holding only the caller's
//! tables, so no query can name another account's data. The catalog is
//! `doppel` with two schemas:
//!
//! - `datasets`: one table per dataset name (its latest version), the
//!   default schema, so `SELECT … FROM adult` works;
//! - `outputs`: the Parquet outputs of the caller's succeeded jobs, named by
//!   job id (`job_…` is the synthetic twin, `job_…_<name>` the others);
//! - `purchases`: the synthetic tables the caller bought on the marketplace,
//!   named by purchase id (`pur_…`), while the purchase stands (a refund
//!   removes the table from the next statement on). Nothing else of the
//!   seller's is visible.
//!
//! Tables are Parquet objects read straight from object storage (the
//! platform's store is registered with DataFusion), with filter and
//! projection pushdown into the Parquet scan.
//!
//! Statements are bounded: text length, a memory pool per statement
//! (`limits.sql_memory_mb`; no spilling, an over-budget sort or join is an
//! error), output-amplifying functions guarded ([`crate::guard`]), a deadline
//! (`limits.sql_timeout_seconds`), and a fixed number running at once
//! (`limits.sql_concurrency`) on a runtime of their own, so queries never
//! take the threads REST requests and uploads are served on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::logical_expr::LogicalPlan;
use doppel_app::AppState;
use doppel_platform::authz::{Principal, Scope, require};
use doppel_platform::jobs::JobState;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use tonic::Status;

use crate::error;

/// The one catalog name.
pub const CATALOG: &str = "doppel";
/// Schema of the caller's datasets (the default).
pub const DATASETS: &str = "datasets";
/// Schema of the caller's job outputs.
pub const OUTPUTS: &str = "outputs";
/// Schema of the tables the caller bought.
pub const PURCHASES: &str = "purchases";
/// The only table type.
pub const TABLE_TYPE: &str = "TABLE";

/// URL the platform's object store is registered under in DataFusion.
const STORE_URL: &str = "doppel://store";

/// One table a caller may query.
#[derive(Debug, Clone)]
pub struct TableEntry {
    /// `datasets` or `outputs`.
    pub schema_name: &'static str,
    /// Table name.
    pub name: String,
    /// Object key of its Parquet file.
    pub key: String,
    /// Its Arrow schema.
    pub schema: SchemaRef,
}

/// Builds per-caller SQL sessions; caches Parquet schemas by object key
/// (objects are immutable: keys carry the resource id and attempt).
#[derive(Debug)]
pub struct SqlEngine {
    state: Arc<AppState>,
    schemas: Mutex<HashMap<String, (SchemaRef, i64)>>,
    /// Where statements execute.
    runtime: QueryRuntime,
    /// Statements running now (a permit each).
    running: Arc<tokio::sync::Semaphore>,
}

/// The longest statement text accepted.
pub const MAX_SQL_BYTES: usize = 256 * 1024;

/// A tokio runtime for query execution, shut down without blocking when the
/// engine goes (dropping a runtime inside another one would panic).
#[derive(Debug)]
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl QueryRuntime {
    fn new() -> std::io::Result<Self> {
        // Half the CPUs (at least one): the rest stay with REST, Flight
        // transfers and the job workers, whatever SQL is doing.
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads((threads / 2).max(1))
            .thread_name("doppel-sql")
            .enable_all()
            .build()?;
        Ok(QueryRuntime(Some(rt)))
    }

    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(tokio::runtime::Runtime::handle)
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// How many schemas to remember before starting over (a bound, not an LRU:
/// a refill costs one footer read per table).
const SCHEMA_CACHE_MAX: usize = 4096;

impl SqlEngine {
    /// An engine over the server's store.
    pub fn new(state: Arc<AppState>) -> std::io::Result<SqlEngine> {
        let running = Arc::new(tokio::sync::Semaphore::new(
            state.settings.limits.sql_concurrency.max(1),
        ));
        Ok(SqlEngine {
            state,
            schemas: Mutex::new(HashMap::new()),
            runtime: QueryRuntime::new()?,
            running,
        })
    }

    /// The statement deadline.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.state.settings.limits.sql_timeout_seconds.max(1))
    }

    fn memory_bytes(&self) -> usize {
        self.state
            .settings
            .limits
            .sql_memory_mb
            .max(16)
            .saturating_mul(1024 * 1024)
    }

    /// Run `plan` on the query runtime under the concurrency limit, the
    /// deadline and the memory pool its session was built with; batches
    /// come back through a short channel (back-pressure), and a client that
    /// goes away (or the deadline) stops the work.
    pub async fn execute(
        &self,
        ctx: SessionContext,
        plan: LogicalPlan,
    ) -> Result<futures::stream::BoxStream<'static, Result<arrow::array::RecordBatch, Status>>, Status> {
        use futures::StreamExt;
        let timeout = self.timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        let expired = move || {
            Status::deadline_exceeded(format!(
                "the statement ran longer than {} s (limits.sql_timeout_seconds)",
                timeout.as_secs()
            ))
        };
        // Waiting for a turn counts against the deadline too.
        let permit = tokio::time::timeout_at(deadline, Arc::clone(&self.running).acquire_owned())
            .await
            .map_err(|_| expired())?
            .map_err(|e| error::internal(&e))?;
        let handle = self
            .runtime
            .handle()
            .ok_or_else(|| Status::unavailable("the server is shutting down"))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<arrow::array::RecordBatch, Status>>(2);
        handle.spawn(async move {
            let _permit = permit;
            let work = async {
                let df = ctx.execute_logical_plan(plan).await.map_err(error::datafusion)?;
                let mut stream = df.execute_stream().await.map_err(error::datafusion)?;
                while let Some(batch) = stream.next().await {
                    if tx.send(batch.map_err(error::datafusion)).await.is_err() {
                        // The client left: dropping the stream stops the plan.
                        return Ok(());
                    }
                }
                Ok::<(), Status>(())
            };
            let outcome = match tokio::time::timeout_at(deadline, work).await {
                Ok(r) => r,
                Err(_) => Err(expired()),
            };
            if let Err(status) = outcome {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed())
    }

    /// The Arrow schema of the Parquet object at `key` (footer read, cached).
    pub async fn parquet_schema(&self, key: &str) -> Result<SchemaRef, Status> {
        Ok(self.parquet_meta(key).await?.0)
    }

    /// Schema and row count of the Parquet object at `key` (cached).
    pub async fn parquet_meta(&self, key: &str) -> Result<(SchemaRef, i64), Status> {
        if let Some(s) = self.schemas.lock().ok().and_then(|m| m.get(key).cloned()) {
            return Ok(s);
        }
        let reader = crate::reader::StoreReader::open(self.state.storage.object_store(), self.state.storage.path(key))
            .await
            .map_err(|e| error::platform(e.into()))?;
        let builder = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(|e| error::internal(&e))?;
        let meta = (
            Arc::clone(builder.schema()),
            builder.metadata().file_metadata().num_rows(),
        );
        if let Ok(mut m) = self.schemas.lock() {
            if m.len() >= SCHEMA_CACHE_MAX {
                m.clear();
            }
            m.insert(key.to_owned(), meta.clone());
        }
        Ok(meta)
    }

    /// Every table `p` may query.
    pub async fn tables(&self, p: &Principal) -> Result<Vec<TableEntry>, Status> {
        require(p, Scope::DatasetsRead).map_err(error::platform)?;
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for d in all_datasets(&self.state, &p.account_id).await? {
            // Newest first: the first of a name is its latest version.
            if seen.insert(d.name.clone()) {
                let schema = self.parquet_schema(&d.object_key).await?;
                out.push(TableEntry {
                    schema_name: DATASETS,
                    name: d.name,
                    key: d.object_key,
                    schema,
                });
            }
        }
        for (job, files) in succeeded_outputs(&self.state, &p.account_id).await? {
            for (i, f) in files.into_iter().enumerate() {
                let stem = f.name.trim_end_matches(".parquet");
                let name = if i == 0 && f.name == "synthetic.parquet" {
                    job.id.clone()
                } else {
                    format!("{}_{stem}", job.id)
                };
                let schema = self.parquet_schema(&f.key).await?;
                out.push(TableEntry {
                    schema_name: OUTPUTS,
                    name,
                    key: f.key,
                    schema,
                });
            }
        }
        let bought = self
            .state
            .market
            .bought_outputs(&p.account_id)
            .await
            .map_err(error::platform)?;
        for (purchase, key) in bought {
            let schema = self.parquet_schema(&key).await?;
            out.push(TableEntry {
                schema_name: PURCHASES,
                name: purchase,
                key,
                schema,
            });
        }
        Ok(out)
    }

    /// A session holding exactly `p`'s tables.
    pub async fn session(&self, p: &Principal) -> Result<SessionContext, Status> {
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, DATASETS)
            .with_create_default_catalog_and_schema(true)
            .with_information_schema(false);
        // Filters go into the Parquet scan (row groups and pages skipped).
        config.options_mut().execution.parquet.pushdown_filters = true;
        config.options_mut().execution.parquet.reorder_filters = true;
        // Sorts, joins and aggregates draw from a pool of the statement's
        // own; nothing spills to disk, an over-budget statement is an error.
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_limit(self.memory_bytes(), 1.0)
            .with_disk_manager_builder(
                datafusion::execution::disk_manager::DiskManagerBuilder::default()
                    .with_mode(datafusion::execution::disk_manager::DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(error::datafusion)?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        crate::guard::install(&ctx, self.memory_bytes() as u64 / 4);
        let url = url::Url::parse(STORE_URL).map_err(|e| error::internal(&e))?;
        ctx.register_object_store(&url, self.state.storage.object_store());
        if let Some(catalog) = ctx.catalog(CATALOG) {
            catalog
                .register_schema(OUTPUTS, Arc::new(MemorySchemaProvider::new()))
                .map_err(error::datafusion)?;
            catalog
                .register_schema(PURCHASES, Arc::new(MemorySchemaProvider::new()))
                .map_err(error::datafusion)?;
        }
        for t in self.tables(p).await? {
            let path = self.state.storage.path(&t.key);
            let table_url = ListingTableUrl::parse(format!("{STORE_URL}/{path}")).map_err(error::datafusion)?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
            let config = ListingTableConfig::new(table_url)
                .with_listing_options(options)
                .with_schema(t.schema);
            let table = ListingTable::try_new(config).map_err(error::datafusion)?;
            ctx.register_table(TableReference::partial(t.schema_name, t.name.as_str()), Arc::new(table))
                .map_err(error::datafusion)?;
        }
        Ok(ctx)
    }

    /// Plan `sql` for `p`, read-only, with positional parameters bound when
    /// given. `?` placeholders (JDBC, ADBC) are read as `$1`, `$2`, ….
    pub async fn plan(
        &self,
        p: &Principal,
        sql: &str,
        params: Option<Vec<datafusion::scalar::ScalarValue>>,
    ) -> Result<(SessionContext, LogicalPlan), Status> {
        if sql.len() > MAX_SQL_BYTES {
            return Err(Status::invalid_argument(format!(
                "the statement is longer than {} KiB",
                MAX_SQL_BYTES / 1024
            )));
        }
        let ctx = self.session(p).await?;
        let sql = number_placeholders(sql);
        let plan = ctx.state().create_logical_plan(&sql).await.map_err(error::datafusion)?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| Status::invalid_argument(format!("read-only SQL only: {}", e.find_root())))?;
        let plan = match params {
            Some(values) if !values.is_empty() => plan.with_param_values(values).map_err(error::datafusion)?,
            _ => plan,
        };
        Ok((ctx, plan))
    }
}

/// The owner's most recent 200 jobs that succeeded, each with its Parquet
/// table outputs (the synthetic twin first).
pub async fn succeeded_outputs(
    state: &AppState,
    owner: &str,
) -> Result<Vec<(doppel_platform::jobs::Job, Vec<doppel_platform::jobs::OutputFile>)>, Status> {
    let jobs = state
        .queue
        .list(Some(owner), None, 200)
        .await
        .map_err(error::platform)?;
    Ok(jobs
        .into_iter()
        .filter(|j| j.state == JobState::Succeeded)
        .filter_map(|j| {
            let files: Vec<_> = doppel_app::jobs::table_outputs(j.manifest.as_ref()?)
                .into_iter()
                .cloned()
                .collect();
            Some((j, files))
        })
        .collect())
}

/// All of an owner's live datasets, newest first.
pub async fn all_datasets(state: &AppState, owner: &str) -> Result<Vec<doppel_platform::datasets::Dataset>, Status> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = doppel_platform::datasets::list(&state.db, owner, after.as_deref(), 500)
            .await
            .map_err(error::platform)?;
        let done = page.len() < 500;
        after = page.last().map(|d| d.id.clone());
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

/// Rewrite `?` placeholders to `$1`, `$2`, … (DataFusion's positional
/// form), leaving quoted strings, quoted identifiers and comments alone.
pub fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                // Copy to the closing quote; a doubled quote is an escape
                // and simply closes and reopens.
                for d in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                out.push(c);
                let mut prev = '\0';
                for d in chars.by_ref() {
                    out.push(d);
                    if prev == '*' && d == '/' {
                        break;
                    }
                    prev = d;
                }
            }
            '?' => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn question_marks_become_positions_outside_quotes_and_comments() {
        assert_eq!(
            number_placeholders("SELECT * FROM t WHERE a = ? AND b > ?"),
            "SELECT * FROM t WHERE a = $1 AND b > $2"
        );
        assert_eq!(
            number_placeholders("SELECT '?', \"wh?\" FROM t -- why?\nWHERE x = ? /* ? */"),
            "SELECT '?', \"wh?\" FROM t -- why?\nWHERE x = $1 /* ? */"
        );
        assert_eq!(number_placeholders("SELECT 'it''s ?' , ?"), "SELECT 'it''s ?' , $1");
        assert_eq!(number_placeholders("SELECT $1"), "SELECT $1");
    }

    proptest! {
        /// Text without placeholders or quotes passes through unchanged, and
        /// every bare `?` becomes the next `$n`.
        #[test]
        fn only_placeholders_change(parts in proptest::collection::vec("[a-z0-9 =<>,()*]{0,12}", 1..6)) {
            let sql = parts.join("?");
            let out = number_placeholders(&sql);
            let mut expected = parts[0].clone();
            for (i, p) in parts.iter().enumerate().skip(1) {
                expected.push_str(&format!("${i}"));
                expected.push_str(p);
            }
            prop_assert_eq!(out, expected);
        }
    }
}
