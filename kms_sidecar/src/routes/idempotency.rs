//! `Idempotency-Key` for the wallet's POST and DELETE routes, stored in
//! `idempotency_keys` with a fingerprint of route, traveler and body
//! ([`crate::idempotency`]):
//! - first use: the request runs and its answer is stored (4xx included; a
//!   5xx, a 429, a 409 `money_in_flight` or a 403 `reauthentication_required`
//!   frees the key so a retry can run). A wallet change stores its answer in
//!   its own transaction, so the change and its answer are kept together;
//! - same key, same request: the stored answer is replayed;
//! - same key, another request: 422 `idempotency_key_reused`;
//! - same key while the first still runs: 409 `idempotency_in_progress`;
//! - a key left "in progress" by a crashed sidecar is taken over by the same
//!   request after `ABANDONED_AFTER`, so a retry is never locked out for a day.
//!
//! Stored answers carry no client secret (`stripe::redact_client_secrets`):
//! a replay that needs one fetches it again (`wallet::with_client_secret`).

use std::sync::atomic::{AtomicBool, Ordering};

use hyper::StatusCode;

use super::error::ApiError;
use super::wallet::WalletCall;
use super::Answer;
use crate::db::{BeforeCommit, Writing};

/// Longer than any request may run (Stripe and KMS time out well before).
const ABANDONED_AFTER: &str = "2 minutes";

/// A key this request claimed. Work that changes the database stores its
/// answer in its own last transaction ([`ClaimedKey::keeping`]); other work's
/// answer is stored after it, in a transaction of its own.
pub struct ClaimedKey {
    user_id: uuid::Uuid,
    key: String,
    /// The claim's own `created_at`: a takeover writes a later one, so a
    /// request whose key was taken over can no longer write to it.
    claimed_at: chrono::DateTime<chrono::Utc>,
    /// The answer was written in the work's transaction (kept if it committed).
    answered: AtomicBool,
}

impl ClaimedKey {
    /// Writes `answer` as the key's stored answer (client secrets redacted),
    /// while the claim is still this request's; says whether it was.
    async fn complete(&self, tx: &mut sqlx::PgConnection, (status, mut body): Answer) -> Result<bool, sqlx::Error> {
        crate::stripe::redact_client_secrets(&mut body);
        let written = sqlx::query(
            "UPDATE public.idempotency_keys SET state = 'completed', response_status = $4, response_body = $5
              WHERE user_id = $1 AND key = $2 AND created_at = $3 AND state = 'in_progress'",
        )
        .bind(self.user_id)
        .bind(&self.key)
        .bind(self.claimed_at)
        .bind(status.as_u16() as i16)
        .bind(body)
        .execute(tx)
        .await?;
        Ok(written.rows_affected() == 1)
    }

    /// Frees the key for a retry, while the claim is still this request's.
    async fn release(&self, tx: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query(
            "DELETE FROM public.idempotency_keys
              WHERE user_id = $1 AND key = $2 AND created_at = $3 AND state = 'in_progress'",
        )
        .bind(self.user_id)
        .bind(&self.key)
        .bind(self.claimed_at)
        .execute(tx)
        .await?;
        Ok(())
    }

    /// A [`BeforeCommit`] that stores the answer `view` makes of the outcome,
    /// when there is a claimed key; nothing when there is none.
    pub fn keeping<T, F>(key: Option<&Self>, view: F) -> KeepAnswer<'_, F>
    where
        F: Fn(&T) -> Result<Answer, ApiError> + Send + Sync,
    {
        KeepAnswer { key, view }
    }
}

/// See [`ClaimedKey::keeping`].
pub struct KeepAnswer<'k, F> {
    key: Option<&'k ClaimedKey>,
    view: F,
}

impl<T: Sync, F> BeforeCommit<T> for KeepAnswer<'_, F>
where
    F: Fn(&T) -> Result<Answer, ApiError> + Send + Sync,
{
    /// Fails, so the change rolls back, when there is no answer to keep with
    /// it: a view that cannot be made, or a key another request took over
    /// (this one waited past `ABANDONED_AFTER`, and a retry runs instead).
    fn write<'a>(&'a self, tx: &'a mut sqlx::PgConnection, outcome: &'a T) -> Writing<'a> {
        Box::pin(async move {
            let Some(key) = self.key else { return Ok(()) };
            let answer = (self.view)(outcome).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            if !key.complete(tx, answer).await? {
                return Err(sqlx::Error::Protocol(format!("Idempotency-Key {:?} was taken over meanwhile", key.key)));
            }
            key.answered.store(true, Ordering::Relaxed);
            Ok(())
        })
    }
}

/// Runs `work` at most once per (traveler, key); returns its answer and whether
/// it is a replay. `work` is handed the claimed key, if the request has one.
pub async fn run(
    call: &WalletCall<'_>,
    route: &str,
    body: &[u8],
    work: impl AsyncFnOnce(Option<&ClaimedKey>) -> Result<Answer, ApiError>,
) -> Result<(Answer, bool), ApiError> {
    let Some(key) = call.idempotency_key.as_deref() else {
        return Ok((work(None).await?, false));
    };
    let user_id = call.actor.traveler.user_id;
    let print = crate::idempotency::fingerprint(route, user_id, body);
    let mut tx = call.wallet.database.as_traveler(&call.actor.traveler, &call.actor.meta).await?;
    // One statement claims a new key, or takes over an expired or abandoned one.
    let claimed_at: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(&format!(
        "INSERT INTO public.idempotency_keys AS held (user_id, key, route, request_fingerprint, state)
         VALUES ($1, $2, $3, $4, 'in_progress')
         ON CONFLICT (user_id, key) DO UPDATE
            SET route = excluded.route, request_fingerprint = excluded.request_fingerprint, state = 'in_progress',
                response_status = NULL, response_body = NULL, created_at = DEFAULT, expires_at = DEFAULT
          WHERE held.expires_at < now()
             OR (held.state = 'in_progress' AND held.created_at < now() - interval '{ABANDONED_AFTER}'
                 AND held.request_fingerprint = excluded.request_fingerprint)
         RETURNING created_at"
    ))
    .bind(user_id)
    .bind(key)
    .bind(route)
    .bind(&print)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(claimed_at) = claimed_at else {
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
    };
    tx.commit().await?;

    let claim = ClaimedKey { user_id, key: key.to_owned(), claimed_at, answered: AtomicBool::new(false) };
    let outcome = work(Some(&claim)).await;
    // Its answer is stored already: the work's transaction committed with it.
    if outcome.is_ok() && claim.answered.load(Ordering::Relaxed) {
        return outcome.map(|answer| (answer, false));
    }
    let stored: Option<Answer> = match &outcome {
        Ok(answer) => Some(answer.clone()),
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
    // Neither overwrites an answer the work committed before its COMMIT was
    // lost, nor the claim of a request that took the key over.
    match stored {
        Some(answer) => {
            if !claim.complete(&mut tx, answer).await? {
                tracing::warn!(
                    route,
                    "an answer was not stored: its Idempotency-Key was taken over or answered meanwhile"
                );
            }
        }
        None => claim.release(&mut tx).await?,
    }
    tx.commit().await?;
    outcome.map(|answer| (answer, false))
}
