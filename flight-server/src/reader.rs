//! Parquet objects read straight from the platform's object store, for
//! footers (schemas, row counts) and for streaming tables to `DoGet`.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

/// Footer bytes fetched in the first request: most footers fit, so the
/// metadata costs one ranged read instead of two.
const FOOTER_PREFETCH: usize = 64 * 1024;

/// An [`AsyncFileReader`] over one object.
#[derive(Debug)]
pub struct StoreReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl StoreReader {
    /// A reader for the object at `path` (one HEAD request for its size).
    pub async fn open(store: Arc<dyn ObjectStore>, path: Path) -> Result<StoreReader, object_store::Error> {
        let size = store.head(&path).await?.size;
        Ok(StoreReader { store, path, size })
    }
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move { self.store.get_range(&self.path, range).await.map_err(external) }.boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        // The store coalesces nearby ranges into fewer requests.
        async move { self.store.get_ranges(&self.path, &ranges).await.map_err(external) }.boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let meta = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(FOOTER_PREFETCH))
                .load_and_finish(&mut *self, size)
                .await?;
            Ok(Arc::new(meta))
        }
        .boxed()
    }
}

/// Batches decoded ahead of the consumer: decoding Parquet on one task while
/// another encodes and sends Flight data keeps both cores busy on `DoGet`.
const READ_AHEAD: usize = 4;

