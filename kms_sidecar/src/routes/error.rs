//! The HTTP boundary's one error type, mapped once to status and stable code.

use hyper::StatusCode;

use crate::bookings::BookingError;
use crate::crypto::format::FormatError;
use crate::crypto::keys::KeyError;
use crate::crypto::CryptoError;
use crate::domain::{InvalidContext, InvalidPhone};
use crate::phone::PhoneError;
use crate::privacy::PrivacyError;
use crate::problem::Problem;
use crate::wallet::WalletError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("this caller may not use this route")]
    Forbidden,
    #[error("{0}")]
    SubjectRequired(&'static str),
    #[error("this traveler already has as many requests running as allowed; retry in a moment")]
    TooManyRequests,
    #[error("the record belongs to another traveler than the caller's subject")]
    SubjectMismatch,
    #[error("no route for {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request's headers exceed {0}")]
    HeadersTooLarge(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Context(#[from] InvalidContext),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Unauthorized(#[from] crate::auth::AuthError),
    #[error("the wallet routes need [database] and [auth] in the sidecar's configuration")]
    NotConfigured,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Stripe(#[from] crate::stripe::StripeError),
    /// The wallet's own refusals (its adapters' errors are the variants above).
    #[error(transparent)]
    Wallet(WalletError),
    /// The booking saga's own refusals.
    #[error(transparent)]
    Booking(BookingError),
    #[error("{0} is not a valid id")]
    InvalidId(String),
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still in progress")]
    IdempotencyInProgress,
    #[error("webhook signature: {0}")]
    InvalidSignature(crate::stripe::signature::SignatureError),
    /// The privacy routes' own refusals.
    #[error(transparent)]
    Privacy(PrivacyError),
    #[error(transparent)]
    InvalidPhone(#[from] InvalidPhone),
    /// Phone verification's own refusals.
    #[error(transparent)]
    Phone(PhoneError),
    #[error("the phone verification routes need [database], [auth] and [twilio] in the sidecar's configuration")]
    PhoneNotConfigured,
    #[error("the booking routes need [stripe] and [duffel] in the sidecar's configuration")]
    BookingsNotConfigured,
    /// An operator turned the feature off (a kill switch).
    #[error("{} is switched off for now", .0.as_str())]
    FeatureDisabled(crate::kill_switches::Feature),
    #[error("internal: {0}")]
    Internal(String),
}

/// The wallet's errors at the HTTP boundary: what its adapters said becomes
/// the variant every route shares; its own refusals stay `Wallet`.
impl From<WalletError> for ApiError {
    fn from(error: WalletError) -> Self {
        match error {
            WalletError::StripeNotConfigured => Self::NotConfigured,
            WalletError::InvalidRequest(detail) => Self::BadRequest(detail),
            WalletError::Database(error) => Self::Database(error),
            WalletError::Stripe(error) => Self::Stripe(error),
            WalletError::Crypto(error) => Self::Crypto(error),
            WalletError::Internal(detail) => Self::Internal(detail),
            own => Self::Wallet(own),
        }
    }
}

/// The booking saga's errors at the HTTP boundary, the same way.
impl From<BookingError> for ApiError {
    fn from(error: BookingError) -> Self {
        match error {
            BookingError::InvalidRequest(detail) => Self::BadRequest(detail),
            BookingError::IdempotencyKeyReused => Self::IdempotencyKeyReused,
            BookingError::Database(error) => Self::Database(error),
            BookingError::Stripe(error) => Self::Stripe(error),
            error @ BookingError::Duffel(_) => Self::Internal(error.to_string()),
            BookingError::Crypto(error) => Self::Crypto(error),
            BookingError::Internal(detail) => Self::Internal(detail),
            own => Self::Booking(own),
        }
    }
}

/// The privacy routes' errors at the HTTP boundary, the same way.
impl From<PrivacyError> for ApiError {
    fn from(error: PrivacyError) -> Self {
        match error {
            PrivacyError::StripeNotConfigured => Self::NotConfigured,
            PrivacyError::Database(error) => Self::Database(error),
            PrivacyError::Stripe(error) => Self::Stripe(error),
            PrivacyError::Crypto(error) => Self::Crypto(error),
            error @ (PrivacyError::Closed
            | PrivacyError::TooSlow
            | PrivacyError::Internal(_)
            | PrivacyError::NotRequested
            | PrivacyError::AuthUserRemains
            | PrivacyError::InProgress) => Self::Internal(error.to_string()),
            own => Self::Privacy(own),
        }
    }
}

/// Phone verification's errors at the HTTP boundary, the same way.
impl From<PhoneError> for ApiError {
    fn from(error: PhoneError) -> Self {
        match error {
            PhoneError::Database(error) => Self::Database(error),
            own => Self::Phone(own),
        }
    }
}

impl ApiError {
    pub fn into_problem(self) -> Problem {
        match &self {
            Self::Database(error) => tracing::error!(%error, "database error"),
            Self::Internal(error) => tracing::error!(%error, "internal error"),
            Self::Crypto(CryptoError::Key(error)) => tracing::warn!(%error, "key provider error"),
            Self::Phone(
                error @ (PhoneError::NumberRejected(_)
                | PhoneError::TwilioRefused(_)
                | PhoneError::TwilioUnavailable(_)),
            ) => tracing::warn!(%error, "Twilio refused or did not answer"),
            _ => {}
        }
        self.as_problem()
    }

    /// "Not now" for the traveler's own reasons: the same request may succeed
    /// later (the money settled, a sign-in renewed), like a 5xx or a 429.
    pub fn is_retry_later(&self) -> bool {
        matches!(self, Self::Privacy(PrivacyError::MoneyInFlight(_) | PrivacyError::ReauthenticationRequired))
    }

    /// The problem without consuming the error (for storing an idempotent answer).
    pub fn as_problem(&self) -> Problem {
        let detail = match self {
            // Database errors can name tables and values: logged, never sent.
            Self::Database(_) | Self::Internal(_) => "the request could not be completed".to_owned(),
            // The key provider's own words (AWS codes, key ids, endpoints): logged, never sent.
            Self::Crypto(CryptoError::Key(_)) => "the key provider's answer is in the sidecar's log".to_owned(),
            // Twilio's words (its codes, "Authenticate"...) and transport errors: likewise.
            Self::Phone(
                PhoneError::NumberRejected(_) | PhoneError::TwilioRefused(_) | PhoneError::TwilioUnavailable(_),
            ) => "Twilio's answer is in the sidecar's log".to_owned(),
            other => other.to_string(),
        };
        let problem = match self {
            Self::Forbidden => Problem::new(StatusCode::FORBIDDEN, "caller_not_allowed", "Caller not allowed"),
            Self::NotFound(_) => Problem::not_found(),
            Self::MethodNotAllowed => Problem::method_not_allowed(),
            Self::TooLarge(_) => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Request body too large")
            }
            Self::HeadersTooLarge(_) => Problem::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                "Request headers too large",
            ),
            Self::BadRequest(_) => Problem::new(StatusCode::BAD_REQUEST, "invalid_request", "Invalid request"),
            Self::Context(_) | Self::Crypto(CryptoError::Context(_)) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_context", "Invalid encryption context")
            }
            Self::TooManyRequests => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", "Too many requests")
            }
            Self::SubjectRequired(_) => {
                Problem::new(StatusCode::FORBIDDEN, "subject_required", "Caller names no subject")
            }
            Self::SubjectMismatch => {
                Problem::new(StatusCode::FORBIDDEN, "subject_mismatch", "Record of another subject")
            }
            Self::Crypto(CryptoError::KeyNotAccepted(_)) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "key_not_accepted", "The record's key is not accepted")
            }
            Self::Crypto(CryptoError::Format(FormatError::VersionOne | FormatError::UnknownVersion(_))) => {
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unsupported_ciphertext_version",
                    "Unsupported ciphertext version",
                )
            }
            Self::Crypto(CryptoError::Format(_)) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "malformed_ciphertext", "Malformed ciphertext")
            }
            Self::Crypto(CryptoError::DecryptFailed) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "decryption_failed", "Decryption failed")
            }
            Self::Crypto(CryptoError::Key(KeyError::Rejected(_) | KeyError::Invalid(_))) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "key_rejected", "The key provider refused the data key")
            }
            Self::Crypto(CryptoError::Key(KeyError::Unavailable(_))) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "key_provider_unavailable", "Key provider unavailable")
            }
            Self::Unauthorized(_) => {
                Problem::new(StatusCode::UNAUTHORIZED, "invalid_token", "Invalid or missing traveler token")
            }
            Self::NotConfigured => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "wallet_not_configured", "Wallet not configured")
            }
            Self::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", "Database unavailable")
            }
            Self::Database(sqlx::Error::Database(error))
                if error.code().as_deref() == Some(crate::privacy::erase::BEING_ERASED_SQLSTATE) =>
            {
                being_erased()
            }
            Self::Database(_) | Self::Internal(_) => {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal error")
            }
            Self::Wallet(error) => wallet_problem(error),
            Self::Phone(error) => phone_problem(error),
            Self::Privacy(PrivacyError::MoneyInFlight(_)) => {
                Problem::new(StatusCode::CONFLICT, "money_in_flight", "Bookings not settled yet")
            }
            Self::Privacy(PrivacyError::ConfirmationRequired) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "confirmation_required", "Erasure not confirmed")
            }
            Self::Privacy(PrivacyError::BeingErased) => being_erased(),
            Self::FeatureDisabled(_) => {
                let mut problem =
                    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "feature_disabled", "Feature switched off");
                problem.retry_after_secs = Some(60);
                problem
            }
            Self::Privacy(PrivacyError::ReauthenticationRequired) => {
                Problem::new(StatusCode::FORBIDDEN, "reauthentication_required", "Recent sign-in required")
            }
            Self::Privacy(_) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal error"),
            Self::InvalidPhone(InvalidPhone::BadCode) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_code", "Invalid verification code")
            }
            Self::InvalidPhone(_) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_phone_number", "Invalid phone number")
            }
            Self::PhoneNotConfigured => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "phone_verification_not_configured",
                "Phone verification not configured",
            ),
            Self::Booking(error) => booking_problem(error),
            Self::BookingsNotConfigured => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "bookings_not_configured", "Bookings not configured")
            }
            Self::InvalidId(_) => Problem::new(StatusCode::BAD_REQUEST, "invalid_id", "Invalid id"),
            Self::InvalidSignature(_) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_signature", "Invalid webhook signature")
            }
            Self::IdempotencyKeyReused => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", "Idempotency-Key reused")
            }
            Self::IdempotencyInProgress => {
                Problem::new(StatusCode::CONFLICT, "idempotency_in_progress", "Request with this key in progress")
            }
            Self::Stripe(crate::stripe::StripeError::Refused { .. }) => {
                Problem::new(StatusCode::BAD_GATEWAY, "stripe_refused", "Stripe refused the request")
            }
            Self::Stripe(crate::stripe::StripeError::Unavailable(_)) => {
                Problem::new(StatusCode::BAD_GATEWAY, "stripe_unavailable", "Stripe unavailable")
            }
            Self::Stripe(crate::stripe::StripeError::Timeout) => {
                Problem::new(StatusCode::GATEWAY_TIMEOUT, "stripe_timeout", "Stripe did not answer in time")
            }
        };
        problem.with_detail(detail)
    }
}

