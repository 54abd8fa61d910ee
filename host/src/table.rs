//! Tables as they flow between stages: Arrow record batches plus the semantic
//! type of every column, and the helpers that cut them into batches for
//! plugins (projection, re-chunking, IPC encoding).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::StreamWriter;
use doppel_generators::{SemanticType, semantic};

use crate::plugin::bindings::types::ColumnType;
use crate::{Error, Result};

/// Arrow field-metadata key carrying a column's semantic type to plugins.
pub const SEMANTIC_TYPE_KEY: &str = doppel_vocab::semantic::KEY;

/// A materialised table.
#[derive(Debug, Clone)]
pub struct Table {
    /// Column names and Arrow types.
    pub schema: SchemaRef,
    /// The rows, in order.
    pub batches: Vec<RecordBatch>,
    /// Semantic type of each column, in schema order.
    pub semantics: Arc<Vec<SemanticType>>,
    /// Rows of the real table this one was cut from, when a stage (such as
    /// `builtin:split`) passed on only part of it. Generators sample this many
    /// rows by default, so a twin trained on the training part of a table is
    /// as large as the table it stands in for.
    pub population_rows: Option<usize>,
}

impl Table {
    /// A table whose semantic types are inferred from its values, its
    /// batches joined into one.
    ///
    /// Joined column by column, each column's parts dropped once joined, so
    /// reading a large table in slices holds one column twice at most, not
    /// the whole table.
    pub fn infer(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Table> {
        let width = schema.fields().len();
        let mut parts: Vec<Vec<arrow::array::ArrayRef>> = vec![Vec::with_capacity(batches.len()); width];
        for batch in batches {
            for (i, column) in batch.columns().iter().enumerate().take(width) {
                parts[i].push(Arc::clone(column));
            }
        }
        let mut columns = Vec::with_capacity(width);
        let mut semantics = Vec::with_capacity(width);
        for (f, arrays) in schema.fields().iter().zip(parts) {
            let column = match arrays.as_slice() {
                [] => arrow::array::new_empty_array(f.data_type()),
                [one] => Arc::clone(one),
                many => {
                    let refs: Vec<&dyn arrow::array::Array> = many.iter().map(AsRef::as_ref).collect();
                    arrow::compute::concat(&refs)?
                }
            };
            drop(arrays);
            semantics.push(semantic::infer(f.name(), column.as_ref()));
            columns.push(column);
        }
        let all = if width == 0 {
            RecordBatch::new_empty(Arc::clone(&schema))
        } else {
            RecordBatch::try_new(Arc::clone(&schema), columns)?
        };
        Ok(Table {
            schema,
            batches: vec![all],
            semantics: Arc::new(semantics),
            population_rows: None,
        })
    }

    /// The table's record without its rows: schema, semantic types and row
    /// count kept, the data dropped (the count rides on one batch with no
    /// columns). A run keeps this for a stage whose rows no later stage
    /// reads, so its report still says what the stage produced while the
    /// memory goes back; nothing may read its columns.
    pub fn without_rows(&self) -> Table {
        let rows = self.rows();
        let count = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
        let batch = RecordBatch::try_new_with_options(Arc::new(arrow::datatypes::Schema::empty()), vec![], &count)
            .expect("a batch with no columns holds any row count");
        Table {
            schema: Arc::clone(&self.schema),
            batches: vec![batch],
            semantics: Arc::clone(&self.semantics),
            population_rows: self.population_rows,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// All rows as one batch.
    pub fn concat(&self) -> Result<RecordBatch> {
        if let [one] = self.batches.as_slice() {
            return Ok(one.clone());
        }
        Ok(arrow::compute::concat_batches(&self.schema, &self.batches)?)
    }

    /// Keep only `columns`, in that order; unknown names are an error that lists
    /// what the table has.
    pub fn select(&self, stage: &str, columns: &[String]) -> Result<Table> {
        let mut indices = Vec::with_capacity(columns.len());
        for name in columns {
            match self.schema.index_of(name) {
                Ok(i) => indices.push(i),
                Err(_) => {
                    let have: Vec<&str> = self.schema.fields().iter().map(|f| f.name().as_str()).collect();
                    return Err(Error::UnknownColumn {
                        stage: stage.to_owned(),
                        column: name.clone(),
                        available: have.join(", "),
                    });
                }
            }
        }
        let schema = Arc::new(self.schema.project(&indices)?);
        let batches = self
            .batches
            .iter()
            .map(|b| b.project(&indices))
            .collect::<Result<Vec<_>, _>>()?;
        let semantics = indices.iter().map(|&i| self.semantics[i]).collect();
        Ok(Table {
            schema,
            batches,
            semantics: Arc::new(semantics),
            population_rows: self.population_rows,
        })
    }

    /// The columns a plugin reading `reads` receives (and, if given, only those
    /// named in `columns`), with semantic types attached as field metadata.
    pub fn projection(&self, reads: &[ColumnType]) -> Projection {
        let mut indices = Vec::new();
        let mut fields = Vec::new();
        for (i, field) in self.schema.fields().iter().enumerate() {
            if !reads.contains(&column_type(field.data_type())) {
                continue;
            }
            let mut metadata: HashMap<String, String> = field.metadata().clone();
            metadata.insert(SEMANTIC_TYPE_KEY.to_owned(), self.semantics[i].as_str().to_owned());
            fields.push(Field::clone(field).with_metadata(metadata));
            indices.push(i);
        }
        Projection {
            indices,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// Re-cut the rows into batches of `rows_per_batch` rows (the last may be
    /// shorter). Slices share buffers with the table.
    pub fn chunks(&self, rows_per_batch: usize) -> Result<Vec<RecordBatch>> {
        let all = self.concat()?;
        let n = all.num_rows();
        let step = rows_per_batch.max(1);
        Ok((0..n)
            .step_by(step)
            .map(|start| all.slice(start, step.min(n - start)))
            .collect())
    }
}

/// The columns sent to one plugin stage.
#[derive(Debug, Clone)]
pub struct Projection {
    /// Column indices in the table.
    pub indices: Vec<usize>,
    /// Their fields, annotated with semantic types.
    pub schema: SchemaRef,
}

impl Projection {
    /// Project one batch and encode it as an IPC stream.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Vec<u8>> {
        let columns = self.indices.iter().map(|&i| Arc::clone(batch.column(i))).collect();
        let projected = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        encode_ipc(&projected)
    }

    /// The schema as a schema-only IPC stream (for `check`).
    pub fn encode_schema(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut w = StreamWriter::try_new(&mut out, &self.schema)?;
        w.finish()?;
        drop(w);
        Ok(out)
    }
}

/// Encode one batch as an Arrow IPC stream.
pub fn encode_ipc(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() + 1024);
    let mut w = StreamWriter::try_new(&mut out, &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(out)
}

/// The family of an Arrow type, as plugins declare what they read.
pub fn column_type(dt: &DataType) -> ColumnType {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnType::Text,
        DataType::Boolean => ColumnType::Boolean,
        d if d.is_integer() => ColumnType::Integer,
        d if d.is_floating() => ColumnType::Float,
        DataType::Decimal32(_, _)
        | DataType::Decimal64(_, _)
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => ColumnType::Float,
        DataType::Date32
        | DataType::Date64
        | DataType::Timestamp(_, _)
        | DataType::Time32(_)
        | DataType::Time64(_)
        | DataType::Duration(_)
        | DataType::Interval(_) => ColumnType::Temporal,
        _ => ColumnType::Binary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn table() -> Table {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("email", DataType::Utf8, false),
        ]));
        let mk = |lo: i64, hi: i64| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from_iter_values(lo..hi)),
                    Arc::new(StringArray::from_iter_values((lo..hi).map(|i| format!("u{i}@x.org")))),
                ],
            )
            .unwrap()
        };
        Table::infer(Arc::clone(&schema), vec![mk(0, 700), mk(700, 1000)]).unwrap()
    }

    #[test]
    fn chunks_cover_every_row_once() {
        let t = table();
        let chunks = t.chunks(256).unwrap();
        assert_eq!(
            chunks.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(),
            vec![256, 256, 256, 232]
        );
    }

    #[test]
    fn projection_keeps_declared_families_and_annotates() {
        let t = table();
        let p = t.projection(&[ColumnType::Text]);
        assert_eq!(p.indices, vec![1]);
        assert_eq!(p.schema.field(0).metadata()[SEMANTIC_TYPE_KEY], "id");
        let bytes = p.encode(&t.batches[0]).unwrap();
        let back = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(back.num_columns(), 1);
        assert_eq!(back.num_rows(), 1000);
    }

    #[test]
    fn selecting_an_unknown_column_names_what_exists() {
        let err = table().select("pii", &["emial".to_owned()]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`emial`") && text.contains("id, email"), "{text}");
    }
}
