//! `builtin:source`: read a CSV, Parquet, NDJSON, JSON-array or Excel
//! (`.xlsx`) file into Arrow.
//!
//! CSV and NDJSON go through polars (fast multi-threaded parsing, type
//! inference with dates and datetimes, quoted fields, nulls) and reach
//! arrow-rs as one Arrow IPC stream; Parquet is read by arrow-rs directly.
//! Strings are normalised to `Utf8` so plugins see one string type.
//!
//! polars reports many malformed inputs without a position, and can panic on
//! some. Any failure therefore triggers a second, simple pass over the file
//! that finds the first bad line (wrong field count, unterminated quote,
//! invalid JSON or UTF-8), so every error names a line.

use std::io::Cursor;
use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use polars::prelude::{
    CompatLevel, CsvParseOptions, CsvReadOptions, DataFrame, IpcStreamWriter, JsonFormat, JsonReader, NullValues,
    PlSmallStr, SerReader, SerWriter,
};

use crate::config::{ConfigField, ConfigValue, Settings, ValueType, field, get};
use crate::limits::{self, FooterError, LimitError, ReadLimits};
use crate::table::Table;

/// Why a table could not be read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The format could not be told from the name.
    #[error("cannot tell the format of {}: use a .csv, .parquet, .ndjson/.jsonl, .json or .xlsx file, or set `format`", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The file has no data.
    #[error("{} is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The content is over a read limit (columns, nesting, value length,
    /// cells, decoded size); the message names the setting.
    #[error("{}{}: {what}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Limit {
        /// The file.
        path: PathBuf,
        /// 1-based line, when known.
        line: Option<u64>,
        /// What was too large.
        what: String,
    },
    /// The content is malformed.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line, when known.
        line: Option<u64>,
        /// What is wrong.
        message: String,
    },
}

/// File formats the source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma- (or `delimiter`-) separated values.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// Newline-delimited JSON.
    Ndjson,
    /// A JSON array of objects (a `.json` file whose first value is not an
    /// array is read as NDJSON).
    Json,
    /// The first worksheet of an Excel workbook (`.xlsx`), its first row the
    /// header.
    Xlsx,
}

const NULLS: &[&str] = &[
    "", "NA", "N/A", "n/a", "NULL", "null", "NaN", "nan", "None", "<NA>", "#N/A",
];

/// The `with` schema of `builtin:source`.
pub fn schema() -> Vec<ConfigField> {
    let mut path = field(
        "path",
        ValueType::String,
        "Input file (CSV, Parquet, NDJSON, a JSON array or Excel .xlsx); `--input` sets it.",
    );
    path.required = true;
    let mut format = field(
        "format",
        ValueType::String,
        "File format; `auto` goes by the extension.",
    );
    format.allowed = ["auto", "csv", "parquet", "ndjson", "json", "xlsx"]
        .map(str::to_owned)
        .to_vec();
    format.default = Some(ConfigValue::String("auto".into()));
    let mut delimiter = field(
        "delimiter",
        ValueType::String,
        "CSV field separator (one character, or `tab`).",
    );
    delimiter.default = Some(ConfigValue::String(",".into()));
    let mut header = field(
        "has_header",
        ValueType::Boolean,
        "The CSV's first line names the columns.",
    );
    header.default = Some(ConfigValue::Boolean(true));
    let mut nulls = field("null_values", ValueType::Strings, "Cell values read as missing.");
    nulls.default = Some(ConfigValue::Strings(NULLS.iter().map(|s| (*s).to_owned()).collect()));
    let mut infer = field(
        "infer_rows",
        ValueType::Integer,
        "Rows used to infer column types (the whole file on a type clash).",
    );
    infer.default = Some(ConfigValue::Integer(1000));
    infer.minimum = Some(1.0);
    let mut dates = field(
        "parse_dates",
        ValueType::Boolean,
        "Read date and datetime text as dates.",
    );
    dates.default = Some(ConfigValue::Boolean(true));
    vec![path, format, delimiter, header, nulls, infer, dates]
}

/// Read options, from a stage's settings.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// File to read.
    pub path: PathBuf,
    /// Format (`None`: by extension).
    pub format: Option<Format>,
    /// CSV separator.
    pub delimiter: u8,
    /// CSV header line.
    pub has_header: bool,
    /// Values read as null.
    pub null_values: Vec<String>,
    /// Rows for type inference.
    pub infer_rows: usize,
    /// Parse dates.
    pub parse_dates: bool,
    /// Bounds checked before and while reading.
    pub limits: ReadLimits,
}

