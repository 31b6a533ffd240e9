//! `Idempotency-Key` for the wallet's POST and DELETE routes, stored in
//! `idempotency_keys` with a fingerprint of route, traveler and body
//! ([`crate::idempotency`]):
//! - first use: the request runs and its answer is stored (4xx included; a
//!   5xx, a 429, a 409 `money_in_flight` or a 403 `reauthentication_required`
//!   frees the key so a retry can run);
//! - same key, same request: the stored answer is replayed;
//! - same key, another request: 422 `idempotency_key_reused`;
//! - same key while the first still runs: 409 `idempotency_in_progress`;
//! - a key left "in progress" by a crashed sidecar is taken over after
//!   `ABANDONED_AFTER`, so a retry is never locked out for a day.
//!
//! Stored answers carry no client secret (`stripe::redact_client_secrets`):
//! a replay that needs one fetches it again (`wallet::with_client_secret`).

use hyper::StatusCode;

use super::error::ApiError;
use super::wallet::WalletCall;
use super::Answer;

/// Longer than any request may run (Stripe and KMS time out well before).
const ABANDONED_AFTER: &str = "2 minutes";

/// Runs `work` at most once per (traveler, key); returns its answer and whether
/// it is a replay.
pub async fn run(
    call: &WalletCall<'_>,
    route: &str,
    body: &[u8],
    work: impl std::future::Future<Output = Result<Answer, ApiError>>,
) -> Result<(Answer, bool), ApiError> {
    let Some(key) = call.idempotency_key.as_deref() else {
        return Ok((work.await?, false));
    };
    let user_id = call.actor.traveler.user_id;
    let print = crate::idempotency::fingerprint(route, user_id, body);
    let mut tx = call.wallet.database.as_traveler(&call.actor.traveler, &call.actor.meta).await?;
    sqlx::query(&format!(
        "DELETE FROM public.idempotency_keys WHERE user_id = $1 AND key = $2
            AND (expires_at < now() OR (state = 'in_progress' AND created_at < now() - interval '{ABANDONED_AFTER}'))"
    ))
    .bind(user_id)
    .bind(key)
    .execute(&mut *tx)
    .await?;
    let claimed = sqlx::query(
        "INSERT INTO public.idempotency_keys (user_id, key, route, request_fingerprint, state)
         VALUES ($1, $2, $3, $4, 'in_progress') ON CONFLICT (user_id, key) DO NOTHING",
    )
    .bind(user_id)
    .bind(key)
    .bind(route)
    .bind(&print)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        let (stored_print, state, status, stored_body): (Vec<u8>, String, Option<i16>, Option<serde_json::Value>) =
            sqlx::query_as(
                "SELECT request_fingerprint, state, response_status, response_body
                   FROM public.idempotency_keys WHERE user_id = $1 AND key = $2",
            )
            .bind(user_id)
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        if stored_print != print {
            return Err(ApiError::IdempotencyKeyReused);
        }
        return match (state.as_str(), status, stored_body) {
            ("completed", Some(status), Some(body)) => {
                let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
                Ok(((status, body), true))
            }
            _ => Err(ApiError::IdempotencyInProgress),
        };
    }
    tx.commit().await?;

    let outcome = work.await;
    let stored: Option<(StatusCode, serde_json::Value)> = match &outcome {
        Ok((status, body)) => {
            let mut body = body.clone();
            crate::stripe::redact_client_secrets(&mut body);
            Some((*status, body))
        }
        Err(error) => {
            let problem = error.as_problem();
            // "Not now" frees the key for a retry (a 5xx, a 429, money in
            // flight, a sign-in too old); other refusals are kept.
            let not_now = problem.status >= 500 || problem.status == 429 || error.is_retry_later();
            (!not_now).then(|| {
                (
                    StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_REQUEST),
                    serde_json::to_value(&problem).unwrap_or_default(),
                )
            })
        }
    };
    let mut tx = call.wallet.database.as_traveler(&call.actor.traveler, &call.actor.meta).await?;
    match stored {
        Some((status, body)) => {
            sqlx::query(
                "UPDATE public.idempotency_keys SET state = 'completed', response_status = $3, response_body = $4
                  WHERE user_id = $1 AND key = $2",
            )
            .bind(user_id)
            .bind(key)
            .bind(status.as_u16() as i16)
            .bind(body)
            .execute(&mut *tx)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM public.idempotency_keys WHERE user_id = $1 AND key = $2")
                .bind(user_id)
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    outcome.map(|answer| (answer, false))
}
