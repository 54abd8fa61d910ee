//! `builtin:protect`: act on a detector's findings so personal data never
//! reaches a generator or an output. Inputs: `[table, findings]`, where the
//! findings come from a detector that scanned that same table.
//!
//! - Columns classified as an entity are **faked** (realistic, format-preserving
//!   values of the same entity, the same real value always mapping to the same
//!   fake within a column), **hashed** (keyed SHA-256 pseudonyms) or
//!   **dropped**, per `action` (and the `hash` / `drop` / `keep` lists).
//! - Free-text columns holding PII (`MIXED`) get each span replaced by a fake of
//!   the same entity, or `<ENTITY>` (`text = "redact"`), or are dropped.
//! - `safe_harbor = true` generalises what HIPAA Safe Harbor (45 CFR
//!   §164.514(b)(2)) asks to generalise rather than remove: dates become their
//!   year, ages over 89 become 90 ("90 or older"), ZIP codes keep their first
//!   three digits (`000` for the prefixes with 20,000 people or fewer).

use doppel_vocab::entity;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Date32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Date32Type, Field, Int64Type, Schema, TimeUnit};
use doppel_generators::{SemanticType, fake};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::config::{ConfigField, ConfigValue, Settings, ValueType, field, get};
use crate::model::DetectorOutput;
use crate::plugin::bindings::types::Finding;
use crate::table::Table;
use crate::{Error, Result};

/// The `with` schema of `builtin:protect`.
pub fn schema() -> Vec<ConfigField> {
    let mut action = field(
        "action",
        ValueType::String,
        "What happens to a column holding one kind of personal data.",
    );
    action.allowed = ["fake", "hash", "drop"].map(str::to_owned).to_vec();
    action.default = Some(ConfigValue::String("fake".into()));
    let mut text = field(
        "text",
        ValueType::String,
        "What happens to personal data inside free text.",
    );
    text.allowed = ["fake", "redact", "drop"].map(str::to_owned).to_vec();
    text.default = Some(ConfigValue::String("fake".into()));
    let mut min = field(
        "min_confidence",
        ValueType::Float,
        "Findings below this confidence are ignored.",
    );
    min.default = Some(ConfigValue::Float(0.5));
    min.minimum = Some(0.0);
    min.maximum = Some(1.0);
    let hash = field(
        "hash",
        ValueType::Strings,
        "Columns to replace by keyed pseudonyms, flagged or not.",
    );
    let drop = field("drop", ValueType::Strings, "Columns to remove, flagged or not.");
    let keep = field(
        "keep",
        ValueType::Strings,
        "Flagged columns to leave as they are (you vouch they are not personal).",
    );
    let mut salt = field(
        "salt",
        ValueType::String,
        "Key of the pseudonyms; keep it secret (empty: derived from `seed`).",
    );
    salt.default = Some(ConfigValue::String(String::new()));
    let mut seed = field("seed", ValueType::Integer, "Seed of the fake values.");
    seed.default = Some(ConfigValue::Integer(0));
    seed.minimum = Some(0.0);
    let mut safe_harbor = field(
        "safe_harbor",
        ValueType::Boolean,
        "Generalise dates to years, ages over 89 to 90, ZIP codes to 3 digits (HIPAA Safe Harbor).",
    );
    safe_harbor.default = Some(ConfigValue::Boolean(false));
    vec![action, text, min, hash, drop, keep, salt, seed, safe_harbor]
}

/// What was done to one column.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ColumnAction {
    /// Column name.
    pub column: String,
    /// Entity found (`NONE` for columns acted on by name).
    pub entity: String,
    /// `fake`, `hash`, `drop`, `redact` or `keep`.
    pub action: String,
    /// Cells (or spans, for free text) changed.
    pub changed: u64,
}

fn strings<'a>(settings: &'a Settings, key: &str) -> &'a [String] {
    match get(settings, key) {
        Some(ConfigValue::Strings(s)) => s,
        _ => &[],
    }
}

