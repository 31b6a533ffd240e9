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
use serde_json::json;

use super::error::ApiError;
use super::wallet::Answer;
use crate::auth::{AuthError, JwtVerifier, Traveler};
use crate::bookings::store::{self, Booking};
use crate::bookings::{flow, Actor, Driver, Ports};
use crate::database::RequestMeta;
use crate::domain::Money;
use crate::state::AppState;

pub const ROUTE_CREATE: &str = "POST /v1/bookings";

impl<'a> Ports<'a> {
    pub fn of(state: &'a AppState) -> Result<Self, ApiError> {
        match (&state.database, &state.stripe, &state.duffel) {
            (Some(database), Some(stripe), Some(duffel)) => Ok(Ports {
                database,
                stripe: stripe.as_ref(),
                duffel: duffel.as_ref(),
                crypto: &state.crypto,
                policy: &state.settings.bookings,
                locks: &state.booking_locks,
            }),
            _ => Err(ApiError::BookingsNotConfigured),
        }
    }
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
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let authorization = header("authorization");
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
    let idempotency_key = super::wallet::idempotency_key_of(header("idempotency-key"))?;
    let meta = RequestMeta { forwarded_for: header("x-forwarded-for"), user_agent: header("user-agent") };
    Ok(Headers { caller, meta, idempotency_key })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBooking {
    campaign_id: uuid::Uuid,
    offer_id: String,
    passengers: serde_json::Value,
    amount: i64,
    currency: String,
    /// IATA codes, e.g. "LHR-JFK": a Radar signal.
    route: Option<String>,
}

/// Checks what the database CHECKs would refuse later, with clearer words.
fn validate(input: &NewBooking) -> Result<Money, ApiError> {
    let offer_ok = input
        .offer_id
        .strip_prefix("off_")
        .is_some_and(|rest| (1..=64).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !offer_ok {
        return Err(ApiError::InvalidBooking("offer_id must be a Duffel offer id (off_...)".into()));
    }
    let passengers = input.passengers.as_array().filter(|list| (1..=9).contains(&list.len()));
    let passengers_ok = passengers.is_some_and(|list| {
        list.iter().all(|p| p["id"].as_str().is_some_and(|id| !id.is_empty()) && p["given_name"].is_string() && p["family_name"].is_string())
    });
    if !passengers_ok {
        return Err(ApiError::InvalidBooking("passengers must be 1 to 9 objects with id, given_name and family_name".into()));
    }
    if let Some(route) = &input.route {
        let legs: Vec<&str> = route.split('-').collect();
        if !(2..=6).contains(&legs.len()) || !legs.iter().all(|l| l.len() == 3 && l.bytes().all(|b| b.is_ascii_uppercase())) {
            return Err(ApiError::InvalidBooking("route must be IATA codes joined by '-', e.g. LHR-JFK".into()));
        }
    }
    Ok(Money::new(input.amount, &input.currency)?)
}

/// Drives the saga in its own task: a client that hangs up does not cut a
/// booking off between a Stripe call and the write of its result.
async fn drive_detached(state: &Arc<AppState>, actor: Actor, id: uuid::Uuid, fresh: bool) -> Result<Booking, ApiError> {
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let ports = Ports::of(&state)?;
        flow::drive(ports, &actor, id, fresh, Driver::Request).await?.ok_or(ApiError::BookingInProgress)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("booking task: {e}")))?
}

async fn answer(state: &AppState, actor: &Actor, booking: &Booking, status: StatusCode) -> Result<Answer, ApiError> {
    let database = state.database.as_ref().ok_or(ApiError::NotConfigured)?;
    let mut tx = database.as_traveler(&actor.traveler, &actor.meta).await?;
    let history = store::history(&mut tx, booking.id).await?;
    tx.commit().await?;
    let window = chrono::Duration::hours(state.settings.bookings.capture_window_hours);
    Ok((status, json!({ "data": store::view(booking, &history, window) })))
}

