//! `POST /v1/webhooks/stripe`: Stripe's events, forwarded byte for byte (raw body
//! and `Stripe-Signature`) by the public function that receives them. Verified,
//! deduplicated by event id in the same transaction as their effect, and applied
//! from objects fetched again from Stripe, never from the payload, so an event
//! arriving late cannot undo newer state.

use hyper::StatusCode;
use serde_json::{json, Value};

use super::error::ApiError;
use super::wallet::{card_of_setup_intent, detach_replaced, lock_wallet, persist_card, remove_card, Answer};
use crate::auth::Traveler;
use crate::database::RequestMeta;
use crate::state::AppState;

/// What the event asks of the wallet, decided before any transaction opens
/// (Stripe calls stay outside them).
enum Effect {
    /// Store or refresh this card (SetupIntent succeeded, card updated by the network).
    StoreCard(crate::payments::CardDetails),
    /// The payment method is no longer attached: forget the card.
    ForgetCard(String),
    /// The customer is gone at Stripe: forget the wallet.
    ForgetWallet,
    /// Recorded and acknowledged, nothing to change.
    Nothing,
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// Records the event in the caller's transaction, client secrets redacted;
/// false when it was seen before.
async fn record_event(tx: &mut sqlx::PgConnection, id: &str, kind: &str, event: &Value) -> Result<bool, ApiError> {
    let mut stored = event.clone();
    crate::payments::redact_client_secrets(&mut stored);
    Ok(sqlx::query_scalar("SELECT wallet_internal.record_stripe_event($1, $2, $3)")
        .bind(id)
        .bind(kind)
        .bind(stored)
        .fetch_one(tx)
        .await?)
}

pub async fn receive(state: &AppState, signature: Option<&str>, body: &[u8]) -> Result<Answer, ApiError> {
    let (Some(database), Some(stripe)) = (&state.database, state.stripe.as_deref()) else {
        return Err(ApiError::NotConfigured);
    };
    if state.webhook_secrets.is_empty() {
        return Err(ApiError::NotConfigured);
    }
    let tolerance = state.settings.stripe.as_ref().map_or(300, |s| s.webhook_tolerance_secs);
    let now = chrono::Utc::now().timestamp();
    crate::webhooks::verify(signature, body, &state.webhook_secrets, tolerance, now)
        .map_err(ApiError::InvalidSignature)?;

    let event: Value = serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("event: {e}")))?;
    let (Some(id), Some(kind)) = (text(&event, "/id"), text(&event, "/type")) else {
        return Err(ApiError::BadRequest("event without id or type".into()));
    };
    // Refused (400) before anything is done, rather than failing later (500) and
    // being retried by Stripe for days: what the table cannot hold.
    if !crate::webhooks::is_event_id(id) {
        return Err(ApiError::BadRequest("the event id is not of the form evt_[A-Za-z0-9_]+".into()));
    }
    if crate::webhooks::holds_nul(&event) {
        return Err(ApiError::BadRequest("the event holds a NUL character, which cannot be stored".into()));
    }
    let object = event.pointer("/data/object").cloned().unwrap_or(Value::Null);
    let customer = if kind.starts_with("customer.") {
        text(&object, "/id")
    } else {
        text(&object, "/customer").or_else(|| text(&event, "/data/previous_attributes/customer"))
    };
    let payment_method = match kind {
        k if k.starts_with("payment_method.") => text(&object, "/id"),
        _ => text(&object, "/payment_method"),
    };

    let traveler: Option<uuid::Uuid> = {
        let mut tx = database.as_system().await?;
        let found = sqlx::query_scalar("SELECT wallet_internal.traveler_of_stripe_object($1, $2)")
            .bind(customer)
            .bind(payment_method)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        found
    };
    let Some(user_id) = traveler else {
        // Not a traveler's object (another integration's, or deleted): keep and ack.
        let mut tx = database.as_system().await?;
        let new = record_event(&mut tx, id, kind, &event).await?;
        tx.commit().await?;
        return Ok((StatusCode::OK, json!({ "received": true, "duplicate": !new, "applied": false })));
    };

    let effect = match (kind, customer, payment_method) {
        ("setup_intent.succeeded", Some(customer), _) => match text(&object, "/id") {
            Some(intent) => match card_of_setup_intent(stripe, customer, intent).await {
                Ok(card) => Effect::StoreCard(card),
                Err(ApiError::SetupIntentNotFound | ApiError::SetupIntentNotSucceeded) => Effect::Nothing,
                Err(other) => return Err(other),
            },
            None => Effect::Nothing,
        },
        ("payment_method.detached", _, Some(pm)) => {
            let card = stripe.retrieve_card(pm).await?;
            if card.customer_id.is_none() {
                Effect::ForgetCard(pm.to_owned())
            } else {
                Effect::Nothing
            }
        }
        ("payment_method.automatically_updated" | "payment_method.updated", _, Some(pm)) => {
            let card = stripe.retrieve_card(pm).await?;
            if card.customer_id.is_some() {
                Effect::StoreCard(card)
            } else {
                Effect::Nothing
            }
        }
        ("customer.deleted", Some(customer), _) => {
            if stripe.customer_deleted(customer).await? {
                Effect::ForgetWallet
            } else {
                Effect::Nothing
            }
        }
        _ => Effect::Nothing,
    };

    let acting = Traveler::named_by_stripe(user_id);
    let meta = RequestMeta { forwarded_for: None, user_agent: Some(format!("stripe-webhook {kind}")) };
    let mut tx = database.as_traveler(&acting, &meta).await?;
    let new = record_event(&mut tx, id, kind, &event).await?;
    if !new {
        tx.commit().await?;
        return Ok((StatusCode::OK, json!({ "received": true, "duplicate": true, "applied": false })));
    }
    let mut replaced = None;
    let applied = match effect {
        Effect::StoreCard(card) => {
            let owner: Option<String> =
                sqlx::query_scalar("SELECT stripe_customer_id FROM public.wallet_customers WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            match owner {
                Some(customer) if card.customer_id.as_deref().is_none_or(|c| c == customer) => {
                    replaced = persist_card(state, &mut tx, user_id, &customer, &card).await?.1;
                    true
                }
                _ => false,
            }
        }
        Effect::ForgetCard(pm) => {
            lock_wallet(&mut tx, user_id).await?;
            let card: Option<uuid::Uuid> = sqlx::query_scalar(
                "SELECT id FROM public.payment_methods WHERE user_id = $1 AND stripe_payment_method_id = $2",
            )
            .bind(user_id)
            .bind(&pm)
            .fetch_optional(&mut *tx)
            .await?;
            match card {
                Some(card) => {
                    remove_card(&mut tx, user_id, card).await?;
                    true
                }
                None => false,
            }
        }
        Effect::ForgetWallet => {
            lock_wallet(&mut tx, user_id).await?;
            sqlx::query("DELETE FROM public.payment_methods WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM public.wallet_customers WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            true
        }
        Effect::Nothing => false,
    };
    tx.commit().await?;
    detach_replaced(stripe, replaced).await;
    Ok((StatusCode::OK, json!({ "received": true, "duplicate": false, "applied": applied })))
}
