//! Phone verification: a code sent by Twilio Verify to the number the traveler
//! gives, then checked. The wallet keeps its own limits in Postgres (per
//! traveler, per number, between resends, per code) on top of Twilio's, and
//! marks the phone verified only in the transaction that finds the profile
//! still holding the number the code went to.
//!
//! Twilio is called outside transactions; each verification is a row of
//! `phone_verifications` whose state says how far it got (`sending` survives a
//! crash between the claim and Twilio's answer, and still counts as a send).

use chrono::{DateTime, Utc};

use crate::config::PhoneSettings;
use crate::db::Database;
use crate::domain::{Actor, PhoneNumber, VerificationCode};
use crate::metrics::Metrics;
use crate::twilio::{TwilioError, VerificationStatus, VerifyPort};

/// Every outcome counted in `parker_wallet_phone_verifications_total`: failed
/// checks and refused sends feed the failed-authentication alerts.
pub const OUTCOMES: [&str; 10] = [
    "started",
    "approved",
    "refused_resend_too_soon",
    "refused_traveler_limit",
    "refused_number_limit",
    "refused_by_twilio",
    "incorrect_code",
    "expired",
    "attempts_exhausted",
    "number_changed",
];

/// Why the wallet refused to send a code now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendLimit {
    /// Within `resend_after_secs` of the traveler's last code.
    ResendTooSoon,
    /// `sends_per_traveler` codes within the window.
    Traveler,
    /// `sends_per_number` codes to this number within the window, by anyone.
    Number,
}

impl SendLimit {
    fn parse(reason: &str) -> Option<Self> {
        match reason {
            "resend_too_soon" => Some(Self::ResendTooSoon),
            "traveler_limit" => Some(Self::Traveler),
            "number_limit" => Some(Self::Number),
            _ => None,
        }
    }

    fn outcome(self) -> &'static str {
        match self {
            Self::ResendTooSoon => "refused_resend_too_soon",
            Self::Traveler => "refused_traveler_limit",
            Self::Number => "refused_number_limit",
        }
    }
}

/// Why a phone verification did not complete; `routes::error` maps each once.
#[derive(Debug, thiserror::Error)]
pub enum PhoneError {
    #[error("the traveler has no profile yet: create it before verifying a phone")]
    ProfileRequired,
    // The limit is not named: the number's limit counts other travelers' sends.
    #[error("no code may be sent now; retry in {retry_after_secs} s")]
    SendLimited { limit: SendLimit, retry_after_secs: u64 },
    #[error("Twilio will not send to this number: {0}")]
    NumberRejected(String),
    #[error("Twilio has sent as many codes to this number as it allows for now")]
    TwilioSendLimit,
    #[error("Twilio is rate limiting; retry in a moment")]
    TwilioRateLimited,
    #[error("Twilio did not answer: {0}")]
    TwilioUnavailable(String),
    #[error("Twilio refused: {0}")]
    TwilioRefused(String),
    #[error("no verification is waiting for a code: start one")]
    NoPendingVerification,
    #[error("the code has expired: start a new verification")]
    Expired,
    #[error("too many codes were tried: start a new verification")]
    TooManyChecks,
    #[error("the code is not the one sent; {remaining} attempts left")]
    IncorrectCode { remaining: u16 },
    #[error("the profile's phone number changed since the code was sent: verify the new number")]
    NumberChanged,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A verification started: a code is on its way to `phone_number`, or the
/// number was already verified and nothing was sent.
#[derive(Debug, Clone)]
pub struct Started {
    pub verification_id: Option<uuid::Uuid>,
    pub phone_number: PhoneNumber,
    pub expires_at: Option<DateTime<Utc>>,
    pub already_verified: bool,
}

/// A verified phone, and the profile's completion score after it.
#[derive(Debug, Clone)]
pub struct Verified {
    pub phone_number: String,
    pub completeness_score: Option<i32>,
}

/// What phone verification reaches.
#[derive(Clone, Copy)]
pub struct PhoneVerification<'a> {
    pub database: &'a Database,
    pub verify: &'a dyn VerifyPort,
    pub limits: &'a PhoneSettings,
    pub metrics: &'a Metrics,
}

