//! The traveler's wallet (`/v1/wallet/...`), for Edge Functions forwarding the
//! traveler's JWT. Every query runs as the traveler (see `database`).

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;

use super::error::ApiError;
use super::{json_response, HttpResponse};
use crate::auth::{JwtVerifier, Traveler};
use crate::database::{Database, RequestMeta};
use crate::state::AppState;

/// The verified traveler, the database, and the request's audit metadata.
pub fn authenticate<'s>(state: &'s AppState, request: &Request<Incoming>) -> Result<(Traveler, &'s Database, RequestMeta), ApiError> {
    let (Some(verifier), Some(database)) = (&state.verifier, &state.database) else {
        return Err(ApiError::NotConfigured);
    };
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let authorization = header("authorization");
    let traveler = verifier.verify(JwtVerifier::bearer(authorization.as_deref())?)?;
    let meta = RequestMeta { forwarded_for: header("x-forwarded-for"), user_agent: header("user-agent") };
    Ok((traveler, database, meta))
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

/// `GET /v1/wallet/payment-methods`: the traveler's cards, default first, then
/// newest; expired cards flagged.
pub async fn list_payment_methods(state: &AppState, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let (traveler, database, meta) = authenticate(state, &request)?;
    let mut tx = database.as_traveler(&traveler, &meta).await?;
    let cards: Vec<Card> = sqlx::query_as(
        "SELECT id, brand, last4, exp_month, exp_year, is_default, created_at,
                coalesce((exp_year, exp_month) < (extract(year FROM current_date)::int,
                                                  extract(month FROM current_date)::int), false) AS expired
           FROM public.payment_methods
          WHERE user_id = $1
          ORDER BY is_default DESC, created_at DESC",
    )
    .bind(traveler.user_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(json_response(StatusCode::OK, &json!({ "data": cards })))
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
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('parker_wallet.customer:' || $1::text, 0))")
        .bind(traveler.user_id)
        .execute(&mut *tx)
        .await?;
    let existing: Option<String> = sqlx::query_scalar("SELECT stripe_customer_id FROM public.wallet_customers WHERE user_id = $1")
        .bind(traveler.user_id)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(customer) = existing {
        return Ok(customer);
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

/// `POST /v1/wallet/setup-intents`: a SetupIntent (off-session use) for the
/// traveler's customer, created lazily; answers the client secret Stripe.js needs.
pub async fn create_setup_intent(state: &AppState, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let (traveler, database, meta) = authenticate(state, &request)?;
    let stripe = state.stripe.as_deref().ok_or(ApiError::NotConfigured)?;
    let idempotency_key = request
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|key| format!("parker-wallet:setup-intent:{}:{key}", traveler.user_id));
    let customer = ensure_customer(database, stripe, &traveler, &meta).await?;
    let intent = stripe.create_setup_intent(&customer, idempotency_key.as_deref()).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "setup_intent_id": intent.id,
            "client_secret": secrecy::ExposeSecret::expose_secret(&intent.client_secret),
            "customer_id": customer,
        }),
    ))
}
