//! The heavy part of a fit as DataFusion plans, on this machine or on an
//! Apache Ballista 55 cluster.
//!
//! A count-based generator (PrivSyn) reads the real rows only through
//! [`doppel_generators::counts::CountSource`]: power-of-two buckets for its
//! private bounds, each category's count, and the 1- and 2-way contingency
//! tables of binned columns. [`EngineCounts`] answers those questions with
//! DataFusion plans — `CASE` expressions of comparisons, `GROUP BY` and
//! `GROUPING SETS`, nothing but DataFusion's own functions — over a table
//! staged as partitioned Parquet ([`StagedTable`]). The same plans run on a
//! local DataFusion context or, unchanged, on a Ballista cluster (stock
//! `ballista-scheduler` / `ballista-executor` 55 binaries need no doppel
//! code). Counts are exact integers, so every engine returns the same
//! numbers bit for bit, and the generator adds its DP noise once, on the
//! machine that asked: the privacy accounting is that of a single-node run.
//!
//! # Main types
//! - [`Engine`]: where plans run, from the `engine` setting (`local` or
//!   `ballista://host:port`).
//! - [`StagedTable`]: a table written as Parquet parts in a scratch folder
//!   every executor can read, removed when dropped.
//! - [`EngineCounts`]: the [`CountSource`] over a staged table.
//! - [`LocalCluster`]: a Ballista scheduler and executors in this process on
//!   loopback (`doppel engine standalone`, tests).
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use arrow::array::{Int64Array, RecordBatch, StringArray};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use doppel_engine::{Engine, EngineCounts, StagedTable};
//! use doppel_generators::{Generator, Model, NoProgress, Params, PrivSyn, SemanticType};
//!
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("plan", DataType::Utf8, true),
//!     Field::new("age", DataType::Int64, true),
//! ]));
//! let batch = RecordBatch::try_new(schema, vec![
//!     Arc::new(StringArray::from_iter_values((0..1000).map(|i| ["free", "pro"][i % 2]))),
//!     Arc::new(Int64Array::from_iter_values((0..1000).map(|i| 18 + i % 60))),
//! ])?;
//! let engine: Engine = "ballista://scheduler.internal:50050".parse()?;
//! let staged = StagedTable::write(&[batch], std::path::Path::new("/shared/scratch"), 100_000)?;
//! let counts = EngineCounts::open(
//!     &engine,
//!     &staged,
//!     vec![SemanticType::Categorical, SemanticType::Numerical],
//! )?;
//! let model = PrivSyn.fit_counts(&counts, &Params::new(), 7, &NoProgress)?;
//! let twin = model.sample(1000, 7, &NoProgress)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cluster;
mod plans;
mod staged;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{Int64Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use ballista::prelude::SessionContextExt;
use datafusion::logical_expr::{Expr, GroupingSet};
use datafusion::prelude::{ParquetReadOptions, SessionContext, ident};
use doppel_generators::SemanticType;
use doppel_generators::counts::{Binning, CountSource, ValueCounts, bounds_buckets};

pub use cluster::LocalCluster;
pub use staged::StagedTable;

/// Ballista's scheduler port when a URL names none.
pub const DEFAULT_BALLISTA_PORT: u16 = 50050;

/// Why the engine could not answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `engine` setting is not one this build understands.
    #[error("engine `{0}`: expected `local` or `ballista://host:port`")]
    BadEngine(String),
    /// A plan failed (the scheduler did not answer, an executor failed, the
    /// staged table could not be read). The message names the engine, never
    /// a file.
    #[error("counting on {engine} failed: {message}")]
    Plan {
        /// The engine, as configured.
        engine: String,
        /// What DataFusion or Ballista said, without paths.
        message: String,
    },
    /// Writing the staged Parquet table failed.
    #[error("staging the table for the engine: {0}")]
    Stage(String),
    /// Starting an in-process cluster failed.
    #[error("starting a local Ballista cluster: {0}")]
    Cluster(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a fit's counting plans run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Engine {
    /// DataFusion in this process. Pipelines count rows they hold in memory
    /// directly and use this only in tests and comparisons.
    #[default]
    Local,
    /// An Apache Ballista 55 scheduler (`ballista://host:port`).
    Ballista {
        /// Scheduler host name or address.
        host: String,
        /// Scheduler port.
        port: u16,
    },
}

impl Engine {
    /// Whether plans leave this process.
    pub fn is_distributed(&self) -> bool {
        matches!(self, Engine::Ballista { .. })
    }

