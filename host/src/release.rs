//! The release rule: no generator releases a real identifying value verbatim,
//! whatever a detector found or missed.
//!
//! Detection is evidence, not a guarantee: a column of lower-case names, a
//! `first` column, a court case number can all slip past a detector, and a
//! generator that samples categories would then hand real people's names to
//! whoever gets the twin. So every non-DP generator stage learns from a
//! *guarded* copy of its input, and what it samples is finished here, with
//! two rules on every text column:
//!
//! - **Identifier-like** (at least [`UNIQUE_SHARE`] of its non-null values
//!   distinct, or no value held by more than [`RARE_ROWS`] rows): the
//!   generator never sees a value. Each is replaced by a marker holding only
//!   the value's coarse shape (a name's word count and case, an identifier's
//!   letter/digit pattern — its letters too where many rows share them, as
//!   in `MRN-`; free text becomes its first 64 characters' pattern), and
//!   every marker it samples becomes a generated
//!   value of that shape: a fake name for name-like columns, a random
//!   identifier of the same pattern otherwise — re-drawn until it equals no
//!   real value of the column when the real table is at hand.
//! - **Rare values** (held by at most [`RARE_ROWS`] real rows): replaced by
//!   one marker before fitting; each sampled marker becomes a value drawn from
//!   the column's other sampled values, which are all shared by more than
//!   [`RARE_ROWS`] real rows.
//!
//! Columns a `builtin:protect` stage replaced value by value (semantic type
//! `pii`: fakes that never equal a real value, or keyed pseudonyms) hold no
//! real value and are left as they are. Because the markers are all a model
//! ever learns, a saved model holds no rare value either, and
//! `builtin:sample` finishes its rows the same way.
//! Differentially private generators are exempt: a data-dependent rewrite of
//! their input or output would void their guarantee, and their own partition
//! selection releases only values many rows share. The privacy stage measures
//! what was released regardless (`RareValueCopyRate`).

use doppel_vocab::entity;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::table::Table;
use crate::{Error, Result};

/// A value held by at most this many real rows is rare: released, it would
/// point at those few people.
pub const RARE_ROWS: usize = 3;

/// A column with at least this share of distinct non-null values is
/// identifier-like: its values name rows, not categories.
pub const UNIQUE_SHARE: f64 = 0.5;

/// Every marker starts with this control character, which real text almost
/// never holds (a real value that does is treated as a marker: replaced,
/// never released as it is).
const MARK: char = '\u{1}';
const RARE_MARKER: &str = "\u{1}rare";
const ID_PREFIX: &str = "\u{1}id:";

/// What the guard did to one column before fitting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnGuard {
    /// Every value replaced; released values are generated.
    Identifier {
        /// Column name.
        column: String,
        /// `person`, `first name`, `last name`, `e-mail address` or `pattern`.
        kind: &'static str,
    },
    /// Values held by at most [`RARE_ROWS`] rows replaced.
    Rare {
        /// Column name.
        column: String,
        /// Distinct values replaced.
        values: usize,
        /// Rows that held them.
        rows: usize,
    },
}

impl ColumnGuard {
    /// One line for the model's notes.
    pub fn note(&self) -> String {
        match self {
            ColumnGuard::Identifier { column, kind } => {
                format!("`{column}` is identifier-like: every released value is a generated {kind}, never a real one")
            }
            ColumnGuard::Rare { column, values, rows } => format!(
                "`{column}`: {values} rare value(s) ({rows} rows, each value held by at most {RARE_ROWS}) are never released"
            ),
        }
    }
}

/// The real values a release must not contain, per column: all of an
/// identifier-like column's, the rare ones of the others.
#[derive(Debug, Clone, Default)]
pub struct Forbidden {
    columns: HashMap<String, HashSet<String>>,
}

impl Forbidden {
    /// Whether `value` of `column` must not be released.
    pub fn contains(&self, column: &str, value: &str) -> bool {
        self.columns.get(column).is_some_and(|s| s.contains(value))
    }
}

/// A table prepared for a generator, and what was done to it.
#[derive(Debug)]
pub struct Guarded {
    /// What the generator learns from.
    pub table: Table,
    /// Columns changed.
    pub columns: Vec<ColumnGuard>,
    /// The real values its release must avoid.
    pub forbidden: Forbidden,
}

/// How a name-like column's values are written.
fn case_of(value: &str) -> &'static str {
    let letters: Vec<char> = value.chars().filter(|c| c.is_alphabetic()).collect();
    if letters.iter().all(|c| c.is_lowercase()) {
        "lower"
    } else if letters.iter().all(|c| c.is_uppercase()) {
        "upper"
    } else {
        "title"
    }
}

