//! What reading one input may cost, checked *before* the memory is spent.
//!
//! Parsers are where a small hostile file becomes a large problem: a 60 KB
//! NDJSON line nested 10,000 levels deep overflows a recursive parser's stack,
//! a 160 KB Parquet footer describing 20,000 nested groups does the same to
//! the schema builder, one 50 MB CSV line of commas asks for 25 million
//! columns, and a 47 KB Parquet file can decode to gigabytes. [`ReadLimits`]
//! bounds each of those, and the scans here check them with constant memory
//! and no recursion before any parser runs:
//!
//! - [`scan_ndjson`]: nesting depth and line length of JSON lines;
//! - [`parquet_footer`]: the footer's size, schema depth, column count and
//!   name lengths, read straight from its Thrift encoding;
//! - CSV fields and records are bounded by the structural pass in
//!   [`crate::builtins::source`].
//!
//! Decoded size (rows × columns and bytes in memory) is checked while a file
//! is read, batch by batch.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Bounds on one input table. The defaults suit `doppel run` on a
/// workstation; servers take theirs from settings (`[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Most columns (leaf columns of a Parquet schema).
    pub max_columns: usize,
    /// Longest column name, in bytes.
    pub max_name_bytes: usize,
    /// Most cells (rows × columns).
    pub max_cells: u64,
    /// Longest single value: a CSV field, an NDJSON line.
    pub max_value_bytes: usize,
    /// Deepest nesting: JSON objects and arrays, Parquet groups.
    pub max_depth: usize,
    /// Largest table in memory once decoded (Arrow bytes).
    pub max_decoded_bytes: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_columns: 10_000,
            max_name_bytes: 1024,
            max_cells: 2_000_000_000,
            max_value_bytes: 64 << 20,
            max_depth: 64,
            max_decoded_bytes: 64 << 30,
        }
    }
}

/// Which bound an input crossed, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}")]
pub struct LimitError {
    /// 1-based line, when the input has lines.
    pub line: Option<u64>,
    /// What was too large, naming the limit (`limits.max_columns`).
    pub what: String,
}

impl LimitError {
    fn at(line: Option<u64>, what: impl Into<String>) -> Self {
        LimitError {
            line,
            what: what.into(),
        }
    }
}

impl ReadLimits {
    /// Refuse a table whose shape is over the limits (any format, after its
    /// schema is known and before its rows are read).
    pub fn check_shape<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
        rows: Option<u64>,
    ) -> Result<(), LimitError> {
        let mut columns = 0usize;
        for name in names {
            columns += 1;
            if name.len() > self.max_name_bytes {
                return Err(LimitError::at(
                    None,
                    format!(
                        "a column name is {} bytes long; the limit is {} (limits.max_name_bytes)",
                        name.len(),
                        self.max_name_bytes
                    ),
                ));
            }
        }
        self.check_columns(None, columns)?;
        if let Some(rows) = rows {
            self.check_cells(rows, columns)?;
        }
        Ok(())
    }

    /// Refuse more than `max_columns` columns.
    pub fn check_columns(&self, line: Option<u64>, columns: usize) -> Result<(), LimitError> {
        if columns > self.max_columns {
            return Err(LimitError::at(
                line,
                format!(
                    "{columns} columns; the limit is {} (limits.max_columns)",
                    self.max_columns
                ),
            ));
        }
        Ok(())
    }

    /// Refuse more than `max_cells` cells.
    pub fn check_cells(&self, rows: u64, columns: usize) -> Result<(), LimitError> {
        let cells = rows.saturating_mul(columns as u64);
        if cells > self.max_cells {
            return Err(LimitError::at(
                None,
                format!(
                    "{rows} rows × {columns} columns = {cells} cells; the limit is {} (limits.max_cells)",
                    self.max_cells
                ),
            ));
        }
        Ok(())
    }

    /// Refuse a decoded table larger than `max_decoded_bytes`.
    pub fn check_decoded(&self, bytes: u64) -> Result<(), LimitError> {
        if bytes > self.max_decoded_bytes {
            return Err(LimitError::at(
                None,
                format!(
                    "the table decodes to more than {} MiB in memory (limits.decoded_max_mb)",
                    self.max_decoded_bytes >> 20
                ),
            ));
        }
        Ok(())
    }
}