impl SourceOptions {
    /// Options for `path` with the defaults of [`schema`].
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SourceOptions {
            path: path.into(),
            format: None,
            delimiter: b',',
            has_header: true,
            null_values: NULLS.iter().map(|s| (*s).to_owned()).collect(),
            infer_rows: 1000,
            parse_dates: true,
            limits: ReadLimits::default(),
        }
    }

    /// From validated settings. `base` resolves a relative path.
    pub fn from_settings(settings: &Settings) -> Result<Self, String> {
        let path = match get(settings, "path") {
            Some(ConfigValue::String(p)) => PathBuf::from(p),
            _ => return Err("`path` is required (or pass --input)".to_owned()),
        };
        let mut o = SourceOptions::new(path);
        o.format = match get(settings, "format") {
            Some(ConfigValue::String(f)) if f == "csv" => Some(Format::Csv),
            Some(ConfigValue::String(f)) if f == "parquet" => Some(Format::Parquet),
            Some(ConfigValue::String(f)) if f == "ndjson" => Some(Format::Ndjson),
            Some(ConfigValue::String(f)) if f == "json" => Some(Format::Json),
            Some(ConfigValue::String(f)) if f == "xlsx" => Some(Format::Xlsx),
            _ => None,
        };
        if let Some(ConfigValue::String(d)) = get(settings, "delimiter") {
            o.delimiter = match d.as_str() {
                "tab" | "\\t" | "\t" => b'\t',
                s if s.len() == 1 => s.as_bytes()[0],
                s => return Err(format!("`delimiter` must be one ASCII character or `tab`, found `{s}`")),
            };
        }
        if let Some(ConfigValue::Boolean(b)) = get(settings, "has_header") {
            o.has_header = *b;
        }
        if let Some(ConfigValue::Strings(n)) = get(settings, "null_values") {
            o.null_values.clone_from(n);
        }
        if let Some(ConfigValue::Integer(n)) = get(settings, "infer_rows") {
            o.infer_rows = usize::try_from(*n).unwrap_or(usize::MAX).max(1);
        }
        if let Some(ConfigValue::Boolean(b)) = get(settings, "parse_dates") {
            o.parse_dates = *b;
        }
        Ok(o)
    }
}

/// The format of `path` by extension.
pub fn detect_format(path: &Path) -> Option<Format> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".csv") || name.ends_with(".tsv") || name.ends_with(".txt") {
        Some(Format::Csv)
    } else if name.ends_with(".parquet") || name.ends_with(".pq") {
        Some(Format::Parquet)
    } else if name.ends_with(".ndjson") || name.ends_with(".jsonl") {
        Some(Format::Ndjson)
    } else if name.ends_with(".json") {
        Some(Format::Json)
    } else if name.ends_with(".xlsx") {
        Some(Format::Xlsx)
    } else {
        None
    }
}

/// Read a table.
pub fn read_table(options: &SourceOptions) -> Result<Table, SourceError> {
    let path = &options.path;
    let meta = std::fs::metadata(path).map_err(|source| SourceError::Open {
        path: path.clone(),
        source,
    })?;
    if meta.is_dir() {
        return Err(SourceError::Open {
            path: path.clone(),
            source: std::io::Error::other("is a directory"),
        });
    }
    if meta.len() == 0 {
        return Err(SourceError::Empty { path: path.clone() });
    }
    let format = options
        .format
        .or_else(|| detect_format(path))
        .ok_or_else(|| SourceError::UnknownFormat { path: path.clone() })?;
    let started = std::time::Instant::now();
    let limit = |e: LimitError| over_limit(path, e);
    let (schema, batches) = match format {
        Format::Parquet => read_parquet(path, &options.limits)?,
        Format::Csv => match read_csv(options)? {
            CsvRead::Polars(df) => polars_to_arrow(path, df)?,
            CsvRead::Arrow(read) => read,
        },
        Format::Ndjson => polars_to_arrow(path, read_ndjson(options)?)?,
        Format::Json => {
            if starts_with_array(path)? {
                polars_to_arrow(path, read_json_array(options)?)?
            } else {
                polars_to_arrow(path, read_ndjson(options)?)?
            }
        }
        Format::Xlsx => read_xlsx(options)?,
    };
    if schema.fields().is_empty() {
        return Err(SourceError::Empty { path: path.clone() });
    }
    let parsed = started.elapsed();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    options
        .limits
        .check_shape(schema.fields().iter().map(|f| f.name().as_str()), Some(rows as u64))
        .map_err(limit)?;
    let (schema, batches) = normalize(path, &schema, batches)?;
    let decoded: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
    options.limits.check_decoded(decoded as u64).map_err(limit)?;
    let table = Table::infer(schema, batches).map_err(|e| malformed(path, None, e.to_string()))?;
    tracing::debug!(
        path = %path.display(),
        parse_ms = parsed.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        rows = table.rows(),
        "Table read."
    );
    Ok(table)
}

