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

/// Numbers of a numeric or temporal column (dates as days, timestamps in their
/// unit since the epoch); `None` for other types. Nulls are `None` entries.
#[allow(
    clippy::cast_precision_loss,
    reason = "values become f64 by design, as statistics use them"
)]
pub fn numbers(array: &dyn Array) -> Option<Vec<Option<f64>>> {
    Some(match array.data_type() {
        DataType::Int8 => prim::<Int8Type>(array, f64::from),
        DataType::Int16 => prim::<Int16Type>(array, f64::from),
        DataType::Int32 => prim::<Int32Type>(array, f64::from),
        DataType::Int64 => prim::<Int64Type>(array, |v| v as f64),
        DataType::UInt8 => prim::<UInt8Type>(array, f64::from),
        DataType::UInt16 => prim::<UInt16Type>(array, f64::from),
        DataType::UInt32 => prim::<UInt32Type>(array, f64::from),
        DataType::UInt64 => prim::<UInt64Type>(array, |v| v as f64),
        DataType::Float16 => prim::<Float16Type>(array, f64::from),
        DataType::Float32 => prim::<Float32Type>(array, f64::from),
        DataType::Float64 => prim::<Float64Type>(array, |v| v),
        DataType::Date32 => prim::<Date32Type>(array, f64::from),
        DataType::Date64 => prim::<Date64Type>(array, |v| v as f64),
        DataType::Timestamp(TimeUnit::Second, _) => prim::<TimestampSecondType>(array, |v| v as f64),
        DataType::Timestamp(TimeUnit::Millisecond, _) => prim::<TimestampMillisecondType>(array, |v| v as f64),
        DataType::Timestamp(TimeUnit::Microsecond, _) => prim::<TimestampMicrosecondType>(array, |v| v as f64),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => prim::<TimestampNanosecondType>(array, |v| v as f64),
        _ => return None,
    })
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
}
