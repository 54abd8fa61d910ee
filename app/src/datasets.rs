//! Turning an uploaded file into a stored dataset: read it as a table
//! (CSV, Parquet or NDJSON, with the same inference as `builtin:source`),
//! store it as Parquet, and describe it — schema, row count, profile and a
//! preview — in the dataset's metadata. Tabular knowledge lives here, not in
//! the platform.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use doppel_host::builtins::profile;
use doppel_host::builtins::source::{self, Format, SourceError, SourceOptions};
use doppel_host::limits::ReadLimits;
use doppel_host::report::{self, TableFormat};
use doppel_host::table::Table;
use doppel_platform::settings::LimitSettings;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How dataset ids begin; no name may, so a name never reads as an id.
pub const ID_PREFIX: &str = "ds_";

/// The longest dataset name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// The dataset name rule, the same for every door: 1 to
/// [`MAX_NAME_CHARS`] characters once trimmed, no `/` or `\` (Flight
/// descriptors and object keys are paths), no control characters, and not
/// starting with [`ID_PREFIX`] (Flight and SQL address a dataset by id or by
/// name, so a name that looked like an id could not be reached). Returns the
/// trimmed name; the error names the `name` field.
pub fn check_name(name: &str) -> Result<&str, doppel_platform::Error> {
    let name = name.trim();
    let bad = |why: &str| doppel_platform::Error::invalid("name", why.to_owned());
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(bad(&format!("use 1 to {MAX_NAME_CHARS} characters")));
    }
    if name.contains(['/', '\\']) {
        return Err(bad("no `/` or `\\` in a dataset name"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("no control characters in a dataset name"));
    }
    if name.starts_with(ID_PREFIX) {
        return Err(bad(&format!(
            "a dataset name may not start with `{ID_PREFIX}` (ids do)"
        )));
    }
    Ok(name)
}

/// The name an upload gets when none is given: its file name without any
/// folders, made to follow [`check_name`] where it can.
pub fn default_name(file_name: &str) -> String {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or_default();
    let base: String = base.chars().filter(|c| !c.is_control()).collect();
    let base = base.trim();
    let name = match base.strip_prefix(ID_PREFIX) {
        Some(rest) => format!("upload {rest}"),
        None if base.is_empty() => "upload".to_owned(),
        None => base.to_owned(),
    };
    name.chars().take(MAX_NAME_CHARS).collect::<String>().trim().to_owned()
}

/// Rows kept in the metadata for `GET /v1/datasets/{id}/preview`.
pub const PREVIEW_ROWS: usize = 20;

/// Largest number of rows the stored profile is computed on. Beyond it the
/// profile (distinct counts, top values, quantiles — each a hash or a sort of
/// the whole column) describes evenly spaced rows instead, so a 10-million-row
/// upload is profiled in seconds rather than minutes; `rows` stays exact and
/// `profile_rows` says how many rows the profile saw.
pub const PROFILE_ROWS: usize = 1_000_000;

/// Why an upload is not a table we can read.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The format could not be told from the name or content type.
    #[error(
        "cannot tell the format of `{0}`: name it .csv, .parquet, .ndjson, .json or .xlsx, or send a matching content type"
    )]
    UnknownFormat(String),
    /// Reading failed; the message names the place (line, column).
    #[error("{0}")]
    Unreadable(String),
    /// The table is over one of the server's limits (columns, nesting,
    /// value length, cells, decoded size, reader memory or time); the
    /// message names the setting.
    #[error("{0}")]
    TooLarge(String),
    /// Writing the stored copy failed (our problem).
    #[error("storing the table: {0}")]
    Internal(String),
}

/// Name of a dataset's stored table (the copy queries and jobs read).
pub const PARQUET_FILE: &str = "data.parquet";
/// Name of a dataset's Arrow IPC serving copy: the same rows, uncompressed,
/// in the file format, so Flight `DoGet` forwards stored record-batch
/// messages as they are instead of decoding Parquet on every read.
pub const IPC_FILE: &str = "data.arrows";

/// A table read from an upload.
#[derive(Debug)]
pub struct Ingested {
    /// The Parquet copy to store.
    pub parquet: PathBuf,
    /// The Arrow IPC file copy to store.
    pub ipc: PathBuf,
    /// Metadata for the dataset record.
    pub metadata: Value,
}