    async fn context(&self) -> Result<SessionContext> {
        match self {
            Engine::Local => Ok(SessionContext::new()),
            Engine::Ballista { .. } => SessionContext::remote(&self.to_string())
                .await
                .map_err(|e| self.plan_error(&e)),
        }
    }

    fn plan_error(&self, e: &dyn std::error::Error) -> Error {
        Error::Plan {
            engine: self.to_string(),
            message: scrub(&e.to_string()),
        }
    }
}

/// DataFusion's messages can quote the staged table's location; answers
/// never name a server path. Any word holding a path (after its quotes and
/// punctuation) becomes `<staged table>`.
fn scrub(message: &str) -> String {
    message
        .split_whitespace()
        .map(|w| {
            let bare = w.trim_matches(|c: char| !c.is_alphanumeric() && c != '/' && c != '.' && c != '~');
            let pathlike = bare.starts_with('/')
                || bare.starts_with("~/")
                || w.contains("file:")
                || (bare.contains('/') && bare.contains(".parquet"));
            if pathlike { "<staged table>" } else { w }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Engine::Local => f.write_str("local"),
            Engine::Ballista { host, port } => write!(f, "ballista://{host}:{port}"),
        }
    }
}

impl FromStr for Engine {
    type Err = Error;

    fn from_str(s: &str) -> Result<Engine> {
        let bad = || Error::BadEngine(s.chars().take(100).collect());
        let s = s.trim();
        if s == "local" {
            return Ok(Engine::Local);
        }
        // A scheduler address and nothing else: no credentials, path, query
        // or fragment for a setting to smuggle in.
        let url = url::Url::parse(s).map_err(|_| bad())?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        let only_address = url.scheme() == "ballista"
            && url.username().is_empty()
            && url.password().is_none()
            && matches!(url.path(), "" | "/")
            && url.query().is_none()
            && url.fragment().is_none();
        if !only_address || url.port() == Some(0) {
            return Err(bad());
        }
        Ok(Engine::Ballista {
            host: host.to_owned(),
            port: url.port().unwrap_or(DEFAULT_BALLISTA_PORT),
        })
    }
}

/// The exact counts PrivSyn needs, computed by DataFusion plans over a
/// staged table on an [`Engine`].
pub struct EngineCounts {
    engine: Engine,
    runtime: tokio::runtime::Runtime,
    ctx: SessionContext,
    schema: SchemaRef,
    semantics: Vec<SemanticType>,
}

impl fmt::Debug for EngineCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineCounts")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

const TABLE: &str = "doppel_staged";

impl EngineCounts {
    /// Connect to `engine` and register `table` (whose columns have
    /// `semantics`) there.
    pub fn open(engine: &Engine, table: &StagedTable, semantics: Vec<SemanticType>) -> Result<EngineCounts> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| engine.plan_error(&e))?;
        let location = table.location();
        let ctx = on_own_thread(&runtime, async {
            let ctx = engine.context().await?;
            ctx.register_parquet(TABLE, &location, ParquetReadOptions::default())
                .await
                .map_err(|e| engine.plan_error(&e))?;
            Ok::<_, Error>(ctx)
        })?;
        Ok(EngineCounts {
            engine: engine.clone(),
            runtime,
            ctx,
            schema: table.schema(),
            semantics,
        })
    }

    /// Run a plan's future on this source's runtime.
    fn run<T: Send>(&self, f: impl std::future::Future<Output = datafusion::error::Result<T>> + Send) -> Result<T> {
        on_own_thread(&self.runtime, f).map_err(|e| self.engine.plan_error(&e))
    }

    /// `count(*)` of the staged table's rows under `projection`, grouped by
    /// each of `sets` in one pass (`GROUPING SETS`: a cluster job has a
    /// fixed cost, so every question of a kind is one job).
    fn grouped_counts(
        &self,
        projection: Vec<Expr>,
        sets: Vec<Vec<Expr>>,
    ) -> doppel_generators::Result<Vec<RecordBatch>> {
        self.run(async {
            self.ctx
                .table(TABLE)
                .await?
                .select(projection)?
                .aggregate(
                    vec![Expr::GroupingSet(GroupingSet::GroupingSets(sets))],
                    vec![plans::count_rows().alias("n")],
                )?
                .collect()
                .await
        })
        .map_err(|e| self.gen_err(&e))
    }

    fn column(&self, c: usize) -> Expr {
        ident(self.schema.field(c).name())
    }

    fn as_f64(&self, c: usize) -> Expr {
        plans::as_f64(self.column(c), self.schema.field(c).data_type())
    }

    fn gen_err(&self, e: &Error) -> doppel_generators::Error {
        doppel_generators::Error::Engine(e.to_string())
    }
}