fn string<'a>(settings: &'a Settings, key: &str, default: &'a str) -> &'a str {
    match get(settings, key) {
        Some(ConfigValue::String(s)) => s,
        _ => default,
    }
}

/// Stable per-column seed, so adding a column does not change the others' fakes.
fn column_seed(seed: u64, name: &str) -> u64 {
    name.bytes().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The prefix every value shares, less trailing digits (those are data that
/// happen to agree, not a code): `ACM-` of `ACM-2495235` and `ACM-2214294`.
fn constant_prefix(values: &std::collections::HashSet<String>) -> String {
    let mut iter = values.iter();
    let Some(first) = iter.next() else { return String::new() };
    let mut len = first.len();
    for v in iter {
        len = first
            .bytes()
            .zip(v.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    while len > 0 && !first.is_char_boundary(len) {
        len -= 1;
    }
    // A lone value has no constant part to speak of.
    if values.len() < 2 {
        return String::new();
    }
    first[..len].trim_end_matches(|c: char| c.is_ascii_digit()).to_owned()
}

/// Draws of a fake that may collide with a real value before giving up.
const FAKE_TRIES: usize = 32;

/// Fake every value of a column, consistently (same value, same fake).
///
/// A fake never equals a real value of the column (when one can be drawn in
/// [`FAKE_TRIES`]): a common fake name that happens to be a real customer's
/// would read as a leak in every copy check downstream, and would be one.
fn fake_column(array: &ArrayRef, entity: &str, rng: &mut ChaCha8Rng) -> Result<(ArrayRef, u64)> {
    let real: std::collections::HashSet<String> = match array.data_type() {
        DataType::Date32 | DataType::Timestamp(_, _) => Default::default(),
        _ => {
            let text = arrow::compute::cast(array, &DataType::Utf8)?;
            text.as_string::<i32>().iter().flatten().map(str::to_owned).collect()
        }
    };
    // Identifiers only a custom detector knows (`ACM-1234567`) are reshaped
    // character by character; the literal code every value starts with stays.
    let keep = if fake::KNOWN_ENTITIES.contains(&entity) {
        String::new()
    } else {
        constant_prefix(&real)
    };
    let draw = |v: &str, rng: &mut ChaCha8Rng| match v.strip_prefix(keep.as_str()) {
        Some(rest) if !keep.is_empty() => format!("{keep}{}", fake::fake(entity, rest, rng)),
        _ => fake::fake(entity, v, rng),
    };
    let mut memo: HashMap<String, String> = HashMap::new();
    let mut changed = 0u64;
    let mut fake_text = |v: &str, rng: &mut ChaCha8Rng| -> String {
        changed += 1;
        memo.entry(v.to_owned())
            .or_insert_with(|| {
                let mut candidate = draw(v, rng);
                for _ in 1..FAKE_TRIES {
                    if !real.contains(&candidate) {
                        break;
                    }
                    candidate = draw(v, rng);
                }
                candidate
            })
            .clone()
    };
    let out: ArrayRef = match array.data_type() {
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            Arc::new(a.iter().map(|v| v.map(|v| fake_text(v, rng))).collect::<StringArray>())
        }
        DataType::Int64 => {
            // Digits-only entities (phones, SSNs, cards stored as numbers) keep
            // their type; the fake keeps the digit count.
            let a = array.as_primitive::<Int64Type>();
            Arc::new(
                a.iter()
                    .map(|v| {
                        v.map(|v| {
                            fake_text(&v.to_string(), rng)
                                .chars()
                                .filter(char::is_ascii_digit)
                                .collect::<String>()
                                .parse::<i64>()
                                .unwrap_or(v.wrapping_add(1))
                        })
                    })
                    .collect::<Int64Array>(),
            )
        }
        DataType::Date32 => {
            let a = array.as_primitive::<Date32Type>();
            let mut shifts: HashMap<i32, i32> = HashMap::new();
            Arc::new(
                a.iter()
                    .map(|v| {
                        v.map(|d| {
                            changed += 1;
                            d + *shifts.entry(d).or_insert_with(|| rng.random_range(-182..=182))
                        })
                    })
                    .collect::<Date32Array>(),
            )
        }
        DataType::Timestamp(unit, _) => {
            let per_day: i64 = match unit {
                TimeUnit::Second => 86_400,
                TimeUnit::Millisecond => 86_400_000,
                TimeUnit::Microsecond => 86_400_000_000,
                TimeUnit::Nanosecond => 86_400_000_000_000,
            };
            let raw = arrow::compute::cast(array, &DataType::Int64)?;
            let a = raw.as_primitive::<Int64Type>();
            let shifted: Int64Array = a
                .iter()
                .map(|v| {
                    v.map(|t| {
                        changed += 1;
                        t + per_day * rng.random_range(-182..=182i64)
                    })
                })
                .collect();
            arrow::compute::cast(&(Arc::new(shifted) as ArrayRef), array.data_type())?
        }
        other => {
            // Anything else goes through text and back.
            let text = arrow::compute::cast(array, &DataType::Utf8)?;
            let a = text.as_string::<i32>();
            let faked: ArrayRef = Arc::new(a.iter().map(|v| v.map(|v| fake_text(v, rng))).collect::<StringArray>());
            arrow::compute::cast(&faked, other).unwrap_or(faked)
        }
    };
    Ok((out, changed))
}

fn hash_column(array: &ArrayRef, salt: &str) -> Result<(ArrayRef, u64)> {
    let text = arrow::compute::cast(array, &DataType::Utf8)?;
    let a = text.as_string::<i32>();
    let out: StringArray = a.iter().map(|v| v.map(|v| fake::pseudonym(salt, v))).collect();
    Ok((Arc::new(out), (a.len() - a.null_count()) as u64))
}

/// Replace or redact the spans found in a free-text column.
fn rewrite_text(
    array: &ArrayRef,
    column: &str,
    findings: &DetectorOutput,
    redact: bool,
    rng: &mut ChaCha8Rng,
) -> Result<(ArrayRef, u64)> {
    let mut by_row: HashMap<u64, Vec<&Finding>> = HashMap::new();
    for f in findings.findings.iter().filter(|f| f.column == column) {
        by_row.entry(f.row).or_default().push(f);
    }
    let text = arrow::compute::cast(array, &DataType::Utf8)?;
    let a = text.as_string::<i32>();
    let mut changed = 0u64;
    let mut out = Vec::with_capacity(a.len());
    for (row, value) in a.iter().enumerate() {
        let Some(value) = value else {
            out.push(None);
            continue;
        };
        let Some(spans) = by_row.get_mut(&(row as u64)) else {
            out.push(Some(value.to_owned()));
            continue;
        };
        // Right to left, so earlier offsets stay valid.
        spans.sort_by_key(|f| std::cmp::Reverse(f.start));
        let mut cell = value.to_owned();
        for f in spans.iter() {
            let (s, e) = (f.start as usize, f.end as usize);
            if e > cell.len() || s > e || !cell.is_char_boundary(s) || !cell.is_char_boundary(e) {
                return Err(Error::Stage {
                    stage: String::new(),
                    message: format!(
                        "a finding in `{column}` row {row} does not fit its cell; was the detector given this table?"
                    ),
                });
            }
            let replacement = if redact {
                format!("<{}>", f.entity)
            } else {
                fake::fake(&f.entity, &cell[s..e], rng)
            };
            cell.replace_range(s..e, &replacement);
            changed += 1;
        }
        out.push(Some(cell));
    }
    Ok((Arc::new(StringArray::from(out)), changed))
}

/// Three-digit ZIP prefixes covering 20,000 people or fewer (2000 census), which
/// Safe Harbor replaces by `000` (HHS de-identification guidance).
const RESTRICTED_ZIP3: [&str; 17] = [
    "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878", "879", "884", "890",
    "893",
];

/// Words of a column name (lower case, split on non-alphanumerics).
fn name_words(name: &str) -> Vec<String> {
    name.to_ascii_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A year in 1000..=2999 at the start of a date-like text (`1944-04-16`,
/// `1944/04/16`) or at its end (`16/04/1944`, `April 16, 1944`).
fn year_of_text(text: &str) -> Option<i32> {
    let digits: Vec<&str> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|d| !d.is_empty())
        .collect();
    let is_year = |d: &&&str| d.len() == 4 && d.starts_with(['1', '2']);
    digits
        .first()
        .filter(is_year)
        .or_else(|| digits.last().filter(is_year))
        .and_then(|d| d.parse().ok())
}

/// Safe Harbor generalisation of one column, if it is a date, an age or a ZIP
/// code: the new column, cells changed, the action's name and the semantic
/// type downstream stages should model it as.
fn safe_harbor_column(
    name: &str,
    array: &ArrayRef,
    semantic: SemanticType,
    entity: Option<&str>,
) -> Result<Option<(ArrayRef, u64, &'static str, SemanticType)>> {
    let words = name_words(name);
    let temporal = matches!(
        array.data_type(),
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
    );
    if temporal || semantic == SemanticType::Datetime || entity == Some(entity::DATE_TIME) {
        let years: arrow::array::Int32Array = if temporal {
            let days = arrow::compute::cast(array, &DataType::Date32)?;
            days.as_primitive::<Date32Type>()
                .iter()
                .map(|d| d.map(|d| fake::civil_from_days(i64::from(d)).0))
                .collect()
        } else {
            let text = arrow::compute::cast(array, &DataType::Utf8)?;
            text.as_string::<i32>()
                .iter()
                .map(|v| v.and_then(year_of_text))
                .collect()
        };
        let changed = (array.len() - array.null_count()) as u64;
        return Ok(Some((Arc::new(years), changed, "year", SemanticType::Numerical)));
    }
    let numeric = array.data_type().is_numeric();
    if numeric && words.iter().any(|w| w == "age") {
        let values = arrow::compute::cast(array, &DataType::Float64)?;
        let values = values.as_primitive::<arrow::datatypes::Float64Type>();
        let changed = values.iter().flatten().filter(|v| *v > 90.0).count() as u64;
        let capped: arrow::array::Float64Array = values.iter().map(|v| v.map(|v| v.min(90.0))).collect();
        let back = arrow::compute::cast(&(Arc::new(capped) as ArrayRef), array.data_type())?;
        return Ok(Some((back, changed, "top-code-90", semantic)));
    }
    let zip_named = words
        .iter()
        .any(|w| ["zip", "zipcode", "postcode", "postal"].contains(&w.as_str()))
        || name.to_ascii_lowercase().contains("zip_code");
    if zip_named {
        let text = arrow::compute::cast(array, &DataType::Utf8)?;
        let mut changed = 0u64;
        let out: StringArray = text
            .as_string::<i32>()
            .iter()
            .map(|v| {
                v.map(|v| {
                    changed += 1;
                    let digits: String = v.chars().filter(char::is_ascii_digit).collect();
                    // Integer columns lose leading zeros: pad US ZIPs back to five.
                    let digits = if numeric && digits.len() < 5 {
                        format!("{digits:0>5}")
                    } else {
                        digits
                    };
                    let zip3: String = digits.chars().take(3).collect();
                    if zip3.len() < 3 || RESTRICTED_ZIP3.contains(&zip3.as_str()) {
                        "000".to_owned()
                    } else {
                        zip3
                    }
                })
            })
            .collect();
        return Ok(Some((Arc::new(out), changed, "zip3", SemanticType::Categorical)));
    }
    Ok(None)
}

/// Protect `table` according to `findings`.
pub fn protect(
    stage: &str,
    table: &Table,
    findings: &DetectorOutput,
    settings: &Settings,
) -> Result<(Table, Vec<ColumnAction>)> {
    let fail = |message: String| Error::Stage {
        stage: stage.to_owned(),
        message,
    };
    let action = string(settings, "action", "fake");
    let text_action = string(settings, "text", "fake");
    let min_confidence = match get(settings, "min_confidence") {
        Some(ConfigValue::Float(f)) => *f,
        _ => 0.5,
    };
    let seed = match get(settings, "seed") {
        Some(ConfigValue::Integer(i)) => u64::try_from(*i).unwrap_or(0),
        _ => 0,
    };
    let safe_harbor = matches!(get(settings, "safe_harbor"), Some(ConfigValue::Boolean(true)));
    let salt = match string(settings, "salt", "") {
        "" => format!("doppel-seed-{seed}"),
        s => s.to_owned(),
    };
    let (hash_list, drop_list, keep_list) = (
        strings(settings, "hash"),
        strings(settings, "drop"),
        strings(settings, "keep"),
    );
    for name in hash_list.iter().chain(drop_list).chain(keep_list) {
        if table.schema.index_of(name).is_err() {
            return Err(Error::UnknownColumn {
                stage: stage.to_owned(),
                column: name.clone(),
                available: table
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    let rows = table.rows() as u64;
    if let Some(f) = findings.findings.iter().find(|f| f.row >= rows) {
        return Err(fail(format!(
            "a finding points at row {} of a {rows}-row table; give protect the table the detector scanned",
            f.row
        )));
    }
    let all = table.concat()?;
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    let mut semantics = Vec::new();
    let mut actions = Vec::new();
    for ((field, array), semantic) in table
        .schema
        .fields()
        .iter()
        .zip(all.columns())
        .zip(table.semantics.iter())
    {
        let name = field.name();
        let verdict = findings.columns.iter().find(|c| &c.column == name);
        let entity = verdict
            .filter(|c| c.entity != entity::NONE && f64::from(c.confidence) >= min_confidence)
            .map(|c| c.entity.as_str());
        let mut rng = ChaCha8Rng::seed_from_u64(column_seed(seed, name));
        let chosen = if keep_list.contains(name) {
            "keep"
        } else if drop_list.contains(name) {
            "drop"
        } else if hash_list.contains(name) {
            "hash"
        } else {
            match entity {
                None => "none",
                Some(entity::MIXED) => match text_action {
                    "drop" => "drop",
                    "redact" => "redact",
                    _ => "fake-text",
                },
                Some(_) => action,
            }
        };
        let record = |action: &str, changed: u64| ColumnAction {
            column: name.clone(),
            entity: entity.unwrap_or(entity::NONE).to_owned(),
            action: action.to_owned(),
            changed,
        };
        if chosen == "drop" {
            actions.push(record("drop", rows));
            continue;
        }
        let listed = keep_list.contains(name) || hash_list.contains(name);
        if safe_harbor
            && !listed
            && entity != Some(entity::MIXED)
            && let Some((new, changed, shown, semantic)) = safe_harbor_column(name, array, *semantic, entity)?
        {
            actions.push(record(shown, changed));
            fields.push(Field::new(
                name,
                new.data_type().clone(),
                field.is_nullable() || new.null_count() > 0,
            ));
            semantics.push(semantic);
            columns.push(new);
            continue;
        }
        let (new, changed, shown) = match chosen {
            "hash" => {
                let (a, n) = hash_column(array, &salt)?;
                (a, n, "hash")
            }
            "fake" => {
                let entity = entity.unwrap_or(entity::NONE);
                let (a, n) = fake_column(array, entity, &mut rng).map_err(|e| fail(e.to_string()))?;
                (a, n, "fake")
            }
            "redact" | "fake-text" => {
                if findings.rows_scanned < rows {
                    return Err(fail(format!(
                        "`{name}` holds personal data in free text, but the detector looked at {} of {rows} rows; \
                         set its `scan_all_text = true` or `text = \"drop\"` here",
                        findings.rows_scanned
                    )));
                }
                if (findings.findings.len() as u64) < findings.total_findings {
                    return Err(fail(format!(
                        "`{name}`: the detector found {} spans, more than the {} kept; use `text = \"drop\"`",
                        findings.total_findings,
                        findings.findings.len()
                    )));
                }
                let redact = chosen == "redact";
                let (a, n) = rewrite_text(array, name, findings, redact, &mut rng).map_err(|e| match e {
                    Error::Stage { message, .. } => fail(message),
                    other => other,
                })?;
                (a, n, if redact { "redact" } else { "fake" })
            }
            _ => (Arc::clone(array), 0, "keep"),
        };
        if chosen != "none" {
            actions.push(record(shown, changed));
        }
        fields.push(Field::new(
            name,
            new.data_type().clone(),
            field.is_nullable() || new.null_count() > 0,
        ));
        // Columns replaced value by value (fakes, pseudonyms) hold no real
        // value: downstream stages keep them as values (dates stay dates, so
        // they are still modelled), and the release rule leaves them alone.
        // Free text rewritten span by span is still real prose around the
        // spans, so it keeps its type.
        let replaced = matches!(chosen, "fake" | "hash") && *semantic != SemanticType::Datetime;
        semantics.push(if replaced { SemanticType::Pii } else { *semantic });
        columns.push(new);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new_with_options(
        Arc::clone(&schema),
        columns,
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(all.num_rows())),
    )?;
    Ok((
        Table {
            schema,
            batches: vec![batch],
            semantics: Arc::new(semantics),
            population_rows: table.population_rows,
        },
        actions,
    ))
}

/// `builtin:protect`.
#[derive(Debug, Clone, Copy)]
pub struct Protect;

impl super::Builtin for Protect {
    fn name(&self) -> &str {
        "protect"
    }

    fn summary(&self) -> &str {
        "Replace what a detector found with realistic fakes, pseudonyms or nothing."
    }

    fn kind(&self) -> super::Kind {
        super::Kind::Protect
    }

    fn schema(&self) -> Vec<ConfigField> {
        schema()
    }

    /// Stronger protection only: `keep`, `min_confidence` and `salt` stay fixed.
    fn user_settable(&self) -> Vec<&'static str> {
        vec!["seed", "action", "text", "drop", "hash"]
    }

    fn check_inputs(&self, check: &mut crate::stage::InputCheck<'_>) {
        use crate::spec::Diagnostic;
        use crate::stage::Produces;
        if check.kinds() != [Produces::Table, Produces::Findings] {
            let d = Diagnostic::at(
                check.at(),
                format!(
                    "stage `{}` (builtin:protect) takes a table and the findings of a detector that scanned it: \
                     `inputs = [\"<table>\", \"<detector>\"]`",
                    check.id()
                ),
            )
            .label("wrong inputs");
            check.push(d);
        } else if !check.scanned(1, 0) {
            // Cell findings point at rows of the table the detector read.
            let d = Diagnostic::at(
                check.input_span(1),
                format!(
                    "`{}` scanned a different table than `{}`; protect needs the findings about the table it changes",
                    check.input_id(1),
                    check.input_id(0)
                ),
            )
            .label("findings about another table");
            check.push(d);
        }
    }

    fn run(&self, ctx: &crate::stage::StageContext) -> Result<crate::model::Output> {
        let table = ctx.table(0)?;
        let Some((_, crate::model::Output::Findings(findings))) = ctx.inputs.get(1) else {
            return Err(Error::Internal(format!("stage `{}` has no findings input", ctx.id())));
        };
        let (protected, actions) = protect(ctx.id(), &table, findings, ctx.settings())?;
        ctx.progress(protected.rows() as u64, table.rows() as u64, "rows");
        Ok(crate::model::Output::Table(
            Arc::new(protected),
            crate::model::Provenance::Protected(Arc::new(actions)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::bindings::types::ColumnFinding;

    fn table() -> Table {
        let schema = Arc::new(Schema::new(vec![
            Field::new("email", DataType::Utf8, false),
            Field::new("phone", DataType::Int64, false),
            Field::new("notes", DataType::Utf8, false),
            Field::new("plan", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec!["a@x.org", "b@y.org", "a@x.org"])),
                Arc::new(Int64Array::from(vec![2_125_550_199, 3_125_550_100, 2_125_550_199])),
                Arc::new(StringArray::from(vec!["call Anna Smith", "ok", "mail b@y.org now"])),
                Arc::new(StringArray::from(vec!["pro", "free", "pro"])),
            ],
        )
        .unwrap();
        Table::infer(schema, vec![batch]).unwrap()
    }

    fn findings() -> DetectorOutput {
        let col = |c: &str, e: &str| ColumnFinding {
            column: c.into(),
            entity: e.into(),
            confidence: 0.9,
            scanned: 3,
            matched: 3,
            free_text: e == entity::MIXED,
            entities: vec![],
        };
        DetectorOutput {
            columns: vec![
                col("email", entity::EMAIL_ADDRESS),
                col("phone", entity::PHONE_NUMBER),
                col("notes", entity::MIXED),
                col("plan", entity::NONE),
            ],
            findings: vec![
                Finding {
                    row: 0,
                    column: "notes".into(),
                    start: 5,
                    end: 15,
                    entity: entity::PERSON.into(),
                    score: 0.8,
                },
                Finding {
                    row: 2,
                    column: "notes".into(),
                    start: 5,
                    end: 12,
                    entity: entity::EMAIL_ADDRESS.into(),
                    score: 1.0,
                },
            ],
            total_findings: 2,
            rows_scanned: 3,
        }
    }

    #[test]
    fn fakes_keep_types_consistency_and_untouched_columns() {
        let (t, actions) = protect("p", &table(), &findings(), &vec![]).unwrap();
        let b = t.concat().unwrap();
        let email = b.column(0).as_string::<i32>();
        assert!(
            email.value(0).contains("@example.")
                && email.value(0) == email.value(2)
                && email.value(0) != email.value(1)
        );
        assert_eq!(b.column(1).data_type(), &DataType::Int64);
        let phone = b.column(1).as_primitive::<Int64Type>();
        assert_ne!(phone.value(0), 2_125_550_199);
        assert_eq!(phone.value(0).to_string().len(), 10);
        let notes = b.column(2).as_string::<i32>();
        assert!(
            notes.value(0).starts_with("call ") && !notes.value(0).contains("Anna Smith"),
            "{}",
            notes.value(0)
        );
        assert_eq!(notes.value(1), "ok");
        assert!(
            notes.value(2).starts_with("mail ")
                && notes.value(2).ends_with(" now")
                && notes.value(2).contains("@example.")
        );
        assert_eq!(b.column(3).as_string::<i32>().value(0), "pro");
        let shown: Vec<(&str, &str)> = actions.iter().map(|a| (a.column.as_str(), a.action.as_str())).collect();
        assert_eq!(shown, vec![("email", "fake"), ("phone", "fake"), ("notes", "fake")]);
    }

    #[test]
    fn hash_drop_keep_and_redact() {
        let settings = vec![
            ("action".to_owned(), ConfigValue::String("hash".into())),
            ("text".to_owned(), ConfigValue::String("redact".into())),
            ("drop".to_owned(), ConfigValue::Strings(vec!["plan".into()])),
            ("keep".to_owned(), ConfigValue::Strings(vec!["phone".into()])),
            ("salt".to_owned(), ConfigValue::String("s3cret".into())),
        ];
        let (t, _) = protect("p", &table(), &findings(), &settings).unwrap();
        let names: Vec<&str> = t.schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, vec!["email", "phone", "notes"]);
        let b = t.concat().unwrap();
        let email = b.column(0).as_string::<i32>();
        assert_eq!(email.value(0), fake::pseudonym("s3cret", "a@x.org"));
        assert_eq!(b.column(1).as_primitive::<Int64Type>().value(0), 2_125_550_199);
        assert_eq!(b.column(2).as_string::<i32>().value(0), "call <PERSON>");
    }

    #[test]
    fn refuses_to_guess_about_unscanned_rows() {
        let mut f = findings();
        f.rows_scanned = 2;
        let err = protect("p", &table(), &f, &vec![]).unwrap_err().to_string();
        assert!(err.contains("scan_all_text"), "{err}");
    }

    #[test]
    fn safe_harbor_generalises_dates_ages_and_zip_codes() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("date_of_birth", DataType::Utf8, true),
            Field::new("admitted", DataType::Date32, true),
            Field::new("patient_age", DataType::Int64, false),
            Field::new("home_zip", DataType::Int64, false),
            Field::new("email", DataType::Utf8, false),
            Field::new("stay_days", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec![Some("1944-04-16"), Some("16/04/1931"), None])),
                // 2026-11-22 and 1970-01-01.
                Arc::new(Date32Array::from(vec![Some(20_414), Some(0), None])),
                Arc::new(Int64Array::from(vec![34, 95, 90])),
                // 02139 stored as an integer; 03601 is a restricted prefix.
                Arc::new(Int64Array::from(vec![2139, 3601, 90210])),
                Arc::new(StringArray::from(vec!["a@x.org", "b@y.org", "c@z.org"])),
                Arc::new(Int64Array::from(vec![3, 120, 7])),
            ],
        )
        .unwrap();
        let table = Table::infer(schema, vec![batch]).unwrap();
        let col = |c: &str, e: &str| ColumnFinding {
            column: c.into(),
            entity: e.into(),
            confidence: 0.9,
            scanned: 3,
            matched: 3,
            free_text: false,
            entities: vec![],
        };
        let findings = DetectorOutput {
            columns: vec![
                col("date_of_birth", entity::DATE_TIME),
                col("email", entity::EMAIL_ADDRESS),
            ],
            findings: vec![],
            total_findings: 0,
            rows_scanned: 3,
        };
        let settings = vec![("safe_harbor".to_owned(), ConfigValue::Boolean(true))];
        let (t, actions) = protect("p", &table, &findings, &settings).unwrap();
        let b = t.concat().unwrap();
        let years = b.column(0).as_primitive::<arrow::datatypes::Int32Type>();
        assert_eq!(years.iter().collect::<Vec<_>>(), [Some(1944), Some(1931), None]);
        let admitted = b.column(1).as_primitive::<arrow::datatypes::Int32Type>();
        assert_eq!(admitted.iter().collect::<Vec<_>>(), [Some(2025), Some(1970), None]);
        let ages = b.column(2).as_primitive::<Int64Type>();
        assert_eq!(ages.values().to_vec(), [34, 90, 90]);
        let zips = b.column(3).as_string::<i32>();
        assert_eq!(zips.iter().flatten().collect::<Vec<_>>(), ["021", "000", "902"]);
        // Identifiers are still faked; other numbers are left alone.
        assert!(b.column(4).as_string::<i32>().value(0).contains("@example."));
        assert_eq!(b.column(5).as_primitive::<Int64Type>().values().to_vec(), [3, 120, 7]);
        let shown: Vec<(&str, &str, u64)> = actions
            .iter()
            .map(|a| (a.column.as_str(), a.action.as_str(), a.changed))
            .collect();
        assert_eq!(
            shown,
            [
                ("date_of_birth", "year", 2),
                ("admitted", "year", 2),
                ("patient_age", "top-code-90", 1),
                ("home_zip", "zip3", 3),
                ("email", "fake", 3),
            ]
        );
        assert_eq!(t.semantics[0], SemanticType::Numerical);
    }

    #[test]
    fn constant_prefixes_are_codes_not_data() {
        let set = |v: &[&str]| {
            v.iter()
                .map(|s| (*s).to_owned())
                .collect::<std::collections::HashSet<_>>()
        };
        assert_eq!(constant_prefix(&set(&["ACM-2495235", "ACM-2214294"])), "ACM-");
        assert_eq!(constant_prefix(&set(&["ACM-2495235"])), "");
        assert_eq!(constant_prefix(&set(&["x1", "y2"])), "");
        assert_eq!(constant_prefix(&set(&["Émile", "Éa"])), "É");
    }
}