/// The format of an upload from its file name, else its content type.
pub fn format_of(file_name: &str, content_type: Option<&str>) -> Option<Format> {
    source::detect_format(Path::new(file_name)).or_else(|| match content_type?.split(';').next()?.trim() {
        "text/csv" | "application/csv" => Some(Format::Csv),
        "application/vnd.apache.parquet" | "application/x-parquet" => Some(Format::Parquet),
        "application/x-ndjson" | "application/jsonl" => Some(Format::Ndjson),
        "application/json" => Some(Format::Json),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => Some(Format::Xlsx),
        _ => None,
    })
}

/// The read limits an upload is held to, from the server's settings.
pub fn read_limits(l: &LimitSettings) -> ReadLimits {
    ReadLimits {
        max_columns: l.max_columns,
        max_name_bytes: l.max_name_bytes,
        max_cells: l.max_cells,
        max_value_bytes: usize::try_from(l.max_value_kb.saturating_mul(1024)).unwrap_or(usize::MAX),
        max_depth: l.max_depth,
        max_decoded_bytes: l.decoded_max_mb.saturating_mul(1024 * 1024),
    }
}

/// Read `upload` (a local file whose user-facing name is `name`) under
/// `limits` and write its Parquet copy into `work`. Blocking: call from a
/// blocking thread (or, as servers do, through an [`Ingestor`]).
pub fn ingest(
    upload: &Path,
    name: &str,
    format: Format,
    work: &Path,
    limits: &ReadLimits,
) -> Result<Ingested, IngestError> {
    let mut options = SourceOptions::new(upload);
    options.format = Some(format);
    options.limits = *limits;
    // Messages name the upload as the user called it, never our temp path.
    let hide = |m: String| m.replace(&upload.display().to_string(), name);
    let table = source::read_table(&options).map_err(|e| match e {
        SourceError::Limit { .. } => IngestError::TooLarge(hide(e.to_string())),
        other => IngestError::Unreadable(hide(other.to_string())),
    })?;
    let parquet = work.join(PARQUET_FILE);
    report::write_table(&table, &parquet, TableFormat::Parquet).map_err(|e| IngestError::Internal(e.to_string()))?;
    let ipc = work.join(IPC_FILE);
    write_ipc(&table, &ipc)?;
    let metadata = describe(&table, name, format)?;
    Ok(Ingested { parquet, ipc, metadata })
}

/// Reads uploads for a server: under the settings' limits, a few at a time,
/// and — when given the server's own executable — each in a child process
/// (`doppel ingest-worker`) with its own memory limit and deadline. Parsers
/// are where hostile files do their damage; in a child, a file that defeats
/// every check before parsing (a decompression bomb, a parser bug) kills
/// only that child and is answered 422, and the memory a large upload needed
/// goes back to the system when the child exits instead of staying with the
/// server's allocator.
#[derive(Debug, Clone)]
pub struct Ingestor {
    limits: ReadLimits,
    program: Option<PathBuf>,
    memory_mb: u64,
    timeout: Duration,
    gate: Arc<tokio::sync::Semaphore>,
}

/// What the child reads from its standard input.
#[derive(Debug, Serialize, Deserialize)]
struct ChildRequest {
    upload: PathBuf,
    name: String,
    format: String,
    work: PathBuf,
    memory_mb: u64,
    max_columns: usize,
    max_name_bytes: usize,
    max_cells: u64,
    max_value_bytes: usize,
    max_depth: usize,
    max_decoded_bytes: u64,
}

/// What the child writes to its standard output (one JSON line).
#[derive(Debug, Serialize, Deserialize)]
struct ChildAnswer {
    /// `ok`, `unreadable`, `too_large`, `unknown_format` or `internal`.
    outcome: String,
    #[serde(default)]
    message: String,
}

/// The metadata file a child leaves next to the copies it wrote.
const METADATA_FILE: &str = "metadata.json";

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Csv => "csv",
        Format::Parquet => "parquet",
        Format::Ndjson => "ndjson",
        Format::Json => "json",
        Format::Xlsx => "xlsx",
    }
}

impl Ingestor {
    /// Read in this process (libraries and tests), under `limits`.
    pub fn new(limits: &LimitSettings) -> Self {
        Ingestor {
            limits: read_limits(limits),
            program: None,
            memory_mb: limits.ingest_memory_mb,
            timeout: Duration::from_secs(limits.ingest_timeout_seconds.max(1)),
            gate: Arc::new(tokio::sync::Semaphore::new(limits.concurrent_ingests.max(1))),
        }
    }