/// Check NDJSON bytes: no line longer than `max_value_bytes`, no value
/// nested deeper than `max_depth`. A byte-level scan (strings and escapes
/// understood), so a hostile line cannot reach a recursive parser.
pub fn scan_ndjson(bytes: &[u8], limits: &ReadLimits) -> Result<(), LimitError> {
    let mut line: u64 = 1;
    let mut line_start = 0usize;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            if i - line_start > limits.max_value_bytes {
                return Err(line_too_long(line, limits));
            }
            line += 1;
            line_start = i + 1;
            // A line is one record: whatever it left open is its parser's
            // problem, not the next line's depth.
            depth = 0;
            in_string = false;
            escaped = false;
            continue;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limits.max_depth {
                    return Err(LimitError::at(
                        Some(line),
                        format!(
                            "values nest more than {} levels deep (limits.max_depth)",
                            limits.max_depth
                        ),
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if bytes.len() - line_start > limits.max_value_bytes {
        return Err(line_too_long(line, limits));
    }
    Ok(())
}

/// Check a JSON document (an array of records, possibly spread over many
/// lines): no value nested deeper than `max_depth` below the outer array, no
/// string longer than `max_value_bytes`. The same byte-level scan as
/// [`scan_ndjson`], over the whole document.
pub fn scan_json(bytes: &[u8], limits: &ReadLimits) -> Result<(), LimitError> {
    let mut line: u64 = 1;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut string_start = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            line += 1;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
                if i - string_start > limits.max_value_bytes {
                    return Err(LimitError::at(
                        Some(line),
                        format!(
                            "a value is longer than {} bytes (limits.max_value_bytes)",
                            limits.max_value_bytes
                        ),
                    ));
                }
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                string_start = i;
            }
            b'{' | b'[' => {
                depth += 1;
                // The outer array holds the records; nesting counts below it.
                if depth > limits.max_depth + 1 {
                    return Err(LimitError::at(
                        Some(line),
                        format!(
                            "values nest more than {} levels deep (limits.max_depth)",
                            limits.max_depth
                        ),
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn line_too_long(line: u64, limits: &ReadLimits) -> LimitError {
    LimitError::at(
        Some(line),
        format!(
            "a line is longer than {} bytes (limits.max_value_bytes)",
            limits.max_value_bytes
        ),
    )
}

/// The largest Parquet footer read: real files with thousands of columns
/// and row groups stay well below it.
pub const MAX_FOOTER_BYTES: u64 = 64 << 20;

/// What a Parquet footer says about the table, read without building its
/// schema tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FooterFacts {
    /// Rows in the file.
    pub rows: u64,
    /// Leaf columns.
    pub columns: usize,
    /// Deepest group nesting below the root.
    pub depth: usize,
}

/// Why a footer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FooterError {
    /// Not a Parquet file, or its footer is malformed.
    #[error("not a readable Parquet file: {0}")]
    Malformed(String),
    /// Over a limit.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// Reading the file failed.
    #[error("{0}")]
    Io(String),
}

/// Read a Parquet file's footer and check it against `limits`: footer size,
/// schema nesting depth, leaf columns, name lengths and rows × columns. The
/// Thrift compact encoding is walked iteratively, so no footer, however
/// nested, can exhaust the stack.
pub fn parquet_footer(path: &Path, limits: &ReadLimits) -> Result<FooterFacts, FooterError> {
    let io = |e: std::io::Error| FooterError::Io(e.to_string());
    let mut file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size < 12 {
        return Err(FooterError::Malformed("the file is too short".into()));
    }
    let mut tail = [0u8; 8];
    file.seek(SeekFrom::Start(size - 8)).map_err(io)?;
    file.read_exact(&mut tail).map_err(io)?;
    if &tail[4..] != b"PAR1" {
        return Err(FooterError::Malformed("no PAR1 magic at the end".into()));
    }
    let len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if len > size - 12 {
        return Err(FooterError::Malformed(
            "the footer length is larger than the file".into(),
        ));
    }
    if len > MAX_FOOTER_BYTES {
        return Err(LimitError::at(
            None,
            format!(
                "the Parquet footer is {} MiB; at most {} MiB is read",
                len >> 20,
                MAX_FOOTER_BYTES >> 20
            ),
        )
        .into());
    }
    let mut footer = vec![0u8; usize::try_from(len).unwrap_or(0)];
    file.seek(SeekFrom::Start(size - 8 - len)).map_err(io)?;
    file.read_exact(&mut footer).map_err(io)?;
    let facts = footer_facts(&footer, limits)?;
    limits.check_cells(facts.rows, facts.columns)?;
    Ok(facts)
}

/// Walk `FileMetaData` (Thrift compact protocol): field 2 is the schema, a
/// flat pre-order list of `SchemaElement`s whose groups say how many
/// children follow; field 3 is the row count.
pub fn footer_facts(bytes: &[u8], limits: &ReadLimits) -> Result<FooterFacts, FooterError> {
    let mut r = Compact { bytes, pos: 0 };
    let mut facts = FooterFacts::default();
    let mut last_id = 0i16;
    while let Some((id, ty)) = r.field_header(&mut last_id)? {
        match (id, ty) {
            (2, T_LIST) => schema_list(&mut r, limits, &mut facts)?,
            (3, T_I64) => facts.rows = u64::try_from(r.varint_signed()?).unwrap_or(0),
            _ => r.skip(ty, 0)?,
        }
    }
    Ok(facts)
}

fn schema_list(r: &mut Compact<'_>, limits: &ReadLimits, facts: &mut FooterFacts) -> Result<(), FooterError> {
    let (count, elem) = r.list_header()?;
    if elem != T_STRUCT {
        return Err(FooterError::Malformed("the schema is not a list of elements".into()));
    }
    // Every element is at least two bytes (a name field and a stop), so a
    // count the footer cannot hold is a lie, refused before looping.
    if count > r.bytes.len() {
        return Err(FooterError::Malformed(
            "the schema claims more elements than fit".into(),
        ));
    }
    // Children still expected by each open group, innermost last.
    let mut open: Vec<i64> = Vec::new();
    for n in 0..count {
        let (name_len, children) = schema_element(r)?;
        if n > 0 && open.is_empty() {
            return Err(FooterError::Malformed(
                "schema elements after the root's last child".into(),
            ));
        }
        if let Some(top) = open.last_mut() {
            *top -= 1;
        }
        if n > 0 && name_len > limits.max_name_bytes {
            return Err(LimitError::at(
                None,
                format!(
                    "a column name is {name_len} bytes long; the limit is {} (limits.max_name_bytes)",
                    limits.max_name_bytes
                ),
            )
            .into());
        }
        match children {
            Some(c) if c < 0 => return Err(FooterError::Malformed("a negative number of children".into())),
            Some(c) if c > 0 || n == 0 => {
                if open.len() >= limits.max_depth {
                    return Err(LimitError::at(
                        None,
                        format!(
                            "the Parquet schema nests more than {} levels deep (limits.max_depth)",
                            limits.max_depth
                        ),
                    )
                    .into());
                }
                open.push(c);
                facts.depth = facts.depth.max(open.len().saturating_sub(1));
            }
            _ => {
                facts.columns += 1;
                limits.check_columns(None, facts.columns)?;
            }
        }
        while open.last() == Some(&0) {
            open.pop();
        }
    }
    if !open.is_empty() {
        return Err(FooterError::Malformed("the schema ends inside a group".into()));
    }
    Ok(())
}

/// One `SchemaElement`: (name length, `num_children` if set).
fn schema_element(r: &mut Compact<'_>) -> Result<(usize, Option<i64>), FooterError> {
    let mut last_id = 0i16;
    let mut name_len = 0usize;
    let mut children = None;
    while let Some((id, ty)) = r.field_header(&mut last_id)? {
        match (id, ty) {
            (4, T_BINARY) => name_len = r.binary()?.len(),
            (5, T_I32) => children = Some(r.varint_signed()?),
            _ => r.skip(ty, 0)?,
        }
    }
    Ok((name_len, children))
}

const T_TRUE: u8 = 1;
const T_FALSE: u8 = 2;
const T_BYTE: u8 = 3;
const T_I16: u8 = 4;
const T_I32: u8 = 5;
const T_I64: u8 = 6;
const T_DOUBLE: u8 = 7;
const T_BINARY: u8 = 8;
const T_LIST: u8 = 9;
const T_SET: u8 = 10;
const T_MAP: u8 = 11;
const T_STRUCT: u8 = 12;
const T_UUID: u8 = 13;

/// Structs nest this deep at most when skipping (Parquet's own metadata
/// nests a handful of levels).
const MAX_THRIFT_DEPTH: usize = 32;

/// A Thrift compact-protocol reader over a byte slice.
struct Compact<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Compact<'_> {
    fn eof() -> FooterError {
        FooterError::Malformed("the footer ends early".into())
    }

    fn byte(&mut self) -> Result<u8, FooterError> {
        let b = *self.bytes.get(self.pos).ok_or_else(Self::eof)?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, FooterError> {
        let mut out = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            out |= u64::from(b & 0x7f) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(FooterError::Malformed("a varint is too long".into()))
    }

    fn varint_signed(&mut self) -> Result<i64, FooterError> {
        let z = self.varint()?;
        #[allow(clippy::cast_possible_wrap, reason = "zigzag decoding reinterprets the bits")]
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }

    fn take(&mut self, n: usize) -> Result<&[u8], FooterError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(Self::eof)?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn binary(&mut self) -> Result<&[u8], FooterError> {
        let n = usize::try_from(self.varint()?).map_err(|_| Self::eof())?;
        self.take(n)
    }

    /// The next field's (id, type), or `None` at the struct's stop byte.
    fn field_header(&mut self, last_id: &mut i16) -> Result<Option<(i16, u8)>, FooterError> {
        let b = self.byte()?;
        let ty = b & 0x0f;
        if ty == 0 {
            return Ok(None);
        }
        let delta = b >> 4;
        let id = if delta == 0 {
            i16::try_from(self.varint_signed()?)
                .map_err(|_| FooterError::Malformed("a field id is out of range".into()))?
        } else {
            last_id.wrapping_add(i16::from(delta))
        };
        *last_id = id;
        Ok(Some((id, ty)))
    }

    fn list_header(&mut self) -> Result<(usize, u8), FooterError> {
        let b = self.byte()?;
        let elem = b & 0x0f;
        let short = usize::from(b >> 4);
        let count = if short == 15 {
            usize::try_from(self.varint()?).map_err(|_| Self::eof())?
        } else {
            short
        };
        Ok((count, elem))
    }

    /// Skip one value of compact type `ty`.
    fn skip(&mut self, ty: u8, depth: usize) -> Result<(), FooterError> {
        if depth > MAX_THRIFT_DEPTH {
            return Err(FooterError::Malformed("the footer nests too deeply".into()));
        }
        match ty {
            T_TRUE | T_FALSE => {}
            T_BYTE => {
                self.byte()?;
            }
            T_I16 | T_I32 | T_I64 => {
                self.varint()?;
            }
            T_DOUBLE => {
                self.take(8)?;
            }
            T_UUID => {
                self.take(16)?;
            }
            T_BINARY => {
                self.binary()?;
            }
            T_LIST | T_SET => {
                let (count, elem) = self.list_header()?;
                // Every element takes at least one byte.
                if count > self.bytes.len() - self.pos {
                    return Err(Self::eof());
                }
                for _ in 0..count {
                    // Booleans in a list are one byte each.
                    if matches!(elem, T_TRUE | T_FALSE) {
                        self.byte()?;
                    } else {
                        self.skip(elem, depth + 1)?;
                    }
                }
            }
            T_MAP => {
                let count = usize::try_from(self.varint()?).map_err(|_| Self::eof())?;
                if count > self.bytes.len() - self.pos {
                    return Err(Self::eof());
                }
                if count > 0 {
                    let kinds = self.byte()?;
                    for _ in 0..count {
                        self.skip(kinds >> 4, depth + 1)?;
                        self.skip(kinds & 0x0f, depth + 1)?;
                    }
                }
            }
            T_STRUCT => {
                let mut last_id = 0i16;
                while let Some((_, t)) = self.field_header(&mut last_id)? {
                    self.skip(t, depth + 1)?;
                }
            }
            other => return Err(FooterError::Malformed(format!("unknown Thrift type {other}"))),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> ReadLimits {
        ReadLimits {
            max_columns: 100,
            max_name_bytes: 32,
            max_cells: 1_000_000,
            max_value_bytes: 1000,
            max_depth: 8,
            max_decoded_bytes: 1 << 30,
        }
    }

    /// A compact-protocol footer: root group with the given elements (name,
    /// children) after it, and a row count.
    fn footer(elements: &[(&str, Option<i32>)], rows: i64) -> Vec<u8> {
        fn zig32(v: i32) -> u64 {
            u64::from(((v << 1) ^ (v >> 31)) as u32)
        }
        fn varint(out: &mut Vec<u8>, mut v: u64) {
            loop {
                let b = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    out.push(b);
                    return;
                }
                out.push(b | 0x80);
            }
        }
        let mut out = vec![0x15, 0x02]; // field 1, i32: version 1
        out.push(0x19); // field 2, list
        let n = elements.len();
        if n < 15 {
            out.push(((n as u8) << 4) | T_STRUCT);
        } else {
            out.push(0xf0 | T_STRUCT);
            varint(&mut out, n as u64);
        }
        for (name, children) in elements {
            out.push(0x48); // field 4, binary
            varint(&mut out, name.len() as u64);
            out.extend_from_slice(name.as_bytes());
            if let Some(c) = children {
                out.push(0x15); // field 5, i32
                varint(&mut out, zig32(*c));
            }
            out.push(0);
        }
        out.push(0x16); // field 3, i64
        varint(&mut out, ((rows << 1) ^ (rows >> 63)) as u64);
        out.push(0);
        out
    }

    #[test]
    fn a_flat_schema_is_counted() {
        let f = footer(&[("schema", Some(2)), ("a", None), ("b", None)], 500);
        let facts = footer_facts(&f, &limits()).unwrap();
        assert_eq!(
            facts,
            FooterFacts {
                rows: 500,
                columns: 2,
                depth: 0
            }
        );
    }

    #[test]
    fn nested_groups_are_measured_without_recursion() {
        // 20,000 nested groups: far over the limit, refused by depth.
        let mut elements = vec![("schema", Some(1))];
        for _ in 0..20_000 {
            elements.push(("g", Some(1)));
        }
        elements.push(("leaf", None));
        let err = footer_facts(&footer(&elements, 1), &limits()).unwrap_err();
        assert!(err.to_string().contains("limits.max_depth"), "{err}");
        // Within the limit it is accepted and measured.
        let ok = [("schema", Some(1)), ("g", Some(1)), ("h", Some(1)), ("leaf", None)];
        assert_eq!(footer_facts(&footer(&ok, 1), &limits()).unwrap().depth, 2);
    }

    #[test]
    fn too_many_columns_long_names_and_cells_are_refused() {
        let mut wide = vec![("schema", Some(101))];
        wide.extend(std::iter::repeat_n(("c", None), 101));
        assert!(
            footer_facts(&footer(&wide, 1), &limits())
                .unwrap_err()
                .to_string()
                .contains("max_columns")
        );
        let long = "x".repeat(33);
        let named = [("schema", Some(1)), (long.as_str(), None)];
        assert!(
            footer_facts(&footer(&named, 1), &limits())
                .unwrap_err()
                .to_string()
                .contains("max_name_bytes")
        );
        let facts = footer_facts(
            &footer(&[("schema", Some(2)), ("a", None), ("b", None)], 600_000),
            &limits(),
        )
        .unwrap();
        assert!(limits().check_cells(facts.rows, facts.columns).is_err());
    }

    #[test]
    fn ndjson_depth_and_line_length_are_bounded() {
        let deep = format!("{}1{}\n", "[".repeat(9), "]".repeat(9));
        let e = scan_ndjson(deep.as_bytes(), &limits()).unwrap_err();
        assert_eq!(e.line, Some(1));
        // Brackets inside strings do not count.
        let quoted = format!("{{\"a\": \"{}\"}}\n{{\"b\": [[1]]}}\n", "[".repeat(50));
        assert!(scan_ndjson(quoted.as_bytes(), &limits()).is_ok());
        let escaped = "{\"a\": \"\\\"[[[[[[[[[[\"}\n";
        assert!(scan_ndjson(escaped.as_bytes(), &limits()).is_ok());
        let long = format!("{{\"a\": 1}}\n{{\"a\": \"{}\"}}\n", "x".repeat(2000));
        assert_eq!(scan_ndjson(long.as_bytes(), &limits()).unwrap_err().line, Some(2));
    }

    proptest! {
        /// Any bytes: the footer walk returns (never panics, never recurses
        /// without bound).
        #[test]
        fn footer_walk_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = footer_facts(&bytes, &limits());
        }

        /// Any well-formed flat schema is counted exactly.
        #[test]
        fn flat_schemas_count_their_columns(n in 1usize..60, rows in 0i64..10_000) {
            let mut elements = vec![("schema", Some(n as i32))];
            elements.extend(std::iter::repeat_n(("c", None), n));
            let facts = footer_facts(&footer(&elements, rows), &limits()).unwrap();
            prop_assert_eq!(facts.columns, n);
            prop_assert_eq!(facts.rows, rows as u64);
        }

        /// NDJSON nested exactly `d` deep passes iff `d` is within the limit.
        #[test]
        fn ndjson_depth_is_exact(d in 0usize..20) {
            let line = format!("{}{}\n", "{\"a\":".repeat(d), "}".repeat(d));
            prop_assert_eq!(scan_ndjson(line.as_bytes(), &limits()).is_ok(), d <= 8);
        }
    }
}
