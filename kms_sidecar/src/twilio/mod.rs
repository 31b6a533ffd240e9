//! Twilio Verify v2: start a verification by SMS, check the code the traveler
//! typed. The port ([`VerifyPort`]) and its HTTP client ([`HttpTwilioVerify`]).
//! Twilio keeps the codes, their expiry and their attempt limits; the wallet
//! keeps its own limits per traveler and per number (the phone routes).

mod client;

pub use client::HttpTwilioVerify;

use crate::domain::{PhoneNumber, VerificationCode};

/// Where a verification stands, as Twilio says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerificationStatus {
    Pending,
    Approved,
    Canceled,
    MaxAttemptsReached,
    Expired,
    Failed,
    Other(String),
}

impl VerificationStatus {
    fn parse(status: &str) -> Self {
        match status {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "canceled" => Self::Canceled,
            "max_attempts_reached" => Self::MaxAttemptsReached,
            "expired" => Self::Expired,
            "failed" => Self::Failed,
            other => Self::Other(other.to_owned()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// `VE…`: Twilio's id of the verification.
    pub sid: String,
    pub status: VerificationStatus,
}

/// What Twilio refused, by its documented error codes, or why it did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwilioError {
    /// 60200: a parameter Twilio will not take (a number it cannot send to).
    #[error("Twilio refused a parameter: {0}")]
    InvalidParameter(String),
    /// 60202: too many wrong codes for this verification.
    #[error("too many codes were checked for this verification")]
    MaxCheckAttempts,
    /// 60203: too many codes sent to this number.
    #[error("too many codes were sent to this number")]
    MaxSendAttempts,
    /// 20404: no pending verification (expired, approved or never started).
    #[error("no pending verification for this number")]
    NotFound,
    /// 20429 or HTTP 429: Twilio's own rate limit.
    #[error("Twilio is rate limiting")]
    RateLimited,
    /// Any other refusal, with Twilio's code and message.
    #[error("Twilio refused: {code} {message}")]
    Refused { status: u16, code: i64, message: String },
    /// No answer, or not one we can read: nothing is known to have happened.
    #[error("Twilio did not answer: {0}")]
    Unavailable(String),
}

/// Twilio Verify, as the phone routes use it.
#[async_trait::async_trait]
pub trait VerifyPort: Send + Sync {
    /// Sends a code by SMS (or resends it, for a verification still pending).
    async fn start(&self, to: &PhoneNumber) -> Result<Verification, TwilioError>;
    /// Checks a code: `Approved` when right, `Pending` when wrong.
    async fn check(&self, to: &PhoneNumber, code: &VerificationCode) -> Result<Verification, TwilioError>;
}