    /// Read each upload in a child process of `program` (the `doppel`
    /// binary, which answers `doppel ingest-worker`).
    pub fn in_child_processes(mut self, program: PathBuf) -> Self {
        self.program = Some(program);
        self
    }

    /// The limits uploads are held to.
    pub fn limits(&self) -> &ReadLimits {
        &self.limits
    }

    /// Read `upload` (user-facing name `name`) into `work`, waiting for a
    /// turn first.
    pub async fn ingest(
        &self,
        upload: &Path,
        name: &str,
        format: Format,
        work: &Path,
    ) -> Result<Ingested, IngestError> {
        let _turn = Arc::clone(&self.gate)
            .acquire_owned()
            .await
            .map_err(|e| IngestError::Internal(e.to_string()))?;
        match &self.program {
            None => {
                let (upload, name, work, limits) = (upload.to_owned(), name.to_owned(), work.to_owned(), self.limits);
                tokio::task::spawn_blocking(move || ingest(&upload, &name, format, &work, &limits))
                    .await
                    .map_err(|e| IngestError::Internal(e.to_string()))?
            }
            Some(program) => self.in_child(program, upload, name, format, work).await,
        }
    }

    async fn in_child(
        &self,
        program: &Path,
        upload: &Path,
        name: &str,
        format: Format,
        work: &Path,
    ) -> Result<Ingested, IngestError> {
        use tokio::io::AsyncWriteExt;
        let request = ChildRequest {
            upload: upload.to_owned(),
            name: name.to_owned(),
            format: format_name(format).to_owned(),
            work: work.to_owned(),
            memory_mb: self.memory_mb,
            max_columns: self.limits.max_columns,
            max_name_bytes: self.limits.max_name_bytes,
            max_cells: self.limits.max_cells,
            max_value_bytes: self.limits.max_value_bytes,
            max_depth: self.limits.max_depth,
            max_decoded_bytes: self.limits.max_decoded_bytes,
        };
        let internal = |e: &dyn std::fmt::Display| IngestError::Internal(format!("upload reader: {e}"));
        let mut child = tokio::process::Command::new(program)
            .arg("ingest-worker")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            // The reader needs nothing from the server's environment, which
            // holds its secrets (database URL, keys): a parser compromised by
            // a hostile file finds none of them.
            .env_clear()
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| internal(&e))?;
        let mut stdin = child.stdin.take().ok_or_else(|| internal(&"no stdin"))?;
        let line = serde_json::to_vec(&request).map_err(|e| internal(&e))?;
        stdin.write_all(&line).await.map_err(|e| internal(&e))?;
        drop(stdin);
        let out = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(out) => out.map_err(|e| internal(&e))?,
            // Dropping the future kills the child (kill_on_drop).
            Err(_) => {
                return Err(IngestError::TooLarge(format!(
                    "`{name}` took longer than {} s to read (limits.ingest_timeout_seconds)",
                    self.timeout.as_secs()
                )));
            }
        };
        let answer = String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<ChildAnswer>(l).ok());
        match answer {
            Some(a) if a.outcome == "ok" && out.status.success() => {
                let text = std::fs::read_to_string(work.join(METADATA_FILE)).map_err(|e| internal(&e))?;
                let metadata = serde_json::from_str(&text).map_err(|e| internal(&e))?;
                Ok(Ingested {
                    parquet: work.join(PARQUET_FILE),
                    ipc: work.join(IPC_FILE),
                    metadata,
                })
            }
            Some(a) => Err(match a.outcome.as_str() {
                "too_large" => IngestError::TooLarge(a.message),
                "unknown_format" => IngestError::UnknownFormat(name.to_owned()),
                "internal" => IngestError::Internal(a.message),
                _ => IngestError::Unreadable(a.message),
            }),
            None => {
                // Killed: out of memory (its limit, or the kernel's), out of
                // stack, or a crash inside a parser. The server is fine.
                let stderr = String::from_utf8_lossy(&out.stderr);
                let tail: String = stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                tracing::warn!(status = %out.status, stderr = %tail, "An upload's reader process died.");
                Err(IngestError::TooLarge(format!(
                    "`{name}` could not be read within this server's limits (limits.ingest_memory_mb = {} MiB): \
                     its reader stopped before finishing",
                    self.memory_mb
                )))
            }
        }
    }
}

