//! Keys: unique, format-preserving, never copied from the real table.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use rand::RngExt;

use crate::Result;

/// How to make fresh keys for one id column.
#[derive(Debug)]
pub(crate) enum IdModel {
    Integer {
        min: i64,
        max: i64,
        real: HashSet<i64>,
        data_type: DataType,
        null_share: f64,
    },
    Text {
        /// Up to 1000 real values whose shapes (digit/letter positions) are reused.
        templates: Vec<String>,
        /// Per template length: non-digit characters every real key of that
        /// length shares at a position (a prefix like `CU-`), kept as they are.
        fixed: std::collections::HashMap<usize, Vec<Option<char>>>,
        real: HashSet<String>,
        data_type: DataType,
        null_share: f64,
    },
}

impl IdModel {
    /// Learn an id column; `None` if its type is neither integer nor string.
    pub(crate) fn fit(column: &ArrayRef) -> Result<Option<IdModel>> {
        let dt = column.data_type().clone();
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let null_share = column.null_count() as f64 / column.len().max(1) as f64;
        if dt.is_integer() {
            let ints = cast(column, &DataType::Int64)?;
            let ints = ints.as_primitive::<Int64Type>();
            let real: HashSet<i64> = ints.iter().flatten().collect();
            let (Some(&min), Some(&max)) = (real.iter().min(), real.iter().max()) else {
                return Ok(None);
            };
            return Ok(Some(IdModel::Integer {
                min,
                max,
                real,
                data_type: dt,
                null_share,
            }));
        }
        if matches!(dt, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
            let strings = cast(column, &DataType::Utf8)?;
            let strings = strings.as_string::<i32>();
            let real: HashSet<String> = strings.iter().flatten().map(str::to_owned).collect();
            let templates: Vec<String> = strings.iter().flatten().take(1000).map(str::to_owned).collect();
            if templates.is_empty() {
                return Ok(None);
            }
            let mut fixed: std::collections::HashMap<usize, Vec<Option<char>>> = std::collections::HashMap::new();
            for t in &templates {
                let chars: Vec<char> = t.chars().collect();
                match fixed.get_mut(&chars.len()) {
                    // Digits are the counting part of a key and always vary.
                    None => {
                        fixed.insert(
                            chars.len(),
                            chars.into_iter().map(|c| (!c.is_ascii_digit()).then_some(c)).collect(),
                        );
                    }
                    Some(shared) => {
                        for (slot, c) in shared.iter_mut().zip(chars) {
                            if *slot != Some(c) {
                                *slot = None;
                            }
                        }
                    }
                }
            }
            return Ok(Some(IdModel::Text {
                templates,
                fixed,
                real,
                data_type: dt,
                null_share,
            }));
        }
        Ok(None)
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            IdModel::Integer { min, max, .. } => format!("fresh unique integer keys in [{min}, {max}]"),
            IdModel::Text { .. } => "fresh unique keys shaped like the real ones".to_owned(),
        }
    }

    pub(crate) fn sample<R: rand::Rng + ?Sized>(&self, rows: usize, rng: &mut R) -> Result<ArrayRef> {
        match self {
            IdModel::Integer {
                min,
                max,
                real,
                data_type,
                null_share,
            } => {
                let span = u64::try_from(i128::from(*max) - i128::from(*min) + 1).unwrap_or(u64::MAX);
                let mut used: HashSet<i64> = HashSet::with_capacity(rows);
                // Fresh keys avoid the real ones, so no synthetic row points at a
                // real person's key; if the range is too tight, extend past max.
                let roomy = span / 4 >= (rows as u64).saturating_add(real.len() as u64);
                let mut next = max.saturating_add(1);
                let values: Int64Array = (0..rows)
                    .map(|_| {
                        if rng.random::<f64>() < *null_share {
                            return None;
                        }
                        if roomy {
                            loop {
                                let v = min.saturating_add_unsigned(rng.random_range(0..span));
                                if !real.contains(&v) && used.insert(v) {
                                    return Some(v);
                                }
                            }
                        }
                        let v = next;
                        next = next.saturating_add(1);
                        used.insert(v);
                        Some(v)
                    })
                    .collect();
                Ok(cast(&(Arc::new(values) as ArrayRef), data_type)?)
            }
            IdModel::Text {
                templates,
                fixed,
                real,
                data_type,
                null_share,
            } => {
                let mut used: HashSet<String> = HashSet::with_capacity(rows);
                let values: StringArray = (0..rows)
                    .map(|i| {
                        if rng.random::<f64>() < *null_share {
                            return None;
                        }
                        let template = &templates[rng.random_range(0..templates.len())];
                        let keep = fixed
                            .get(&template.chars().count())
                            .map(Vec::as_slice)
                            .unwrap_or_default();
                        for _ in 0..50 {
                            let v = reshape(template, keep, rng);
                            if !real.contains(&v) && !used.contains(&v) {
                                used.insert(v.clone());
                                return Some(v);
                            }
                        }
                        // Shapes with few free characters run out: add a suffix.
                        let v = format!("{}-{i}", reshape(template, keep, rng));
                        used.insert(v.clone());
                        Some(v)
                    })
                    .collect();
                Ok(cast(&(Arc::new(values) as ArrayRef), data_type)?)
            }
        }
    }
}

/// Replace every digit and ASCII letter not in `keep` with a random one of the
/// same class.
fn reshape<R: rand::Rng + ?Sized>(template: &str, keep: &[Option<char>], rng: &mut R) -> String {
    template
        .chars()
        .enumerate()
        .map(|(i, c)| match c {
            _ if keep.get(i).is_some_and(Option::is_some) => c,
            '0'..='9' => char::from(b'0' + rng.random_range(0..10u8)),
            'a'..='z' => char::from(b'a' + rng.random_range(0..26u8)),
            'A'..='Z' => char::from(b'A' + rng.random_range(0..26u8)),
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn text_keys_keep_their_shape_and_never_repeat_real_ones() {
        let real: ArrayRef = Arc::new(StringArray::from_iter_values((0..100).map(|i| format!("CU-{i:05}"))));
        let model = IdModel::fit(&real).unwrap().unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let out = model.sample(500, &mut rng).unwrap();
        let out = out.as_string::<i32>();
        let real: HashSet<&str> = real.as_string::<i32>().iter().flatten().collect();
        let mut seen = HashSet::new();
        for v in out.iter().flatten() {
            assert!(v.starts_with("CU-") && v.len() == 8, "{v}");
            assert!(!real.contains(v));
            assert!(seen.insert(v.to_owned()));
        }
    }

    #[test]
    fn integer_keys_are_unique_and_fresh() {
        let real: ArrayRef = Arc::new(Int64Array::from_iter_values((0..1000).map(|i| 100_000 + i * 7)));
        let model = IdModel::fit(&real).unwrap().unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let out = model.sample(1000, &mut rng).unwrap();
        let out = out.as_primitive::<Int64Type>();
        let real: HashSet<i64> = real.as_primitive::<Int64Type>().iter().flatten().collect();
        let mut seen = HashSet::new();
        for v in out.iter().flatten() {
            assert!(!real.contains(&v), "{v} copies a real key");
            assert!(seen.insert(v));
        }
        assert_eq!(seen.len(), 1000);
    }
}
