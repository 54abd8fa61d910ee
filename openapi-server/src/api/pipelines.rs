//! Shipped pipelines and validation.

use super::*;

/// Shipped pipelines and validation.
#[derive(Debug, Default)]
pub struct PipelinesApi;

#[OpenApi(prefix_path = "/v1")]
impl PipelinesApi {
    /// The shipped pipelines a job can run.
    #[oai(
        path = "/pipelines",
        method = "get",
        tag = "ApiTags::Pipelines",
        operation_id = "list_pipelines"
    )]
    async fn list_pipelines(&self) -> Json<Vec<PipelineView>> {
        Json(
            doppel_host::shipped::PIPELINES
                .iter()
                .map(|p| PipelineView {
                    name: p.name.to_owned(),
                    description: doppel_host::shipped::description(p.text).unwrap_or_default(),
                    toml: p.text.to_owned(),
                })
                .collect(),
        )
    }

    /// Validate a pipeline (the TOML as the request body): every problem with
    /// its line and column, as `doppel validate` prints them.
    #[oai(
        path = "/pipelines/validate",
        method = "post",
        tag = "ApiTags::Pipelines",
        operation_id = "validate_pipeline"
    )]
    async fn validate(&self, state: Data<&Arc<AppState>>, body: PlainText<String>) -> ApiResult<Json<Validation>> {
        if body.0.len() > 1 << 20 {
            return Err(ApiError::invalid("body", "a pipeline is at most 1 MiB"));
        }
        let catalog = Arc::clone(&state.catalog);
        let text = body.0;
        let result = tokio::task::spawn_blocking(move || {
            use doppel_host::spec::{PipelineSpec, SourceFile};
            let spec = PipelineSpec::parse(SourceFile::new("pipeline.toml", text))?;
            doppel_host::plan::plan(&spec, &catalog)
        })
        .await
        .map_err(ApiError::internal)?;
        Ok(Json(match result {
            Ok(plan) => Validation {
                valid: true,
                order: plan.order.iter().map(|&i| plan.stages[i].id.clone()).collect(),
                problems: Vec::new(),
            },
            Err(d) => Validation {
                valid: false,
                order: Vec::new(),
                problems: d
                    .items
                    .iter()
                    .map(|item| {
                        let (line, column) = d
                            .location_of(item)
                            .map_or((None, None), |(l, c)| (u32::try_from(l).ok(), u32::try_from(c).ok()));
                        let one = doppel_host::spec::Diagnostics {
                            file: Arc::clone(&d.file),
                            items: vec![item.clone()],
                        };
                        Problem {
                            line,
                            column,
                            message: item.message.clone(),
                            rendered: one.to_string(),
                        }
                    })
                    .collect(),
            },
        }))
    }
}
