//! RFC 9457 problem details: the only error shape the sidecar's HTTP API returns.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{header, Response, StatusCode};
use serde::Serialize;

/// An error as a client sees it. `code` is stable and meant for programs;
/// `title` and `detail` are for people and may change.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// With a 429 or a 503: when to try again (also the `Retry-After` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// With a wrong verification code: how many more may be tried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts_remaining: Option<u16>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, title: &'static str) -> Self {
        Self {
            type_uri: format!("https://parker-wallet.dev/problems/{code}"),
            title,
            status: status.as_u16(),
            code,
            detail: None,
            retry_after_secs: None,
            attempts_remaining: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "No such resource")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed on this resource")
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::TOO_MANY_REQUESTS {
            // Unless said otherwise: a traveler's own earlier requests finish within a Stripe timeout.
            let after = self.retry_after_secs.unwrap_or(1);
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(after));
        } else if let Some(after) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(after));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_rfc9457_members_with_stable_code() {
        let problem = Problem::not_found().with_detail("no route /x");
        let json: serde_json::Value = serde_json::to_value(&problem).unwrap();
        assert_eq!(json["status"], 404);
        assert_eq!(json["code"], "not_found");
        assert_eq!(json["type"], "https://parker-wallet.dev/problems/not_found");
        assert_eq!(json["detail"], "no route /x");
    }

    #[test]
    fn response_carries_problem_content_type() {
        let response = Problem::method_not_allowed().into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
    }
}