/// What kind of generated value a column of `name` gets: from its name, as
/// person-name columns are named in the tables people upload.
pub fn kind_of(name: &str) -> &'static str {
    let tokens: Vec<String> = name
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect();
    let has = |w: &[&str]| tokens.iter().any(|t| w.contains(&t.as_str()));
    let joined = tokens.concat();
    if has(&[
        "first",
        "given",
        "forename",
        "firstname",
        "givenname",
        "nombre",
        "vorname",
        "prenom",
        "prénom",
        "nome",
    ]) || joined.contains("firstname")
        || joined.contains("givenname")
    {
        "first name"
    } else if has(&[
        "last",
        "surname",
        "family",
        "lastname",
        "familyname",
        "apellido",
        "apellidos",
        "nachname",
        "cognome",
    ]) || joined.contains("lastname")
        || joined.contains("surname")
        || joined.contains("familyname")
    {
        "last name"
    } else if has(&[
        "name",
        "fullname",
        "person",
        "patient",
        "customer",
        "client",
        "employee",
        "defendant",
        "nom",
    ]) {
        "person"
    } else {
        "pattern"
    }
}

/// Placeholders of a pattern: a digit, a lower-case and an upper-case letter
/// to draw. Control characters, so no literal character of a value is
/// mistaken for one.
const DIGIT: char = '\u{2}';
const LOWER: char = '\u{3}';
const UPPER: char = '\u{4}';

/// A value's pattern with every letter and digit a placeholder
/// (`13011352CF10A` → 8 digits, 2 upper, 2 digits, 1 upper), at most 64
/// characters.
fn class_pattern(value: &str) -> String {
    value
        .chars()
        .take(64)
        .map(|c| match c {
            '0'..='9' => DIGIT,
            c if c.is_uppercase() => UPPER,
            c if c.is_alphabetic() => LOWER,
            other => other,
        })
        .collect()
}

/// A value's skeleton: digits drawn, letters kept (`MRN-004521` →
/// `MRN-` and 6 digits), at most 64 characters.
fn skeleton(value: &str) -> String {
    value
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_digit() { DIGIT } else { c })
        .collect()
}

/// Fill a pattern's placeholders with random characters of their class.
fn fill(pattern: &str, rng: &mut ChaCha8Rng) -> String {
    pattern
        .chars()
        .map(|c| match c {
            DIGIT => char::from(b'0' + rng.random_range(0..10u8)),
            LOWER => char::from(b'a' + rng.random_range(0..26u8)),
            UPPER => char::from(b'A' + rng.random_range(0..26u8)),
            other => other,
        })
        .collect()
}

/// The marker an identifier value is replaced by: its kind and coarse
/// shape. A code keeps its letters when many rows share its skeleton (a
/// fixed `MRN-` prefix, a court's `CF` division): that is format, not
/// identity; otherwise only letter classes remain.
fn id_marker(kind: &'static str, value: &str, skeletons: &HashMap<String, usize>) -> String {
    if kind == "pattern" {
        let s = skeleton(value);
        let shape = if skeletons.get(&s).is_some_and(|n| *n > RARE_ROWS) {
            s
        } else {
            class_pattern(value)
        };
        format!("{ID_PREFIX}pattern:{shape}")
    } else {
        let words = value.split_whitespace().count().clamp(1, 4);
        format!("{ID_PREFIX}{kind}:{words}:{}", case_of(value))
    }
}

