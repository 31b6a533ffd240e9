//! A tiny HTTP/1.1 server on loopback for the test fakes: every request goes to
//! one async handler; the handler may also never answer (to play a hung peer).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A request as the fakes see it: read whole.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub type Reply = Response<Full<Bytes>>;

pub fn json_reply(status: u16, body: &serde_json::Value) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

/// Serves `handler` on 127.0.0.1 (a free port) until the test ends; returns the base URL.
pub async fn serve<H, F>(handler: H) -> anyhow::Result<String>
where
    H: Fn(Seen) -> F + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    serve_on(0, handler).await
}

/// [`serve`] on a given port (0: any free one).
pub async fn serve_on<H, F>(port: u16, handler: H) -> anyhow::Result<String>
where
    H: Fn(Seen) -> F + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let handler = Arc::clone(&handler);
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        let seen = Seen {
                            method: parts.method.to_string(),
                            target: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                            headers: parts
                                .headers
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                                .collect(),
                            body,
                        };
                        Ok::<_, Infallible>(handler(seen).await)
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(url)
}

/// What a fake does with the next matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with the service's error envelope; nothing happens.
    Fail(u16),
    /// Do the work, then answer this status: the caller cannot know it worked.
    ActThenFail(u16),
    /// Never answer, and never act: the state was written, the call not made.
    Hang,
    /// Act, then never answer: the call was made, its answer lost.
    ActThenHang,
    /// Take this long, then act and answer as usual: a busy upstream.
    Slow(std::time::Duration),
}

/// Faults queued per (method, path fragment), taken in order, once each; and a
/// signal when a request was left hanging (the moment to kill the caller).
#[derive(Default)]
pub struct Faults {
    queued: std::sync::Mutex<Vec<(String, String, Fault)>>,
    hanging: tokio::sync::Notify,
}

impl Faults {
    pub fn inject(&self, method: &str, path_fragment: &str, fault: Fault) {
        self.queued.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((
            method.to_owned(),
            path_fragment.to_owned(),
            fault,
        ));
    }

    pub fn clear(&self) {
        self.queued.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    pub fn take(&self, seen: &Seen) -> Option<Fault> {
        let mut queued = self.queued.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let path = seen.target.split('?').next().unwrap_or_default();
        let index = queued
            .iter()
            .position(|(method, fragment, _)| *method == seen.method && path.contains(fragment.as_str()))?;
        Some(queued.remove(index).2)
    }

    /// Parks the request forever, after telling [`Faults::hung`] waiters.
    pub async fn hang(&self) -> Reply {
        self.hanging.notify_one();
        std::future::pending::<()>().await;
        json_reply(500, &serde_json::Value::Null)
    }

    /// Waits until a request is left hanging.
    pub async fn hung(&self) -> anyhow::Result<()> {
        tokio::time::timeout(std::time::Duration::from_secs(20), self.hanging.notified())
            .await
            .map_err(|_| anyhow::anyhow!("no request reached the injected hang within 20 s"))
    }
}