/// The child side (`doppel ingest-worker`): read one request from standard
/// input, limit this process's memory, read the upload on a thread with a
/// large stack, leave the copies and `metadata.json` in the work folder and
/// print one answer line. Returns the exit code.
pub fn child_main() -> i32 {
    use std::io::Read;
    let answer = |outcome: &str, message: String| {
        let line = serde_json::to_string(&ChildAnswer {
            outcome: outcome.to_owned(),
            message,
        })
        .unwrap_or_default();
        #[allow(clippy::print_stdout, reason = "the answer goes to the parent on stdout")]
        {
            println!("{line}");
        }
    };
    let mut text = String::new();
    if let Err(e) = std::io::stdin().take(1 << 20).read_to_string(&mut text) {
        answer("internal", format!("reading the request: {e}"));
        return 2;
    }
    let request: ChildRequest = match serde_json::from_str(&text) {
        Ok(r) => r,
        Err(e) => {
            answer("internal", format!("the request: {e}"));
            return 2;
        }
    };
    // Soft and hard: the reader cannot raise it again. Data (heap and
    // private mappings) rather than address space, which thread stacks and
    // allocator arenas reserve without using.
    let bytes = request.memory_mb.saturating_mul(1024 * 1024);
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::DATA, bytes, bytes) {
        tracing::warn!(error = %e, "Could not limit the upload reader's memory.");
    }
    // If the machine runs short anyway, the kernel should pick this process.
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    let format = match request.format.as_str() {
        "csv" => Format::Csv,
        "parquet" => Format::Parquet,
        "ndjson" => Format::Ndjson,
        "json" => Format::Json,
        "xlsx" => Format::Xlsx,
        other => {
            answer("unknown_format", other.to_owned());
            return 1;
        }
    };
    let limits = ReadLimits {
        max_columns: request.max_columns,
        max_name_bytes: request.max_name_bytes,
        max_cells: request.max_cells,
        max_value_bytes: request.max_value_bytes,
        max_depth: request.max_depth,
        max_decoded_bytes: request.max_decoded_bytes,
    };
    // Readers recurse on nested data: give them room (the depth limits keep
    // them far from it; this is the margin).
    let worker = std::thread::Builder::new()
        .name("ingest".into())
        .stack_size(256 * 1024 * 1024)
        .spawn(move || {
            ingest(&request.upload, &request.name, format, &request.work, &limits).map(|i| (i, request.work))
        });
    let result = match worker.map(std::thread::JoinHandle::join) {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(IngestError::Unreadable("the reader failed on this file".into())),
        Err(e) => Err(IngestError::Internal(e.to_string())),
    };
    match result {
        Ok((ingested, work)) => match std::fs::write(work.join(METADATA_FILE), ingested.metadata.to_string()) {
            Ok(()) => {
                answer("ok", String::new());
                0
            }
            Err(e) => {
                answer("internal", e.to_string());
                1
            }
        },
        Err(IngestError::TooLarge(m)) => {
            answer("too_large", m);
            1
        }
        Err(IngestError::UnknownFormat(m)) => {
            answer("unknown_format", m);
            1
        }
        Err(IngestError::Unreadable(m)) => {
            answer("unreadable", m);
            1
        }
        Err(IngestError::Internal(m)) => {
            answer("internal", m);
            1
        }
    }
}

/// Largest record-batch message the serving copy stores (in-memory size):
/// gRPC clients refuse messages over 4 MiB unless told otherwise (tonic,
/// grpc-java, grpc-go defaults), and Flight forwards these as they are, so
/// they stay at arrow-rs' own Flight encoder default of 2 MiB.
pub const IPC_MESSAGE_BYTES: usize = 2 * 1024 * 1024;

/// The table as an Arrow IPC file, in batches of at most
/// [`IPC_MESSAGE_BYTES`] (by the table's average row size).
fn write_ipc(table: &Table, path: &Path) -> Result<(), IngestError> {
    let internal = |e: &dyn std::fmt::Display| IngestError::Internal(format!("writing the IPC copy: {e}"));
    let file = std::fs::File::create(path).map_err(|e| internal(&e))?;
    let mut w = arrow::ipc::writer::FileWriter::try_new(std::io::BufWriter::new(file), &table.schema)
        .map_err(|e| internal(&e))?;
    let bytes: usize = table.batches.iter().map(|b| b.get_array_memory_size()).sum();
    let per_row = (bytes / table.rows().max(1)).max(1);
    let rows_per_batch = (IPC_MESSAGE_BYTES / per_row).clamp(1, 64 * 1024);
    for batch in table.chunks(rows_per_batch).map_err(|e| internal(&e))? {
        w.write(&batch).map_err(|e| internal(&e))?;
    }
    w.finish().map_err(|e| internal(&e))?;
    Ok(())
}

