//! A proxy in front of localstripe that can break Stripe on cue: answer 5xx,
//! hang before forwarding (the sidecar wrote its state, Stripe never heard), or
//! forward and then hang or fail (Stripe acted, the answer is lost).

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::json;

use crate::fake_http::{json_reply, serve, Fault, Faults, Reply, Seen};

#[derive(Clone)]
pub struct StripeProxy {
    /// Give this to the sidecar as Stripe's API base.
    pub url: String,
    pub faults: Arc<Faults>,
}

fn stripe_error(status: u16) -> Reply {
    json_reply(status, &json!({ "error": { "type": "api_error", "message": "injected by the test proxy" } }))
}

async fn forward(upstream: &str, seen: &Seen) -> Reply {
    let result = async {
        let stream = tokio::net::TcpStream::connect(upstream.trim_start_matches("http://")).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut request = hyper::Request::builder().method(seen.method.as_str()).uri(seen.target.as_str());
        for (name, value) in &seen.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = sender.send_request(request.body(Full::new(seen.body.clone()))?).await?;
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body()).await?.to_bytes();
        let mut reply = hyper::Response::new(Full::new(body));
        *reply.status_mut() = status;
        reply
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
        Ok::<_, anyhow::Error>(reply)
    }
    .await;
    result.unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}

impl StripeProxy {
    pub async fn start(localstripe_url: &str) -> anyhow::Result<Self> {
        let faults = Arc::new(Faults::default());
        let upstream = localstripe_url.trim_end_matches('/').to_owned();
        let shared = Arc::clone(&faults);
        let url = serve(move |seen| {
            let (faults, upstream) = (Arc::clone(&shared), upstream.clone());
            async move {
                match faults.take(&seen) {
                    None => forward(&upstream, &seen).await,
                    Some(Fault::Fail(status)) => stripe_error(status),
                    Some(Fault::Hang) => faults.hang().await,
                    Some(Fault::ActThenFail(status)) => {
                        forward(&upstream, &seen).await;
                        stripe_error(status)
                    }
                    Some(Fault::ActThenHang) => {
                        forward(&upstream, &seen).await;
                        faults.hang().await
                    }
                    Some(Fault::Slow(delay)) => {
                        tokio::time::sleep(delay).await;
                        forward(&upstream, &seen).await
                    }
                }
            }
        })
        .await?;
        Ok(Self { url: format!("{url}/"), faults })
    }
}
