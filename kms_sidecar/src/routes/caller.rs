//! What a caller's request says besides its body: the bearer token, the audit
//! metadata, and the `Idempotency-Key`.

use hyper::body::Incoming;
use hyper::Request;

use super::error::ApiError;
use crate::domain::RequestMeta;

pub(super) struct CallerHeaders {
    pub authorization: Option<String>,
    pub meta: RequestMeta,
    pub idempotency_key: Option<String>,
}

/// The caller's headers; the `Idempotency-Key` checked: 1 to 255 printable
/// ASCII characters.
pub(super) fn caller_headers(request: &Request<Incoming>) -> Result<CallerHeaders, ApiError> {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    // Judged on the raw bytes: a key that is not text (non-ASCII) must be
    // refused, not read as absent (which would run the request twice).
    let idempotency_key = match request.headers().get("idempotency-key").map(|v| v.as_bytes()) {
        None => None,
        Some(key) if key.is_empty() || key.len() > 255 || !key.iter().all(u8::is_ascii_graphic) => {
            return Err(ApiError::BadRequest("Idempotency-Key must be 1 to 255 printable ASCII characters".into()))
        }
        Some(key) => Some(String::from_utf8_lossy(key).into_owned()),
    };
    Ok(CallerHeaders {
        authorization: header("authorization"),
        meta: RequestMeta { forwarded_for: header("x-forwarded-for"), user_agent: header("user-agent") },
        idempotency_key,
    })
}
