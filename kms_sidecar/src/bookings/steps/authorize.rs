//! Authorization on a saved card: the default first, the backup after a hard
//! decline; an earlier holder's PaymentIntent is found before a new one is made.

use std::collections::HashMap;

use serde_json::json;

use super::{decline_reason, failure, outcome_of_intent};
use crate::bookings::flow::record;
use crate::bookings::saga::{idempotency_key, Outcome};
use crate::bookings::store::{self, Booking, Facts, Outbox};
use crate::bookings::{Actor, BookingError, Ports};
use crate::config::BookingSettings;
use crate::domain::Money;
use crate::stripe::{OffSessionAuthorization, PaymentIntentView, StripeError};
use crate::wallet::customers::customer_of;

pub(in crate::bookings) async fn authorize(
    ports: Ports<'_>,
    actor: &Actor,
    booking: &Booking,
    fresh: bool,
) -> Result<Booking, BookingError> {
    let user_id = booking.user_id;
    // One transaction reads what the step needs and chooses the first card.
    let mut tx = ports.database.as_traveler(&actor.traveler, &actor.meta).await?;
    let customer = customer_of(&mut tx, user_id).await?;
    let cards = store::usable_cards(&mut tx, user_id).await?;
    // Consent withdrawn since the booking opened stops a charge not yet asked
    // for. The Radar facts are as of the booking's creation, so a retry sends
    // Stripe the same request (another body under the same key is refused).
    let (campaign_consent, account_age_days, first_booking): (bool, Option<i32>, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT FROM public.campaigns WHERE id = $1 AND user_id = $2 AND consent_at IS NOT NULL),
                wallet_internal.account_age_days($3::date),
                NOT EXISTS (SELECT FROM public.booking_charges
                             WHERE user_id = $2 AND state = 'captured' AND created_at < $3)",
    )
    .bind(booking.campaign_id)
    .bind(user_id)
    .bind(booking.created_at)
    .fetch_one(&mut *tx)
    .await?;
    let asked_before = !fresh && booking.card_attempt != 0;
    // The campaign's consent, and the chosen card's (`cards` holds only cards
    // whose consent is in force; none is chosen before the first attempt).
    let consent_in_force = campaign_consent
        && (booking.card_attempt == 0 || cards.iter().any(|card| Some(card.id) == booking.payment_method_id));
    if !consent_in_force && !asked_before {
        tx.commit().await?;
        return consent_withdrawn(ports, actor, booking).await;
    }
    let (Some(customer), Some(first_card)) = (customer, cards.first()) else {
        tx.commit().await?;
        let facts =
            Facts { failure: failure("no_usable_card", "the traveler has no usable card on file"), ..Facts::default() };
        return record(
            ports,
            actor,
            booking,
            Outcome::Declined { code: Some("no_usable_card".into()), decline_code: None },
            false,
            facts,
        )
        .await;
    };
    // The card is chosen and stored before Stripe hears of it; a card chosen
    // under an earlier lease may have reached Stripe.
    let booking = if booking.card_attempt == 0 {
        store::choose_first_card(&mut tx, booking, first_card).await?
    } else {
        booking.clone()
    };
    tx.commit().await?;
    let attempt = booking.card_attempt;
    let payment_method = booking.stripe_payment_method_id.clone().unwrap_or_default();
    let attempt_tag = format!("{}:{attempt}", booking.id);

    let earlier_intent = if asked_before { find_intent(ports, &booking, &customer, &attempt_tag).await? } else { None };
    let result = match earlier_intent {
        Some(intent) => Ok(intent),
        // Asked for before (or perhaps: a crash may have come before or after
        // the request left): the same request again, under the same key, so
        // Stripe answers what it did, if it did. Settled as any other.
        None => {
            let metadata = HashMap::from([
                ("booking_id".to_owned(), booking.id.to_string()),
                ("booking_attempt".to_owned(), attempt_tag.clone()),
                ("campaign_id".to_owned(), booking.campaign_id.to_string()),
                ("offer_id".to_owned(), booking.offer_id.clone()),
                ("route".to_owned(), booking.route.clone().unwrap_or_default()),
                ("traveler_account_age_days".to_owned(), account_age_days.unwrap_or(0).to_string()),
                ("first_booking".to_owned(), first_booking.to_string()),
                ("card_attempt".to_owned(), attempt.to_string()),
                ("merchant_initiated".to_owned(), "true".to_owned()),
            ]);
            let key = idempotency_key(booking.id, "authorize", attempt as u8);
            ports
                .stripe
                .authorize_off_session(&OffSessionAuthorization {
                    customer_id: &customer,
                    payment_method_id: &payment_method,
                    amount: booking.amount,
                    currency: &booking.currency,
                    metadata,
                    idempotency_key: &key,
                })
                .await
        }
    };
    let (outcome, mut facts) = match result {
        Ok(intent) => {
            let outcome = outcome_of_intent(&intent);
            let failure = match &outcome {
                Outcome::Declined { code, decline_code } => {
                    failure(decline_reason(code, decline_code, "card_declined"), "the card was declined")
                }
                Outcome::Ambiguous => failure("stripe_pending", "the PaymentIntent is still processing"),
                _ => None,
            };
            let authorized = matches!(outcome, Outcome::Authorized);
            (outcome, Facts { authorized, payment_intent_id: Some(intent.id), failure, ..Facts::default() })
        }
        // Our own retry under the key with another body: not the card's fault.
        Err(StripeError::Refused { code: Some(code), message, .. }) if code == "idempotency_error" => {
            (Outcome::Ambiguous, Facts { failure: failure("stripe_idempotency_error", message), ..Facts::default() })
        }
        Err(StripeError::Refused { code, decline_code, message, payment_intent, .. }) => {
            let reason = decline_reason(&code, &decline_code, "stripe_refused");
            (
                Outcome::Declined { code, decline_code },
                Facts { payment_intent_id: payment_intent, failure: failure(reason, message), ..Facts::default() },
            )
        }
        Err(error @ (StripeError::Unavailable(_) | StripeError::Timeout)) => (
            Outcome::Ambiguous,
            Facts { failure: failure("stripe_unreachable", error.to_string()), ..Facts::default() },
        ),
    };
    let backup = cards.iter().find(|card| {
        Some(card.id) != booking.payment_method_id
            && Some(&card.stripe_payment_method_id) != booking.stripe_payment_method_id.as_ref()
    });
    let backup_available = attempt == 1 && backup.is_some();
    facts.next_card = backup.cloned();
    // Written only if the outcome leads to `requires_authentication`.
    if facts.payment_intent_id.is_some() {
        facts.outbox =
            Some(authentication_email(ports.policy, &booking, facts.payment_intent_id.as_deref().unwrap_or("")));
    }
    record(ports, actor, &booking, outcome, backup_available, facts).await
}

