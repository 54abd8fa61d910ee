//! Saved models: fit once, sample many.
//!
//! A fitted model that supports it ([`Model::save`]) becomes one
//! [safetensors](https://github.com/huggingface/safetensors) file, so any
//! safetensors reader can list what is in it:
//! - network weights are `F32` tensors named by their path
//!   (`generator.fc0.weight`);
//! - the training schema and each encoded column's list of values are Arrow
//!   IPC streams stored as `U8` tensors (`arrow.schema`, `arrow.values.3`):
//!   Arrow keeps every type (dates, decimals, dictionaries) exactly;
//! - integer arrays (a CART model's tree nodes and leaf distributions) are
//!   Arrow IPC streams too (`cart.tree.3.nodes`);
//! - the `__metadata__` map holds `doppel.format` ([`FORMAT`]),
//!   `doppel.generator` (`cart`, `ctgan`, `tvae`) and `doppel.state`, a JSON
//!   document with the sizes, mixtures, quantiles and encoding plan the
//!   tensors go with.
//!
//! [`load_model`] reads one back into a [`Model`] that samples exactly as the
//! fitted one did (same seed, same rows; a CART model's key columns are fresh
//! sequential keys, since key shapes come from real keys). A saved model holds no training
//! row, but it does hold real values — every category a column had and each
//! numeric column's range — so treat it like the synthetic data it makes.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Model, Result};

/// The format tag every saved model carries; a reader refuses other tags.
pub const FORMAT: &str = "doppel-model/1";

const KEY_FORMAT: &str = "doppel.format";
const KEY_GENERATOR: &str = "doppel.generator";
const KEY_STATE: &str = "doppel.state";

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidModel(message.into())
}

/// Collects a model's tensors and state, then writes the file.
pub(crate) struct ModelWriter {
    generator: String,
    tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
}

impl ModelWriter {
    /// A file for a `generator` model.
    pub(crate) fn new(generator: &str) -> ModelWriter {
        ModelWriter {
            generator: generator.to_owned(),
            tensors: Vec::new(),
        }
    }

    /// An `F32` tensor (row-major `data` of `shape`).
    #[cfg_attr(not(feature = "torch"), allow(dead_code, reason = "network weights"))]
    pub(crate) fn f32(&mut self, name: impl Into<String>, shape: Vec<usize>, data: &[f32]) {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensors.push((name.into(), Dtype::F32, shape, bytes));
    }

    /// An Arrow array, as a one-column IPC stream.
    pub(crate) fn array(&mut self, name: impl Into<String>, array: &ArrayRef) -> Result<()> {
        let schema = Arc::new(Schema::new(vec![Field::new("values", array.data_type().clone(), true)]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::clone(array)])?;
        let bytes = ipc(&schema, Some(&batch))?;
        let len = bytes.len();
        self.tensors.push((name.into(), Dtype::U8, vec![len], bytes));
        Ok(())
    }

    /// An Arrow schema, as an IPC stream with no batches.
    pub(crate) fn schema(&mut self, name: impl Into<String>, schema: &Schema) -> Result<()> {
        let bytes = ipc(schema, None)?;
        let len = bytes.len();
        self.tensors.push((name.into(), Dtype::U8, vec![len], bytes));
        Ok(())
    }