/// Store an ingested table as the caller's dataset `name`: the Parquet copy
/// goes to object storage under a fresh id, then the record (with its
/// metadata) is committed. REST uploads and Flight `DoPut` both end here.
pub async fn register(
    state: &crate::AppState,
    meta: &doppel_platform::audit::RequestMeta,
    p: &doppel_platform::authz::Principal,
    name: &str,
    ingested: &Ingested,
) -> doppel_platform::Result<doppel_platform::datasets::Dataset> {
    let name = check_name(name)?;
    let id = doppel_platform::util::new_id("ds");
    let object = doppel_platform::storage::object_key("datasets", &p.account_id, &id, PARQUET_FILE);
    // The serving copy goes first: a registered dataset always has both.
    let ipc = doppel_platform::storage::object_key("datasets", &p.account_id, &id, IPC_FILE);
    state.storage.put_file(&ipc, &ingested.ipc).await?;
    let size = state.storage.put_file(&object, &ingested.parquet).await?;
    doppel_platform::datasets::create(
        &state.db,
        meta,
        p,
        &doppel_platform::datasets::NewDataset {
            id: &id,
            name,
            media_type: "application/vnd.apache.parquet",
            size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
            object_key: &object,
            metadata: &ingested.metadata,
        },
    )
    .await
}

/// What an upload must be before a byte of it is read: the caller may
/// write datasets, the file is within the upload limit, its format is
/// known, and its name (given, or when absent from the file name) follows
/// [`check_name`]. Returns the format and the name. Every door that takes
/// files calls this first.
pub fn accept(
    state: &crate::AppState,
    p: &doppel_platform::authz::Principal,
    file_name: &str,
    content_type: Option<&str>,
    size: u64,
    name: Option<&str>,
) -> doppel_platform::Result<(Format, String)> {
    doppel_platform::authz::require(p, doppel_platform::authz::Scope::DatasetsWrite)?;
    let max_mb = state.settings.limits.upload_max_mb;
    if size > max_mb.saturating_mul(1024 * 1024) {
        return Err(doppel_platform::Error::Refused {
            code: "too_large",
            message: format!("file: larger than the {max_mb} MiB limit"),
        });
    }
    let format = format_of(file_name, content_type).ok_or_else(|| doppel_platform::Error::Refused {
        code: "unknown_format",
        message: IngestError::UnknownFormat(file_name.to_owned()).to_string(),
    })?;
    // A name given is held to the rule (a blank one is refused); only an
    // absent one comes from the file name.
    let name = match name {
        Some(n) => n.to_owned(),
        None => default_name(file_name),
    };
    Ok((format, check_name(&name)?.to_owned()))
}

/// Read an accepted upload (a local file) in the upload reader and store it
/// as the caller's dataset `name`. A table the reader refuses is
/// [`doppel_platform::Error::Refused`] with `unreadable_table` (the message
/// names the line and column) or `limit_exceeded` (it names the setting).
#[allow(clippy::too_many_arguments, reason = "each is one fact about the upload")]
pub async fn store_upload(
    state: &crate::AppState,
    meta: &doppel_platform::audit::RequestMeta,
    p: &doppel_platform::authz::Principal,
    name: &str,
    local: &Path,
    file_name: &str,
    format: Format,
    work: &Path,
) -> doppel_platform::Result<doppel_platform::datasets::Dataset> {
    let ingested = state
        .ingest
        .ingest(local, file_name, format, work)
        .await
        .map_err(|e| match e {
            IngestError::Internal(m) => doppel_platform::Error::Internal(m),
            e @ IngestError::TooLarge(_) => doppel_platform::Error::Refused {
                code: "limit_exceeded",
                message: e.to_string(),
            },
            other => doppel_platform::Error::Refused {
                code: "unreadable_table",
                message: other.to_string(),
            },
        })?;
    register(state, meta, p, name, &ingested).await
}

