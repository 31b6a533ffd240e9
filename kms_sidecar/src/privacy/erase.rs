//! A traveler's erasure (GDPR art. 17), one resumable state machine per
//! traveler in `public.erasures`. Each step moves it one state on in its own
//! transaction (Stripe's deletion outside any), so a crash anywhere resumes
//! where it stopped, and running it again changes nothing:
//!
//! 1. `requested`: the traveler (`DELETE /v1/privacy/account`) or an operator
//!    asked; refused while money is in flight (a booking not settled). From
//!    then on nothing new is recorded for the traveler, whoever writes (the
//!    `*_refuse_erased` triggers of migration 0015).
//! 2. `stripe_deleted`: the Stripe customer deleted (its cards detached).
//! 3. `data_deleted`: cards, customer, consents, phone verifications, campaigns,
//!    stored answers, messages, profile and completion deleted; bookings kept
//!    for the legal retention without their passengers; the Stripe events that
//!    named the customer, its cards or payments emptied.
//! 4. `audit_redacted`: the audit trail redacted, the redaction signed through
//!    KMS (`audit::redact`): the chain still verifies, and says what was erased.
//! 5. `completed`: the `auth.users` row gone, deleted here where the operator
//!    may, else by Supabase Auth's admin API (the run waits for it).
//!
//! Steps 2 to 5 are the operator's (`kms-sidecar erase`): they need rights
//! that pass row-level security and the audit signing key, which the serving
//! sidecar does not hold.

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};

use super::PrivacyError;
use crate::audit::AuditSigner;
use crate::db::lock_traveler;
use crate::stripe::StripePort;

/// What the traveler types to confirm: erasure cannot be undone.
pub const CONFIRMATION: &str = "erase my account";

/// How recently the traveler must have signed in to ask for their erasure.
pub const REAUTHENTICATION_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

/// What the database raises when something new is written for a traveler
/// whose erasure was asked for (migration 0015's triggers).
pub const BEING_ERASED_SQLSTATE: &str = "PWE01";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Requested,
    StripeDeleted,
    DataDeleted,
    AuditRedacted,
    Completed,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::StripeDeleted => "stripe_deleted",
            Self::DataDeleted => "data_deleted",
            Self::AuditRedacted => "audit_redacted",
            Self::Completed => "completed",
        }
    }

    fn parse(text: &str) -> Result<Self, PrivacyError> {
        [Self::Requested, Self::StripeDeleted, Self::DataDeleted, Self::AuditRedacted, Self::Completed]
            .into_iter()
            .find(|stage| stage.as_str() == text)
            .ok_or_else(|| PrivacyError::Internal(format!("an erasure in an unknown state {text:?}")))
    }
}

/// An erasure as the traveler (or the operator) sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Erasure {
    pub user_id: uuid::Uuid,
    pub state: String,
    pub requested_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Refused while any of the traveler's bookings has money in flight, naming
/// them. Settled is the saga's `State::is_final` (not imported: the bookings
/// module asks this one whether an erasure was requested).
async fn refuse_money_in_flight(conn: &mut PgConnection, user_id: uuid::Uuid) -> Result<(), PrivacyError> {
    let open: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM public.booking_charges
          WHERE user_id = $1 AND state NOT IN ('captured', 'voided', 'refunded', 'declined') ORDER BY created_at",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?;
    if open.is_empty() {
        Ok(())
    } else {
        Err(PrivacyError::MoneyInFlight(open))
    }
}

/// Records the request, unless one is recorded already; refused while money
/// is in flight. `conn` is a transaction as the traveler, or the operator's.
pub async fn request(
    conn: &mut PgConnection,
    user_id: uuid::Uuid,
    requested_by: &str,
) -> Result<Erasure, PrivacyError> {
    // The customer's lock: a Stripe customer being made now is seen below (and
    // none is made once this commits: `Wallet::ensure_customer` checks).
    lock_traveler(conn, "customer", user_id).await?;
    lock_traveler(conn, "erasure", user_id).await?;
    refuse_money_in_flight(conn, user_id).await?;
    sqlx::query(
        "INSERT INTO public.erasures (user_id, stripe_customer_id, stripe_ids, requested_by)
         SELECT $1, (SELECT stripe_customer_id FROM public.wallet_customers WHERE user_id = $1),
                ARRAY(SELECT stripe_customer_id FROM public.wallet_customers WHERE user_id = $1
                      UNION SELECT stripe_payment_method_id FROM public.payment_methods WHERE user_id = $1
                      UNION SELECT stripe_payment_method_id FROM public.booking_charges
                             WHERE user_id = $1 AND stripe_payment_method_id IS NOT NULL
                      UNION SELECT stripe_payment_intent_id FROM public.booking_charges
                             WHERE user_id = $1 AND stripe_payment_intent_id IS NOT NULL),
                $2
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(requested_by)
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query_as("SELECT user_id, state, requested_at, completed_at FROM public.erasures WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(conn)
        .await?)
}

/// Whether an erasure of the traveler was asked for: nothing new may be
/// started for them (a Stripe customer, a booking).
pub async fn requested(conn: &mut PgConnection, user_id: uuid::Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT FROM public.erasures WHERE user_id = $1)")
        .bind(user_id)
        .fetch_one(conn)
        .await
}

