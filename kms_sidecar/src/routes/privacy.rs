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

use schemars::JsonSchema;
use serde::Deserialize;

use super::error::ApiError;
use super::views::{Data, ErasureView};
use super::wallet::WalletCall;
use super::{admit, answer, parse_json, wallet, Answer, HttpResponse};
use crate::privacy::erase::{self, CONFIRMATION, REAUTHENTICATION_WINDOW};
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
    let slot = Arc::clone(&state.export_slots).try_acquire_owned().map_err(|_| ApiError::TooManyRequests)?;
    let export = Export::prepare(call.wallet.database, call.wallet.stripe, &call.actor).await?;
    let (sink, chunks) = tokio::sync::mpsc::channel(4);
    let state = Arc::clone(state);
    tokio::spawn(async move {
        // The traveler's turn and the slot last as long as the writing.
        let (_admission, _slot) = (admission, slot);
        let Some(database) = state.database.as_ref() else { return };
        match export.write(database, &state.crypto, &sink).await {
            Ok(()) | Err(PrivacyError::Closed) => {}
            Err(PrivacyError::TooSlow) => tracing::warn!("the export's reader was too slow: cut short"),
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

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "EraseAccountRequest")]
pub(super) struct EraseAccount {
    /// Exactly `erase my account`.
    confirmation: String,
}

/// `DELETE /v1/privacy/account {"confirmation": "erase my account"}`: 202 with
/// the erasure recorded (the operator's `kms-sidecar erase` carries it out);
/// 409 `money_in_flight` while a booking is not settled.
pub async fn erase_account(call: &WalletCall<'_>, body: &[u8]) -> Result<Answer, ApiError> {
    let input: EraseAccount = parse_json(body)?;
    if input.confirmation != CONFIRMATION {
        return Err(PrivacyError::ConfirmationRequired.into());
    }
    if !call.actor.traveler.signed_in_within(REAUTHENTICATION_WINDOW, chrono::Utc::now()) {
        return Err(PrivacyError::ReauthenticationRequired.into());
    }
    let user_id = call.actor.traveler.user_id;
    let mut tx = call.wallet.database.as_traveler(&call.actor.traveler, &call.actor.meta).await?;
    let erasure = erase::request(&mut tx, user_id, &format!("user:{user_id}")).await?;
    tx.commit().await?;
    // Also outside the database: a restore to an earlier point re-applies it.
    tracing::info!(%user_id, "erasure requested");
    answer(StatusCode::ACCEPTED, &Data { data: ErasureView::from(erasure) })
}