fn over_limit(path: &Path, e: LimitError) -> SourceError {
    SourceError::Limit {
        path: path.to_path_buf(),
        line: e.line,
        what: e.what,
    }
}

fn malformed(path: &Path, line: Option<u64>, message: impl Into<String>) -> SourceError {
    SourceError::Malformed {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// A CSV read by one parser or the other.
enum CsvRead {
    Polars(DataFrame),
    Arrow((SchemaRef, Vec<RecordBatch>)),
}

/// arrow-rs' CSV reader (the `csv` crate), which takes quote characters inside
/// unquoted fields literally, as Python's `csv` and pandas do.
fn read_csv_lenient(o: &SourceOptions, bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>), SourceError> {
    let pattern = format!(
        "^(?:{})$",
        o.null_values
            .iter()
            .map(|v| regex::escape(v))
            .collect::<Vec<_>>()
            .join("|")
    );
    let nulls = regex::Regex::new(&pattern).map_err(|e| malformed(&o.path, None, format!("null_values: {e}")))?;
    let format = arrow::csv::reader::Format::default()
        .with_header(o.has_header)
        .with_delimiter(o.delimiter)
        .with_null_regex(nulls)
        .with_truncated_rows(true);
    let (schema, _) = format
        .infer_schema(Cursor::new(bytes), Some(o.infer_rows))
        .map_err(|e| malformed(&o.path, line_from_message(&e.to_string()), e.to_string()))?;
    let reader = arrow::csv::ReaderBuilder::new(Arc::new(schema))
        .with_format(format)
        .build(Cursor::new(bytes))
        .map_err(|e| malformed(&o.path, None, e.to_string()))?;
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| malformed(&o.path, line_from_message(&e.to_string()), e.to_string()))?;
    let schema = batches
        .first()
        .map_or_else(|| Arc::new(Schema::empty()), RecordBatch::schema);
    Ok((schema, batches))
}

fn read_csv(o: &SourceOptions) -> Result<CsvRead, SourceError> {
    // Structural problems are found by our own pass before polars sees the
    // file: polars 0.55 reports them without a line and, on some malformed
    // quoting, trips an internal bounds check (undefined behaviour in release
    // builds) instead of returning an error.
    let bytes = std::fs::read(&o.path).map_err(|source| SourceError::Open {
        path: o.path.clone(),
        source,
    })?;
    if let Err(e) = std::str::from_utf8(&bytes) {
        let line = bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() as u64 + 1;
        return Err(malformed(&o.path, Some(line), "the file is not valid UTF-8 text"));
    }
    match csv_shape(&bytes, o.delimiter, &o.limits) {
        CsvShape::TooLarge(e) => return Err(over_limit(&o.path, e)),
        CsvShape::Broken(line, message) => return Err(malformed(&o.path, Some(line), message)),
        CsvShape::StrayQuotes => return Ok(CsvRead::Arrow(read_csv_lenient(o, &bytes)?)),
        CsvShape::Strict => {}
    }
    drop(bytes);
    let attempt = |infer: Option<usize>| -> Result<DataFrame, String> {
        let parse = CsvParseOptions::default()
            .with_separator(o.delimiter)
            .with_try_parse_dates(o.parse_dates)
            .with_null_values(Some(NullValues::AllColumns(
                o.null_values.iter().map(|s| PlSmallStr::from(s.as_str())).collect(),
            )));
        let read = CsvReadOptions::default()
            .with_has_header(o.has_header)
            .with_infer_schema_length(infer)
            .with_parse_options(parse)
            .try_into_reader_with_file_path(Some(o.path.clone()))
            .and_then(SerReader::finish);
        read.map_err(|e| e.to_string())
    };
    let run = |infer| match catch_unwind(AssertUnwindSafe(|| attempt(infer))) {
        Ok(r) => r,
        Err(payload) => Err(format!("the CSV parser failed: {}", panic_message(payload.as_ref()))),
    };
    match run(Some(o.infer_rows)) {
        Ok(df) => Ok(CsvRead::Polars(df)),
        // A value far down the file may not fit the type inferred from the
        // first rows (an `N/A` in a numeric column, a decimal after integers):
        // infer from the whole file before giving up.
        Err(first) if first.contains("could not parse") || first.contains("dtype") => match run(None) {
            Ok(df) => Ok(CsvRead::Polars(df)),
            Err(second) => Err(locate_csv(o, &second)),
        },
        Err(e) => Err(locate_csv(o, &e)),
    }
}

/// Find the first structurally bad CSV record, else explain with polars' message.
fn locate_csv(o: &SourceOptions, polars_message: &str) -> SourceError {
    let bytes = match std::fs::read(&o.path) {
        Ok(b) => b,
        Err(source) => {
            return SourceError::Open {
                path: o.path.clone(),
                source,
            };
        }
    };
    if let Err(e) = std::str::from_utf8(&bytes) {
        let line = bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() as u64 + 1;
        return malformed(&o.path, Some(line), "the file is not valid UTF-8 text");
    }
    if let Some((line, message)) = scan_csv(&bytes, o.delimiter, &o.limits) {
        return malformed(&o.path, Some(line), message);
    }
    let line = line_from_message(polars_message);
    malformed(
        &o.path,
        line,
        polars_message.lines().next().unwrap_or(polars_message).to_owned(),
    )
}

/// Pull a `line N` / `row N` hint out of a parser message.
fn line_from_message(message: &str) -> Option<u64> {
    let lower = message.to_ascii_lowercase();
    for key in ["line ", "row "] {
        if let Some(i) = lower.find(key) {
            let digits: String = lower[i + key.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(n) = digits.parse() {
                return Some(n);
            }
        }
    }
    None
}

/// What the structural pass found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CsvShape {
    /// RFC 4180: quotes only around whole fields.
    Strict,
    /// Well-formed, but with quote characters inside unquoted fields (`6'2"`),
    /// which polars' parallel splitter miscounts; read with a lenient parser.
    StrayQuotes,
    /// Broken, at (1-based line, message).
    Broken(u64, String),
    /// Over a read limit (columns, value length, cells).
    TooLarge(LimitError),
}

/// A minimal RFC 4180 scan: the first record with more fields than the first
/// record (fewer are read as trailing nulls, as pandas and polars do), text
/// after a closing quote, or an unterminated quoted field.
pub(crate) fn scan_csv(bytes: &[u8], delimiter: u8, limits: &ReadLimits) -> Option<(u64, String)> {
    match csv_shape(bytes, delimiter, limits) {
        CsvShape::Broken(line, message) => Some((line, message)),
        CsvShape::TooLarge(e) => Some((e.line.unwrap_or(1), e.what)),
        _ => None,
    }
}

/// The structural pass, which also enforces `limits` as it goes: no record
/// with more than `max_columns` fields, no field longer than
/// `max_value_bytes`, no more than `max_cells` cells — all before a parser
/// allocates anything for them.
pub(crate) fn csv_shape(bytes: &[u8], delimiter: u8, limits: &ReadLimits) -> CsvShape {
    let too_long = |line: u64| {
        CsvShape::TooLarge(LimitError {
            line: Some(line),
            what: format!(
                "a field is longer than {} bytes (limits.max_value_bytes)",
                limits.max_value_bytes
            ),
        })
    };
    let mut records: u64 = 0;
    let mut field_start = 0usize;
    let mut stray_quotes = false;
    let mut line: u64 = 1;
    let mut record_line: u64 = 1;
    let mut fields = 1usize;
    let mut expected: Option<usize> = None;
    let mut in_quotes = false;
    let mut quote_line = 0u64;
    let mut at_field_start = true;
    let mut record_empty = true;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_quotes {
            if b == b'"' {
                if bytes.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    in_quotes = false;
                    // A closing quote must end its field.
                    if let Some(&next) = bytes.get(i + 1)
                        && next != delimiter
                        && next != b'\n'
                        && next != b'\r'
                    {
                        return CsvShape::Broken(line, "text follows the closing quote of a field".to_owned());
                    }
                }
            } else if b == b'\n' {
                line += 1;
            }
        } else if b == b'"' && at_field_start {
            in_quotes = true;
            quote_line = line;
            record_empty = false;
        } else if b == b'"' {
            stray_quotes = true;
            record_empty = false;
        } else if b == delimiter {
            if i - field_start > limits.max_value_bytes {
                return too_long(record_line);
            }
            fields += 1;
            if fields > limits.max_columns {
                return CsvShape::TooLarge(LimitError {
                    line: Some(record_line),
                    what: format!(
                        "more than {} fields in one record (limits.max_columns)",
                        limits.max_columns
                    ),
                });
            }
            field_start = i + 1;
            at_field_start = true;
            record_empty = false;
            i += 1;
            continue;
        } else if b == b'\n' || b == b'\r' {
            if i - field_start > limits.max_value_bytes {
                return too_long(record_line);
            }
            if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            if !record_empty {
                records += 1;
                match expected {
                    None => expected = Some(fields),
                    Some(n) if fields > n => {
                        return CsvShape::Broken(
                            record_line,
                            format!("expected {n} fields (as on line 1), found {fields}"),
                        );
                    }
                    Some(_) => {}
                }
            }
            line += 1;
            record_line = line;
            fields = 1;
            field_start = i + 1;
            at_field_start = true;
            record_empty = true;
            i += 1;
            continue;
        } else {
            record_empty = false;
        }
        at_field_start = false;
        i += 1;
    }
    if in_quotes {
        return CsvShape::Broken(quote_line, "a quoted field is never closed".to_owned());
    }
    if bytes.len() - field_start > limits.max_value_bytes {
        return too_long(record_line);
    }
    if !record_empty {
        records += 1;
    }
    if let Err(e) = limits.check_cells(records, expected.unwrap_or(fields)) {
        return CsvShape::TooLarge(e);
    }
    if !record_empty
        && let Some(n) = expected
        && fields > n
    {
        return CsvShape::Broken(
            record_line,
            format!("expected {n} fields (as on line 1), found {fields}"),
        );
    }
    if stray_quotes {
        CsvShape::StrayQuotes
    } else {
        CsvShape::Strict
    }
}