/// Prepare `train` for a generator (see the module docs).
pub fn before_fit(train: &Table) -> Result<Guarded> {
    let batch = train.concat()?;
    let mut columns = Vec::with_capacity(batch.num_columns());
    let mut changed = Vec::new();
    let mut forbidden = Forbidden::default();
    let mut semantics: Vec<doppel_generators::SemanticType> = train.semantics.as_ref().clone();
    for (ci, (field, column)) in batch.schema().fields().iter().zip(batch.columns()).enumerate() {
        let protected = train.semantics.get(ci) == Some(&doppel_generators::SemanticType::Pii);
        if column.data_type() != &DataType::Utf8 || protected {
            columns.push(Arc::clone(column));
            continue;
        }
        let values = column.as_string::<i32>();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for v in values.iter().flatten() {
            *counts.entry(v).or_default() += 1;
        }
        let non_null = values.len() - values.null_count();
        if non_null == 0 {
            columns.push(Arc::clone(column));
            continue;
        }
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let unique = counts.len() as f64 >= UNIQUE_SHARE * non_null as f64;
        let all_rare = counts.values().all(|c| *c <= RARE_ROWS);
        let name = field.name().clone();
        if unique || all_rare {
            let mut kind = kind_of(&name);
            // E-mail addresses get addresses under a reserved domain, not
            // random letters around an `@` (which could name a real domain).
            #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
            let emails = values
                .iter()
                .flatten()
                .filter(|v| v.contains('@') && v.rsplit('@').next().is_some_and(|d| d.contains('.')))
                .count() as f64
                >= 0.8 * non_null as f64;
            if kind == "pattern" && emails {
                kind = "e-mail address";
            }
            let mut skeletons: HashMap<String, usize> = HashMap::new();
            for v in values.iter().flatten() {
                *skeletons.entry(skeleton(v)).or_default() += 1;
            }
            let replaced: StringArray = values
                .iter()
                .map(|v| v.map(|v| id_marker(kind, v, &skeletons)))
                .collect();
            forbidden
                .columns
                .insert(name.clone(), counts.keys().map(|v| (*v).to_owned()).collect());
            changed.push(ColumnGuard::Identifier { column: name, kind });
            columns.push(Arc::new(replaced) as ArrayRef);
            // Markers are labels to sample as they are, whatever the column
            // was (an id a generator would re-pattern, prose it would resample).
            if let Some(s) = semantics.get_mut(ci) {
                *s = doppel_generators::SemanticType::Categorical;
            }
            continue;
        }
        let rare: HashSet<&str> = counts
            .iter()
            .filter(|(_, c)| **c <= RARE_ROWS)
            .map(|(v, _)| *v)
            .collect();
        if rare.is_empty() {
            columns.push(Arc::clone(column));
            continue;
        }
        let rows = rare.iter().map(|v| counts[v]).sum();
        let replaced: StringArray = values
            .iter()
            .map(|v| v.map(|v| if rare.contains(v) { RARE_MARKER } else { v }))
            .collect();
        forbidden
            .columns
            .insert(name.clone(), rare.iter().map(|v| (*v).to_owned()).collect());
        changed.push(ColumnGuard::Rare {
            column: name,
            values: rare.len(),
            rows,
        });
        columns.push(Arc::new(replaced) as ArrayRef);
    }
    let guarded = RecordBatch::try_new(batch.schema(), columns)?;
    Ok(Guarded {
        table: Table {
            schema: Arc::clone(&train.schema),
            batches: vec![guarded],
            semantics: Arc::new(semantics),
            population_rows: train.population_rows,
        },
        columns: changed,
        forbidden,
    })
}

fn recase(value: &str, case: &str) -> String {
    match case {
        "lower" => value.to_lowercase(),
        "upper" => value.to_uppercase(),
        _ => value.to_owned(),
    }
}

/// A generated value for an identifier marker (`kind:…` after the prefix).
fn generate(marker: &str, rng: &mut ChaCha8Rng) -> String {
    let mut parts = marker.splitn(3, ':');
    let kind = parts.next().unwrap_or("pattern");
    if kind == "pattern" {
        return fill(marker.strip_prefix("pattern:").unwrap_or_default(), rng);
    }
    if kind == "e-mail address" {
        return doppel_generators::fake::fake(entity::EMAIL_ADDRESS, "", rng);
    }
    let words: usize = parts.next().and_then(|w| w.parse().ok()).unwrap_or(2);
    let case = parts.next().unwrap_or("title");
    let name = match (kind, words) {
        ("first name", 1) => doppel_generators::fake::first_name(rng).to_owned(),
        ("last name", 1) | ("person", 1) => doppel_generators::fake::last_name(rng).to_owned(),
        ("first name", n) => (0..n)
            .map(|_| doppel_generators::fake::first_name(rng))
            .collect::<Vec<_>>()
            .join(" "),
        ("last name", n) => (0..n)
            .map(|_| doppel_generators::fake::last_name(rng))
            .collect::<Vec<_>>()
            .join(" "),
        (_, n) => {
            let mut parts: Vec<&str> = (1..n).map(|_| doppel_generators::fake::first_name(rng)).collect();
            parts.push(doppel_generators::fake::last_name(rng));
            parts.join(" ")
        }
    };
    recase(&name, case)
}

