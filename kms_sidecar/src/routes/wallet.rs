//! The traveler's wallet (`/v1/wallet/...`), for Edge Functions forwarding the
//! traveler's JWT. Every query runs as the traveler (see `database`).

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;

use super::error::ApiError;

use crate::auth::{JwtVerifier, Traveler};
use crate::database::{Database, RequestMeta};
use crate::domain::sealed::CARD_METADATA;
use crate::state::AppState;

/// A wallet request: the verified traveler, the database, the request's audit
/// metadata and its `Idempotency-Key`, if any.
pub struct WalletCall<'s> {
    pub traveler: Traveler,
    pub database: &'s Database,
    pub meta: RequestMeta,
    pub idempotency_key: Option<String>,
}

/// A route's answer before it becomes HTTP: status and JSON body.
pub type Answer = (StatusCode, serde_json::Value);

pub fn authenticate<'s>(state: &'s AppState, request: &Request<Incoming>) -> Result<WalletCall<'s>, ApiError> {
    let (Some(verifier), Some(database)) = (&state.verifier, &state.database) else {
        return Err(ApiError::NotConfigured);
    };
    let CallerHeaders { authorization, meta, idempotency_key } = caller_headers(request)?;
    let traveler = verifier.verify(JwtVerifier::bearer(authorization.as_deref())?)?;
    Ok(WalletCall { traveler, database, meta, idempotency_key })
}

/// What a caller's request says besides its body: the bearer token, the audit
/// metadata, and the `Idempotency-Key` (checked: 1 to 255 printable characters).
pub(crate) struct CallerHeaders {
    pub authorization: Option<String>,
    pub meta: RequestMeta,
    pub idempotency_key: Option<String>,
}

pub(crate) fn caller_headers(request: &Request<Incoming>) -> Result<CallerHeaders, ApiError> {
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

#[derive(sqlx::FromRow, serde::Serialize)]
struct Card {
    id: uuid::Uuid,
    brand: Option<String>,
    last4: Option<String>,
    exp_month: Option<i16>,
    exp_year: Option<i16>,
    is_default: bool,
    expired: bool,
    created_at: chrono::DateTime<chrono::Utc>,
}

/// A card as the API shows it (never ciphertext), for one traveler ($1).
const CARD_SELECT: &str = "SELECT id, brand, last4, exp_month, exp_year, is_default, created_at,
        coalesce((exp_year, exp_month) < (extract(year FROM current_date)::int,
                                          extract(month FROM current_date)::int), false) AS expired
   FROM public.payment_methods
  WHERE user_id = $1";

/// `GET /v1/wallet/payment-methods`: the traveler's cards, default first, then
/// newest; expired cards flagged.
pub async fn list_payment_methods(call: &WalletCall<'_>) -> Result<Answer, ApiError> {
    let (traveler, database, meta) = (&call.traveler, call.database, &call.meta);
    let mut tx = database.as_traveler(traveler, meta).await?;
    let cards: Vec<Card> = sqlx::query_as(&format!("{CARD_SELECT} ORDER BY is_default DESC, created_at DESC"))
        .bind(traveler.user_id)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((StatusCode::OK, json!({ "data": cards })))
}

/// A transaction lock on one traveler's `scope`: their requests in that scope
/// queue, other travelers' do not.
async fn lock_traveler(tx: &mut sqlx::PgConnection, scope: &str, user_id: uuid::Uuid) -> Result<(), ApiError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('parker_wallet.' || $1 || ':' || $2::text, 0))")
        .bind(scope)
        .bind(user_id)
        .execute(tx)
        .await?;
    Ok(())
}

/// Serialises wallet changes of one traveler (default switching, adds, deletes).
pub(crate) async fn lock_wallet(tx: &mut sqlx::PgConnection, user_id: uuid::Uuid) -> Result<(), ApiError> {
    lock_traveler(tx, "wallet", user_id).await
}