fn read_ndjson(o: &SourceOptions) -> Result<DataFrame, SourceError> {
    // Depth and line length first: polars' JSON reader recurses per level.
    let bytes = std::fs::read(&o.path).map_err(|source| SourceError::Open {
        path: o.path.clone(),
        source,
    })?;
    limits::scan_ndjson(&bytes, &o.limits).map_err(|e| over_limit(&o.path, e))?;
    drop(bytes);
    let attempt = || -> Result<DataFrame, String> {
        let file = std::fs::File::open(&o.path).map_err(|e| e.to_string())?;
        JsonReader::new(file)
            .with_json_format(JsonFormat::JsonLines)
            .infer_schema_len(NonZeroUsize::new(o.infer_rows))
            .finish()
            .map_err(|e| e.to_string())
    };
    let result = match catch_unwind(AssertUnwindSafe(attempt)) {
        Ok(r) => r,
        Err(payload) => Err(format!("the JSON parser failed: {}", panic_message(payload.as_ref()))),
    };
    result.map_err(|message| {
        let Ok(text) = std::fs::read(&o.path) else {
            return malformed(&o.path, None, message);
        };
        let Ok(text) = String::from_utf8(text) else {
            return malformed(&o.path, None, "the file is not valid UTF-8 text");
        };
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(serde_json::Value::Object(_)) => {}
                Ok(_) => return malformed(&o.path, Some(n as u64 + 1), "each line must be a JSON object"),
                Err(e) => {
                    return malformed(
                        &o.path,
                        Some(n as u64 + 1),
                        format!("invalid JSON at column {}: {e}", e.column()),
                    );
                }
            }
        }
        malformed(&o.path, line_from_message(&message), message)
    })
}

