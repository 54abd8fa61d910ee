//! Reading: FlightInfo for datasets, job outputs and bought twins, tickets, and the streams DoGet sends (a dataset's stored Arrow IPC blocks forwarded as they are; a Parquet output decoded ahead).

use super::*;

impl FlightSql {
    /// FlightInfo for a dataset or job output, with a fresh signed ticket.
    pub(super) async fn info(&self, p: &Principal, target: Target) -> Result<FlightInfo, Status> {
        match target {
            Target::Dataset { key, version } => {
                let d = self.dataset(p, &key, version).await?;
                let v = self.version_of(&d).await?;
                self.dataset_info(p, d, v).await
            }
            Target::Job { id, output } => {
                let job = self.job(p, &id, Scope::DatasetsRead).await?;
                let file = Self::output(&job, output.as_deref())?;
                self.output_info(p, &job, file).await
            }
            Target::Purchase { id } => {
                let (purchase, listing) = self.bought(p, &id).await?;
                let app = serde_json::json!({
                    "kind": "purchase", "purchase_id": purchase.id, "listing_id": listing.id,
                    "title": listing.title, "license": listing.license,
                });
                self.ticketed_info(
                    p,
                    Grants::Purchase {
                        id: purchase.id.clone(),
                    },
                    &listing.output_key,
                    FlightDescriptor::new_path(vec!["purchases".into(), purchase.id]),
                    -1,
                    &app,
                )
                .await
            }
        }
    }

    /// A completed purchase of the caller's and the listing it bought;
    /// another account's purchase is not found, an unpaid or refunded one
    /// gives no access.
    pub(super) async fn bought(
        &self,
        p: &Principal,
        id: &str,
    ) -> Result<(doppel_market::Purchase, doppel_market::Listing), Status> {
        let purchase = self.state.market.own_purchase(p, id).await.map_err(error::platform)?;
        if purchase.status != doppel_market::PurchaseStatus::Completed {
            return Err(Status::failed_precondition(format!(
                "purchase {id} is {}; only a completed purchase can be read",
                purchase.status.as_str()
            )));
        }
        let listing = self
            .state
            .market
            .listing(&purchase.listing_id)
            .await
            .map_err(error::platform)?;
        Ok((purchase, listing))
    }

    /// FlightInfo for version `v` of an already authorized dataset.
    pub(super) async fn dataset_info(&self, p: &Principal, d: Dataset, v: usize) -> Result<FlightInfo, Status> {
        let app = serde_json::json!({
            "kind": "dataset", "dataset_id": d.id, "name": d.name, "version": v,
            "created_at": d.created_at,
        });
        self.ticketed_info(
            p,
            Grants::Dataset { id: d.id.clone() },
            &d.object_key,
            FlightDescriptor::new_path(vec!["datasets".into(), d.name, v.to_string()]),
            d.size_bytes,
            &app,
        )
        .await
    }

    /// FlightInfo for one table output of an already authorized job.
    pub(super) async fn output_info(&self, p: &Principal, job: &Job, file: OutputFile) -> Result<FlightInfo, Status> {
        let app = serde_json::json!({
            "kind": "job_output", "job_id": job.id, "output": file.name,
            "pipeline": job.spec.get("pipeline"), "summary": job.manifest.as_ref().map(|m| &m.summary),
        });
        self.ticketed_info(
            p,
            Grants::Output {
                job: job.id.clone(),
                name: file.name.clone(),
            },
            &file.key,
            FlightDescriptor::new_path(vec!["jobs".into(), job.id.clone(), file.name]),
            i64::try_from(file.size).unwrap_or(i64::MAX),
            &app,
        )
        .await
    }

    /// Schema and rows from the Parquet footer, one endpoint with a signed ticket.
    pub(super) async fn ticketed_info(
        &self,
        p: &Principal,
        grant: Grants,
        key: &str,
        descriptor: FlightDescriptor,
        bytes: i64,
        app: &serde_json::Value,
    ) -> Result<FlightInfo, Status> {
        let (schema, rows) = self.sql.parquet_meta(key).await?;
        let ticket = Any {
            type_url: TICKET_TYPE_URL.to_owned(),
            value: self.sign(p, grant).into(),
        };
        FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| error::internal(&e))
            .map(|i| {
                i.with_descriptor(descriptor)
                    .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket.encode_to_vec())))
                    .with_total_records(rows)
                    .with_total_bytes(bytes)
                    .with_ordered(true)
                    .with_app_metadata(app.to_string().into_bytes())
            })
    }

    /// Stream a stored Parquet object as Flight data.
    pub(super) async fn stream_object(&self, key: &str) -> Result<BoxStream<FlightData>, Status> {
        let (schema, batches) = crate::reader::batches(
            self.state.storage.object_store(),
            self.state.storage.path(key),
            BATCH_ROWS,
        )
        .await
        .map_err(|e| error::internal(&e))?;
        Ok(encode(
            schema,
            batches.map_err(|e| FlightError::ExternalError(Box::new(e))),
        ))
    }

    /// Stream a dataset from its Arrow IPC serving copy (stored messages
    /// forwarded as they are), or from its Parquet table when it has none.
    pub(super) async fn stream_dataset(&self, d: &Dataset) -> Result<BoxStream<FlightData>, Status> {
        if let Some(folder) = d.object_key.strip_suffix(tables::PARQUET_FILE) {
            let ipc = self.state.storage.path(&format!("{folder}{}", tables::IPC_FILE));
            match crate::reader::ipc_flight_data(self.state.storage.object_store(), ipc).await {
                Ok((schema, messages)) => {
                    let first = FlightData::from(SchemaAsIpc::new(&schema, &IpcWriteOptions::default()));
                    let stream = futures::stream::iter([Ok(first)])
                        .chain(messages.map_err(|e| error::platform(doppel_platform::Error::from(e))));
                    return Ok(Box::pin(stream));
                }
                // Datasets stored before serving copies existed have none.
                Err(crate::reader::IpcError::Store(object_store::Error::NotFound { .. })) => {}
                Err(e) => {
                    tracing::warn!(dataset = %d.id, error = %e, "Serving copy unusable; reading the Parquet table.");
                }
            }
        }
        self.stream_object(&d.object_key).await
    }

    /// Redeem a ticket of ours: re-authorize, then stream.
    pub(super) async fn do_get_ticket(&self, p: &Principal, ticket: &[u8]) -> Result<BoxStream<FlightData>, Status> {
        match self.redeem(p, ticket)? {
            Grants::Dataset { id } => {
                let d = self.dataset(p, &id, None).await?;
                self.stream_dataset(&d).await
            }
            Grants::Output { job, name } => {
                let job = self.job(p, &job, Scope::DatasetsRead).await?;
                let file = Self::output(&job, Some(&name))?;
                self.stream_object(&file.key).await
            }
            Grants::Purchase { id } => {
                let (purchase, listing) = self.bought(p, &id).await?;
                self.state
                    .market
                    .record_download(&purchase)
                    .await
                    .map_err(error::platform)?;
                self.stream_object(&listing.output_key).await
            }
            Grants::Sql { sql, params } => self.execute(p, &sql, params.as_deref()).await,
        }
    }
}
