//! DoPut: a dataset streamed in as Arrow batches, bounded while it arrives, then read and registered by the application core exactly as a REST upload.

use super::*;

impl FlightSql {
    pub(super) async fn put_dataset(
        &self,
        mut request: Request<PeekableFlightDataStream>,
    ) -> Result<Response<BoxStream<PutResult>>, Status> {
        let p = self.principal(&request).await?;
        require(&p, Scope::DatasetsWrite).map_err(error::platform)?;
        let meta = meta_of(&request);
        let descriptor = match request.get_mut().peek().await {
            Some(Ok(first)) => first.flight_descriptor.clone(),
            Some(Err(e)) => return Err(e.clone()),
            None => None,
        }
        .ok_or_else(|| Status::invalid_argument("DoPut needs a descriptor: path [\"datasets\", name]"))?;
        let name = match target::parse(&descriptor)? {
            Target::Dataset { key, version: None } => key,
            _ => {
                return Err(Status::invalid_argument(
                    "DoPut uploads a dataset: use the path [\"datasets\", name]; each upload under a name is its next version",
                ));
            }
        };
        let name = tables::check_name(&name).map_err(error::platform)?.to_owned();
        let limit = self.state.settings.limits.upload_max_mb.saturating_mul(1024 * 1024);
        let work = tempfile::tempdir().map_err(|e| error::internal(&e))?;
        let received = work.path().join("received.parquet");
        let mut batches =
            FlightRecordBatchStream::new_from_flight_data(request.into_inner().map_err(FlightError::from));
        // A blocking thread encodes Parquet while this task keeps reading
        // the network; the bounded channel is the back-pressure.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(4);
        let writer = {
            let path = received.clone();
            tokio::task::spawn_blocking(move || -> Result<Option<SchemaRef>, String> {
                let mut w: Option<parquet::arrow::ArrowWriter<std::fs::File>> = None;
                let mut schema = None;
                while let Some(batch) = rx.blocking_recv() {
                    if w.is_none() {
                        let f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
                        let props = parquet::file::properties::WriterProperties::builder()
                            .set_compression(parquet::basic::Compression::SNAPPY)
                            .build();
                        schema = Some(batch.schema());
                        w = Some(
                            parquet::arrow::ArrowWriter::try_new(f, batch.schema(), Some(props))
                                .map_err(|e| e.to_string())?,
                        );
                    }
                    if let Some(w) = w.as_mut() {
                        w.write(&batch).map_err(|e| e.to_string())?;
                    }
                }
                if let Some(w) = w {
                    w.close().map_err(|e| e.to_string())?;
                }
                Ok(schema)
            })
        };
        let mut bytes = 0u64;
        let mut rows = 0usize;
        let limits = *self.state.ingest.limits();
        let too_large = |e: doppel_host::limits::LimitError| Status::invalid_argument(format!("upload: {e}"));
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(flight_status)?;
            if rows == 0 && bytes == 0 {
                // The schema is known with the first batch: refuse a shape
                // over the limits before storing anything.
                let schema = batch.schema();
                limits
                    .check_shape(schema.fields().iter().map(|f| f.name().as_str()), None)
                    .map_err(too_large)?;
                let depth = schema
                    .fields()
                    .iter()
                    .map(|f| nesting(f.data_type()))
                    .max()
                    .unwrap_or(0);
                if depth > limits.max_depth {
                    return Err(Status::invalid_argument(format!(
                        "upload: columns nest {depth} levels deep; the limit is {} (limits.max_depth)",
                        limits.max_depth
                    )));
                }
            }
            bytes += batch.get_array_memory_size() as u64;
            rows += batch.num_rows();
            limits
                .check_cells(rows as u64, batch.num_columns())
                .map_err(too_large)?;
            if bytes > limit {
                return Err(Status::invalid_argument(format!(
                    "upload: larger than the {} MiB limit",
                    self.state.settings.limits.upload_max_mb
                )));
            }
            if tx.send(batch).await.is_err() {
                break;
            }
        }
        drop(tx);
        let written = writer
            .await
            .map_err(|e| error::internal(&e))?
            .map_err(|e| error::internal(&e))?;
        if written.is_none() {
            return Err(Status::invalid_argument(
                "upload: no record batches were sent; write at least one (it may be empty)",
            ));
        }
        let ingested = self
            .state
            .ingest
            .ingest(
                &received,
                &name,
                doppel_host::builtins::source::Format::Parquet,
                work.path(),
            )
            .await
            .map_err(|e| match e {
                tables::IngestError::Internal(m) => error::internal(&m),
                other => Status::invalid_argument(other.to_string()),
            })?;
        let d = tables::register(&self.state, &meta, &p, &name, &ingested)
            .await
            .map_err(error::platform)?;
        let version = datasets::versions(&self.state.db, &p.account_id, &name)
            .await
            .map_err(error::platform)?
            .len();
        let reply = serde_json::json!({
            "dataset_id": d.id, "name": d.name, "version": version, "rows": rows,
            "size_bytes": d.size_bytes,
        });
        tracing::info!(dataset = %d.id, rows, "Dataset uploaded over Flight.");
        let out = futures::stream::iter([Ok(PutResult {
            app_metadata: reply.to_string().into_bytes().into(),
        })]);
        Ok(Response::new(Box::pin(out)))
    }
}

/// How deeply a column type nests (a plain type is 0), without recursion
/// limits of its own: Arrow schemas arrive through flatbuffers, whose
/// verifier already bounds their depth.
pub(super) fn nesting(dt: &arrow::datatypes::DataType) -> usize {
    use arrow::datatypes::DataType as D;
    match dt {
        D::List(f) | D::LargeList(f) | D::FixedSizeList(f, _) | D::ListView(f) | D::LargeListView(f) | D::Map(f, _) => {
            1 + nesting(f.data_type())
        }
        D::Struct(fields) => 1 + fields.iter().map(|f| nesting(f.data_type())).max().unwrap_or(0),
        D::Union(fields, _) => 1 + fields.iter().map(|(_, f)| nesting(f.data_type())).max().unwrap_or(0),
        D::Dictionary(_, v) => nesting(v),
        D::RunEndEncoded(_, v) => nesting(v.data_type()),
        _ => 0,
    }
}