/// Whether a JSON file's first value is an array (else it is NDJSON).
fn starts_with_array(path: &Path) -> Result<bool, SourceError> {
    use std::io::Read;
    let mut head = [0u8; 4096];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|source| SourceError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    let text = head[..n].strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&head[..n]);
    Ok(text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'['))
}

/// A JSON array of objects, as exported by most tools and by pandas'
/// `to_json(orient="records")`.
fn read_json_array(o: &SourceOptions) -> Result<DataFrame, SourceError> {
    let bytes = std::fs::read(&o.path).map_err(|source| SourceError::Open {
        path: o.path.clone(),
        source,
    })?;
    // Nesting and value lengths first: polars' JSON reader recurses.
    limits::scan_json(&bytes, &o.limits).map_err(|e| over_limit(&o.path, e))?;
    // Every element must be an object (a record); a malformed document is
    // named by line and column before polars sees it.
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Err(e) => {
            return Err(malformed(
                &o.path,
                Some(e.line() as u64),
                format!("invalid JSON at column {}: {e}", e.column()),
            ));
        }
        Ok(serde_json::Value::Array(items)) => {
            if let Some(i) = items.iter().position(|v| !v.is_object()) {
                return Err(malformed(
                    &o.path,
                    None,
                    format!(
                        "element {} of the array is not a JSON object (one record per element)",
                        i + 1
                    ),
                ));
            }
            if items.is_empty() {
                return Err(SourceError::Empty { path: o.path.clone() });
            }
        }
        Ok(_) => return Err(malformed(&o.path, Some(1), "expected an array of JSON objects")),
    }
    let attempt = || -> Result<DataFrame, String> {
        JsonReader::new(Cursor::new(&bytes))
            .with_json_format(JsonFormat::Json)
            .infer_schema_len(NonZeroUsize::new(o.infer_rows))
            .finish()
            .map_err(|e| e.to_string())
    };
    match catch_unwind(AssertUnwindSafe(attempt)) {
        Ok(r) => r.map_err(|m| malformed(&o.path, line_from_message(&m), m)),
        Err(payload) => Err(malformed(
            &o.path,
            None,
            format!("the JSON parser failed: {}", panic_message(payload.as_ref())),
        )),
    }
}

