//! Arrow IPC decoding for the bytes that cross the host boundary.

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_schema::SchemaRef;

use crate::StageError;

fn bad(what: &str, e: impl std::fmt::Display) -> StageError {
    StageError::InvalidInput(format!("cannot decode {what} from the host: {e}"))
}

/// Decode the one record batch of a [`crate::Batch`]'s IPC stream.
///
/// The stream decoder keeps aligned buffers zero-copy over the bytes the host
/// copied into guest memory, so decoding costs no second copy.
pub fn decode_batch(bytes: Vec<u8>) -> Result<RecordBatch, StageError> {
    let mut decoder = StreamDecoder::new();
    let mut buffer = Buffer::from_vec(bytes);
    let mut batch = None;
    while !buffer.is_empty() {
        if let Some(b) = decoder.decode(&mut buffer).map_err(|e| bad("batch", e))? {
            if batch.is_some() {
                return Err(bad("batch", "the stream holds more than one record batch"));
            }
            batch = Some(b);
        }
    }
    decoder.finish().map_err(|e| bad("batch", e))?;
    batch.ok_or_else(|| bad("batch", "the stream holds no record batch"))
}

/// Decode a schema-only IPC stream (as passed to `check`).
pub fn decode_schema(bytes: &[u8]) -> Result<SchemaRef, StageError> {
    let mut decoder = StreamDecoder::new();
    let mut buffer = Buffer::from(bytes);
    while !buffer.is_empty() && decoder.schema().is_none() {
        decoder.decode(&mut buffer).map_err(|e| bad("schema", e))?;
    }
    decoder
        .schema()
        .ok_or_else(|| bad("schema", "the stream holds no schema message"))
}