    /// The safetensors file, with `state` (what is not a tensor) as JSON.
    pub(crate) fn finish(self, state: &impl Serialize) -> Result<Vec<u8>> {
        let state = serde_json::to_string(state).map_err(|e| invalid(format!("state: {e}")))?;
        let metadata = HashMap::from([
            (KEY_FORMAT.to_owned(), FORMAT.to_owned()),
            (KEY_GENERATOR.to_owned(), self.generator),
            (KEY_STATE.to_owned(), state),
        ]);
        let views = self
            .tensors
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                TensorView::new(*dtype, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| invalid(format!("tensor `{name}`: {e:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::tensor::serialize(views, &Some(metadata)).map_err(|e| invalid(format!("{e:?}")))
    }
}

fn ipc(schema: &Schema, batch: Option<&RecordBatch>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut w = StreamWriter::try_new(&mut out, schema)?;
    if let Some(b) = batch {
        w.write(b)?;
    }
    w.finish()?;
    drop(w);
    Ok(out)
}

/// A saved model being read.
pub(crate) struct ModelReader<'a> {
    tensors: SafeTensors<'a>,
    /// The generator that wrote it.
    pub(crate) generator: String,
    state: String,
}

impl<'a> ModelReader<'a> {
    /// Check the container and its format tag.
    pub(crate) fn open(bytes: &'a [u8]) -> Result<ModelReader<'a>> {
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| {
            invalid(format!(
                "not a safetensors file ({e:?}); saved models are written by a generator stage with `save_model = true`"
            ))
        })?;
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| invalid(format!("unreadable header ({e:?})")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |key: &str| {
            meta.get(key)
                .cloned()
                .ok_or_else(|| invalid(format!("metadata has no `{key}`: not a doppel model")))
        };
        let format = get(KEY_FORMAT)?;
        if format != FORMAT {
            return Err(invalid(format!(
                "format `{format}` is not `{FORMAT}`; this build reads only its own format"
            )));
        }
        Ok(ModelReader {
            tensors,
            generator: get(KEY_GENERATOR)?,
            state: get(KEY_STATE)?,
        })
    }

    /// The JSON state.
    pub(crate) fn state<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.state).map_err(|e| invalid(format!("metadata `{KEY_STATE}`: {e}")))
    }

    fn view(&self, name: &str, dtype: Dtype) -> Result<TensorView<'_>> {
        let v = self
            .tensors
            .tensor(name)
            .map_err(|_| invalid(format!("tensor `{name}` is missing")))?;
        if v.dtype() != dtype {
            return Err(invalid(format!(
                "tensor `{name}` is {:?}, expected {dtype:?}",
                v.dtype()
            )));
        }
        Ok(v)
    }

    /// An `F32` tensor: its shape and row-major values.
    #[cfg_attr(not(feature = "torch"), allow(dead_code, reason = "network weights"))]
    pub(crate) fn f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let v = self.view(name, Dtype::F32)?;
        let values = v
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((v.shape().to_vec(), values))
    }

    /// An Arrow array written by [`ModelWriter::array`].
    pub(crate) fn array(&self, name: &str) -> Result<ArrayRef> {
        let v = self.view(name, Dtype::U8)?;
        let mut arrays = guarded(name, || {
            let reader = StreamReader::try_new(Cursor::new(v.data()), None)?;
            let mut arrays = Vec::new();
            for batch in reader {
                let batch = batch?;
                if batch.num_columns() != 1 {
                    return Err(invalid(format!("tensor `{name}` is not one array")));
                }
                arrays.push(Arc::clone(batch.column(0)));
            }
            Ok(arrays)
        })?;
        match arrays.len() {
            1 => Ok(arrays.remove(0)),
            n => Err(invalid(format!("tensor `{name}` holds {n} batches, expected 1"))),
        }
    }

    /// An Arrow schema written by [`ModelWriter::schema`].
    pub(crate) fn schema(&self, name: &str) -> Result<SchemaRef> {
        let v = self.view(name, Dtype::U8)?;
        guarded(
            name,
            || Ok(StreamReader::try_new(Cursor::new(v.data()), None)?.schema()),
        )
    }
}

/// Decode Arrow IPC from a file we did not just write. Arrow's reader
/// trusts parts of its input (a damaged type tag panics instead of
/// erroring), and one damaged model file must not take a server down.
fn guarded<T>(name: &str, decode: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode))
        .unwrap_or_else(|_| Err(invalid(format!("tensor `{name}` is damaged"))))
}

/// The generator a saved model file came from, after checking its format
/// tag: lets a caller say which build it needs before loading.
pub fn saved_generator(bytes: &[u8]) -> Result<String> {
    Ok(ModelReader::open(bytes)?.generator)
}

