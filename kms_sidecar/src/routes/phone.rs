//! `/v1/profile/phone/verification[/check]`: the traveler verifies their phone
//! number with a code sent by SMS. The rules and limits are in `phone`.

use hyper::StatusCode;
use schemars::JsonSchema;
use serde::Deserialize;

use super::error::ApiError;
use super::views::{Data, PhoneVerificationView, PhoneVerifiedView};
use super::wallet::WalletCall;
use super::{answer, parse_json, Answer};
use crate::domain::{PhoneNumber, VerificationCode};
use crate::phone::PhoneVerification;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PhoneVerificationRequest")]
pub(super) struct StartVerification {
    /// E.164, e.g. `+33612345678`.
    phone_number: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PhoneCodeRequest")]
pub(super) struct CheckCode {
    /// The code the traveler received by SMS.
    code: String,
}

/// `POST /v1/profile/phone/verification {phone_number}`: 201 with a code on its
/// way, 200 when that number is already verified.
pub async fn start(call: &WalletCall<'_>, phone: PhoneVerification<'_>, body: &[u8]) -> Result<Answer, ApiError> {
    let input: StartVerification = parse_json(body)?;
    let number = PhoneNumber::parse(&input.phone_number)?;
    let started = phone.start(&call.actor, &number).await?;
    let status = if started.already_verified { StatusCode::OK } else { StatusCode::CREATED };
    answer(status, &Data { data: PhoneVerificationView::from(started) })
}

/// `POST /v1/profile/phone/verification/check {code}`: 200 once verified.
pub async fn check(call: &WalletCall<'_>, phone: PhoneVerification<'_>, body: &[u8]) -> Result<Answer, ApiError> {
    let input: CheckCode = parse_json(body)?;
    let code = VerificationCode::parse(&input.code)?;
    let verified = phone.check(&call.actor, &code).await?;
    answer(StatusCode::OK, &Data { data: PhoneVerifiedView::from(verified) })
}
