//! DoAction: `job.submit`, `generators.list`, `job.status`, `job.cancel`, `dataset.delete`, each a call into the application core.

use super::*;

impl FlightSql {
    pub(super) async fn action(
        &self,
        p: &Principal,
        meta: &RequestMeta,
        action: &Action,
    ) -> Result<serde_json::Value, Status> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Submit {
            #[serde(default)]
            pipeline: Option<String>,
            #[serde(default)]
            generator: Option<Generator>,
            #[serde(alias = "dataset_id")]
            dataset: String,
            #[serde(default)]
            version: Option<u32>,
            #[serde(default)]
            overrides: Vec<String>,
            #[serde(default)]
            format: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Generator {
            name: String,
            #[serde(default)]
            params: serde_json::Map<String, serde_json::Value>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct JobId {
            id: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct DatasetId {
            #[serde(alias = "id")]
            dataset: String,
            #[serde(default)]
            version: Option<u32>,
        }
        let body = &action.body;
        let what = format!("{} body", action.r#type);
        match action.r#type.as_str() {
            "job.submit" => {
                let s: Submit = serde_json::from_slice(body).map_err(|e| json_status(&e, &what))?;
                let csv = match s.format.as_deref() {
                    None | Some("parquet") => false,
                    Some("csv") => true,
                    Some(other) => {
                        return Err(Status::invalid_argument(format!(
                            "format: `{other}` is not parquet or csv"
                        )));
                    }
                };
                let d = self.dataset(p, &s.dataset, s.version).await.map_err(|e| {
                    if e.code() == tonic::Code::NotFound {
                        Status::invalid_argument(format!("dataset: {}", e.message()))
                    } else {
                        e
                    }
                })?;
                let job = runner::submit(
                    &self.state,
                    meta,
                    p,
                    runner::JobRequest {
                        pipeline: s.pipeline,
                        generator: s.generator.map(|g| runner::GeneratorRequest {
                            name: g.name,
                            params: g.params.into_iter().collect(),
                        }),
                        dataset_id: Some(d.id),
                        model: None,
                        overrides: s.overrides,
                        csv,
                    },
                )
                .await
                .map_err(|e| match e {
                    runner::SubmitError::InvalidPipeline(m) => Status::invalid_argument(m),
                    e @ runner::SubmitError::NotAllowed { .. } => Status::invalid_argument(e.to_string()),
                    runner::SubmitError::Platform(e) => error::platform(e),
                })?;
                Ok(job_json(&job))
            }
            "generators.list" => {
                let trimmed = body.trim_ascii();
                if !trimmed.is_empty() && trimmed != b"{}" {
                    return Err(Status::invalid_argument(format!("{what}: expected no body or {{}}")));
                }
                Ok(serde_json::Value::Array(
                    doppel_app::methods::methods(&self.state)
                        .into_iter()
                        .map(|m| {
                            serde_json::json!({
                                "id": m.id,
                                "label": m.label,
                                "summary": m.summary,
                                "dp": m.dp,
                                "available": m.unavailable.is_none(),
                                "unavailable_reason": m.unavailable,
                                "pipeline": m.pipeline,
                                "pipelines": doppel_app::methods::pipelines_running(m.id),
                                "params": m.params.iter().map(|p| serde_json::json!({
                                    "name": p.name,
                                    "description": p.description,
                                    "type": p.kind,
                                    "default": p.default,
                                    "allowed": p.allowed,
                                    "minimum": p.minimum,
                                    "maximum": p.maximum,
                                })).collect::<Vec<_>>(),
                            })
                        })
                        .collect(),
                ))
            }
            "job.status" => {
                let j: JobId = serde_json::from_slice(body).map_err(|e| json_status(&e, &what))?;
                Ok(job_json(&self.job(p, &j.id, Scope::DatasetsRead).await?))
            }
            "job.cancel" => {
                let j: JobId = serde_json::from_slice(body).map_err(|e| json_status(&e, &what))?;
                let job = self.job(p, &j.id, Scope::JobsRun).await?;
                let job = self
                    .state
                    .queue
                    .cancel(meta, p, &job.id)
                    .await
                    .map_err(error::platform)?;
                Ok(job_json(&job))
            }
            "dataset.delete" => {
                let d: DatasetId = serde_json::from_slice(body).map_err(|e| json_status(&e, &what))?;
                require(p, Scope::DatasetsWrite).map_err(error::platform)?;
                let found = self.dataset(p, &d.dataset, d.version).await?;
                tables::delete(&self.state, meta, p, &found.id)
                    .await
                    .map_err(error::platform)?;
                Ok(serde_json::json!({"deleted": found.id}))
            }
            other => {
                let names: Vec<&str> = ACTIONS.iter().map(|(n, _)| *n).collect();
                Err(Status::invalid_argument(format!(
                    "unknown action `{other}`; this server has {} and the Flight SQL actions",
                    names.join(", ")
                )))
            }
        }
    }
}

/// A job as JSON: the application core's view, as REST shows it.
pub(super) fn job_json(job: &Job) -> serde_json::Value {
    serde_json::to_value(runner::JobView::of(job)).unwrap_or_default()
}