/// `POST /v1/bookings`.
pub async fn create(state: &Arc<AppState>, request: Request<Incoming>) -> Result<Answer, ApiError> {
    let Headers { caller, meta, idempotency_key } = headers(state, &request, true)?;
    let key = idempotency_key.ok_or_else(|| ApiError::BadRequest("POST /v1/bookings needs an Idempotency-Key header".into()))?;
    let body = super::read_body(request, state.settings.limits.max_body_bytes).await?;
    let input: NewBooking = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    let ports = Ports::of(state)?;
    let traveler = match caller {
        Caller::Traveler(traveler) => traveler,
        Caller::Service => {
            let mut tx = ports.database.as_system().await?;
            let owner: Option<uuid::Uuid> = sqlx::query_scalar("SELECT wallet_internal.campaign_owner($1)")
                .bind(input.campaign_id)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Traveler::acting_for(owner.ok_or(ApiError::CampaignNotFound)?, "parker-wallet/campaign-owner")
        }
    };
    let actor = Actor { traveler, meta };
    let user_id = actor.traveler.user_id;
    let print = super::idempotency::fingerprint(ROUTE_CREATE, user_id, &body);

    let mut tx = ports.database.as_traveler(&actor.traveler, &actor.meta).await?;
    if let Some(existing) = store::by_key(&mut tx, user_id, &key).await? {
        tx.commit().await?;
        return retry(state, actor, &existing, &print).await;
    }
    let total = validate(&input)?;
    let consent: Option<Option<chrono::DateTime<chrono::Utc>>> =
        sqlx::query_scalar("SELECT consent_at FROM public.campaigns WHERE id = $1 AND user_id = $2")
            .bind(input.campaign_id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
    match consent {
        None => return Err(ApiError::CampaignNotFound),
        Some(None) => return Err(ApiError::ConsentRequired),
        Some(Some(_)) => {}
    }
    if store::usable_cards(&mut tx, user_id).await?.is_empty() {
        return Err(ApiError::NoUsableCard);
    }
    tx.commit().await?;

    let passengers = serde_json::to_vec(&input.passengers).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let sealed = ports.crypto.encrypt(&passengers, &flow::passengers_context(user_id)?).await?;
    let mut tx = ports.database.as_traveler(&actor.traveler, &actor.meta).await?;
    let inserted: Option<uuid::Uuid> = sqlx::query_scalar(
        "INSERT INTO public.booking_charges
           (user_id, campaign_id, idempotency_key, request_fingerprint, offer_id, route, passengers_sealed, amount, currency, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'authorizing')
         ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(user_id)
    .bind(input.campaign_id)
    .bind(&key)
    .bind(&print)
    .bind(&input.offer_id)
    .bind(&input.route)
    .bind(&sealed)
    .bind(total.minor_units())
    .bind(total.currency())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = inserted else {
        // A concurrent twin inserted first: join it.
        let existing = store::by_key(&mut tx, user_id, &key).await?.ok_or(ApiError::BookingInProgress)?;
        tx.commit().await?;
        return retry(state, actor, &existing, &print).await;
    };
    tx.commit().await?;
    let booking = drive_detached(state, actor.clone(), id, true).await?;
    answer(state, &actor, &booking, StatusCode::CREATED).await
}

/// The same key again: the same request continues (or replays) its booking;
/// another request under the key is refused.
async fn retry(state: &Arc<AppState>, actor: Actor, existing: &Booking, print: &[u8]) -> Result<Answer, ApiError> {
    if existing.request_fingerprint != print {
        return Err(ApiError::IdempotencyKeyReused);
    }
    let booking = drive_detached(state, actor.clone(), existing.id, false).await?;
    answer(state, &actor, &booking, StatusCode::OK).await
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
    let ports = Ports::of(state)?;
    let booking = flow::read(ports, &actor, id).await?;
    let (status, mut body) = answer(state, &actor, &booking, StatusCode::OK).await?;
    if booking.state() == crate::bookings::saga::State::RequiresAuthentication {
        if let Some(intent) = &booking.stripe_payment_intent_id {
            let view = ports.stripe.retrieve_payment_intent(intent).await?;
            body["data"]["authentication"] = json!({
                "payment_intent_id": intent,
                "client_secret": view.client_secret.as_ref().map(secrecy::ExposeSecret::expose_secret),
            });
        }
    }
    Ok((status, body))
}

/// `POST /v1/bookings/{id}/resume`: after the traveler completed 3-D Secure.
pub async fn resume(state: &Arc<AppState>, request: Request<Incoming>, id: uuid::Uuid) -> Result<Answer, ApiError> {
    let Headers { caller, meta, .. } = headers(state, &request, false)?;
    let actor = Actor { traveler: traveler_only(caller)?, meta };
    let task_state = Arc::clone(state);
    let task_actor = actor.clone();
    let booking = tokio::spawn(async move {
        let ports = Ports::of(&task_state)?;
        flow::resume(ports, &task_actor, id).await
    })
    .await
    .map_err(|e| ApiError::Internal(format!("booking task: {e}")))??;
    answer(state, &actor, &booking, StatusCode::OK).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(offer: &str, passengers: serde_json::Value, route: Option<&str>) -> NewBooking {
        NewBooking {
            campaign_id: uuid::Uuid::nil(),
            offer_id: offer.into(),
            passengers,
            amount: 1000,
            currency: "usd".into(),
            route: route.map(str::to_owned),
        }
    }

    #[test]
    fn validation_names_the_broken_field() {
        let one = json!([{"id": "pas_1", "given_name": "Ada", "family_name": "Lovelace"}]);
        assert!(validate(&input("off_123", one.clone(), Some("LHR-JFK"))).is_ok());
        for (offer, passengers, route) in [
            ("ord_123", one.clone(), None),
            ("off_", one.clone(), None),
            ("off_12;3", one.clone(), None),
            ("off_123", json!([]), None),
            ("off_123", json!([{"given_name": "Ada"}]), None),
            ("off_123", json!({"id": "pas_1"}), None),
            ("off_123", one.clone(), Some("lhr-jfk")),
            ("off_123", one.clone(), Some("LHR")),
        ] {
            assert!(matches!(validate(&input(offer, passengers, route)), Err(ApiError::InvalidBooking(_))), "{offer} {route:?}");
        }
    }
}
