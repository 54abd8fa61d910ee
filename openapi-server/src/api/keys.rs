//! API keys: create (secret shown once), list, revoke.

use super::*;

/// API keys: create (secret shown once), list, revoke.
#[derive(Debug, Default)]
pub struct KeysApi;

#[OpenApi(prefix_path = "/v1")]
impl KeysApi {
    /// Create an API key. The secret is in this answer only.
    #[oai(
        path = "/api-keys",
        method = "post",
        tag = "ApiTags::ApiKeys",
        operation_id = "create_api_key"
    )]
    async fn create_key(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        body: JsonBody<NewKey>,
    ) -> ApiResult<CreatedKeyResponse> {
        let k = doppel_platform::keys::create(
            &state.db,
            &meta(req),
            &auth.0,
            &body.name,
            &body.scopes,
            body.expires_in_days,
            state.settings.auth.api_key_max_days,
        )
        .await?;
        Ok(CreatedKeyResponse::Created(Json(CreatedKey {
            key: k.key.into(),
            secret: k.secret,
        })))
    }

    /// The caller's API keys.
    #[oai(
        path = "/api-keys",
        method = "get",
        tag = "ApiTags::ApiKeys",
        operation_id = "list_api_keys"
    )]
    async fn list_keys(&self, state: Data<&Arc<AppState>>, auth: Auth) -> ApiResult<Json<Vec<KeyView>>> {
        Ok(Json(
            doppel_platform::keys::list(&state.db, &auth.0.account_id)
                .await?
                .into_iter()
                .map(Into::into)
                .collect(),
        ))
    }

    /// Revoke an API key.
    #[oai(
        path = "/api-keys/:id",
        method = "delete",
        tag = "ApiTags::ApiKeys",
        operation_id = "revoke_api_key"
    )]
    async fn revoke_key(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<KeyView>> {
        Ok(Json(
            doppel_platform::keys::revoke(&state.db, &meta(req), &auth.0, &id)
                .await?
                .into(),
        ))
    }
}
