//! [`JsonBody`]: a JSON request body whose parse errors name the field at
//! fault (`scopes[1]: invalid type: integer, expected a string`), where
//! poem-openapi's own `Json` only names the type. The OpenAPI schema is the
//! same as `Json<T>`'s.

use std::ops::Deref;

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::error::{ContentTypeError, ParseRequestPayloadError};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, Type};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde::de::DeserializeOwned;

/// A JSON request body of `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T> Deref for JsonBody<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON + DeserializeOwned> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let data = <Vec<u8> as FromRequest<'_>>::from_request(request, body).await?;
        let reason = |reason: String| ParseRequestPayloadError { reason };
        if data.is_empty() {
            return Err(reason("body: expected a JSON object".into()).into());
        }
        let value: serde_json::Value = serde_json::from_slice(&data).map_err(|e| reason(format!("body: {e}")))?;
        match T::parse_from_json(Some(value.clone())) {
            Ok(v) => Ok(JsonBody(v)),
            Err(e) => {
                // Same shapes, parsed again by serde only to say where it broke.
                let located = serde_path_to_error::deserialize::<_, T>(value).err().map(|err| {
                    let path = err.path().to_string();
                    if path == "." {
                        format!("body: {}", err.inner())
                    } else {
                        format!("{path}: {}", err.inner())
                    }
                });
                Err(reason(located.unwrap_or_else(|| e.into_message())).into())
            }
        }
    }
}

impl<'a, T: Type + ParseFromJSON + DeserializeOwned> ApiExtractor<'a> for JsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: <Self as Payload>::CONTENT_TYPE,
                schema: <Self as Payload>::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        match request.content_type() {
            Some(ct) if <Self as Payload>::check_content_type(ct) => {
                <Self as ParsePayload>::from_request(request, body).await
            }
            Some(ct) => Err(ContentTypeError::NotSupported {
                content_type: ct.to_owned(),
            }
            .into()),
            None => Err(ContentTypeError::ExpectContentType.into()),
        }
    }
}