/// The first `n` preview rows of a dataset (at most [`PREVIEW_ROWS`]) and
/// its column names, from its stored metadata.
pub fn preview_rows(d: &doppel_platform::datasets::Dataset, n: usize) -> (Vec<String>, Vec<Value>) {
    let columns = d
        .metadata
        .get("columns")
        .and_then(|c| c.as_array())
        .map(|cols| {
            cols.iter()
                .filter_map(|c| c.get("name")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let rows = d
        .metadata
        .get("preview")
        .and_then(|p| p.as_array())
        .map(|r| r.iter().take(n.min(PREVIEW_ROWS)).cloned().collect())
        .unwrap_or_default();
    (columns, rows)
}

/// Delete the caller's dataset `id` (needs `datasets:write` on it) and its
/// stored objects.
pub async fn delete(
    state: &crate::AppState,
    meta: &doppel_platform::audit::RequestMeta,
    p: &doppel_platform::authz::Principal,
    id: &str,
) -> doppel_platform::Result<()> {
    let d = crate::access::dataset(state, p, id, doppel_platform::authz::Scope::DatasetsWrite).await?;
    doppel_platform::datasets::delete(&state.db, meta, p, &d.id).await?;
    let prefix = doppel_platform::storage::object_key("datasets", &d.owner_id, &d.id, "");
    if let Err(e) = state.storage.delete_prefix(prefix.trim_end_matches('/')).await {
        // The record is gone; orphaned objects are only wasted space.
        tracing::warn!(dataset = %d.id, error = %e, "Deleting a dataset's objects failed.");
    }
    Ok(())
}

/// Schema, rows, profile and preview of a table, as dataset metadata.
pub fn describe(table: &Table, name: &str, format: Format) -> Result<Value, IngestError> {
    let sampled = evenly_spaced(table, PROFILE_ROWS)?;
    let profiled = sampled.as_ref().unwrap_or(table);
    let prof = profile::profile(profiled, &Vec::new()).map_err(|e| IngestError::Internal(e.to_string()))?;
    let columns: Vec<Value> = table
        .schema
        .fields()
        .iter()
        .zip(table.semantics.iter())
        .map(|(f, s)| json!({"name": f.name(), "type": f.data_type().to_string(), "semantic_type": s.as_str(), "nullable": f.is_nullable()}))
        .collect();
    Ok(json!({
        "kind": "table",
        "source_name": name,
        "source_format": format!("{format:?}").to_lowercase(),
        "rows": table.rows(),
        "columns": columns,
        "profile": prof,
        "profile_rows": profiled.rows(),
        "preview": preview(table, PREVIEW_ROWS)?,
    }))
}

/// Every `k`-th row so that at most `max` remain (deterministic: the same
/// table always gives the same sample), or `None` when the table is small.
fn evenly_spaced(table: &Table, max: usize) -> Result<Option<Table>, IngestError> {
    let rows = table.rows();
    if rows <= max {
        return Ok(None);
    }
    let step = rows.div_ceil(max);
    let mut batches = Vec::with_capacity(table.batches.len());
    let mut offset = 0usize;
    for b in &table.batches {
        // Global row numbers that are multiples of `step`, local to this batch.
        let first = (step - offset % step) % step;
        let picks: arrow::array::UInt32Array = (first..b.num_rows())
            .step_by(step)
            .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
            .collect();
        offset += b.num_rows();
        let columns = b
            .columns()
            .iter()
            .map(|c| arrow::compute::take(c.as_ref(), &picks, None))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IngestError::Internal(e.to_string()))?;
        batches.push(
            arrow::array::RecordBatch::try_new(b.schema(), columns)
                .map_err(|e| IngestError::Internal(e.to_string()))?,
        );
    }
    Ok(Some(Table {
        schema: std::sync::Arc::clone(&table.schema),
        batches,
        semantics: std::sync::Arc::clone(&table.semantics),
        population_rows: None,
    }))
}

/// The first `n` rows as JSON objects.
pub fn preview(table: &Table, n: usize) -> Result<Value, IngestError> {
    let batch = table.concat().map_err(|e| IngestError::Internal(e.to_string()))?;
    let head = batch.slice(0, n.min(batch.num_rows()));
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::ArrayWriter::new(&mut buf);
        w.write(&head).map_err(|e| IngestError::Internal(e.to_string()))?;
        w.finish().map_err(|e| IngestError::Internal(e.to_string()))?;
    }
    if buf.is_empty() {
        return Ok(json!([]));
    }
    serde_json::from_slice(&buf).map_err(|e| IngestError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_rule_for_every_door() {
        assert_eq!(check_name("  adult  ").unwrap(), "adult");
        assert_eq!(check_name("census income 2024.csv").unwrap(), "census income 2024.csv");
        for bad in ["", "   ", "ds_x", "a/b", "a\\b", "tab\there", &"x".repeat(201)] {
            let e = check_name(bad).unwrap_err();
            assert!(e.to_string().starts_with("name: "), "{bad:?}: {e}");
        }
        assert!(
            check_name(&"é".repeat(200)).is_ok(),
            "the limit counts characters, not bytes"
        );
        assert_eq!(default_name("folder/ds_data.csv"), "upload data.csv");
        assert_eq!(default_name("C:\\exports\\adult.csv"), "adult.csv");
        assert_eq!(default_name("/"), "upload");
    }

    proptest::proptest! {
        /// Whatever file name a client sends, the default name of its
        /// upload is one every door accepts.
        #[test]
        fn default_names_follow_the_rule(file in "\\PC{0,300}|ds_\\PC{0,300}|[ \\t/\\\\]{0,5}") {
            let name = default_name(&file);
            proptest::prop_assert!(check_name(&name).is_ok(), "{:?} -> {:?}", file, name);
        }
    }

    #[test]
    fn format_comes_from_the_name_then_the_content_type() {
        assert_eq!(format_of("a.csv", None), Some(Format::Csv));
        assert_eq!(format_of("A.PARQUET", Some("text/csv")), Some(Format::Parquet));
        assert_eq!(format_of("rows.jsonl", None), Some(Format::Ndjson));
        assert_eq!(format_of("upload", Some("text/csv; charset=utf-8")), Some(Format::Csv));
        assert_eq!(format_of("upload", Some("application/octet-stream")), None);
        assert_eq!(format_of("upload", None), None);
    }

    #[test]
    fn ingest_names_the_upload_not_the_server_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.csv");
        std::fs::write(&file, "a,b\n1,2\n3,4,5,6\n").unwrap();
        let err = ingest(&file, "mine.csv", Format::Csv, dir.path(), &ReadLimits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("mine.csv"), "{err}");
        assert!(!err.contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn ingest_describes_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.csv");
        let mut text = String::from("age,plan\n");
        for i in 0..50 {
            text.push_str(&format!("{},{}\n", 20 + i, ["free", "pro"][i % 2]));
        }
        std::fs::write(&file, text).unwrap();
        let ingested = ingest(&file, "t.csv", Format::Csv, dir.path(), &ReadLimits::default()).unwrap();
        assert!(ingested.parquet.is_file());
        let ipc = arrow::ipc::reader::FileReader::try_new(std::fs::File::open(&ingested.ipc).unwrap(), None).unwrap();
        assert_eq!(ipc.map(|b| b.unwrap().num_rows()).sum::<usize>(), 50);
        let m = &ingested.metadata;
        assert_eq!(m["rows"], 50);
        assert_eq!(m["columns"][0]["name"], "age");
        assert_eq!(m["preview"].as_array().unwrap().len(), PREVIEW_ROWS);
        assert_eq!(m["preview"][0]["plan"], "free");
        assert_eq!(m["profile"]["columns"].as_array().unwrap().len(), 2);
        assert_eq!(m["profile_rows"], 50);
    }

    #[test]
    fn large_tables_are_profiled_on_evenly_spaced_rows() {
        use arrow::array::{Array, Int64Array, RecordBatch};
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "n",
            arrow::datatypes::DataType::Int64,
            false,
        )]));
        // 1,000 rows in uneven batches; keep at most 100: every 10th row.
        let batches: Vec<RecordBatch> = [333usize, 1, 666]
            .iter()
            .scan(0i64, |start, len| {
                let values: Int64Array = (*start..*start + *len as i64).collect();
                *start += *len as i64;
                Some(RecordBatch::try_new(std::sync::Arc::clone(&schema), vec![std::sync::Arc::new(values)]).unwrap())
            })
            .collect();
        let table = Table::infer(schema, batches).unwrap();
        let sample = evenly_spaced(&table, 100).unwrap().unwrap();
        let picked: Vec<i64> = sample
            .batches
            .iter()
            .flat_map(|b| {
                let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().clone();
                (0..a.len()).map(move |i| a.value(i))
            })
            .collect();
        assert_eq!(picked, (0..1000).step_by(10).collect::<Vec<i64>>());
        assert!(evenly_spaced(&table, 1000).unwrap().is_none());
    }
}