/// Block on `f` from a thread of our own: callers may themselves be inside
/// a Tokio runtime (a server's blocking task), where blocking is refused.
fn on_own_thread<T: Send>(runtime: &tokio::runtime::Runtime, f: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| match s.spawn(|| runtime.block_on(f)).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// A table's columns, sorted and once each: the grouping set that counts it.
fn set_key(set: &[usize]) -> Vec<usize> {
    let mut key = set.to_vec();
    key.sort_unstable();
    key.dedup();
    key
}

/// A result column as `Int64` (counts, bins and buckets).
fn int64(batch: &RecordBatch, name: &str) -> Result<arrow::array::Int64Array, arrow::error::ArrowError> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| arrow::error::ArrowError::SchemaError(format!("no result column `{name}`")))?;
    Ok(arrow::compute::cast(column, &arrow::datatypes::DataType::Int64)?
        .as_primitive::<Int64Type>()
        .clone())
}

impl CountSource for EngineCounts {
    fn schema(&self) -> SchemaRef {
        std::sync::Arc::clone(&self.schema)
    }

    fn semantics(&self) -> &[SemanticType] {
        &self.semantics
    }

    fn bucket_counts(&self, columns: &[usize]) -> doppel_generators::Result<Vec<Vec<u64>>> {
        if columns.is_empty() {
            return Ok(Vec::new());
        }
        // Every column in one pass (a cluster job has a fixed cost): one
        // grouping set per column; a non-finite value is bucket −1, so a
        // bucket column is never null inside its own set.
        let name = |i: usize| format!("k{i}");
        let projection: Vec<Expr> = columns
            .iter()
            .enumerate()
            .map(|(i, &c)| plans::bounds_bucket_or_minus_one(self.as_f64(c)).alias(name(i)))
            .collect();
        let grouping = (0..columns.len()).map(|i| vec![ident(name(i))]).collect();
        let batches = self.grouped_counts(projection, grouping)?;
        let mut counts = vec![vec![0u64; bounds_buckets()]; columns.len()];
        for b in &batches {
            let n = int64(b, "n")?;
            for (i, column) in counts.iter_mut().enumerate() {
                let k = int64(b, &name(i))?;
                for row in (0..b.num_rows()).filter(|&r| k.is_valid(r)) {
                    if let Ok(bucket) = usize::try_from(k.value(row)) {
                        column[bucket] += u64::try_from(n.value(row)).unwrap_or(0);
                    }
                }
            }
        }
        Ok(counts)
    }