/// A traveler whose erasure was asked for: nothing new is started for them,
/// whether the sidecar or the database (SQLSTATE PWE01) says so.
fn being_erased() -> Problem {
    Problem::new(StatusCode::CONFLICT, "account_being_erased", "The account is being erased")
}

/// The wallet's own refusals. Its adapters' errors never arrive wrapped
/// (`From<WalletError>` turns them into the shared variants).
fn wallet_problem(error: &WalletError) -> Problem {
    match error {
        WalletError::CardNotFound => Problem::new(StatusCode::NOT_FOUND, "card_not_found", "No such card"),
        WalletError::AccountBeingErased => being_erased(),
        WalletError::ConsentNotFound => {
            Problem::new(StatusCode::NOT_FOUND, "consent_not_found", "No consent in force for this card")
        }
        WalletError::SetupIntentNotFound => {
            Problem::new(StatusCode::NOT_FOUND, "setup_intent_not_found", "No such SetupIntent")
        }
        WalletError::TravelerNotFound => {
            Problem::new(StatusCode::FORBIDDEN, "traveler_not_found", "The token's user has no account")
        }
        WalletError::SetupIntentNotSucceeded => {
            Problem::new(StatusCode::CONFLICT, "setup_intent_not_succeeded", "SetupIntent not succeeded")
        }
        _ => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal error"),
    }
}

