//! Read Arrow columns as plain values, whatever their physical type, so plugin
//! code can work with numbers and text without matching on every Arrow type.

use std::borrow::Cow;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrowPrimitiveType};
use arrow_schema::{DataType, TimeUnit};

fn prim<T: ArrowPrimitiveType>(array: &dyn Array, f: impl Fn(T::Native) -> f64) -> Vec<Option<f64>> {
    array.as_primitive::<T>().iter().map(|v| v.map(&f)).collect()
}

fn prim_or_nan<T: ArrowPrimitiveType>(array: &dyn Array, f: impl Fn(T::Native) -> f64) -> Vec<f64> {
    let array = array.as_primitive::<T>();
    // Every slot converted without a branch, then the nulls overwritten:
    // most columns have none.
    let mut out: Vec<f64> = array.values().iter().map(|v| f(*v)).collect();
    if let Some(nulls) = array.nulls() {
        for (slot, valid) in out.iter_mut().zip(nulls.iter()) {
            if !valid {
                *slot = f64::NAN;
            }
        }
    }
    out
}

/// `$convert::<ArrowType>(array, to_f64)` for every numeric and temporal
/// type; `return None` for any other.
macro_rules! by_number_type {
    ($array:expr, $convert:ident) => {
        match $array.data_type() {
            DataType::Int8 => $convert::<Int8Type>($array, f64::from),
            DataType::Int16 => $convert::<Int16Type>($array, f64::from),
            DataType::Int32 => $convert::<Int32Type>($array, f64::from),
            DataType::Int64 => $convert::<Int64Type>($array, |v| v as f64),
            DataType::UInt8 => $convert::<UInt8Type>($array, f64::from),
            DataType::UInt16 => $convert::<UInt16Type>($array, f64::from),
            DataType::UInt32 => $convert::<UInt32Type>($array, f64::from),
            DataType::UInt64 => $convert::<UInt64Type>($array, |v| v as f64),
            DataType::Float16 => $convert::<Float16Type>($array, f64::from),
            DataType::Float32 => $convert::<Float32Type>($array, f64::from),
            DataType::Float64 => $convert::<Float64Type>($array, |v| v),
            DataType::Date32 => $convert::<Date32Type>($array, f64::from),
            DataType::Date64 => $convert::<Date64Type>($array, |v| v as f64),
            DataType::Timestamp(TimeUnit::Second, _) => $convert::<TimestampSecondType>($array, |v| v as f64),
            DataType::Timestamp(TimeUnit::Millisecond, _) => $convert::<TimestampMillisecondType>($array, |v| v as f64),
            DataType::Timestamp(TimeUnit::Microsecond, _) => $convert::<TimestampMicrosecondType>($array, |v| v as f64),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => $convert::<TimestampNanosecondType>($array, |v| v as f64),
            _ => return None,
        }
    };
}

/// Numbers of a numeric or temporal column (dates as days, timestamps in their
/// unit since the epoch); `None` for other types. Nulls are `None` entries.
#[allow(
    clippy::cast_precision_loss,
    reason = "values become f64 by design, as statistics use them"
)]
pub fn numbers(array: &dyn Array) -> Option<Vec<Option<f64>>> {
    Some(by_number_type!(array, prim))
}

/// [`numbers`] with NaN for null: half the memory and no branch per value,
/// for code that skips NaN anyway.
#[allow(
    clippy::cast_precision_loss,
    reason = "values become f64 by design, as statistics use them"
)]
pub fn numbers_or_nan(array: &dyn Array) -> Option<Vec<f64>> {
    Some(by_number_type!(array, prim_or_nan))
}

/// The value at row `i` as text: strings as they are, numbers and booleans
/// formatted; `None` for null or for types without a text form.
pub fn text(array: &dyn Array, i: usize) -> Option<Cow<'_, str>> {
    if array.is_null(i) {
        return None;
    }
    match array.data_type() {
        DataType::Utf8 => Some(Cow::Borrowed(array.as_string::<i32>().value(i))),
        DataType::LargeUtf8 => Some(Cow::Borrowed(array.as_string::<i64>().value(i))),
        DataType::Utf8View => Some(Cow::Borrowed(array.as_string_view().value(i))),
        DataType::Boolean => Some(Cow::Borrowed(if array.as_boolean().value(i) {
            "true"
        } else {
            "false"
        })),
        DataType::Int8 => Some(Cow::Owned(array.as_primitive::<Int8Type>().value(i).to_string())),
        DataType::Int16 => Some(Cow::Owned(array.as_primitive::<Int16Type>().value(i).to_string())),
        DataType::Int32 => Some(Cow::Owned(array.as_primitive::<Int32Type>().value(i).to_string())),
        DataType::Int64 => Some(Cow::Owned(array.as_primitive::<Int64Type>().value(i).to_string())),
        DataType::UInt8 => Some(Cow::Owned(array.as_primitive::<UInt8Type>().value(i).to_string())),
        DataType::UInt16 => Some(Cow::Owned(array.as_primitive::<UInt16Type>().value(i).to_string())),
        DataType::UInt32 => Some(Cow::Owned(array.as_primitive::<UInt32Type>().value(i).to_string())),
        DataType::UInt64 => Some(Cow::Owned(array.as_primitive::<UInt64Type>().value(i).to_string())),
        DataType::Float32 => Some(Cow::Owned(array.as_primitive::<Float32Type>().value(i).to_string())),
        DataType::Float64 => Some(Cow::Owned(array.as_primitive::<Float64Type>().value(i).to_string())),
        DataType::Date32 => Some(Cow::Owned(array.as_primitive::<Date32Type>().value(i).to_string())),
        DataType::Date64 => Some(Cow::Owned(array.as_primitive::<Date64Type>().value(i).to_string())),
        _ => numbers(array).and_then(|v| v[i]).map(|v| Cow::Owned(v.to_string())),
    }
}

/// Whether the column holds text.
pub fn is_text(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{BooleanArray, Date32Array, Int64Array, StringArray};

    #[test]
    fn numbers_and_text_of_common_types() {
        let ints = Int64Array::from(vec![Some(3), None]);
        assert_eq!(numbers(&ints), Some(vec![Some(3.0), None]));
        assert_eq!(text(&ints, 0).as_deref(), Some("3"));
        assert_eq!(text(&ints, 1), None);
        let days = Date32Array::from(vec![Some(19_000)]);
        assert_eq!(numbers(&days), Some(vec![Some(19_000.0)]));
        let s = StringArray::from(vec!["a"]);
        assert_eq!(numbers(&s), None);
        assert_eq!(text(&s, 0).as_deref(), Some("a"));
        let b = BooleanArray::from(vec![true]);
        assert_eq!(text(&b, 0).as_deref(), Some("true"));
    }

    #[test]
    fn numbers_or_nan_are_numbers_with_nan_for_null() {
        // A sliced array: its values and null bits start past the buffers' heads.
        let ints = Int64Array::from(vec![Some(1), Some(3), None, Some(-2), None]).slice(1, 4);
        let got = numbers_or_nan(&ints).unwrap();
        let want = numbers(&ints).unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            match w {
                Some(w) => assert_eq!(g.to_bits(), w.to_bits()),
                None => assert!(g.is_nan()),
            }
        }
        assert_eq!(numbers_or_nan(&StringArray::from(vec!["a"])), None);
    }
}