/// The first worksheet of an `.xlsx` workbook. The archive's declared sizes
/// are checked against the decoded-size limit before a sheet is inflated;
/// the cells then become CSV text read by the CSV path (the same type
/// inference, dates included, and the same limits), and every error names
/// the workbook and its sheet row.
fn read_xlsx(o: &SourceOptions) -> Result<(SchemaRef, Vec<RecordBatch>), SourceError> {
    use calamine::{Data, Reader};
    let path = &o.path;
    let open = || {
        std::fs::File::open(path).map_err(|source| SourceError::Open {
            path: path.clone(),
            source,
        })
    };
    // A zip bomb declares its sizes too: refuse before inflating anything.
    {
        let mut archive = zip::ZipArchive::new(open()?)
            .map_err(|e| malformed(path, None, format!("not an Excel .xlsx workbook: {e}")))?;
        let mut declared: u64 = 0;
        for i in 0..archive.len() {
            let entry = archive
                .by_index_raw(i)
                .map_err(|e| malformed(path, None, format!("not an Excel .xlsx workbook: {e}")))?;
            declared = declared.saturating_add(entry.size());
        }
        if declared > o.limits.max_decoded_bytes {
            return Err(SourceError::Limit {
                path: path.clone(),
                line: None,
                what: format!(
                    "the workbook unpacks to {} MiB, more than {} MiB (limits.decoded_max_mb)",
                    declared >> 20,
                    o.limits.max_decoded_bytes >> 20
                ),
            });
        }
    }
    let mut book: calamine::Xlsx<_> = calamine::open_workbook_from_rs(std::io::BufReader::new(open()?))
        .map_err(|e| malformed(path, None, format!("not an Excel .xlsx workbook: {e}")))?;
    let range = book
        .worksheet_range_at(0)
        .ok_or_else(|| SourceError::Empty { path: path.clone() })?
        .map_err(|e| malformed(path, None, format!("the first worksheet cannot be read: {e}")))?;
    let (rows, columns) = range.get_size();
    if rows == 0 || columns == 0 {
        return Err(SourceError::Empty { path: path.clone() });
    }
    o.limits
        .check_cells(rows.saturating_sub(1) as u64, columns)
        .map_err(|e| over_limit(path, e))?;
    let cell = |d: &Data| -> String {
        match d {
            Data::Empty | Data::Error(_) => String::new(),
            Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
            Data::Int(i) => i.to_string(),
            // Whole numbers stay integers, so a column of them reads as Int64.
            #[allow(clippy::cast_possible_truncation, reason = "checked to be whole and in range")]
            Data::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => (*f as i64).to_string(),
            Data::Float(f) => f.to_string(),
            Data::Bool(b) => b.to_string(),
            Data::DateTime(dt) => {
                let (y, mo, d, h, mi, s, ms) = dt.to_ymd_hms_milli();
                if (h, mi, s, ms) == (0, 0, 0, 0) {
                    format!("{y:04}-{mo:02}-{d:02}")
                } else {
                    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
                }
            }
        }
    };
    let quote = |text: String| -> String {
        if text.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text
        }
    };
    let mut csv = String::new();
    for (r, row) in range.rows().enumerate() {
        let fields: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, d)| {
                let text = cell(d);
                // Unnamed header cells get a name, as spreadsheets show them.
                if r == 0 && text.trim().is_empty() {
                    format!("column_{}", c + 1)
                } else {
                    quote(text)
                }
            })
            .collect();
        csv.push_str(&fields.join(","));
        csv.push('\n');
    }
    let dir = tempfile::tempdir().map_err(|source| SourceError::Open {
        path: path.clone(),
        source,
    })?;
    let sheet = dir.path().join("sheet.csv");
    std::fs::write(&sheet, csv).map_err(|source| SourceError::Open {
        path: path.clone(),
        source,
    })?;
    let as_csv = SourceOptions {
        path: sheet,
        format: Some(Format::Csv),
        delimiter: b',',
        has_header: true,
        ..o.clone()
    };
    let read = read_csv(&as_csv).map_err(|e| renamed(e, path))?;
    match read {
        CsvRead::Polars(df) => polars_to_arrow(path, df),
        CsvRead::Arrow(read) => Ok(read),
    }
}