/// Phone verification's own refusals, likewise.
fn phone_problem(error: &PhoneError) -> Problem {
    let too_many = StatusCode::TOO_MANY_REQUESTS;
    match error {
        PhoneError::ProfileRequired => {
            Problem::new(StatusCode::CONFLICT, "profile_required", "Create the profile first")
        }
        PhoneError::SendLimited { retry_after_secs, .. } => {
            let mut problem = Problem::new(too_many, "verification_rate_limited", "Too many codes requested");
            problem.retry_after_secs = Some(*retry_after_secs);
            problem
        }
        PhoneError::NumberRejected(_) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "phone_number_rejected", "Twilio cannot send to this number")
        }
        PhoneError::TwilioSendLimit => {
            // Twilio counts sends per number over 10 minutes.
            let mut problem = Problem::new(too_many, "too_many_codes_sent", "Too many codes sent to this number");
            problem.retry_after_secs = Some(600);
            problem
        }
        PhoneError::TwilioRateLimited => Problem::new(too_many, "twilio_rate_limited", "Twilio is rate limiting"),
        PhoneError::TwilioUnavailable(_) => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "twilio_unavailable", "Twilio unavailable")
        }
        PhoneError::TwilioRefused(_) => Problem::new(StatusCode::BAD_GATEWAY, "twilio_refused", "Twilio refused"),
        PhoneError::NoPendingVerification => {
            Problem::new(StatusCode::CONFLICT, "no_pending_verification", "No verification waiting for a code")
        }
        PhoneError::Expired => Problem::new(StatusCode::GONE, "verification_expired", "The code has expired"),
        // Not 429: waiting does not help, a new verification does.
        PhoneError::TooManyChecks => Problem::new(StatusCode::CONFLICT, "too_many_attempts", "Too many codes tried"),
        PhoneError::IncorrectCode { remaining } => {
            let mut problem = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "incorrect_code", "Incorrect code");
            problem.attempts_remaining = Some(*remaining);
            problem
        }
        PhoneError::NumberChanged => {
            Problem::new(StatusCode::CONFLICT, "phone_number_changed", "The phone number changed")
        }
        PhoneError::Database(_) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal error"),
    }
}

