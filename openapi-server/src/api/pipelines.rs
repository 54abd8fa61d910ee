//! Shipped pipelines, the generators a job can choose, and validation.

use super::*;

/// Shipped pipelines, the generators a job can choose, and validation.
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

    /// The generators a job can choose (`generator` on `POST /v1/jobs`):
    /// each with its parameters, whether it is differentially private, and
    /// why this server cannot run it when it cannot.
    #[oai(
        path = "/generators",
        method = "get",
        tag = "ApiTags::Pipelines",
        operation_id = "list_generators"
    )]
    async fn list_generators(&self, state: Data<&Arc<AppState>>) -> Json<Vec<GeneratorView>> {
        Json(
            doppel_app::methods::methods(&state)
                .into_iter()
                .map(|m| GeneratorView {
                    id: m.id.to_owned(),
                    label: m.label.to_owned(),
                    summary: m.summary.to_owned(),
                    dp: m.dp,
                    available: m.unavailable.is_none(),
                    unavailable_reason: m.unavailable,
                    pipeline: m.pipeline.to_owned(),
                    pipelines: doppel_app::methods::pipelines_running(m.id),
                    params: m
                        .params
                        .into_iter()
                        .map(|p| GeneratorParam {
                            name: p.name,
                            description: p.description,
                            kind: p.kind.to_owned(),
                            default: p.default,
                            allowed: (!p.allowed.is_empty()).then_some(p.allowed),
                            minimum: p.minimum,
                            maximum: p.maximum,
                        })
                        .collect(),
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
