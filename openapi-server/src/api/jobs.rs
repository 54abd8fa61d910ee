//! Pipeline runs: submit, list, progress (SSE), cancel, reports and outputs.

use super::*;

/// Pipeline runs: submit, list, progress (SSE), cancel, reports and outputs.
#[derive(Debug, Default)]
pub struct JobsApi;

#[OpenApi(prefix_path = "/v1")]
impl JobsApi {
    /// Run a shipped pipeline, or a generator by name (`generator`, with its
    /// parameters), on a dataset. Honours `Idempotency-Key`.
    #[oai(path = "/jobs", method = "post", tag = "ApiTags::Jobs", operation_id = "create_job")]
    async fn create_job(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        body: JsonBody<NewJob>,
    ) -> ApiResult<CreatedJob> {
        require(&auth.0, Scope::JobsRun)?;
        let hash = hash_request(&[serde_json::to_string(&body.0).unwrap_or_default().as_bytes()]);
        let key = idempotency_key.0.as_deref();
        if let Some(previous) = replay::<JobView>(&state, &auth.0, key, &hash).await? {
            return Ok(CreatedJob::Created(Json(previous)));
        }
        let request = runner::JobRequest {
            pipeline: body.pipeline.clone(),
            generator: body.generator.as_ref().map(|g| runner::GeneratorRequest {
                name: g.name.clone(),
                params: g.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            }),
            dataset_id: body.dataset_id.clone(),
            model: body.model.as_ref().map(|m| runner::ModelRequest {
                job_id: m.job_id.clone(),
                output: m.output.clone(),
            }),
            overrides: body.overrides.clone(),
            csv: matches!(body.format, Some(OutputFormat::Csv)),
        };
        let created = async {
            let job = runner::submit(&state, &meta(req), &auth.0, request)
                .await
                .map_err(|e| match e {
                    runner::SubmitError::InvalidPipeline(problems) => {
                        ApiError::unprocessable("invalid_pipeline", problems)
                    }
                    e @ runner::SubmitError::NotAllowed { .. } => ApiError::unprocessable("not_allowed", e.to_string()),
                    runner::SubmitError::Platform(e) => ApiError::from(e),
                })?;
            let view = job_view(&job);
            remember(&state, &auth.0, key, &hash, &view).await?;
            Ok(view)
        }
        .await;
        let view = forget(&state, &auth.0, key, created).await?;
        Ok(CreatedJob::Created(Json(view)))
    }

    /// The caller's jobs, newest first.
    #[oai(path = "/jobs", method = "get", tag = "ApiTags::Jobs", operation_id = "list_jobs")]
    async fn list_jobs(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u32>>,
        starting_after: Query<Option<String>>,
    ) -> ApiResult<Json<JobPage>> {
        let n = page_limit(limit.0)?;
        let rows = doppel_app::access::jobs(&state, &auth.0, starting_after.0.as_deref(), n + 1).await?;
        let (rows, has_more, next_cursor) = paginate(rows, n, |j| j.id.clone());
        Ok(Json(JobPage {
            data: rows.iter().map(job_view).collect(),
            has_more,
            next_cursor,
        }))
    }

    /// One job.
    #[oai(path = "/jobs/:id", method = "get", tag = "ApiTags::Jobs", operation_id = "get_job")]
    async fn get_job(&self, state: Data<&Arc<AppState>>, auth: Auth, id: Path<String>) -> ApiResult<Json<JobView>> {
        Ok(Json(job_view(
            &owned_job(&state, &auth.0, &id, Scope::DatasetsRead).await?,
        )))
    }

    /// Ask a job to stop (queued jobs stop at once, running ones within seconds).
    #[oai(
        path = "/jobs/:id/cancel",
        method = "post",
        tag = "ApiTags::Jobs",
        operation_id = "cancel_job"
    )]
    async fn cancel_job(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<JobView>> {
        let job = owned_job(&state, &auth.0, &id, Scope::JobsRun).await?;
        Ok(Json(job_view(&state.queue.cancel(&meta(req), &auth.0, &job.id).await?)))
    }

    /// Progress as server-sent events: one `JobView` per change, ending with
    /// the final state.
    #[oai(
        path = "/jobs/:id/events",
        method = "get",
        tag = "ApiTags::Jobs",
        operation_id = "job_events"
    )]
    async fn job_events(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<EventStream<futures::stream::BoxStream<'static, JobView>>> {
        let job = owned_job(&state, &auth.0, &id, Scope::DatasetsRead).await?;
        let stream = runner::watch(state.queue.clone(), job).map(|j| job_view(&j)).boxed();
        Ok(EventStream::new(stream).keep_alive(Duration::from_secs(15)))
    }

    /// The run's report (report.json).
    #[oai(
        path = "/jobs/:id/report",
        method = "get",
        tag = "ApiTags::Jobs",
        operation_id = "get_report"
    )]
    async fn report(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<serde_json::Value>> {
        let job = owned_job(&state, &auth.0, &id, Scope::DatasetsRead).await?;
        let file = output(&job, "report.json")?;
        let bytes = state.storage.get_bytes(&file.key).await?;
        Ok(Json(serde_json::from_slice(&bytes).map_err(ApiError::internal)?))
    }

    /// The run's PDF report.
    #[oai(
        path = "/jobs/:id/report.pdf",
        method = "get",
        tag = "ApiTags::Jobs",
        operation_id = "get_report_pdf"
    )]
    async fn report_pdf(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Attachment<Vec<u8>>> {
        let job = owned_job(&state, &auth.0, &id, Scope::DatasetsRead).await?;
        let file = output(&job, "report.pdf")?;
        let bytes = state.storage.get_bytes(&file.key).await?;
        Ok(Attachment::new(bytes.to_vec())
            .attachment_type(AttachmentType::Inline)
            .filename(format!("{}-report.pdf", job.id)))
    }

    /// A download link for one output (valid one hour by default; no
    /// credentials needed to use it).
    #[oai(
        path = "/jobs/:id/outputs/:name/url",
        method = "get",
        tag = "ApiTags::Jobs",
        operation_id = "get_output_url"
    )]
    async fn output_url(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<String>,
        name: Path<String>,
    ) -> ApiResult<Json<DownloadLink>> {
        let job = owned_job(&state, &auth.0, &id, Scope::DatasetsRead).await?;
        let file = output(&job, &name)?;
        let ttl = Duration::from_secs(state.settings.limits.download_ttl_seconds.max(1));
        let link = state.storage.signed_url(&file.key, ttl).await?;
        Ok(Json(DownloadLink {
            url: link.url,
            expires_at: link.expires_at,
        }))
    }
}