    fn value_counts(&self, columns: &[usize]) -> doppel_generators::Result<Vec<ValueCounts>> {
        if columns.is_empty() {
            return Ok(Vec::new());
        }
        // One pass for every column: grouping set {value, value IS NULL}
        // per column. The flag is never null inside its own set, so it says
        // which column a row counts, and a null value stays a value.
        let (value, flag) = (|i: usize| format!("v{i}"), |i: usize| format!("f{i}"));
        let mut projection = Vec::new();
        for (i, &c) in columns.iter().enumerate() {
            projection.push(self.column(c).alias(value(i)));
            projection.push(self.column(c).is_null().alias(flag(i)));
        }
        let grouping = (0..columns.len())
            .map(|i| vec![ident(value(i)), ident(flag(i))])
            .collect();
        let batches = self.grouped_counts(projection, grouping)?;
        columns
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let data_type = self.schema.field(c).data_type().clone();
                let mut values: Vec<ArrayRef> = Vec::new();
                let mut counts = Vec::new();
                for b in &batches {
                    let mine = arrow::compute::is_not_null(b.column_by_name(&flag(i)).expect("planned"))?;
                    // Parquet strings come back as views; the generator sees
                    // the table's own types.
                    let v = arrow::compute::filter(b.column_by_name(&value(i)).expect("planned"), &mine)?;
                    values.push(arrow::compute::cast(&v, &data_type)?);
                    let n = arrow::compute::filter(&int64(b, "n")?, &mine)?;
                    counts.extend(
                        n.as_primitive::<Int64Type>()
                            .values()
                            .iter()
                            .map(|&n| u64::try_from(n).unwrap_or(0)),
                    );
                }
                let values = if values.is_empty() {
                    arrow::array::new_empty_array(&data_type)
                } else {
                    arrow::compute::concat(&values.iter().map(AsRef::as_ref).collect::<Vec<&dyn Array>>())?
                };
                ValueCounts::canonical(&values, &counts)
            })
            .collect()
    }

    fn tables(&self, binned: &[(usize, Binning)], sets: &[Vec<usize>]) -> doppel_generators::Result<Vec<Vec<u64>>> {
        if sets.is_empty() {
            return Ok(Vec::new());
        }
        let name = |i: usize| format!("b{i}");
        let projection: Vec<Expr> = binned
            .iter()
            .enumerate()
            .map(|(i, (c, b))| {
                let e = match b {
                    Binning::Numeric { edges, zero_bin } => plans::numeric_bin(self.as_f64(*c), edges, *zero_bin),
                    Binning::Values(values) => plans::value_bin(self.column(*c), values)?,
                };
                Ok(e.alias(name(i)))
            })
            .collect::<datafusion::error::Result<_>>()
            .map_err(|e| self.gen_err(&self.engine.plan_error(&e)))?;
        // One pass over the rows for every table: GROUPING SETS, one set
        // per table. A bin is never null, so the columns a row leaves null
        // say which set it counts.
        let mut keys: Vec<Vec<usize>> = sets.iter().map(|set| set_key(set)).collect();
        keys.sort();
        keys.dedup();
        let grouping = keys
            .iter()
            .map(|key| key.iter().map(|&i| ident(name(i))).collect())
            .collect();
        let batches = self.grouped_counts(projection, grouping)?;
        // Which requested tables each grouping set fills.
        let mut index: HashMap<Vec<usize>, Vec<usize>> = HashMap::new();
        for (k, set) in sets.iter().enumerate() {
            index.entry(set_key(set)).or_default().push(k);
        }
        let mut tables: Vec<Vec<u64>> = sets
            .iter()
            .map(|set| vec![0u64; set.iter().map(|&i| binned[i].1.size()).product()])
            .collect();
        for b in &batches {
            // A column in no set is not in the result: all null.
            let columns: Vec<arrow::array::Int64Array> = (0..binned.len())
                .map(|i| match b.column_by_name(&name(i)) {
                    Some(_) => int64(b, &name(i)),
                    None => Ok(arrow::array::Int64Array::new_null(b.num_rows())),
                })
                .collect::<Result<_, _>>()?;
            let n = int64(b, "n")?;
            for row in 0..b.num_rows() {
                let present: Vec<usize> = (0..binned.len()).filter(|&i| columns[i].is_valid(row)).collect();
                let Some(ks) = index.get(&present) else {
                    continue;
                };
                let count = u64::try_from(n.value(row)).unwrap_or(0);
                for &k in ks {
                    let mut cell = 0usize;
                    for &i in &sets[k] {
                        let bin = columns[i].value(row);
                        cell = cell * binned[i].1.size() + usize::try_from(bin).expect("a bin index");
                    }
                    tables[k][cell] += count;
                }
            }
        }
        Ok(tables)
    }
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn messages_lose_their_paths() {
        let m = scrub(
            "Object Store error: Object at location \"/tmp/doppel-engine-x1/part-00000.parquet\" not found: \
             No such file or directory (os error 2); listing file:///srv/scratch/ failed (tmp/a/b.parquet)",
        );
        assert!(
            !m.contains("/tmp") && !m.contains("/srv") && !m.contains("tmp/a"),
            "{m}"
        );
        assert!(m.contains("not found") && m.contains("<staged table>"), "{m}");
        assert_eq!(
            scrub("Connection refused (os error 111)"),
            "Connection refused (os error 111)"
        );
    }
}
