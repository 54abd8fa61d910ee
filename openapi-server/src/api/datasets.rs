//! Uploaded tables: upload, list, read, preview, delete, privacy budgets.

use super::*;

/// Uploaded tables: upload, list, read, preview, delete, privacy budgets.
#[derive(Debug, Default)]
pub struct DatasetsApi;

#[OpenApi(prefix_path = "/v1")]
impl DatasetsApi {
    /// Upload a table (multipart field `file`; CSV, Parquet or NDJSON). It is
    /// stored as Parquet and profiled. Honours `Idempotency-Key`.
    #[oai(
        path = "/datasets",
        method = "post",
        tag = "ApiTags::Datasets",
        operation_id = "create_dataset"
    )]
    async fn create_dataset(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        upload: DatasetUpload,
    ) -> ApiResult<CreatedDataset> {
        let file_name = upload.file.file_name().unwrap_or("upload").to_owned();
        let (format, name) = tables::accept(
            &state,
            &auth.0,
            &file_name,
            upload.file.content_type(),
            upload.file.size() as u64,
            upload.name.as_deref(),
        )?;
        let work = tempfile::tempdir().map_err(ApiError::internal)?;
        let local = work.path().join(sanitize(&file_name));
        // Copy the spooled upload to our work file in chunks, hashing as it
        // goes (for Idempotency-Key): a large upload is never all in memory.
        let hash = {
            use sha2::Digest;
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut reader = upload.file.into_async_read();
            let mut out = tokio::fs::File::create(&local).await.map_err(ApiError::internal)?;
            let mut h = sha2::Sha256::new();
            h.update((name.len() as u64).to_be_bytes());
            h.update(name.as_bytes());
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = reader.read(&mut buf).await.map_err(ApiError::internal)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                out.write_all(&buf[..n]).await.map_err(ApiError::internal)?;
            }
            out.flush().await.map_err(ApiError::internal)?;
            doppel_platform::util::hex(&h.finalize())
        };
        let key = idempotency_key.0.as_deref();
        if let Some(previous) = replay::<DatasetView>(&state, &auth.0, key, &hash).await? {
            return Ok(CreatedDataset::Created(Json(previous)));
        }
        let created = async {
            let d = tables::store_upload(
                &state,
                &meta(req),
                &auth.0,
                &name,
                &local,
                &file_name,
                format,
                work.path(),
            )
            .await?;
            let view = dataset_view(&d, true);
            remember(&state, &auth.0, key, &hash, &view).await?;
            Ok(view)
        }
        .await;
        let view = forget(&state, &auth.0, key, created).await?;
        Ok(CreatedDataset::Created(Json(view)))
    }

    /// The caller's datasets, newest first (cursor pagination).
    #[oai(
        path = "/datasets",
        method = "get",
        tag = "ApiTags::Datasets",
        operation_id = "list_datasets"
    )]
    async fn list_datasets(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u32>>,
        starting_after: Query<Option<String>>,
    ) -> ApiResult<Json<DatasetPage>> {
        let n = page_limit(limit.0)?;
        let rows = doppel_app::access::datasets(&state, &auth.0, starting_after.0.as_deref(), n + 1).await?;
        let (rows, has_more, next_cursor) = paginate(rows, n, |d| d.id.clone());
        Ok(Json(DatasetPage {
            data: rows.iter().map(|d| dataset_view(d, false)).collect(),
            has_more,
            next_cursor,
        }))
    }

    /// One dataset with its column profiles.
    #[oai(
        path = "/datasets/:id",
        method = "get",
        tag = "ApiTags::Datasets",
        operation_id = "get_dataset"
    )]
    async fn get_dataset(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<DatasetView>> {
        let d = owned_dataset(&state, &auth.0, &id, Scope::DatasetsRead).await?;
        Ok(Json(dataset_view(&d, true)))
    }

    /// The first rows of a dataset (at most 20).
    #[oai(
        path = "/datasets/:id/preview",
        method = "get",
        tag = "ApiTags::Datasets",
        operation_id = "preview_dataset"
    )]
    async fn preview(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<String>,
        #[oai(validator(minimum(value = "1"), maximum(value = "20")))] limit: Query<Option<u32>>,
    ) -> ApiResult<Json<Preview>> {
        let d = owned_dataset(&state, &auth.0, &id, Scope::DatasetsRead).await?;
        let n = match limit.0 {
            None => tables::PREVIEW_ROWS,
            Some(n) if (1..=tables::PREVIEW_ROWS as u32).contains(&n) => n as usize,
            Some(_) => {
                return Err(ApiError::invalid(
                    "limit",
                    format!("must be between 1 and {}", tables::PREVIEW_ROWS),
                ));
            }
        };
        let (columns, rows) = tables::preview_rows(&d, n);
        Ok(Json(Preview { columns, rows }))
    }

    /// Delete a dataset and its stored table.
    #[oai(
        path = "/datasets/:id",
        method = "delete",
        tag = "ApiTags::Datasets",
        operation_id = "delete_dataset"
    )]
    async fn delete_dataset(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<NoContent> {
        tables::delete(&state, &meta(req), &auth.0, &id).await?;
        Ok(NoContent::Done)
    }

    /// The dataset's differential-privacy budget, what DP jobs spent and
    /// what is left.
    #[oai(
        path = "/datasets/:id/privacy",
        method = "get",
        tag = "ApiTags::Datasets",
        operation_id = "get_privacy_budget"
    )]
    async fn get_privacy(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<PrivacyLedgerView>> {
        let d = owned_dataset(&state, &auth.0, &id, Scope::DatasetsRead).await?;
        let l = doppel_platform::privacy::ledger(&state.db, state.settings.privacy, &d.owner_id, &d.name).await?;
        Ok(Json(ledger_view(l)))
    }

    /// Set the dataset's total differential-privacy budget (all versions of
    /// its name). Lowering it below what was spent stops further DP jobs.
    #[oai(
        path = "/datasets/:id/privacy",
        method = "put",
        tag = "ApiTags::Datasets",
        operation_id = "set_privacy_budget"
    )]
    async fn set_privacy(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<String>,
        body: JsonBody<PrivacyAmount>,
    ) -> ApiResult<Json<PrivacyLedgerView>> {
        let d = owned_dataset(&state, &auth.0, &id, Scope::DatasetsWrite).await?;
        let l = doppel_platform::privacy::set_budget(
            &state.db,
            &meta(req),
            &auth.0,
            state.settings.privacy,
            &d.owner_id,
            &d.name,
            doppel_platform::privacy::Amount {
                epsilon: body.epsilon,
                delta: body.delta,
            },
        )
        .await?;
        Ok(Json(ledger_view(l)))
    }
}