/// Load a model written by [`Model::save`]. Neural models go to the GPU
/// when one is available, as a fit does.
pub fn load_model(bytes: &[u8]) -> Result<Box<dyn Model>> {
    let reader = ModelReader::open(bytes)?;
    match reader.generator.as_str() {
        "cart" => crate::cart::load(&reader),
        #[cfg(feature = "torch")]
        "ctgan" => crate::neural::load_ctgan(&reader),
        #[cfg(feature = "torch")]
        "tvae" => crate::neural::load_tvae(&reader),
        #[cfg(not(feature = "torch"))]
        g @ ("ctgan" | "tvae") => Err(invalid(format!(
            "this is a `{g}` model; loading it needs a build with `--features torch`"
        ))),
        other => Err(invalid(format!("no generator `{other}` in this build saves models"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Date32Array, StringArray};
    use arrow::datatypes::DataType;

    #[test]
    fn round_trips_tensors_arrays_and_state() {
        let schema = Schema::new(vec![
            Field::new("plan", DataType::Utf8, false),
            Field::new("joined", DataType::Date32, true),
        ]);
        let values: ArrayRef = Arc::new(StringArray::from(vec![Some("free"), None, Some("pro")]));
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![19_000, 19_001]));
        let mut w = ModelWriter::new("ctgan");
        w.f32("net.w", vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, -6.5]);
        w.array("arrow.values.0", &values).unwrap();
        w.array("arrow.values.1", &dates).unwrap();
        w.schema("arrow.schema", &schema).unwrap();
        let bytes = w.finish(&vec![1.5f64, 2.0]).unwrap();

        assert_eq!(saved_generator(&bytes).unwrap(), "ctgan");
        let r = ModelReader::open(&bytes).unwrap();
        assert_eq!(r.state::<Vec<f64>>().unwrap(), vec![1.5, 2.0]);
        assert_eq!(
            r.f32("net.w").unwrap(),
            (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, -6.5])
        );
        assert_eq!(r.array("arrow.values.0").unwrap().as_ref(), values.as_ref());
        assert_eq!(r.array("arrow.values.1").unwrap().as_ref(), dates.as_ref());
        assert_eq!(r.schema("arrow.schema").unwrap().as_ref(), &schema);
        assert!(
            matches!(r.f32("arrow.schema"), Err(Error::InvalidModel(m)) if m.contains("expected F32")),
            "a U8 tensor is not read as weights"
        );
        assert!(matches!(r.f32("nope"), Err(Error::InvalidModel(m)) if m.contains("`nope` is missing")));
    }

    /// A minimal model file (safetensors 0.3 cannot read a file without tensors).
    fn one_tensor(generator: &str) -> Vec<u8> {
        let mut w = ModelWriter::new(generator);
        w.f32("w", vec![1], &[1.0]);
        w.finish(&()).unwrap()
    }

    #[test]
    fn refuses_what_is_not_a_doppel_model() {
        let err = load_model(b"hello").unwrap_err().to_string();
        assert!(err.contains("not a safetensors file"), "{err}");

        // A valid safetensors file without doppel's metadata.
        let plain = safetensors::tensor::serialize(
            [("w", TensorView::new(Dtype::F32, vec![1], &[0, 0, 128, 63]).unwrap())],
            &None,
        )
        .unwrap();
        let err = load_model(&plain).unwrap_err().to_string();
        assert!(err.contains("not a doppel model"), "{err}");

        let other = one_tensor("copula");
        let err = load_model(&other).unwrap_err().to_string();
        assert!(err.contains("no generator `copula`"), "{err}");
    }

    #[cfg(not(feature = "torch"))]
    #[test]
    fn a_neural_model_names_the_build_it_needs() {
        let bytes = one_tensor("ctgan");
        let err = load_model(&bytes).unwrap_err().to_string();
        assert!(err.contains("--features torch"), "{err}");
    }
}
