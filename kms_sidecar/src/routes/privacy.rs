//! `/v1/privacy/...`: the traveler's GDPR rights. The export is the one
//! streamed answer: written by a task as it reads, so that a long history
//! never sits in memory, and cut short (the reader sees an incomplete
//! document) if anything fails once the first byte is out.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc::Receiver;

use super::error::ApiError;
use super::{admit, wallet, HttpResponse};
use crate::privacy::export::Export;
use crate::privacy::PrivacyError;
use crate::state::AppState;

/// Chunks the export task sends, as a response body.
struct ChannelBody(Receiver<Result<Bytes, std::io::Error>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|chunk| chunk.map(Frame::data)))
    }
}

/// `GET /v1/privacy/export`: everything held on the traveler, as one JSON document.
pub async fn export(state: &Arc<AppState>, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let call = wallet::authenticate(state, &request)?;
    let admission = admit(state, call.actor.traveler.user_id).await?;
    let export = Export::prepare(call.wallet.database, call.wallet.stripe, &call.actor).await?;
    let (sink, chunks) = tokio::sync::mpsc::channel(4);
    let state = Arc::clone(state);
    tokio::spawn(async move {
        // The traveler's turn lasts as long as the writing.
        let _admission = admission;
        let Some(database) = state.database.as_ref() else { return };
        match export.write(database, &state.crypto, &sink).await {
            Ok(()) | Err(PrivacyError::Closed) => {}
            Err(error) => {
                tracing::error!(%error, "the export was cut short");
                let _ = sink.send(Err(std::io::Error::other("the export could not be completed"))).await;
            }
        }
    });
    let mut response = Response::new(ChannelBody(chunks).boxed());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    headers.insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-store"));
    headers.insert(
        hyper::header::CONTENT_DISPOSITION,
        hyper::header::HeaderValue::from_static("attachment; filename=\"parker-wallet-export.json\""),
    );
    Ok(response)
}