/// The booking saga's own refusals, likewise.
fn booking_problem(error: &BookingError) -> Problem {
    match error {
        BookingError::InvalidMoney(crate::domain::InvalidMoney::Amount) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount", "Invalid amount")
        }
        BookingError::InvalidMoney(crate::domain::InvalidMoney::Currency) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_currency", "Invalid currency")
        }
        BookingError::InvalidBooking(_) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_booking", "Invalid booking request")
        }
        BookingError::CampaignNotFound => Problem::new(StatusCode::NOT_FOUND, "campaign_not_found", "No such campaign"),
        BookingError::ConsentRequired => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "consent_required", "No consent for off-session charges")
        }
        BookingError::AccountBeingErased => being_erased(),
        BookingError::CardConsentRequired => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "card_consent_required",
            "No card with consent to off-session charges",
        ),
        BookingError::NoUsableCard => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "no_usable_card", "No usable card")
        }
        BookingError::NotFound => Problem::new(StatusCode::NOT_FOUND, "booking_not_found", "No such booking"),
        BookingError::InProgress => Problem::new(StatusCode::CONFLICT, "booking_in_progress", "Booking in progress"),
        BookingError::AuthenticationPending => {
            Problem::new(StatusCode::CONFLICT, "authentication_pending", "Authentication not completed yet")
        }
        _ => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InvalidMoney;
    use crate::stripe::StripeError;

    fn answered(error: impl Into<ApiError>) -> (u16, &'static str) {
        let problem = error.into().into_problem();
        (problem.status, problem.code)
    }

    #[test]
    fn wallet_errors_keep_their_status_and_code() {
        let cases: Vec<(WalletError, (u16, &str))> = vec![
            (WalletError::StripeNotConfigured, (503, "wallet_not_configured")),
            (WalletError::InvalidRequest("x".into()), (400, "invalid_request")),
            (WalletError::CardNotFound, (404, "card_not_found")),
            (WalletError::ConsentNotFound, (404, "consent_not_found")),
            (WalletError::SetupIntentNotFound, (404, "setup_intent_not_found")),
            (WalletError::SetupIntentNotSucceeded, (409, "setup_intent_not_succeeded")),
            (WalletError::TravelerNotFound, (403, "traveler_not_found")),
            (WalletError::Database(sqlx::Error::RowNotFound), (500, "internal_error")),
            (WalletError::Stripe(StripeError::Timeout), (504, "stripe_timeout")),
            (WalletError::Crypto(CryptoError::DecryptFailed), (422, "decryption_failed")),
            (WalletError::Internal("x".into()), (500, "internal_error")),
        ];
        for (error, expected) in cases {
            let shown = error.to_string();
            assert_eq!(answered(error), expected, "{shown}");
        }
    }

    #[test]
    fn booking_errors_keep_their_status_and_code() {
        let cases: Vec<(BookingError, (u16, &str))> = vec![
            (BookingError::InvalidRequest("x".into()), (400, "invalid_request")),
            (BookingError::InvalidBooking("x".into()), (422, "invalid_booking")),
            (BookingError::InvalidMoney(InvalidMoney::Amount), (422, "invalid_amount")),
            (BookingError::InvalidMoney(InvalidMoney::Currency), (422, "invalid_currency")),
            (BookingError::CampaignNotFound, (404, "campaign_not_found")),
            (BookingError::ConsentRequired, (422, "consent_required")),
            (BookingError::NoUsableCard, (422, "no_usable_card")),
            (BookingError::CardConsentRequired, (422, "card_consent_required")),
            (BookingError::NotFound, (404, "booking_not_found")),
            (BookingError::InProgress, (409, "booking_in_progress")),
            (BookingError::AuthenticationPending, (409, "authentication_pending")),
            (BookingError::IdempotencyKeyReused, (422, "idempotency_key_reused")),
            (BookingError::Database(sqlx::Error::PoolTimedOut), (503, "database_unavailable")),
            (BookingError::Stripe(StripeError::Unavailable("down".into())), (502, "stripe_unavailable")),
            (BookingError::Duffel(crate::duffel::DuffelError::Timeout), (500, "internal_error")),
            (BookingError::Crypto(CryptoError::DecryptFailed), (422, "decryption_failed")),
            (BookingError::Internal("x".into()), (500, "internal_error")),
        ];
        for (error, expected) in cases {
            let shown = error.to_string();
            assert_eq!(answered(error), expected, "{shown}");
        }
    }
}
