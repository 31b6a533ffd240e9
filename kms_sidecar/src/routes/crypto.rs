//! `POST /v1/crypto/encrypt|decrypt|rewrap`: `{data: base64, context: {...}}` in,
//! `{data: base64}` out.

use base64::Engine;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::{json_response, HttpResponse};
use crate::domain::context::ContextInput;
use crate::domain::EncryptionContext;
use crate::state::AppState;

#[derive(Debug, Clone, Copy)]
pub enum Operation {
    Encrypt,
    Decrypt,
    Rewrap,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CryptoRequest {
    data: String,
    context: ContextInput,
}

pub async fn handle(state: &AppState, operation: Operation, body: &[u8]) -> Result<HttpResponse, ApiError> {
    let request: CryptoRequest =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    let data = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(request.data.as_bytes())
            .map_err(|_| ApiError::BadRequest("data must be standard base64".into()))?,
    );
    let context = EncryptionContext::try_from(request.context)?;
    let output = zeroize::Zeroizing::new(match operation {
        Operation::Encrypt => state.crypto.encrypt(&data, &context).await?,
        Operation::Decrypt => state.crypto.decrypt(&data, &context).await?,
        Operation::Rewrap => state.crypto.rewrap(&data, &context).await?,
    });
    Ok(json_response(
        StatusCode::OK,
        &json!({ "data": base64::engine::general_purpose::STANDARD.encode(output.as_slice()) }),
    ))
}
