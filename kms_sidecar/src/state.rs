//! What every request handler can reach.

use std::sync::Arc;

use secrecy::SecretString;

use crate::config::Settings;
use crate::crypto::EnvelopeCrypto;
use crate::metrics::Metrics;

pub struct AppState {
    pub settings: Settings,
    /// The wallet's database and token verifier; `None` in crypto-only deployments.
    pub database: Option<crate::database::Database>,
    pub verifier: Option<crate::auth::JwtVerifier>,
    pub stripe: Option<Arc<dyn crate::payments::StripePort>>,
    pub duffel: Option<Arc<dyn crate::duffel::DuffelPort>>,
    pub webhook_secrets: Vec<SecretString>,
    pub crypto: EnvelopeCrypto,
    pub metrics: Arc<Metrics>,
    pub service_token: Option<SecretString>,
    pub readiness: crate::routes::health::ReadinessCache,
    pub booking_locks: crate::bookings::BookingLocks,
    pub traveler_gate: Arc<crate::fairness::TravelerGate>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.settings)
            .field("crypto", &self.crypto)
            .field("service_token", &self.service_token.as_ref().map(|_| "[REDACTED]"))
            .finish_non_exhaustive()
    }
}