/// The object's Arrow schema and its rows as a stream of batches of
/// `batch_rows`, decoded by a task of its own up to [`READ_AHEAD`] batches
/// ahead. Dropping the stream stops the task.
pub async fn batches(
    store: Arc<dyn ObjectStore>,
    path: Path,
    batch_rows: usize,
) -> parquet::errors::Result<(
    arrow::datatypes::SchemaRef,
    futures::stream::BoxStream<'static, parquet::errors::Result<arrow::array::RecordBatch>>,
)> {
    use futures::StreamExt;
    let reader = StoreReader::open(store, path).await.map_err(external)?;
    let builder = parquet::arrow::ParquetRecordBatchStreamBuilder::new(reader)
        .await?
        .with_batch_size(batch_rows);
    let schema = Arc::clone(builder.schema());
    let mut decoded = builder.build()?;
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    tokio::spawn(async move {
        while let Some(item) = decoded.next().await {
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Ok((schema, stream.boxed()))
}

/// Blocks fetched ahead of the one being sent.
const IPC_READ_AHEAD: usize = 4;

/// Why an IPC file cannot be forwarded as it is.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// The store failed (or the object is missing).
    #[error(transparent)]
    Store(#[from] object_store::Error),
    /// Not an Arrow IPC file we can forward.
    #[error("not a forwardable Arrow IPC file: {0}")]
    Format(String),
}

/// Stream an Arrow IPC *file* from the store as Flight data without decoding
/// it: the footer lists every record batch's block (metadata + body), and
/// each block's metadata and body become one `FlightData` message, exactly
/// what an IPC stream would carry. Only the footer is parsed. Files with
/// dictionaries are refused ([`IpcError::Format`]): their ids would have to
/// be matched to the schema message, and our serving copies have none.
pub async fn ipc_flight_data(
    store: Arc<dyn ObjectStore>,
    path: Path,
) -> Result<
    (
        arrow::datatypes::SchemaRef,
        futures::stream::BoxStream<'static, Result<arrow_flight::FlightData, object_store::Error>>,
    ),
    IpcError,
> {
    use futures::StreamExt;
    let format = |m: &str| IpcError::Format(m.to_owned());
    let size = store.head(&path).await?.size;
    if size < 10 + 8 {
        return Err(format("too short"));
    }
    let tail = store.get_range(&path, size - 10..size).await?;
    let tail: [u8; 10] = tail.as_ref().try_into().map_err(|_| format("short read"))?;
    let footer_len = arrow::ipc::reader::read_footer_length(tail).map_err(|e| IpcError::Format(e.to_string()))? as u64;
    if footer_len + 10 > size {
        return Err(format("footer longer than the file"));
    }
    let footer_bytes = store.get_range(&path, size - 10 - footer_len..size - 10).await?;
    let footer = arrow::ipc::root_as_footer(&footer_bytes).map_err(|e| IpcError::Format(e.to_string()))?;
    if footer.dictionaries().is_some_and(|d| !d.is_empty()) {
        return Err(format("it has dictionaries"));
    }
    let schema = Arc::new(arrow::ipc::convert::fb_to_schema(
        footer.schema().ok_or_else(|| format("no schema"))?,
    ));
    let blocks: Vec<(u64, u64, u64)> = footer
        .recordBatches()
        .map(|v| {
            v.iter()
                .map(|b| {
                    (
                        u64::try_from(b.offset()).unwrap_or(u64::MAX),
                        u64::try_from(b.metaDataLength()).unwrap_or(u64::MAX),
                        u64::try_from(b.bodyLength()).unwrap_or(u64::MAX),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if blocks.iter().any(|(o, m, b)| {
        o.checked_add(*m)
            .and_then(|x| x.checked_add(*b))
            .is_none_or(|end| end > size)
    }) {
        return Err(format("a block lies outside the file"));
    }
    let stream = futures::stream::iter(blocks)
        .map(move |(offset, meta, body)| {
            let (store, path) = (Arc::clone(&store), path.clone());
            async move {
                let block = store.get_range(&path, offset..offset + meta + body).await?;
                let meta = usize::try_from(meta).unwrap_or(usize::MAX).min(block.len());
                // Metadata is `[0xFFFFFFFF] <i32 length> <flatbuffer, padded>`
                // (the continuation marker is absent in files before 0.15).
                let header_start = if block.starts_with(&[0xff; 4]) { 8 } else { 4 };
                Ok(arrow_flight::FlightData {
                    flight_descriptor: None,
                    data_header: block.slice(header_start.min(meta)..meta),
                    app_metadata: Bytes::new(),
                    data_body: block.slice(meta..),
                })
            }
        })
        .buffered(IPC_READ_AHEAD)
        .boxed();
    Ok((schema, stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, DictionaryArray, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};
    use arrow_flight::decode::FlightRecordBatchStream;
    use futures::{StreamExt, TryStreamExt};
    use object_store::local::LocalFileSystem;

    fn batches() -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        (0..3)
            .map(|k| {
                let n: Int64Array = (k * 100..k * 100 + 100).collect();
                let s: StringArray = (0..100).map(|i| (i % 7 != 0).then(|| format!("v{i}"))).collect();
                RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(n), Arc::new(s)]).unwrap()
            })
            .collect()
    }

    fn write(dir: &std::path::Path, name: &str, batches: &[RecordBatch]) {
        let f = std::fs::File::create(dir.join(name)).unwrap();
        let mut w = arrow::ipc::writer::FileWriter::try_new(f, &batches[0].schema()).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
    }

    #[tokio::test]
    async fn forwarded_ipc_blocks_decode_to_the_stored_batches() {
        let dir = tempfile::tempdir().unwrap();
        let stored = batches();
        write(dir.path(), "t.arrows", &stored);
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let (schema, data) = ipc_flight_data(Arc::clone(&store), Path::from("t.arrows"))
            .await
            .unwrap();
        assert_eq!(schema, stored[0].schema());
        let first = arrow_flight::FlightData::from(arrow_flight::SchemaAsIpc::new(
            &schema,
            &arrow::ipc::writer::IpcWriteOptions::default(),
        ));
        let all = futures::stream::iter([Ok(first)])
            .chain(data.map_err(|e| arrow_flight::error::FlightError::ExternalError(Box::new(e))));
        let got: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(all)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(got, stored);
    }

    #[tokio::test]
    async fn dictionaries_truncation_and_missing_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dict: DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
        let schema = Arc::new(Schema::new(vec![Field::new("d", dict.data_type().clone(), false)]));
        let b = RecordBatch::try_new(schema, vec![Arc::new(dict)]).unwrap();
        write(dir.path(), "dict.arrows", &[b]);
        write(dir.path(), "ok.arrows", &batches());
        let whole = std::fs::read(dir.path().join("ok.arrows")).unwrap();
        std::fs::write(dir.path().join("cut.arrows"), &whole[..whole.len() / 2]).unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        for (name, want) in [("dict.arrows", "dictionaries"), ("cut.arrows", "forwardable")] {
            let e = ipc_flight_data(Arc::clone(&store), Path::from(name))
                .await
                .err()
                .unwrap();
            assert!(e.to_string().contains(want), "{name}: {e}");
        }
        let missing = ipc_flight_data(store, Path::from("none.arrows")).await.err().unwrap();
        assert!(matches!(missing, IpcError::Store(object_store::Error::NotFound { .. })));
    }
}
