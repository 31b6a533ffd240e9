//! The sidecar's Twilio Verify client against the harness's Twilio fake, which
//! follows Twilio's documented shapes and codes (the phone routes will use both).

use std::time::Duration;

use harness::fake_http::Fault;
use harness::twilio_fake::{FakeTwilio, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_SERVICE_SID};
use kms_sidecar::domain::{PhoneNumber, VerificationCode};
use kms_sidecar::twilio::{HttpTwilioVerify, TwilioError, VerificationStatus, VerifyPort};
use secrecy::SecretString;

fn client(twilio: &FakeTwilio, token: &str) -> HttpTwilioVerify {
    HttpTwilioVerify::new(
        &twilio.url,
        TWILIO_SERVICE_SID,
        TWILIO_ACCOUNT_SID,
        SecretString::from(token.to_owned()),
        Duration::from_secs(3),
    )
}

fn code(text: &str) -> VerificationCode {
    VerificationCode::parse(text).unwrap()
}

#[tokio::test]
async fn the_code_sent_by_sms_approves_once() -> anyhow::Result<()> {
    let twilio = FakeTwilio::start().await?;
    let verify = client(&twilio, TWILIO_AUTH_TOKEN);
    let ada = PhoneNumber::parse("+351 912 345 678")?;
    assert_eq!(verify.start(&ada).await?.status, VerificationStatus::Pending);
    let sent = twilio.codes_sent_to(ada.as_e164());
    assert_eq!(sent.len(), 1);
    let wrong = if sent[0] == "000000" { "111111" } else { "000000" };
    assert_eq!(verify.check(&ada, &code(wrong)).await?.status, VerificationStatus::Pending);
    assert_eq!(verify.check(&ada, &code(&sent[0])).await?.status, VerificationStatus::Approved);
    assert_eq!(verify.check(&ada, &code(&sent[0])).await, Err(TwilioError::NotFound), "a code approves once");
    Ok(())
}

#[tokio::test]
async fn twilios_limits_and_refusals_reach_the_caller_as_such() -> anyhow::Result<()> {
    let twilio = FakeTwilio::start().await?;
    let verify = client(&twilio, TWILIO_AUTH_TOKEN);
    let bob = PhoneNumber::parse("+44 20 7946 0958")?;
    verify.start(&bob).await?;
    for _ in 0..5 {
        assert_eq!(verify.check(&bob, &code("0000")).await?.status, VerificationStatus::Pending);
    }
    assert_eq!(verify.check(&bob, &code("0000")).await, Err(TwilioError::MaxCheckAttempts));
    for _ in 1..5 {
        verify.start(&bob).await?;
    }
    assert_eq!(verify.start(&bob).await, Err(TwilioError::MaxSendAttempts));

    twilio.faults.inject("POST", "/Verifications", Fault::Fail(429));
    let eve = PhoneNumber::parse("+1 415 555 2671")?;
    assert_eq!(verify.start(&eve).await, Err(TwilioError::RateLimited));
    twilio.faults.inject("POST", "/Verifications", Fault::Fail(503));
    assert!(matches!(verify.start(&eve).await, Err(TwilioError::Unavailable(_))));
    assert!(matches!(
        client(&twilio, "wrong-token").start(&eve).await,
        Err(TwilioError::Refused { status: 401, code: 20003, .. })
    ));
    assert!(twilio.codes_sent_to(eve.as_e164()).is_empty(), "nothing was sent on a refusal");
    Ok(())
}
