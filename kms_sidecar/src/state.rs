//! What every request handler can reach, built once at start (`server`), and
//! the domain's views of it ([`AppState::wallet`], [`AppState::booking_ports`]).

use std::sync::Arc;

use secrecy::SecretString;

use crate::auth::JwtVerifier;
use crate::bookings::{BookingLocks, Ports};
use crate::config::Settings;
use crate::crypto::EnvelopeCrypto;
use crate::db::Database;
use crate::duffel::DuffelPort;
use crate::fairness::TravelerGate;
use crate::metrics::Metrics;
use crate::phone::PhoneVerification;
use crate::readiness::ReadinessCache;
use crate::stripe::StripePort;
use crate::twilio::VerifyPort;
use crate::wallet::Wallet;

pub struct AppState {
    pub settings: Settings,
    /// The wallet's database and token verifier; `None` in crypto-only deployments.
    pub database: Option<Database>,
    pub verifier: Option<JwtVerifier>,
    pub stripe: Option<Arc<dyn StripePort>>,
    pub duffel: Option<Arc<dyn DuffelPort>>,
    pub twilio: Option<Arc<dyn VerifyPort>>,
    pub webhook_secrets: Vec<SecretString>,
    pub crypto: EnvelopeCrypto,
    pub metrics: Arc<Metrics>,
    pub service_token: Option<SecretString>,
    pub readiness: ReadinessCache,
    pub booking_locks: BookingLocks,
    pub traveler_gate: Arc<TravelerGate>,
    /// Exports running at once, over all travelers: each holds a pooled
    /// connection (its snapshot) for as long as its reader reads.
    pub export_slots: Arc<tokio::sync::Semaphore>,
    pub kill_switches: Arc<crate::kill_switches::KillSwitches>,
}

impl AppState {
    /// The wallet, when a database is configured (Stripe is optional to it).
    pub fn wallet(&self) -> Option<Wallet<'_>> {
        let database = self.database.as_ref()?;
        Some(Wallet { database, stripe: self.stripe.as_deref(), crypto: &self.crypto })
    }

    /// Phone verification, when the database and Twilio are configured.
    pub fn phone_verification(&self) -> Option<PhoneVerification<'_>> {
        Some(PhoneVerification {
            database: self.database.as_ref()?,
            verify: self.twilio.as_deref()?,
            limits: &self.settings.phone,
            metrics: &self.metrics,
        })
    }

    /// What the booking saga needs, when everything it calls is configured.
    pub fn booking_ports(&self) -> Option<Ports<'_>> {
        Some(Ports {
            database: self.database.as_ref()?,
            stripe: self.stripe.as_deref()?,
            duffel: self.duffel.as_deref()?,
            crypto: &self.crypto,
            policy: &self.settings.bookings,
            locks: &self.booking_locks,
            metrics: &self.metrics,
        })
    }
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
