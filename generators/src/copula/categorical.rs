//! Categorical columns as frequency-ordered intervals of [0, 1] (SDV's
//! `UniformEncoder`): category k owns an interval as wide as its share, most
//! frequent first; a value's score is uniform within its interval.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::compute::take;
use arrow::row::{RowConverter, SortField};
use rand::RngExt;

use crate::Result;

/// The distinct values of a column (null included as a value) with their shares.
#[derive(Debug, Clone)]
pub(crate) struct Categories {
    /// Distinct values, most frequent first, in the column's own Arrow type.
    values: ArrayRef,
    /// `cum[k]..cum[k + 1]` is category k's interval; `cum[0] = 0`, last = 1.
    cum: Vec<f64>,
}

impl Categories {
    /// Learn the categories of `array`; returns them with each row's category.
    pub(crate) fn fit(array: &ArrayRef) -> Result<(Categories, Vec<u32>)> {
        // The row format gives every Arrow type (strings, booleans, dates, and
        // null) a byte key, so one code path handles them all.
        let converter = RowConverter::new(vec![SortField::new(array.data_type().clone())])?;
        let rows = converter.convert_columns(std::slice::from_ref(array))?;
        let mut index: HashMap<&[u8], u32> = HashMap::new();
        let mut first: Vec<u32> = Vec::new();
        let mut counts: Vec<u64> = Vec::new();
        let mut raw_codes = Vec::with_capacity(array.len());
        for (i, row) in rows.iter().enumerate() {
            let next = u32::try_from(first.len()).expect("fewer than 2^32 categories");
            let code = *index.entry(row.data()).or_insert(next);
            if code == next {
                first.push(u32::try_from(i).expect("fewer than 2^32 rows"));
                counts.push(0);
            }
            counts[code as usize] += 1;
            raw_codes.push(code);
        }
        // Most frequent first; ties keep first-seen order so the result is
        // deterministic.
        let mut order: Vec<usize> = (0..first.len()).collect();
        order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(first[a].cmp(&first[b])));
        let mut rank = vec![0u32; order.len()];
        for (r, &c) in order.iter().enumerate() {
            rank[c] = u32::try_from(r).expect("fewer than 2^32 categories");
        }
        let indices = UInt32Array::from_iter_values(order.iter().map(|&c| first[c]));
        let values = take(array.as_ref(), &indices, None)?;
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let n = array.len() as f64;
        let mut cum = Vec::with_capacity(order.len() + 1);
        cum.push(0.0);
        let mut acc = 0u64;
        for &c in &order {
            acc += counts[c];
            #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
            cum.push(acc as f64 / n);
        }
        if let Some(last) = cum.last_mut() {
            *last = 1.0;
        }
        let codes = raw_codes.into_iter().map(|c| rank[c as usize]).collect();
        Ok((Categories { values, cum }, codes))
    }

    /// Reorder the intervals by `keys[k]` (ascending; ties keep the current
    /// order), returning `new_code[old_code]`. Interval widths stay the shares.
    pub(crate) fn reorder_by(&mut self, keys: &[f64]) -> Result<Vec<u32>> {
        let k = self.len();
        let shares: Vec<f64> = (0..k).map(|i| self.cum[i + 1] - self.cum[i]).collect();
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]).then(a.cmp(&b)));
        let indices = UInt32Array::from_iter_values(
            order
                .iter()
                .map(|&i| u32::try_from(i).expect("fewer than 2^32 categories")),
        );
        self.values = take(self.values.as_ref(), &indices, None)?;
        let mut cum = Vec::with_capacity(k + 1);
        cum.push(0.0);
        let mut acc = 0.0;
        for &i in &order {
            acc += shares[i];
            cum.push(acc);
        }
        if let Some(last) = cum.last_mut() {
            *last = 1.0;
        }
        self.cum = cum;
        let mut new_code = vec![0u32; k];
        for (new, &old) in order.iter().enumerate() {
            new_code[old] = u32::try_from(new).expect("fewer than 2^32 categories");
        }
        Ok(new_code)
    }

    /// The distinct values (most frequent first, or as reordered) and the
    /// interval bounds, for a saved model.
    pub(crate) fn parts(&self) -> (&ArrayRef, &[f64]) {
        (&self.values, &self.cum)
    }

    /// Categories from [`Categories::parts`] read back from a file: checked,
    /// so a damaged file is an error rather than a panic while sampling.
    pub(crate) fn from_parts(values: ArrayRef, cum: Vec<f64>) -> std::result::Result<Categories, String> {
        if values.is_empty() {
            return Err("no categories".to_owned());
        }
        if cum.len() != values.len() + 1 {
            return Err(format!("{} bounds for {} categories", cum.len(), values.len()));
        }
        let ordered = cum.windows(2).all(|w| w[0] <= w[1]);
        if !ordered || cum[0] != 0.0 || cum[values.len()] != 1.0 {
            return Err("category shares are not increasing from 0 to 1".to_owned());
        }
        Ok(Categories { values, cum })
    }

    /// Number of categories.
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// A uniform score for a row of category `code`.
    pub(crate) fn to_uniform<R: rand::Rng + ?Sized>(&self, code: u32, rng: &mut R) -> f64 {
        let k = code as usize;
        self.cum[k] + rng.random::<f64>() * (self.cum[k + 1] - self.cum[k])
    }

    /// The category whose interval holds `u`.
    pub(crate) fn category(&self, u: f64) -> u32 {
        let k = self.cum[1..].partition_point(|&c| c <= u);
        u32::try_from(k.min(self.len() - 1)).expect("fewer than 2^32 categories")
    }

    /// Category `k` as text (`None` for the null category).
    pub(crate) fn display(&self, k: usize) -> Option<String> {
        if self.values.is_null(k) {
            return None;
        }
        arrow::util::display::array_value_to_string(&self.values, k).ok()
    }

    /// Build the output column from category codes.
    pub(crate) fn materialize(&self, codes: &[u32]) -> Result<ArrayRef> {
        let idx = UInt32Array::from(codes.to_vec());
        Ok(take(self.values.as_ref(), &idx, None)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, StringArray};
    use std::sync::Arc;

    #[test]
    fn frequency_ordered_intervals_with_null_as_a_value() {
        let a: ArrayRef = Arc::new(StringArray::from(vec![
            Some("b"),
            Some("a"),
            None,
            Some("a"),
            Some("a"),
            Some("b"),
        ]));
        let (c, codes) = Categories::fit(&a).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(codes, vec![1, 0, 2, 0, 0, 1]);
        assert_eq!(c.category(0.1), 0);
        assert_eq!(c.category(0.6), 1);
        assert_eq!(c.category(0.99), 2);
        let out = c.materialize(&[0, 2, 1]).unwrap();
        let mut reordered = c.clone();
        // Put the null category first, then "b", then "a".
        let remap = reordered.reorder_by(&[3.0, 2.0, 1.0]).unwrap();
        assert_eq!(remap, vec![2, 1, 0]);
        assert_eq!(reordered.category(0.1), 0);
        let first = reordered.materialize(&[0]).unwrap();
        assert!(first.is_null(0));
        assert!((reordered.cum[1] - 1.0 / 6.0).abs() < 1e-12);
        let out = out.as_string::<i32>();
        assert_eq!(out.value(0), "a");
        assert!(out.is_null(1));
        assert_eq!(out.value(2), "b");
    }
}