/// Finish a sampled batch for release: every identifier marker becomes a
/// generated value (never one of `forbidden`, when known), every rare
/// marker a value drawn from the column's other sampled values, and any
/// forbidden value a generator produced anyway is replaced the same way.
pub fn after_sample(batch: &RecordBatch, forbidden: Option<&Forbidden>, seed: u64) -> Result<RecordBatch> {
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (i, (field, column)) in batch.schema().fields().iter().zip(batch.columns()).enumerate() {
        if column.data_type() != &DataType::Utf8 {
            columns.push(Arc::clone(column));
            continue;
        }
        let values = column.as_string::<i32>();
        let name = field.name().as_str();
        let banned = |v: &str| forbidden.is_some_and(|f| f.contains(name, v));
        let needs = |v: &str| v.starts_with(MARK) || banned(v);
        if !values.iter().flatten().any(needs) {
            columns.push(Arc::clone(column));
            continue;
        }
        // One stream per column, in column order: the same seed finishes
        // the same sample the same way.
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0072_656c_6561_7365 ^ (i as u64).wrapping_mul(0x9E37_79B9));
        let donors: Vec<&str> = values.iter().flatten().filter(|v| !needs(v)).collect();
        let mut out: Vec<Option<String>> = Vec::with_capacity(values.len());
        for v in values.iter() {
            let Some(v) = v else {
                out.push(None);
                continue;
            };
            if !needs(v) {
                out.push(Some(v.to_owned()));
                continue;
            }
            let replacement = if let Some(marker) = v.strip_prefix(ID_PREFIX) {
                let mut fresh = generate(marker, &mut rng);
                // A lexicon name can coincide with a real one: draw again;
                // past 32 draws, add random letters, one more each time, so
                // the value soon outgrows every real one (the loop ends).
                let mut extra = 0;
                while banned(&fresh) {
                    fresh = if extra < 32 {
                        generate(marker, &mut rng)
                    } else {
                        let tail: String = std::iter::repeat_n(LOWER, extra - 31).collect();
                        fill(&format!("{} {tail}", class_pattern(&fresh)), &mut rng)
                    };
                    extra += 1;
                }
                fresh
            } else if donors.is_empty() {
                fill(&[LOWER; 8].iter().collect::<String>(), &mut rng)
            } else {
                donors[rng.random_range(0..donors.len())].to_owned()
            };
            out.push(Some(replacement));
        }
        columns.push(Arc::new(StringArray::from(out)) as ArrayRef);
    }
    RecordBatch::try_new(batch.schema(), columns).map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};
    use proptest::prelude::*;

    fn table(columns: Vec<(&str, Vec<Option<String>>)>) -> Table {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(n, _)| Field::new(*n, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let arrays: Vec<ArrayRef> = columns
            .into_iter()
            .map(|(_, v)| Arc::new(StringArray::from(v)) as ArrayRef)
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&schema), arrays).unwrap();
        Table::infer(schema, vec![batch]).unwrap()
    }

    fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
        batch
            .column_by_name(column)
            .unwrap()
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect()
    }

    /// The letter/digit pattern of a value as `a`, `A` and `9`.
    fn pattern_of(value: &str) -> String {
        class_pattern(value)
            .chars()
            .map(|c| match c {
                DIGIT => '9',
                LOWER => 'a',
                UPPER => 'A',
                other => other,
            })
            .collect()
    }

    /// The worst generator: it releases its training rows as they are.
    fn copy_everything(guarded: &Guarded, forbidden: &Forbidden) -> RecordBatch {
        after_sample(&guarded.table.concat().unwrap(), Some(forbidden), 7).unwrap()
    }

    #[test]
    fn names_and_case_numbers_are_never_released() {
        let names = [
            "miguel hernandez",
            "ana st. surin",
            "john o'neil",
            "li wei",
            "jo brown",
            "al green",
        ];
        let n = 60;
        let t = table(vec![
            ("name", (0..n).map(|i| Some(format!("{} {i}", names[i % 6]))).collect()),
            ("first", (0..n).map(|i| Some(format!("first{i}"))).collect()),
            (
                "case_number",
                (0..n).map(|i| Some(format!("1301{i:04}CF10A"))).collect(),
            ),
            (
                "race",
                (0..n)
                    .map(|i| Some(["white", "black", "asian"][i % 3].to_owned()))
                    .collect(),
            ),
        ]);
        let g = before_fit(&t).unwrap();
        let kinds: Vec<&ColumnGuard> = g.columns.iter().collect();
        assert_eq!(kinds.len(), 3, "{kinds:?}");
        let learned = g.table.concat().unwrap();
        for c in ["name", "first", "case_number"] {
            assert!(
                strings(&learned, c).iter().flatten().all(|v| v.starts_with(MARK)),
                "{c}"
            );
        }
        assert_eq!(
            strings(&learned, "race"),
            strings(&t.concat().unwrap(), "race"),
            "frequent values are kept"
        );
        let released = copy_everything(&g, &g.forbidden);
        let real = t.concat().unwrap();
        for c in ["name", "first", "case_number"] {
            let real: HashSet<Option<String>> = strings(&real, c).into_iter().collect();
            for v in strings(&released, c) {
                assert!(
                    !real.contains(&v) && !v.as_deref().unwrap_or("").starts_with(MARK),
                    "{c}: {v:?}"
                );
            }
        }
        // Names keep their case and word count; case numbers their pattern.
        let name = strings(&released, "name")[0].clone().unwrap();
        assert!(
            name.chars().all(|c| !c.is_uppercase()) && name.split_whitespace().count() == 3,
            "{name}"
        );
        let case = strings(&released, "case_number")[0].clone().unwrap();
        assert_eq!(pattern_of(&case), "99999999AA99A", "{case}");
        assert_eq!(&case[8..10], "CF", "a prefix many rows share is format, kept: {case}");
    }

    #[test]
    fn rare_categories_are_replaced_by_frequent_ones() {
        let mut values: Vec<Option<String>> = (0..40).map(|i| Some(["a", "b"][i % 2].to_owned())).collect();
        values.push(Some("holand-netherlands".into()));
        values.push(None);
        let t = table(vec![("country", values)]);
        let g = before_fit(&t).unwrap();
        assert_eq!(
            g.columns,
            vec![ColumnGuard::Rare {
                column: "country".into(),
                values: 1,
                rows: 1
            }]
        );
        let released = copy_everything(&g, &g.forbidden);
        let out = strings(&released, "country");
        assert_eq!(out.len(), 42);
        assert!(
            out[..41].iter().all(|v| matches!(v.as_deref(), Some("a" | "b"))),
            "{out:?}"
        );
        assert_eq!(out[41], None, "nulls stay null");
    }

    #[test]
    fn protected_columns_are_left_alone() {
        let mut t = table(vec![(
            "email",
            (0..20).map(|i| Some(format!("fake{i}@example.com"))).collect(),
        )]);
        t.semantics = Arc::new(vec![doppel_generators::SemanticType::Pii]);
        let g = before_fit(&t).unwrap();
        assert!(g.columns.is_empty());
        assert_eq!(g.table.concat().unwrap(), t.concat().unwrap());
    }

    #[test]
    fn without_the_real_table_markers_still_become_generated_values() {
        let t = table(vec![("surname", (0..20).map(|i| Some(format!("Name{i}"))).collect())]);
        let g = before_fit(&t).unwrap();
        let out = after_sample(&g.table.concat().unwrap(), None, 1).unwrap();
        assert!(strings(&out, "surname").iter().flatten().all(|v| !v.starts_with(MARK)));
        assert_eq!(
            after_sample(&g.table.concat().unwrap(), None, 1).unwrap(),
            out,
            "seeded"
        );
    }

    proptest! {
        /// For any table of text columns and even a generator that copies
        /// its input, no released value of a mostly-unique column equals a
        /// real one, and no released value anywhere is rare in the real table.
        #[test]
        fn no_real_rare_value_is_ever_released(
            rows in 2usize..80,
            cardinality in proptest::collection::vec(1usize..100, 1..4),
            seed in any::<u64>(),
        ) {
            let columns: Vec<(String, Vec<Option<String>>)> = cardinality
                .iter()
                .enumerate()
                .map(|(c, k)| {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ c as u64);
                    let values = (0..rows)
                        .map(|_| {
                            let x = rng.random_range(0..*k);
                            (x % 7 != 6).then(|| format!("v{c}-{x}"))
                        })
                        .collect();
                    (format!("col{c}"), values)
                })
                .collect();
            let t = table(columns.iter().map(|(n, v)| (n.as_str(), v.clone())).collect());
            let g = before_fit(&t).unwrap();
            let released = copy_everything(&g, &g.forbidden);
            for (name, real) in &columns {
                let mut counts: HashMap<&str, usize> = HashMap::new();
                for v in real.iter().flatten() {
                    *counts.entry(v.as_str()).or_default() += 1;
                }
                let non_null = real.iter().flatten().count();
                let unique = counts.len() as f64 >= UNIQUE_SHARE * non_null as f64;
                for v in strings(&released, name).into_iter().flatten() {
                    prop_assert!(!v.starts_with(MARK));
                    if let Some(c) = counts.get(v.as_str()) {
                        prop_assert!(!unique, "{name}: `{v}` is a real value of an identifier-like column");
                        prop_assert!(*c > RARE_ROWS, "{name}: `{v}` is held by {c} real rows");
                    }
                }
            }
        }
    }
}
