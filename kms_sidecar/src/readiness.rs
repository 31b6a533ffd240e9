//! Whether the sidecar can do its work (`/readyz`): the database answers a
//! cheap query within a second; the key provider and Stripe answer, checked
//! at most every [`READINESS_TTL`] (probes ask often, and each check costs a
//! KMS or Stripe call). Their error text stays in the log.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::crypto::EnvelopeCrypto;
use crate::db::Database;
use crate::stripe::StripePort;

const READINESS_TTL: Duration = Duration::from_secs(15);
const DATABASE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct ReadinessCache(Mutex<HashMap<&'static str, (Instant, bool)>>);

impl ReadinessCache {
    /// `part`'s last answer if younger than the TTL, else `check` run now.
    async fn cached<E: std::fmt::Display>(
        &self,
        part: &'static str,
        check: impl Future<Output = Result<(), E>>,
    ) -> bool {
        let fresh = self.0.lock().unwrap_or_else(PoisonError::into_inner).get(part).copied();
        if let Some((_, ready)) = fresh.filter(|(at, _)| at.elapsed() < READINESS_TTL) {
            return ready;
        }
        let ready = match check.await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, part, "not ready");
                false
            }
        };
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(part, (Instant::now(), ready));
        ready
    }

    /// `part`'s last answer however old; `None` before its first check.
    fn last(&self, part: &'static str) -> Option<bool> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(part).map(|(_, ready)| *ready)
    }

    pub async fn key_provider_ready(&self, crypto: &EnvelopeCrypto) -> bool {
        self.cached(KEY_PROVIDER, crypto.provider().check()).await
    }

    pub async fn stripe_ready(&self, stripe: &dyn StripePort) -> bool {
        self.cached(STRIPE, stripe.check()).await
    }

    /// The last answers (key provider, Stripe), without asking anyone: for
    /// `/metrics`, which must answer even while a provider hangs.
    pub fn last_answers(&self) -> (Option<bool>, Option<bool>) {
        (self.last(KEY_PROVIDER), self.last(STRIPE))
    }
}

const KEY_PROVIDER: &str = "key_provider";
const STRIPE: &str = "stripe";

/// How often a background task asks again, so the answers `/metrics` reads
/// are at most [`READINESS_TTL`] old and are recorded even when no probe waits
/// for them.
pub const REFRESH: Duration = Duration::from_secs(5);

/// The database answers a query within a second (never cached: it is cheap).
pub async fn database_ready(database: &Database) -> bool {
    match tokio::time::timeout(DATABASE_TIMEOUT, database.check()).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, part = "database", "not ready");
            false
        }
        Err(_) => {
            tracing::warn!(part = "database", "not ready: no answer within a second");
            false
        }
    }
}