/// The pending verification a code is checked against.
#[derive(sqlx::FromRow)]
struct Pending {
    id: uuid::Uuid,
    phone_number: String,
    checks: i16,
    expired: bool,
    profile_number: Option<String>,
}

impl PhoneVerification<'_> {
    /// Sends a code to `number`, within the limits; once Twilio has taken it,
    /// the number becomes the profile's (which unverifies a different one). A
    /// send Twilio refuses leaves the profile as it was.
    pub async fn start(&self, actor: &Actor, number: &PhoneNumber) -> Result<Started, PhoneError> {
        let user_id = actor.traveler.user_id;
        let mut tx = self.database.as_traveler(&actor.traveler, &actor.meta).await?;
        let profile: Option<(Option<String>, bool)> = sqlx::query_as(
            "SELECT phone_number, phone_verified FROM public.traveler_profiles WHERE user_id = $1 FOR UPDATE",
        )
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        match profile {
            None => return Err(PhoneError::ProfileRequired),
            Some((Some(current), true)) if current == number.as_e164() => {
                return Ok(Started {
                    verification_id: None,
                    phone_number: number.clone(),
                    expires_at: None,
                    already_verified: true,
                })
            }
            Some(_) => {}
        }
        let limits = self.limits;
        let (claimed, refused, retry_after): (Option<uuid::Uuid>, Option<String>, Option<i32>) = sqlx::query_as(
            "SELECT verification_id, refused, retry_after_secs
               FROM wallet_internal.claim_phone_verification($1, make_interval(secs => $2), make_interval(secs => $3),
                                                             $4, $5, make_interval(secs => $6))",
        )
        .bind(number.as_e164())
        .bind(limits.code_ttl_secs as f64)
        .bind(limits.send_window_secs as f64)
        .bind(i32::try_from(limits.sends_per_traveler).unwrap_or(i32::MAX))
        .bind(i32::try_from(limits.sends_per_number).unwrap_or(i32::MAX))
        .bind(limits.resend_after_secs as f64)
        .fetch_one(&mut *tx)
        .await?;
        let Some(verification_id) = claimed else {
            let limit = refused.as_deref().and_then(SendLimit::parse).unwrap_or(SendLimit::Traveler);
            self.metrics.phone_verification(limit.outcome());
            let retry_after_secs = retry_after.and_then(|secs| u64::try_from(secs).ok()).unwrap_or(1);
            return Err(PhoneError::SendLimited { limit, retry_after_secs });
        };
        // Another number's code is void now. One to the same number stays
        // checkable: Twilio resends the same verification, and a check of it may
        // be in flight.
        sqlx::query(
            "UPDATE public.phone_verifications SET state = 'superseded', finished_at = now()
              WHERE user_id = $1 AND phone_number <> $2 AND state IN ('sending', 'pending')",
        )
        .bind(user_id)
        .bind(number.as_e164())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;

        let sent = self.verify.start(number).await;
        let mut tx = self.database.as_traveler(&actor.traveler, &actor.meta).await?;
        let outcome = match &sent {
            Ok(verification) => {
                // The profile's lock first, as every writer here takes it: no deadlock with a check.
                sqlx::query("SELECT FROM public.traveler_profiles WHERE user_id = $1 FOR UPDATE")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                let expires_at: Option<DateTime<Utc>> = sqlx::query_scalar(
                    "UPDATE public.phone_verifications SET state = 'pending', twilio_sid = $2
                      WHERE id = $1 AND state = 'sending' RETURNING expires_at",
                )
                .bind(verification_id)
                .bind(&verification.sid)
                .fetch_optional(&mut *tx)
                .await?;
                match expires_at {
                    // A later start for another number superseded this one meanwhile.
                    None => {
                        self.metrics.phone_verification("number_changed");
                        Err(PhoneError::NumberChanged)
                    }
                    Some(expires_at) => {
                        sqlx::query(
                            "UPDATE public.traveler_profiles SET phone_number = $2
                              WHERE user_id = $1 AND phone_number IS DISTINCT FROM $2",
                        )
                        .bind(user_id)
                        .bind(number.as_e164())
                        .execute(&mut *tx)
                        .await?;
                        self.metrics.phone_verification("started");
                        Ok(Started {
                            verification_id: Some(verification_id),
                            phone_number: number.clone(),
                            expires_at: Some(expires_at),
                            already_verified: false,
                        })
                    }
                }
            }
            Err(error) => {
                finish(&mut tx, verification_id, "failed").await?;
                self.metrics.phone_verification("refused_by_twilio");
                Err(from_twilio(error.clone()))
            }
        };
        tx.commit().await?;
        outcome
    }

    /// Checks `code` against the traveler's latest pending verification; on
    /// approval marks the phone verified, if the profile still holds its number.
    pub async fn check(&self, actor: &Actor, code: &VerificationCode) -> Result<Verified, PhoneError> {
        let user_id = actor.traveler.user_id;
        let mut tx = self.database.as_traveler(&actor.traveler, &actor.meta).await?;
        let pending: Option<Pending> = sqlx::query_as(
            "SELECT v.id, v.phone_number, v.checks, v.expires_at <= clock_timestamp() AS expired,
                    p.phone_number AS profile_number
               FROM public.phone_verifications v
               LEFT JOIN public.traveler_profiles p ON p.user_id = v.user_id
              WHERE v.user_id = $1 AND v.state = 'pending'
              ORDER BY v.started_at DESC LIMIT 1",
        )
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(pending) = pending else {
            return Err(PhoneError::NoPendingVerification);
        };
        let refusal = if pending.expired {
            Some(("expired", "expired", PhoneError::Expired))
        } else if pending.profile_number.as_deref() != Some(pending.phone_number.as_str()) {
            Some(("superseded", "number_changed", PhoneError::NumberChanged))
        } else if pending.checks >= self.max_checks() {
            Some(("failed", "attempts_exhausted", PhoneError::TooManyChecks))
        } else {
            None
        };
        if let Some((state, outcome, error)) = refusal {
            finish(&mut tx, pending.id, state).await?;
            tx.commit().await?;
            self.metrics.phone_verification(outcome);
            return Err(error);
        }
        // Counted before Twilio is asked, in one statement: concurrent checks
        // cannot try more codes than allowed between them.
        let checks: Option<i16> = sqlx::query_scalar(
            "UPDATE public.phone_verifications SET checks = checks + 1
              WHERE id = $1 AND state = 'pending' AND checks < $2 RETURNING checks",
        )
        .bind(pending.id)
        .bind(self.max_checks())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let Some(checks) = checks else {
            self.metrics.phone_verification("attempts_exhausted");
            return Err(PhoneError::TooManyChecks);
        };
        let number = PhoneNumber::parse(&pending.phone_number)
            .map_err(|_| PhoneError::TwilioRefused("a stored number no longer parses".into()))?;

        let checked = self.verify.check(&number, code).await;
        let mut tx = self.database.as_traveler(&actor.traveler, &actor.meta).await?;
        let outcome = match checked.map(|verification| verification.status) {
            Ok(VerificationStatus::Approved) => self.approve(&mut tx, user_id, pending.id, &pending.phone_number).await,
            Ok(VerificationStatus::Expired | VerificationStatus::Canceled) => {
                finish(&mut tx, pending.id, "expired").await?;
                self.metrics.phone_verification("expired");
                Err(PhoneError::Expired)
            }
            Ok(VerificationStatus::MaxAttemptsReached | VerificationStatus::Failed) => {
                finish(&mut tx, pending.id, "failed").await?;
                self.metrics.phone_verification("attempts_exhausted");
                Err(PhoneError::TooManyChecks)
            }
            Ok(_) => {
                // At 0 the verification stays pending: the next check says why it is refused.
                let remaining = u16::try_from(self.max_checks() - checks).unwrap_or(0);
                self.metrics.phone_verification("incorrect_code");
                Err(PhoneError::IncorrectCode { remaining })
            }
            Err(TwilioError::NotFound) => {
                finish(&mut tx, pending.id, "expired").await?;
                self.metrics.phone_verification("expired");
                Err(PhoneError::Expired)
            }
            Err(TwilioError::MaxCheckAttempts) => {
                finish(&mut tx, pending.id, "failed").await?;
                self.metrics.phone_verification("attempts_exhausted");
                Err(PhoneError::TooManyChecks)
            }
            Err(error) => Err(from_twilio(error)),
        };
        tx.commit().await?;
        outcome
    }

    /// Marks the phone verified in the statement that finds the profile still
    /// holding `number` (its row lock orders it after any concurrent change).
    async fn approve(
        &self,
        tx: &mut sqlx::PgConnection,
        user_id: uuid::Uuid,
        verification_id: uuid::Uuid,
        number: &str,
    ) -> Result<Verified, PhoneError> {
        let profile_number: Option<Option<String>> =
            sqlx::query_scalar("SELECT phone_number FROM public.traveler_profiles WHERE user_id = $1 FOR UPDATE")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let still_pending = sqlx::query(
            "UPDATE public.phone_verifications SET state = 'approved', finished_at = now()
              WHERE id = $1 AND state = 'pending'",
        )
        .bind(verification_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        // The profile's row is locked above: its number is the one this update sees.
        let marked = still_pending
            && profile_number.flatten().as_deref() == Some(number)
            && sqlx::query(
                "UPDATE public.traveler_profiles SET phone_verified = true WHERE user_id = $1 AND phone_number = $2",
            )
            .bind(user_id)
            .bind(number)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
        if !marked {
            finish(tx, verification_id, "superseded").await?;
            self.metrics.phone_verification("number_changed");
            return Err(PhoneError::NumberChanged);
        }
        // Other codes to the same number are spent with this one (Twilio's is one verification).
        sqlx::query(
            "UPDATE public.phone_verifications SET state = 'superseded', finished_at = now()
              WHERE user_id = $1 AND id <> $2 AND phone_number = $3 AND state = 'pending'",
        )
        .bind(user_id)
        .bind(verification_id)
        .bind(number)
        .execute(&mut *tx)
        .await?;
        self.metrics.phone_verification("approved");
        let completeness_score =
            sqlx::query_scalar("SELECT completeness_score FROM public.profile_completion_tracking WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        Ok(Verified { phone_number: number.to_owned(), completeness_score })
    }

    fn max_checks(&self) -> i16 {
        i16::try_from(self.limits.max_checks).unwrap_or(i16::MAX)
    }
}

/// Ends a verification in `state` (unless it already ended).
async fn finish(tx: &mut sqlx::PgConnection, verification_id: uuid::Uuid, state: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE public.phone_verifications SET state = $2, finished_at = now()
          WHERE id = $1 AND state IN ('sending', 'pending')",
    )
    .bind(verification_id)
    .bind(state)
    .execute(tx)
    .await?;
    Ok(())
}

fn from_twilio(error: TwilioError) -> PhoneError {
    match error {
        TwilioError::InvalidParameter(message) => PhoneError::NumberRejected(message),
        TwilioError::MaxSendAttempts => PhoneError::TwilioSendLimit,
        TwilioError::RateLimited => PhoneError::TwilioRateLimited,
        TwilioError::Unavailable(detail) => PhoneError::TwilioUnavailable(detail),
        TwilioError::MaxCheckAttempts => PhoneError::TooManyChecks,
        TwilioError::NotFound => PhoneError::Expired,
        error @ TwilioError::Refused { .. } => PhoneError::TwilioRefused(error.to_string()),
    }
}
