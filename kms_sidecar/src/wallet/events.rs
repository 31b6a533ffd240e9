//! Stripe's events applied to the wallet. Deduplicated by event id in the same
//! transaction as their effect, and applied from objects fetched again from
//! Stripe, never from the payload, so an event arriving late cannot undo newer
//! state. The signature is checked before this (`stripe::signature`).

use serde_json::Value;

use super::cards::{card_of_setup_intent, detach_replaced, remove_card, store_card};
use super::customers::customer_of;
use super::{lock_wallet, Wallet, WalletError};
use crate::domain::{RequestMeta, Traveler};
use crate::stripe::CardDetails;

/// What was done with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// Seen before: acknowledged, nothing done again.
    pub duplicate: bool,
    /// The wallet changed.
    pub applied: bool,
}

/// What the event asks of the wallet, decided before any transaction opens
/// (Stripe calls stay outside them).
enum Effect {
    /// Store or refresh this card (SetupIntent succeeded, card updated by the network).
    StoreCard(CardDetails),
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

/// What is kept of an event: enough to recognise a redelivery and to say what
/// it was about, none of the objects' details (names, emails, addresses,
/// client secrets): those are fetched again from Stripe when applied.
fn stored_form(event: &Value) -> Value {
    let picked = |from: Option<&Value>, keys: &[&str]| -> Value {
        let fields = keys.iter().filter_map(|key| Some(((*key).to_owned(), from?.get(*key)?.clone())));
        Value::Object(fields.collect())
    };
    let mut stored = picked(Some(event), &["id", "type", "created", "livemode", "api_version"]);
    stored["data"] = serde_json::json!({
        "object": picked(event.pointer("/data/object"), &["id", "object", "customer", "payment_method", "status"]),
    });
    stored
}

/// Records the event in the caller's transaction; false when it was seen before.
async fn record_event(tx: &mut sqlx::PgConnection, id: &str, kind: &str, event: &Value) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT wallet_internal.record_stripe_event($1, $2, $3)")
        .bind(id)
        .bind(kind)
        .bind(stored_form(event))
        .fetch_one(tx)
        .await
}

impl Wallet<'_> {
    /// Applies a verified event (`id` and `kind` read from it, checked by the
    /// caller) to the wallet of the traveler whose Stripe object it concerns.
    pub async fn apply_stripe_event(&self, id: &str, kind: &str, event: &Value) -> Result<Receipt, WalletError> {
        let stripe = self.stripe()?;
        let object = event.pointer("/data/object").cloned().unwrap_or(Value::Null);
        let customer = if kind.starts_with("customer.") {
            text(&object, "/id")
        } else {
            text(&object, "/customer").or_else(|| text(event, "/data/previous_attributes/customer"))
        };
        let payment_method = match kind {
            k if k.starts_with("payment_method.") => text(&object, "/id"),
            _ => text(&object, "/payment_method"),
        };

        let traveler: Option<uuid::Uuid> = {
            let mut tx = self.database.as_system().await?;
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
            let mut tx = self.database.as_system().await?;
            let new = record_event(&mut tx, id, kind, event).await?;
            tx.commit().await?;
            return Ok(Receipt { duplicate: !new, applied: false });
        };

        let effect = match (kind, customer, payment_method) {
            ("setup_intent.succeeded", Some(customer), _) => match text(&object, "/id") {
                Some(intent) => match card_of_setup_intent(stripe, customer, intent).await {
                    Ok(card) => Effect::StoreCard(card),
                    Err(WalletError::SetupIntentNotFound | WalletError::SetupIntentNotSucceeded) => Effect::Nothing,
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
        let mut tx = self.database.as_traveler(&acting, &meta).await?;
        let new = record_event(&mut tx, id, kind, event).await?;
        if !new {
            tx.commit().await?;
            return Ok(Receipt { duplicate: true, applied: false });
        }
        // A traveler being erased gets no new card: acknowledged, not refused
        // (a refusal would have Stripe retry for days).
        let effect = match effect {
            Effect::StoreCard(_) if crate::privacy::erase::requested(&mut tx, user_id).await? => Effect::Nothing,
            other => other,
        };
        let mut replaced = None;
        let applied = match effect {
            Effect::StoreCard(card) => match customer_of(&mut tx, user_id).await? {
                Some(customer) if card.customer_id.as_deref().is_none_or(|c| c == customer) => {
                    lock_wallet(&mut tx, user_id).await?;
                    replaced = store_card(self.crypto, &mut tx, user_id, &customer, &card).await?.replaced;
                    true
                }
                _ => false,
            },
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
        Ok(Receipt { duplicate: false, applied })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_ids_and_none_of_the_details() {
        let event = serde_json::json!({
            "id": "evt_1", "type": "payment_method.attached", "created": 1, "livemode": false,
            "data": { "object": {
                "id": "pm_1", "object": "payment_method", "customer": "cus_1",
                "billing_details": { "name": "Ada Lovelace", "email": "ada@example.com" },
                "card": { "last4": "4242" }, "client_secret": "seti_1_secret_x",
            } },
        });
        assert_eq!(
            stored_form(&event),
            serde_json::json!({
                "id": "evt_1", "type": "payment_method.attached", "created": 1, "livemode": false,
                "data": { "object": { "id": "pm_1", "object": "payment_method", "customer": "cus_1" } },
            })
        );
    }
}
