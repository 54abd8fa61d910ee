//! What a column *means*, beyond its Arrow type: the shared vocabulary of the
//! profile, the generators and the metric plugins.

use doppel_vocab::semantic;
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};

/// The role a column plays, inferred from its type, values and name.
///
/// Follows SDV's metadata detection where it is sound (small-cardinality
/// non-negative integers are categorical, all-unique keys are ids) and adds free
/// text, which SDV files under categorical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SemanticType {
    /// A key: unique per row, no distribution worth modelling.
    Id,
    /// A small set of labels.
    Categorical,
    /// A quantity.
    Numerical,
    /// A date or timestamp.
    Datetime,
    /// True/false.
    Boolean,
    /// Prose: many words per cell, mostly unique.
    Text,
    /// Personal data a detector flagged (and a protect stage replaced): kept
    /// as values, never modelled as a distribution nor scored for fidelity.
    Pii,
}

impl SemanticType {
    /// The name used in reports and Arrow field metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            SemanticType::Id => semantic::ID,
            SemanticType::Categorical => semantic::CATEGORICAL,
            SemanticType::Numerical => semantic::NUMERICAL,
            SemanticType::Datetime => semantic::DATETIME,
            SemanticType::Boolean => semantic::BOOLEAN,
            SemanticType::Text => semantic::TEXT,
            SemanticType::Pii => semantic::PII,
        }
    }
}

impl fmt::Display for SemanticType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SemanticType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            semantic::ID => SemanticType::Id,
            semantic::CATEGORICAL => SemanticType::Categorical,
            semantic::NUMERICAL => SemanticType::Numerical,
            semantic::DATETIME => SemanticType::Datetime,
            semantic::BOOLEAN => SemanticType::Boolean,
            semantic::TEXT => SemanticType::Text,
            semantic::PII => SemanticType::Pii,
            other => return Err(format!("unknown semantic type `{other}`")),
        })
    }
}

/// Does the column name read like a key (`id`, `customer_id`, `orderKey`, `uuid`)?
pub fn name_suggests_id(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "id"
        || lower == "key"
        || lower.ends_with("_id")
        || lower.ends_with("-id")
        || lower.ends_with(" id")
        || lower.ends_with("_key")
        || lower.contains("uuid")
        || lower.contains("guid")
        || (name.len() > 2 && name.ends_with("Id"))
}

/// Infer the semantic type of every column of a batch, in column order.
pub fn infer_batch(batch: &arrow::array::RecordBatch) -> Vec<SemanticType> {
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| infer(f.name(), c.as_ref()))
        .collect()
}

/// Infer the semantic type of one column.
pub fn infer(name: &str, array: &dyn Array) -> SemanticType {
    let data_type = array.data_type();
    match data_type {
        DataType::Boolean => return SemanticType::Boolean,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => {
            return SemanticType::Datetime;
        }
        _ => {}
    }
    let non_null = array.len() - array.null_count();
    if data_type.is_integer() || data_type.is_floating() || matches!(data_type, DataType::Decimal128(_, _)) {
        return infer_number(name, array, non_null);
    }
    if matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
        return infer_text(name, array, non_null);
    }
    SemanticType::Categorical
}

fn infer_number(name: &str, array: &dyn Array, non_null: usize) -> SemanticType {
    let Ok(floats) = arrow::compute::cast(array, &DataType::Float64) else {
        return SemanticType::Numerical;
    };
    let values = floats.as_primitive::<Float64Type>();
    let mut distinct = HashSet::new();
    let mut whole = true;
    let mut non_negative = true;
    for v in values.iter().flatten() {
        whole &= v.fract() == 0.0;
        non_negative &= v >= 0.0;
        distinct.insert(v.to_bits());
    }
    // SDV's rule: small non-negative integer codes are labels, not quantities.
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let threshold = ((non_null as f64 / 10.0).round() as usize).min(10);
    if non_null > 5 && whole && non_negative && distinct.len() <= threshold {
        return SemanticType::Categorical;
    }
    // A key named as one, even with a few duplicates (a customer twice).
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let unique_share = distinct.len() as f64 / non_null.max(1) as f64;
    if non_null > 5 && whole && name_suggests_id(name) && unique_share >= 0.9 {
        return SemanticType::Id;
    }
    SemanticType::Numerical
}

fn infer_text(name: &str, array: &dyn Array, non_null: usize) -> SemanticType {
    let Ok(strings) = arrow::compute::cast(array, &DataType::Utf8) else {
        return SemanticType::Categorical;
    };
    let strings = strings.as_string::<i32>();
    let mut distinct = HashSet::new();
    let mut words = 0usize;
    let mut chars = 0usize;
    for s in strings.iter().flatten() {
        distinct.insert(s);
        words += s.split_whitespace().count();
        chars += s.len();
    }
    if non_null == 0 {
        return SemanticType::Categorical;
    }
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let (mean_words, mean_chars, unique_share) = (
        words as f64 / non_null as f64,
        chars as f64 / non_null as f64,
        distinct.len() as f64 / non_null as f64,
    );
    // Prose: several words per cell and mostly unique cells.
    if mean_words >= 4.0 || (mean_chars >= 40.0 && unique_share > 0.5) {
        return SemanticType::Text;
    }
    if non_null > 5
        && ((distinct.len() == non_null && mean_words <= 1.0) || (name_suggests_id(name) && unique_share >= 0.9))
    {
        return SemanticType::Id;
    }
    SemanticType::Categorical
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    #[test]
    fn small_integer_codes_are_categorical_like_sdv() {
        let a = Int64Array::from_iter_values((0..200).map(|i| i % 4));
        assert_eq!(infer("grade", &a), SemanticType::Categorical);
        let b = Int64Array::from_iter_values((0..200).map(|i| i % 40));
        assert_eq!(infer("age", &b), SemanticType::Numerical);
    }

    #[test]
    fn unique_keys_are_ids_only_with_evidence() {
        let ids = Int64Array::from_iter_values(100_000..100_200);
        assert_eq!(infer("customer_id", &ids), SemanticType::Id);
        let mostly_unique = Int64Array::from_iter_values((0..200).map(|i| 100_000 + i - i64::from(i % 50 == 0)));
        assert_eq!(infer("customer_id", &mostly_unique), SemanticType::Id);
        assert_eq!(infer("amount", &ids), SemanticType::Numerical);
        let codes = StringArray::from_iter_values((0..50).map(|i| format!("AB{i:04}")));
        assert_eq!(infer("code", &codes), SemanticType::Id);
    }

    #[test]
    fn prose_is_text_and_labels_are_categorical() {
        let notes =
            StringArray::from_iter_values((0..50).map(|i| format!("customer {i} called about the late delivery")));
        assert_eq!(infer("notes", &notes), SemanticType::Text);
        let plan = StringArray::from_iter_values((0..50).map(|i| ["free", "pro"][i % 2]));
        assert_eq!(infer("plan", &plan), SemanticType::Categorical);
    }

    #[test]
    fn names_round_trip() {
        for t in [
            SemanticType::Id,
            SemanticType::Categorical,
            SemanticType::Numerical,
            SemanticType::Datetime,
            SemanticType::Boolean,
            SemanticType::Text,
            SemanticType::Pii,
        ] {
            assert_eq!(t.as_str().parse::<SemanticType>(), Ok(t));
        }
    }
}
