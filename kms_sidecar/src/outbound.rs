//! The HTTPS client the sidecar's own adapters share (Duffel, Twilio): hyper
//! over rustls with the web PKI roots, each call bounded by a deadline.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::metrics::CallOutcome;

pub type HttpsClient =
    Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Full<Bytes>>;

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("no answer within the deadline")]
    Timeout,
    #[error("{0}")]
    Failed(String),
}

pub fn https_client() -> HttpsClient {
    crate::tls::ensure_provider();
    let connector =
        hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots().https_or_http().enable_http1().build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends `request` to `dependency` (its name in the metrics) and reads the
/// whole answer, within `timeout`: (status, body).
pub async fn exchange(
    dependency: &'static str,
    client: &HttpsClient,
    request: hyper::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(u16, Bytes), OutboundError> {
    let call = async {
        let response = client.request(request).await.map_err(|e| OutboundError::Failed(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|e| OutboundError::Failed(e.to_string()))?;
        Ok((status, body.to_bytes()))
    };
    let answer = async { tokio::time::timeout(timeout, call).await.map_err(|_| OutboundError::Timeout)? };
    crate::metrics::timed(dependency, answer, |result| match result {
        Ok((status, _)) => CallOutcome::of_status(*status),
        Err(OutboundError::Timeout) => CallOutcome::Timeout,
        Err(OutboundError::Failed(_)) => CallOutcome::Failed,
    })
    .await
}
