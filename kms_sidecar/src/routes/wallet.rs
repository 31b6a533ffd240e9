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
