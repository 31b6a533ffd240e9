//! `/v1/bookings`: book a campaign's offer on the traveler's saved card
//! (`POST /v1/bookings`), read a booking (`GET /v1/bookings/{id}`), continue
//! after 3-D Secure (`POST /v1/bookings/{id}/resume`).
//!
//! The booking row is its own idempotency record (unique per traveler and
//! `Idempotency-Key`): a retry with the same key and body picks the saga up
//! where it stands, even after a crash, instead of waiting out a stale claim.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::caller::{caller_headers, CallerHeaders};
use super::error::ApiError;
use super::views::{AuthenticationView, BookingView, Data};
use super::{admit, answer, Answer};
use crate::auth::{AuthError, JwtVerifier};
use crate::bookings::open::{self, Opened};
use crate::bookings::saga::State;
use crate::bookings::store::Booking;
use crate::bookings::{Actor, Driver, Ports};
use crate::domain::{RequestMeta, Traveler};
use crate::state::AppState;

fn ports_of(state: &AppState) -> Result<Ports<'_>, ApiError> {
    state.booking_ports().ok_or(ApiError::BookingsNotConfigured)
}

/// Who is asking. A traveler's JWT acts for its subject; the project's service
/// key (a server-side Edge Function) may act for a campaign's owner, on POST only.
enum Caller {
    Traveler(Traveler),
    Service,
}

struct Headers {
    caller: Caller,
    meta: RequestMeta,
    idempotency_key: Option<String>,
}

fn headers(state: &AppState, request: &Request<Incoming>, service_allowed: bool) -> Result<Headers, ApiError> {
    let verifier = state.verifier.as_ref().ok_or(ApiError::NotConfigured)?;
    let CallerHeaders { authorization, meta, idempotency_key } = caller_headers(request)?;
    let token = JwtVerifier::bearer(authorization.as_deref())?;
    let caller = match verifier.verify(token) {
        Ok(traveler) => Caller::Traveler(traveler),
        Err(error) if service_allowed => match verifier.verify_service(token) {
            Ok(()) => Caller::Service,
            Err(AuthError::WrongRole) => return Err(error.into()),
            Err(other) => return Err(other.into()),
        },
        Err(error) => return Err(error.into()),
    };
    Ok(Headers { caller, meta, idempotency_key })
}

/// Runs saga work in its own task: a client that hangs up does not cut a
/// booking off between a Stripe call and the write of its result.
async fn detached<F, Fut>(state: &Arc<AppState>, work: F) -> Result<Booking, ApiError>
where
    F: FnOnce(Arc<AppState>) -> Fut,
    Fut: std::future::Future<Output = Result<Booking, ApiError>> + Send + 'static,
{
    // The task's outbound waits still count as the request's (Server-Timing).
    let work = work(Arc::clone(state));
    let task = match crate::metrics::request_wait() {
        Some(wait) => tokio::spawn(crate::metrics::counting_waits(wait, work)),
        None => tokio::spawn(work),
    };
    task.await.map_err(|e| ApiError::Internal(format!("booking task: {e}")))?
}

async fn view(ports: Ports<'_>, actor: &Actor, booking: &Booking) -> Result<BookingView, ApiError> {
    let history = crate::bookings::history(ports, actor, booking.id).await?;
    Ok(BookingView::new(booking, history, chrono::Duration::hours(ports.policy.capture_window_hours)))
}

/// `POST /v1/bookings`.
pub async fn create(state: &Arc<AppState>, request: Request<Incoming>) -> Result<Answer, ApiError> {
    let Headers { caller, meta, idempotency_key } = headers(state, &request, true)?;
    let key = idempotency_key
        .ok_or_else(|| ApiError::BadRequest("POST /v1/bookings needs an Idempotency-Key header".into()))?;
    let body = super::read_body(request, state.settings.limits.max_body_bytes).await?;
    let ports = ports_of(state)?;
    let traveler = match caller {
        Caller::Traveler(traveler) => traveler,
        Caller::Service => {
            Traveler::acting_for(open::campaign_owner(ports.database, &body).await?, "parker-wallet/campaign-owner")
        }
    };
    let admission = admit(state, traveler.user_id).await?;
    let actor = Actor { traveler, meta };
    let (id, status) = match open::open(ports, &actor, &key, &body).await? {
        Opened::New(id) => (id, StatusCode::CREATED),
        Opened::Existing(id) => (id, StatusCode::OK),
    };
    let task_actor = actor.clone();
    let booking = detached(state, move |state| async move {
        // The place is the task's: a client that hangs up does not free it early.
        let _admission = admission;
        let booking = crate::bookings::drive(ports_of(&state)?, &task_actor, id, Driver::Opener).await?;
        booking.ok_or(ApiError::Booking(crate::bookings::BookingError::InProgress))
    })
    .await?;
    answer(status, &Data { data: view(ports, &actor, &booking).await? })
}

fn traveler_only(caller: Caller) -> Result<Traveler, ApiError> {
    match caller {
        Caller::Traveler(traveler) => Ok(traveler),
        Caller::Service => Err(ApiError::Unauthorized(AuthError::WrongRole)),
    }
}

/// `GET /v1/bookings/{id}`. While 3-D Secure is pending it also carries the
/// PaymentIntent's client secret, for Stripe.js on the traveler's device.
pub async fn show(state: &Arc<AppState>, request: Request<Incoming>, id: uuid::Uuid) -> Result<Answer, ApiError> {
    let Headers { caller, meta, .. } = headers(state, &request, false)?;
    let actor = Actor { traveler: traveler_only(caller)?, meta };
    let _admission = admit(state, actor.traveler.user_id).await?;
    let ports = ports_of(state)?;
    let booking = crate::bookings::read(ports, &actor, id).await?;
    let mut view = view(ports, &actor, &booking).await?;
    if booking.state() == State::RequiresAuthentication {
        if let Some(intent) = &booking.stripe_payment_intent_id {
            let payment_intent = ports.stripe.retrieve_payment_intent(intent).await?;
            // Off-session `authentication_required` leaves the PaymentIntent wanting
            // a payment method again: Stripe.js confirms it with this card.
            view.authentication = Some(AuthenticationView {
                payment_intent_id: intent.clone(),
                client_secret: payment_intent.client_secret.clone(),
                payment_method: booking.stripe_payment_method_id.clone(),
            });
        }
    }
    answer(StatusCode::OK, &Data { data: view })
}

/// `POST /v1/bookings/{id}/resume`: after the traveler completed 3-D Secure.
pub async fn resume(state: &Arc<AppState>, request: Request<Incoming>, id: uuid::Uuid) -> Result<Answer, ApiError> {
    let Headers { caller, meta, .. } = headers(state, &request, false)?;
    let actor = Actor { traveler: traveler_only(caller)?, meta };
    let admission = admit(state, actor.traveler.user_id).await?;
    let task_actor = actor.clone();
    let booking = detached(state, move |state| async move {
        let _admission = admission;
        Ok(crate::bookings::resume(ports_of(&state)?, &task_actor, id).await?)
    })
    .await?;
    answer(StatusCode::OK, &Data { data: view(ports_of(state)?, &actor, &booking).await? })
}