async fn card_by_id(tx: &mut sqlx::PgConnection, user_id: uuid::Uuid, card_id: uuid::Uuid) -> Result<Card, ApiError> {
    sqlx::query_as(&format!("{CARD_SELECT} AND id = $2"))
        .bind(user_id)
        .bind(card_id)
        .fetch_optional(tx)
        .await?
        .ok_or(ApiError::CardNotFound)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AddCard {
    setup_intent_id: String,
}

fn stripe_id(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 250 && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// `POST /v1/wallet/payment-methods {setup_intent_id}`: stores the card a
/// succeeded SetupIntent of this traveler's customer collected. The same card
/// (fingerprint) again updates its row; the first card becomes the default.
pub async fn add_payment_method(state: &AppState, call: &WalletCall<'_>, body: &[u8]) -> Result<Answer, ApiError> {
    let (traveler, database, meta) = (&call.traveler, call.database, &call.meta);
    let stripe = state.stripe.as_deref().ok_or(ApiError::NotConfigured)?;
    let input: AddCard = serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    if !stripe_id(&input.setup_intent_id, "seti_") {
        return Err(ApiError::BadRequest("setup_intent_id is not a SetupIntent id".into()));
    }

    let customer: Option<String> = {
        let mut tx = database.as_traveler(traveler, meta).await?;
        sqlx::query_scalar("SELECT stripe_customer_id FROM public.wallet_customers WHERE user_id = $1")
            .bind(traveler.user_id)
            .fetch_optional(&mut *tx)
            .await?
    };
    // Another customer's SetupIntent, or none at all, is "not found": no leak.
    let customer = customer.ok_or(ApiError::SetupIntentNotFound)?;
    let card = card_of_setup_intent(stripe, &customer, &input.setup_intent_id).await?;
    let mut tx = database.as_traveler(traveler, meta).await?;
    let (card_id, replaced, status) = persist_card(state, &mut tx, traveler.user_id, &customer, &card).await?;
    let stored = card_by_id(&mut tx, traveler.user_id, card_id).await?;
    tx.commit().await?;
    detach_replaced(stripe, replaced).await;
    Ok((status, json!({ "data": stored })))
}

/// The card a succeeded SetupIntent of `customer` collected, attached to the
/// customer (Stripe's real API attaches it already; emulators may not).
pub(crate) async fn card_of_setup_intent(
    stripe: &dyn crate::payments::StripePort,
    customer: &str,
    setup_intent_id: &str,
) -> Result<crate::payments::CardDetails, ApiError> {
    let intent = match stripe.retrieve_setup_intent(setup_intent_id).await {
        Err(crate::payments::StripeError::Refused { status: 404, .. }) => return Err(ApiError::SetupIntentNotFound),
        other => other?,
    };
    if intent.customer_id.as_deref() != Some(customer) {
        return Err(ApiError::SetupIntentNotFound);
    }
    let payment_method = match (intent.succeeded, intent.payment_method_id) {
        (true, Some(id)) => id,
        _ => return Err(ApiError::SetupIntentNotSucceeded),
    };
    let card = stripe.retrieve_card(&payment_method).await?;
    match card.customer_id.as_deref() {
        None => {
            stripe
                .attach_payment_method(&payment_method, customer, &format!("parker-wallet:attach:{payment_method}"))
                .await?
        }
        Some(owner) if owner == customer => {}
        Some(_) => return Err(ApiError::SetupIntentNotFound),
    }
    Ok(card)
}

/// Stores `card` for the traveler under the wallet lock: the same payment method
/// or the same card (fingerprint) updates its row, else a new row (default when
/// the traveler has none). Returns the row, the payment method it replaced (to
/// detach after commit) and 201 or 200.
pub(crate) async fn persist_card(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    user_id: uuid::Uuid,
    customer: &str,
    card: &crate::payments::CardDetails,
) -> Result<(uuid::Uuid, Option<String>, StatusCode), ApiError> {
    let payment_method = &card.payment_method_id;
    lock_wallet(&mut *tx, user_id).await?;
    let existing: Option<(uuid::Uuid, String)> = sqlx::query_as(
        "SELECT id, stripe_payment_method_id FROM public.payment_methods
          WHERE user_id = $1 AND (stripe_payment_method_id = $2 OR card_fingerprint = $3)
          ORDER BY stripe_payment_method_id = $2 DESC LIMIT 1",
    )
    .bind(user_id)
    .bind(payment_method)
    .bind(&card.fingerprint)
    .fetch_optional(&mut *tx)
    .await?;
    // The row id is known before the insert: the sealed metadata is bound to it.
    let id = existing.as_ref().map_or_else(uuid::Uuid::new_v4, |(id, _)| *id);
    let metadata = zeroize::Zeroizing::new(serde_json::to_vec(card).map_err(|e| ApiError::BadRequest(e.to_string()))?);
    let sealed = state.crypto.encrypt(&metadata, &CARD_METADATA.context(user_id, id)).await?;
    let version = i16::from(crate::crypto::format::FORMAT_VERSION);
    Ok(match existing {
        Some((id, previous)) => {
            sqlx::query(
                "UPDATE public.payment_methods
                    SET stripe_payment_method_id = $2, encrypted_card_data = $3, brand = $4, last4 = $5,
                        exp_month = $6, exp_year = $7, card_fingerprint = $8, encryption_version = $9
                  WHERE id = $1",
            )
            .bind(id)
            .bind(payment_method)
            .bind(&sealed)
            .bind(&card.brand)
            .bind(&card.last4)
            .bind(card.exp_month)
            .bind(card.exp_year)
            .bind(&card.fingerprint)
            .bind(version)
            .execute(&mut *tx)
            .await?;
            (id, (previous != *payment_method).then_some(previous), StatusCode::OK)
        }
        None => {
            sqlx::query(
                "INSERT INTO public.payment_methods
                   (id, user_id, stripe_customer_id, stripe_payment_method_id, encrypted_card_data, card_fingerprint,
                    brand, last4, exp_month, exp_year, is_default, encryption_version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                         NOT EXISTS (SELECT FROM public.payment_methods WHERE user_id = $2 AND is_default), $11)",
            )
            .bind(id)
            .bind(user_id)
            .bind(customer)
            .bind(payment_method)
            .bind(&sealed)
            .bind(&card.fingerprint)
            .bind(&card.brand)
            .bind(&card.last4)
            .bind(card.exp_month)
            .bind(card.exp_year)
            .bind(version)
            .execute(&mut *tx)
            .await?;
            (id, None, StatusCode::CREATED)
        }
    })
}

/// The same card saved again: the older Stripe copy is no longer ours to keep.
pub(crate) async fn detach_replaced(stripe: &dyn crate::payments::StripePort, replaced: Option<String>) {
    if let Some(previous) = replaced {
        if let Err(error) = stripe.detach_payment_method(&previous).await {
            tracing::warn!(%error, payment_method = %previous, "could not detach a replaced card; its webhook will");
        }
    }
}

/// Deletes a card row and, when it was the default, promotes the newest remaining card.
pub(crate) async fn remove_card(
    tx: &mut sqlx::PgConnection,
    user_id: uuid::Uuid,
    card_id: uuid::Uuid,
) -> Result<(), ApiError> {
    let was_default: bool = sqlx::query_scalar("DELETE FROM public.payment_methods WHERE id = $1 RETURNING is_default")
        .bind(card_id)
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or(false);
    if was_default {
        sqlx::query(
            "UPDATE public.payment_methods SET is_default = true
              WHERE id = (SELECT id FROM public.payment_methods WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1)",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// `POST /v1/wallet/payment-methods/{id}/default`: makes one card the default.
/// Under the wallet lock, in one transaction: never zero or two defaults.
pub async fn make_default(call: &WalletCall<'_>, card_id: uuid::Uuid) -> Result<Answer, ApiError> {
    let (traveler, database, meta) = (&call.traveler, call.database, &call.meta);
    let mut tx = database.as_traveler(traveler, meta).await?;
    lock_wallet(&mut tx, traveler.user_id).await?;
    card_by_id(&mut tx, traveler.user_id, card_id).await?;
    sqlx::query("UPDATE public.payment_methods SET is_default = false WHERE user_id = $1 AND is_default AND id <> $2")
        .bind(traveler.user_id)
        .bind(card_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE public.payment_methods SET is_default = true WHERE user_id = $1 AND id = $2 AND NOT is_default",
    )
    .bind(traveler.user_id)
    .bind(card_id)
    .execute(&mut *tx)
    .await?;
    let card = card_by_id(&mut tx, traveler.user_id, card_id).await?;
    tx.commit().await?;
    Ok((StatusCode::OK, json!({ "data": card })))
}

/// `DELETE /v1/wallet/payment-methods/{id}`: detaches the card at Stripe, deletes
/// it, and promotes the most recently added remaining card if it was the default.
pub async fn delete_payment_method(
    state: &AppState,
    call: &WalletCall<'_>,
    card_id: uuid::Uuid,
) -> Result<Answer, ApiError> {
    let (traveler, database, meta) = (&call.traveler, call.database, &call.meta);
    let stripe = state.stripe.as_deref().ok_or(ApiError::NotConfigured)?;
    let mut tx = database.as_traveler(traveler, meta).await?;
    lock_wallet(&mut tx, traveler.user_id).await?;
    let payment_method: String = sqlx::query_scalar(
        "SELECT stripe_payment_method_id FROM public.payment_methods WHERE user_id = $1 AND id = $2",
    )
    .bind(traveler.user_id)
    .bind(card_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::CardNotFound)?;
    match stripe.detach_payment_method(&payment_method).await {
        // Already detached (or gone) at Stripe: nothing left to undo there.
        Ok(()) | Err(crate::payments::StripeError::Refused { status: 400 | 404, .. }) => {}
        Err(other) => return Err(other.into()),
    }
    remove_card(&mut tx, traveler.user_id, card_id).await?;
    tx.commit().await?;
    Ok((StatusCode::OK, json!({ "deleted": card_id })))
}

/// The traveler's Stripe customer, created on first use. A per-traveler
/// transaction lock makes concurrent first calls wait for one creation instead of
/// racing (the unique row would refuse the loser, but only after Stripe had made
/// a second customer); the Stripe idempotency key derived from the user id makes a
/// retry after a crash return the same customer.
async fn ensure_customer(
    database: &Database,
    stripe: &dyn crate::payments::StripePort,
    traveler: &Traveler,
    meta: &RequestMeta,
) -> Result<String, ApiError> {
    let mut tx = database.as_traveler(traveler, meta).await?;
    lock_traveler(&mut tx, "customer", traveler.user_id).await?;
    let existing: Option<String> =
        sqlx::query_scalar("SELECT stripe_customer_id FROM public.wallet_customers WHERE user_id = $1")
            .bind(traveler.user_id)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(customer) = existing {
        return Ok(customer);
    }
    if !sqlx::query_scalar::<_, bool>("SELECT wallet_internal.traveler_exists()").fetch_one(&mut *tx).await? {
        return Err(ApiError::TravelerNotFound);
    }
    let email = traveler.claims["email"].as_str();
    let customer = stripe
        .create_customer(traveler.user_id, email, &format!("parker-wallet:customer:{}", traveler.user_id))
        .await?;
    sqlx::query("INSERT INTO public.wallet_customers (user_id, stripe_customer_id) VALUES ($1, $2)")
        .bind(traveler.user_id)
        .bind(&customer)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(customer)
}

/// A replayed SetupIntent answer with its client secret fetched again from
/// Stripe (the stored answer has it redacted).
pub async fn with_client_secret(state: &AppState, (status, mut body): Answer) -> Result<Answer, ApiError> {
    let Some(id) = body["setup_intent_id"].as_str().filter(|_| status.is_success()).map(str::to_owned) else {
        return Ok((status, body));
    };
    let stripe = state.stripe.as_deref().ok_or(ApiError::NotConfigured)?;
    let intent = stripe.retrieve_setup_intent(&id).await?;
    let secret =
        intent.client_secret.ok_or_else(|| ApiError::Internal(format!("SetupIntent {id} has no client secret")))?;
    body["client_secret"] = json!(secrecy::ExposeSecret::expose_secret(&secret));
    Ok((status, body))
}

/// `POST /v1/wallet/setup-intents`: a SetupIntent (off-session use) for the
/// traveler's customer, created lazily; answers the client secret Stripe.js needs.
pub async fn create_setup_intent(state: &AppState, call: &WalletCall<'_>) -> Result<Answer, ApiError> {
    let traveler = &call.traveler;
    let stripe = state.stripe.as_deref().ok_or(ApiError::NotConfigured)?;
    let idempotency_key =
        call.idempotency_key.as_deref().map(|key| format!("parker-wallet:setup-intent:{}:{key}", traveler.user_id));
    let customer = ensure_customer(call.database, stripe, traveler, &call.meta).await?;
    let intent = stripe.create_setup_intent(&customer, idempotency_key.as_deref()).await?;
    Ok((
        StatusCode::OK,
        json!({
            "setup_intent_id": intent.id,
            "client_secret": secrecy::ExposeSecret::expose_secret(&intent.client_secret),
            "customer_id": customer,
        }),
    ))
}