/// Declines a booking whose consent to off-session charges (the campaign's
/// or the chosen card's) was withdrawn before its authorization was asked for.
async fn consent_withdrawn(ports: Ports<'_>, actor: &Actor, booking: &Booking) -> Result<Booking, BookingError> {
    let facts = Facts {
        failure: failure("consent_withdrawn", "the traveler withdrew a consent to off-session charges"),
        ..Facts::default()
    };
    let outcome = Outcome::Declined { code: Some("consent_withdrawn".into()), decline_code: None };
    record(ports, actor, booking, outcome, false, facts).await
}

/// The "Complete authentication" email: a link to the booking, never the
/// PaymentIntent's client secret (the app fetches that from GET /v1/bookings/{id}).
fn authentication_email(policy: &BookingSettings, booking: &Booking, payment_intent: &str) -> Outbox {
    let money = Money::new(booking.amount, &booking.currency).map(|m| m.to_string()).unwrap_or_default();
    Outbox {
        kind: "complete_authentication",
        dedup_key: format!("complete_authentication:{}:{payment_intent}", booking.id),
        payload: json!({
            "template": "complete_authentication",
            "booking_id": booking.id,
            "link": policy.authentication_url.replace("{booking_id}", &booking.id.to_string()),
            "amount": money,
            "route": booking.route,
        }),
    }
}

/// The PaymentIntent an earlier holder made for this attempt, if any: by the
/// id it recorded, else by the attempt tag in Stripe's metadata.
async fn find_intent(
    ports: Ports<'_>,
    booking: &Booking,
    customer: &str,
    attempt_tag: &str,
) -> Result<Option<PaymentIntentView>, BookingError> {
    if let Some(id) = &booking.stripe_payment_intent_id {
        return Ok(Some(ports.stripe.retrieve_payment_intent(id).await?));
    }
    let since = booking.search_from().timestamp();
    let mut found = ports.stripe.find_payment_intents(customer, since, "booking_attempt", attempt_tag).await?;
    Ok(found.pop())
}
