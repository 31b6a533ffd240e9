//! `POST /v1/crypto/encrypt|decrypt|rewrap`: `{data: base64, context: {...}}` in,
//! `{data: base64}` out, for the subject the caller can name and prove only
//! (the access table is in docs/sidecar.md).

use base64::Engine;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;

use super::error::ApiError;
use super::views::CryptoView;
use super::{json_response, parse_json, read_body, HttpResponse};
use crate::auth::JwtVerifier;
use crate::domain::context::ContextInput;
use crate::domain::{CallerClass, EncryptionContext, Subject, SUBJECT_HEADER};
use crate::state::AppState;

#[derive(Debug, Clone, Copy)]
pub enum Operation {
    Encrypt,
    Decrypt,
    Rewrap,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CryptoRequest {
    /// Standard base64.
    data: String,
    context: ContextInput,
}

/// Who the request is for: an Edge Function proves it with the traveler's
/// token; the database attests it (the extension checked `wallet.uid()` or
/// the role's system grant). Nobody else uses these routes.
fn subject(state: &AppState, class: CallerClass, request: &Request<Incoming>) -> Result<Subject, ApiError> {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    match class {
        CallerClass::Edge => {
            let verifier = state
                .verifier
                .as_ref()
                .ok_or(ApiError::SubjectRequired("the crypto routes need [auth] to verify the traveler's token"))?;
            Ok(Subject::Traveler(verifier.verify_subject(JwtVerifier::bearer(header("authorization"))?)?))
        }
        CallerClass::Database => header(SUBJECT_HEADER)
            .and_then(Subject::attested)
            .ok_or(ApiError::SubjectRequired("the database names its subject (wallet.encrypt and wallet.decrypt do)")),
        CallerClass::Admin => Err(ApiError::Forbidden),
    }
}

pub async fn handle(
    state: &AppState,
    class: CallerClass,
    operation: Operation,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let subject = subject(state, class, &request)?;
    let body = read_body(request, state.settings.limits.max_body_bytes).await?;
    let request: CryptoRequest = parse_json(&body)?;
    let context = EncryptionContext::try_from(request.context)?;
    if !subject.may_use(&context) {
        return Err(ApiError::SubjectMismatch);
    }
    if let Subject::System { role } = &subject {
        // Debug, not info: batch jobs decrypt thousands of records a second.
        tracing::debug!(role = %role, table = context.table.as_str(), column = context.column.as_str(), ?operation, "system crypto for the database");
    }
    let data = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(request.data.as_bytes())
            .map_err(|_| ApiError::BadRequest("data must be standard base64".into()))?,
    );
    let output = zeroize::Zeroizing::new(match operation {
        Operation::Encrypt => state.crypto.encrypt(&data, &context).await?,
        Operation::Decrypt => state.crypto.decrypt(&data, &context).await?,
        Operation::Rewrap => state.crypto.rewrap(&data, &context).await?,
    });
    Ok(json_response(
        StatusCode::OK,
        &CryptoView { data: base64::engine::general_purpose::STANDARD.encode(output.as_slice()) },
    ))
}
