//! The Stripe port's booking calls: manual-capture, off-session
//! PaymentIntents through the official client against localstripe (patched by
//! the test launcher with the fields Stripe always sends).

use std::collections::HashMap;
use std::time::Duration;

use harness::{localstripe_card, Emulators, STRIPE_KEY};
use kms_sidecar::stripe::{AsyncStripe, IntentStatus, OffSessionAuthorization, StripeError, StripePort};
use secrecy::SecretString;

async fn stripe_with_card(number: &str) -> anyhow::Result<(AsyncStripe, String, String)> {
    let emulators = Emulators::from_env()?;
    let stripe = AsyncStripe::new(
        &SecretString::from(STRIPE_KEY.to_owned()),
        Some(&emulators.localstripe_url),
        Duration::from_secs(5),
    )?;
    let customer = stripe.create_customer(uuid::Uuid::new_v4(), None, &uuid::Uuid::new_v4().to_string()).await?;
    let pm = localstripe_card(&emulators.localstripe_url, number).await?;
    stripe.attach_payment_method(&pm, &customer, &uuid::Uuid::new_v4().to_string()).await?;
    Ok((stripe, customer, pm))
}

fn authorization<'a>(customer: &'a str, pm: &'a str, key: &'a str) -> OffSessionAuthorization<'a> {
    OffSessionAuthorization {
        customer_id: customer,
        payment_method_id: pm,
        amount: 42_000,
        currency: "eur",
        metadata: HashMap::from([("booking_id".to_owned(), "b-1".to_owned())]),
        idempotency_key: key,
    }
}

#[tokio::test]
async fn an_authorization_is_captured_or_released() -> anyhow::Result<()> {
    let (stripe, customer, pm) = stripe_with_card("4242424242424242").await?;
    let held = stripe.authorize_off_session(&authorization(&customer, &pm, "auth-1")).await?;
    assert_eq!((held.status, held.amount_capturable), (IntentStatus::RequiresCapture, 42_000));
    let captured = stripe.capture_payment_intent(&held.id, "capture-1").await?;
    assert_eq!(captured.status, IntentStatus::Succeeded);
    assert_eq!(stripe.retrieve_payment_intent(&held.id).await?.status, IntentStatus::Succeeded);

    let second = stripe.authorize_off_session(&authorization(&customer, &pm, "auth-2")).await?;
    let released = stripe.cancel_payment_intent(&second.id, "cancel-2").await?;
    assert_eq!(released.status, IntentStatus::Canceled);
    Ok(())
}

#[tokio::test]
async fn a_card_that_needs_authentication_is_reported_not_charged() -> anyhow::Result<()> {
    let (stripe, customer, pm) = stripe_with_card("4000002760003184").await?;
    let intent = stripe.authorize_off_session(&authorization(&customer, &pm, "auth-3ds")).await?;
    assert_eq!(intent.status, IntentStatus::RequiresAction);
    assert!(intent.client_secret.is_some());
    Ok(())
}

#[tokio::test]
async fn a_decline_at_charge_time_is_a_refusal_with_its_code() -> anyhow::Result<()> {
    let (stripe, customer, pm) = stripe_with_card("4000000000000341").await?;
    match stripe.authorize_off_session(&authorization(&customer, &pm, "auth-decline")).await {
        Err(StripeError::Refused { status: 402, code, .. }) => assert_eq!(code.as_deref(), Some("card_declined")),
        other => panic!("expected a 402 card_declined, got {other:?}"),
    }
    Ok(())
}