/// An error about the converted sheet, told about the workbook (its rows
/// are the sheet's rows).
fn renamed(e: SourceError, workbook: &Path) -> SourceError {
    let path = workbook.to_path_buf();
    match e {
        SourceError::Open { source, .. } => SourceError::Open { path, source },
        SourceError::UnknownFormat { .. } => SourceError::UnknownFormat { path },
        SourceError::Empty { .. } => SourceError::Empty { path },
        SourceError::Limit { line, what, .. } => SourceError::Limit { path, line, what },
        SourceError::Malformed { line, message, .. } => SourceError::Malformed { path, line, message },
    }
}

fn read_parquet(path: &Path, limits: &ReadLimits) -> Result<(SchemaRef, Vec<RecordBatch>), SourceError> {
    // The footer is checked first, without the parquet crate: its schema
    // builder recurses once per nesting level.
    limits::parquet_footer(path, limits).map_err(|e| match e {
        FooterError::Limit(e) => over_limit(path, e),
        FooterError::Malformed(m) => malformed(path, None, format!("not a readable Parquet file: {m}")),
        FooterError::Io(m) => malformed(path, None, m),
    })?;
    let file = std::fs::File::open(path).map_err(|source| SourceError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| malformed(path, None, format!("not a readable Parquet file: {e}")))?;
    let schema = Arc::clone(builder.schema());
    // Small batches, measured as they come: a dictionary or run-length page
    // that expands far beyond the file's size stops at the decoded limit
    // instead of filling memory.
    let reader = builder
        .with_batch_size(PARQUET_BATCH_ROWS)
        .build()
        .map_err(|e| malformed(path, None, e.to_string()))?;
    let target = normal_schema(&schema);
    let mut decoded = 0u64;
    let mut batches = Vec::new();
    for batch in reader {
        let batch = normalize_batch(path, &target, &batch.map_err(|e| malformed(path, None, e.to_string()))?)?;
        decoded += batch.get_array_memory_size() as u64;
        limits.check_decoded(decoded).map_err(|e| over_limit(path, e))?;
        batches.push(batch);
    }
    Ok((target, batches))
}

/// Rows per Parquet batch: small enough that one batch of an expanding
/// column stays far below the decoded limit.
const PARQUET_BATCH_ROWS: usize = 4096;

/// polars' frame as one Arrow batch, a column at a time and each column a
/// slice of rows at a time: each slice goes through an IPC buffer and is
/// normalised before the next, so beside what is left of the frame only one
/// column's slices are in flight, not a copy of the whole table in IPC and
/// another in wide string types (Adult × 100 once held four copies at once).
fn polars_to_arrow(path: &Path, mut df: DataFrame) -> Result<(SchemaRef, Vec<RecordBatch>), SourceError> {
    const SLICE: usize = 65_536;
    let fail = |e: &dyn std::fmt::Display| malformed(path, None, format!("converting to Arrow: {e}"));
    let height = df.height();
    let mut fields: Vec<Field> = Vec::with_capacity(df.width());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(df.width());
    for name in df.get_column_names_owned() {
        // Column by column, each leaving the polars frame as it is converted:
        // the frame and its Arrow copy are never both whole in memory (at
        // Adult × 100 that was about 1 GB more at the peak), and one IPC
        // message holds one column's slice, so nothing read keeps a message
        // of other columns alive.
        let column = df.drop_in_place(name.as_str()).map_err(|e| fail(&e))?;
        let one = DataFrame::new(height, vec![column]).map_err(|e| fail(&e))?;
        let mut parts: Vec<ArrayRef> = Vec::new();
        let mut offset = 0usize;
        loop {
            let mut part = one.slice(i64::try_from(offset).map_err(|e| fail(&e))?, SLICE);
            let mut buf = Vec::new();
            IpcStreamWriter::new(&mut buf)
                .with_compat_level(CompatLevel::oldest())
                .finish(&mut part)
                .map_err(|e| fail(&e))?;
            drop(part);
            let reader = StreamReader::try_new(Cursor::new(buf), None).map_err(|e| fail(&e))?;
            let read_schema = reader.schema();
            let read = reader.collect::<Result<Vec<_>, _>>().map_err(|e| fail(&e))?;
            let (normal, read) = normalize(path, &read_schema, read)?;
            if fields.len() == columns.len() {
                fields.push(normal.field(0).clone());
            }
            parts.extend(read.iter().map(|b| Arc::clone(b.column(0))));
            offset += SLICE;
            if offset >= height {
                break;
            }
        }
        drop(one);
        let column = match parts.as_slice() {
            // The first slice always names the column's field.
            [] => arrow::array::new_empty_array(fields[columns.len()].data_type()),
            [one] => Arc::clone(one),
            many => {
                let refs: Vec<&dyn arrow::array::Array> = many.iter().map(AsRef::as_ref).collect();
                arrow::compute::concat(&refs).map_err(|e| fail(&e))?
            }
        };
        columns.push(column);
    }
    let schema = Arc::new(Schema::new(fields));
    let count = arrow::array::RecordBatchOptions::new().with_row_count(Some(height));
    let batch = RecordBatch::try_new_with_options(Arc::clone(&schema), columns, &count).map_err(|e| fail(&e))?;
    Ok((schema, vec![batch]))
}