/// What carrying an erasure out needs: the operator's connection (the table
/// owner's rights), Stripe (when the traveler had a customer), the audit signer.
pub struct Eraser<'a> {
    pub conn: &'a mut PgConnection,
    pub stripe: Option<&'a dyn StripePort>,
    pub signer: &'a dyn AuditSigner,
}

impl Eraser<'_> {
    /// Carries the traveler's erasure on from where it stands to its end;
    /// another run already at it (cron and an operator's `--user`) holds it back.
    pub async fn run(&mut self, user_id: uuid::Uuid) -> Result<Stage, PrivacyError> {
        check_operator(self.conn).await?;
        let key = format!("parker_wallet.erasing:{user_id}");
        let mine: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(&key)
            .fetch_one(&mut *self.conn)
            .await?;
        if !mine {
            return Err(PrivacyError::InProgress);
        }
        let outcome = self.run_alone(user_id).await;
        sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))").bind(&key).execute(&mut *self.conn).await?;
        outcome
    }

    async fn run_alone(&mut self, user_id: uuid::Uuid) -> Result<Stage, PrivacyError> {
        loop {
            let row: Option<(String, Option<String>, DateTime<Utc>)> = sqlx::query_as(
                "SELECT e.state, coalesce(e.stripe_customer_id, c.stripe_customer_id), e.requested_at
                   FROM public.erasures e LEFT JOIN public.wallet_customers c USING (user_id)
                  WHERE e.user_id = $1",
            )
            .bind(user_id)
            .fetch_optional(&mut *self.conn)
            .await?;
            let (state, customer, requested_at) = row.ok_or(PrivacyError::NotRequested)?;
            let stage = Stage::parse(&state)?;
            let next = match stage {
                Stage::Requested => {
                    refuse_money_in_flight(self.conn, user_id).await?;
                    if let Some(customer) = &customer {
                        self.stripe.ok_or(PrivacyError::StripeNotConfigured)?.delete_customer(customer).await?;
                    }
                    Stage::StripeDeleted
                }
                Stage::StripeDeleted => {
                    self.delete_data(user_id).await?;
                    continue;
                }
                Stage::DataDeleted => {
                    let reason = format!("erasure requested {}", requested_at.format("%Y-%m-%dT%H:%M:%SZ"));
                    crate::audit::redact::redact(self.conn, self.signer, user_id, &reason)
                        .await
                        .map_err(|e| PrivacyError::Internal(format!("audit redaction: {e}")))?;
                    Stage::AuditRedacted
                }
                Stage::AuditRedacted => {
                    self.delete_auth_user(user_id).await?;
                    // What arrived since step 3 (Stripe's events of the deletion).
                    scrub_stripe_events(self.conn, user_id).await?;
                    Stage::Completed
                }
                Stage::Completed => return Ok(stage),
            };
            advance(&mut *self.conn, user_id, stage, next).await?;
        }
    }

    /// Step 3, in one transaction with the move to `data_deleted`.
    async fn delete_data(&mut self, user_id: uuid::Uuid) -> Result<(), PrivacyError> {
        let mut tx = self.conn.begin().await?;
        lock_traveler(&mut tx, "erasure", user_id).await?;
        refuse_money_in_flight(&mut tx, user_id).await?;
        scrub_stripe_events(&mut tx, user_id).await?;
        // A flag's allow list names travelers.
        sqlx::query(
            "UPDATE public.feature_flags SET allow_list = array_remove(allow_list, $1) WHERE $1 = ANY (allow_list)",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        for table in [
            "payment_methods",
            "wallet_customers",
            "campaigns",
            "consents",
            "phone_verifications",
            "idempotency_keys",
            "notification_outbox",
            "traveler_profiles",
            "profile_completion_tracking",
        ] {
            sqlx::query(&format!("DELETE FROM public.{table} WHERE user_id = $1"))
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        // Kept for the legal retention: amounts, routes, states, references.
        // The passengers (names, birth dates) go, and the request's
        // fingerprint, a hash of them.
        sqlx::query(
            "UPDATE public.booking_charges SET passengers_sealed = '\\x'::bytea, request_fingerprint = '\\x'::bytea
              WHERE user_id = $1",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        advance(&mut tx, user_id, Stage::StripeDeleted, Stage::DataDeleted).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Step 5: deleted where the operator may delete Supabase Auth's users;
    /// elsewhere the erasure waits until Supabase Auth has deleted it.
    async fn delete_auth_user(&mut self, user_id: uuid::Uuid) -> Result<(), PrivacyError> {
        let (may_delete, may_read): (bool, bool) = sqlx::query_as(
            "SELECT has_table_privilege('auth.users', 'DELETE'), has_table_privilege('auth.users', 'SELECT')",
        )
        .fetch_one(&mut *self.conn)
        .await?;
        if may_delete {
            sqlx::query("DELETE FROM auth.users WHERE id = $1").bind(user_id).execute(&mut *self.conn).await?;
        }
        if !may_read {
            return Err(PrivacyError::Internal("the operator's role cannot read auth.users".to_owned()));
        }
        let remains: bool = sqlx::query_scalar("SELECT EXISTS (SELECT FROM auth.users WHERE id = $1)")
            .bind(user_id)
            .fetch_one(&mut *self.conn)
            .await?;
        if remains {
            return Err(PrivacyError::AuthUserRemains);
        }
        Ok(())
    }
}

/// Stripe's events are kept to recognise a redelivery; what they say of the
/// traveler goes: those naming their customer, cards or payments are emptied.
async fn scrub_stripe_events(conn: &mut PgConnection, user_id: uuid::Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH ids AS (
           SELECT unnest(stripe_ids) AS id FROM public.erasures WHERE user_id = $1
           UNION SELECT stripe_customer_id FROM public.wallet_customers WHERE user_id = $1
           UNION SELECT stripe_payment_method_id FROM public.payment_methods WHERE user_id = $1)
         UPDATE public.stripe_events SET payload = '{\"erased\": true}'::jsonb
          WHERE payload <> '{\"erased\": true}'::jsonb
            AND (payload #>> '{data,object,id}' IN (SELECT id FROM ids)
                 OR payload #>> '{data,object,customer}' IN (SELECT id FROM ids)
                 OR payload #>> '{data,object,payment_method}' IN (SELECT id FROM ids)
                 OR payload #>> '{data,object,payment_intent}' IN (SELECT id FROM ids)
                 OR payload #>> '{data,previous_attributes,customer}' IN (SELECT id FROM ids))",
    )
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves an erasure from `from` to `to` (nothing if another run moved it).
async fn advance(conn: &mut PgConnection, user_id: uuid::Uuid, from: Stage, to: Stage) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE public.erasures
            SET state = $3, updated_at = now(),
                -- Kept until the end: step 5 empties Stripe's late events too.
                stripe_customer_id = CASE WHEN $3 = 'completed' THEN NULL ELSE stripe_customer_id END,
                stripe_ids = CASE WHEN $3 = 'completed' THEN '{}' ELSE stripe_ids END,
                completed_at = CASE WHEN $3 = 'completed' THEN now() END
          WHERE user_id = $1 AND state = $2",
    )
    .bind(user_id)
    .bind(from.as_str())
    .bind(to.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Refuses an operator whose role row-level security applies to: the
/// deletions would pass over the rows it hides, and an erasure would complete
/// with data left behind.
pub async fn check_operator(conn: &mut PgConnection) -> Result<(), PrivacyError> {
    if crate::db::passes_rls(conn).await? {
        Ok(())
    } else {
        Err(PrivacyError::Internal(crate::db::OPERATOR_UNDER_RLS.to_owned()))
    }
}

/// Every erasure not yet completed, oldest first (`kms-sidecar erase --pending`).
pub async fn pending(conn: &mut PgConnection) -> Result<Vec<uuid::Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM public.erasures WHERE state <> 'completed' ORDER BY requested_at")
        .fetch_all(conn)
        .await
}
