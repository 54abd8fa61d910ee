//! A table written as Parquet parts where every executor can read it.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::{Error, Result};

/// A table staged as `part-NNNNN.parquet` files in a fresh folder under a
/// scratch directory; the folder is removed when this is dropped. On a
/// cluster the scratch directory must be one every executor mounts at the
/// same path.
#[derive(Debug)]
pub struct StagedTable {
    dir: tempfile::TempDir,
    schema: SchemaRef,
    rows: usize,
    parts: usize,
}

impl StagedTable {
    /// Write `batches` in parts of at most `rows_per_part` rows (one part per
    /// task an engine can run in parallel).
    pub fn write(batches: &[RecordBatch], scratch: &Path, rows_per_part: usize) -> Result<StagedTable> {
        let stage = |e: &dyn std::error::Error| Error::Stage(e.to_string());
        let Some(first) = batches.first() else {
            return Err(Error::Stage("no batches to stage".to_owned()));
        };
        let schema = first.schema();
        std::fs::create_dir_all(scratch).map_err(|e| stage(&e))?;
        let dir = tempfile::Builder::new()
            .prefix("doppel-engine-")
            .tempdir_in(scratch)
            .map_err(|e| stage(&e))?;
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let rows_per_part = rows_per_part.max(1);
        let (mut parts, mut rows) = (0usize, 0usize);
        let mut writer: Option<(ArrowWriter<std::fs::File>, usize)> = None;
        for batch in batches {
            let mut offset = 0;
            while offset < batch.num_rows() {
                if writer.is_none() {
                    let file = std::fs::File::create(dir.path().join(format!("part-{parts:05}.parquet")))
                        .map_err(|e| stage(&e))?;
                    let w =
                        ArrowWriter::try_new(file, Arc::clone(&schema), Some(props.clone())).map_err(|e| stage(&e))?;
                    writer = Some((w, 0));
                    parts += 1;
                }
                let (w, in_part) = writer.as_mut().expect("opened above");
                let take = (rows_per_part - *in_part).min(batch.num_rows() - offset);
                w.write(&batch.slice(offset, take)).map_err(|e| stage(&e))?;
                *in_part += take;
                offset += take;
                rows += take;
                if *in_part == rows_per_part {
                    let (w, _) = writer.take().expect("open");
                    w.close().map_err(|e| stage(&e))?;
                }
            }
        }
        if let Some((w, _)) = writer.take() {
            w.close().map_err(|e| stage(&e))?;
        }
        Ok(StagedTable {
            dir,
            schema,
            rows,
            parts,
        })
    }

    /// The folder, as DataFusion's listing tables read it.
    pub(crate) fn location(&self) -> String {
        format!("{}/", self.dir.path().display())
    }

    /// The staged table's columns.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Rows staged.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Parquet parts written.
    pub fn parts(&self) -> usize {
        self.parts
    }
}