/// The type a column is read as downstream: one string type (`Utf8`), one
/// binary type, dictionaries decoded; everything else as read.
fn normal_type(dt: &DataType) -> DataType {
    match dt {
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        DataType::Dictionary(_, value) => normal_type(value),
        other => other.clone(),
    }
}

fn normal_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), normal_type(f.data_type()), true))
        .collect();
    Arc::new(Schema::new(fields))
}

fn normalize_batch(path: &Path, target: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch, SourceError> {
    let columns = batch
        .columns()
        .iter()
        .zip(target.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(Arc::clone(c))
            } else {
                arrow::compute::cast(c, f.data_type())
            }
        })
        .collect::<Result<Vec<ArrayRef>, _>>()
        .map_err(|e| malformed(path, None, e.to_string()))?;
    RecordBatch::try_new(Arc::clone(target), columns).map_err(|e| malformed(path, None, e.to_string()))
}

/// One string type (`Utf8`) and one binary type downstream; everything else as read.
fn normalize(
    path: &Path,
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<(SchemaRef, Vec<RecordBatch>), SourceError> {
    let target = normal_schema(schema);
    // Each batch is dropped once converted: a cast copy lives beside one
    // original batch, not beside the whole table.
    let out = batches
        .into_iter()
        .map(|b| normalize_batch(path, &target, &b))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((target, out))
}

/// `builtin:source`.
#[derive(Debug, Clone, Copy)]
pub struct Source;

/// Its name (`builtin:source`).
pub const NAME: &str = "source";

impl super::Builtin for Source {
    fn name(&self) -> &str {
        NAME
    }

    fn summary(&self) -> &str {
        "Read a CSV, Parquet, NDJSON, JSON-array or Excel (.xlsx) file."
    }

    fn kind(&self) -> super::Kind {
        super::Kind::Source
    }

    fn schema(&self) -> Vec<ConfigField> {
        schema()
    }

    fn file_setting(&self) -> Option<&'static str> {
        Some("path")
    }

    fn run(&self, ctx: &crate::stage::StageContext) -> crate::Result<crate::model::Output> {
        let mut options = SourceOptions::from_settings(ctx.settings()).map_err(|m| ctx.error(m))?;
        // Relative paths in a pipeline are relative to the pipeline file.
        options.path = ctx.resolve(options.path);
        let table = read_table(&options)?;
        ctx.progress(table.rows() as u64, table.rows() as u64, "rows");
        Ok(crate::model::Output::Table(
            Arc::new(table),
            crate::model::Provenance::Read,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_the_ragged_line() {
        let csv = b"a,b,c\n1,2,3\n\"x,y\",2,3\n4,5\n6,7,8,9\n";
        assert_eq!(
            scan_csv(csv, b',', &ReadLimits::default()),
            Some((5, "expected 3 fields (as on line 1), found 4".to_owned()))
        );
    }

    #[test]
    fn scan_counts_lines_inside_quotes() {
        let csv = b"a,b\n\"multi\nline\",1\n2,3,4\n";
        assert_eq!(scan_csv(csv, b',', &ReadLimits::default()).map(|x| x.0), Some(4));
        let open = b"a,b\n1,\"never closed\n2,3\n";
        assert_eq!(
            scan_csv(open, b',', &ReadLimits::default()),
            Some((2, "a quoted field is never closed".to_owned()))
        );
    }

    #[test]
    fn text_after_a_closing_quote_is_an_error() {
        assert_eq!(
            scan_csv(b"a,b\n\"x\"y,1\n", b',', &ReadLimits::default()).map(|x| x.0),
            Some(2)
        );
    }

    #[test]
    fn well_formed_csv_scans_clean() {
        assert_eq!(
            scan_csv(b"a,b\r\n1,\"q\"\"uote\"\r\n\r\n3,4", b',', &ReadLimits::default()),
            None
        );
    }

    #[test]
    fn hints_are_read_from_messages() {
        assert_eq!(line_from_message("error at line 17: oops"), Some(17));
        assert_eq!(line_from_message("no position"), None);
    }
}
