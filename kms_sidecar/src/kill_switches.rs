//! Kill switches (migration 0016): features an operator turns off at once,
//! without a restart, by throwing `kill_switch.<feature>` in `feature_flags`.
//! The sidecar reads them every [`REFRESH`]; a route whose feature is off
//! answers 503 `feature_disabled`. Work already running (a booking's saga,
//! its resume) is never stopped by one: money is never left half-done.

use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use crate::db::Database;

/// How often the switches are read: how soon a thrown one takes effect.
pub const REFRESH: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Every wallet write: cards added or deleted, the default, consents, setup intents.
    WalletWrites,
    /// A new card saved (setup intents, add).
    CardSaves,
    /// New bookings (the scheduled, off-session ones included).
    AutoBooking,
    /// Phone verification, start and check.
    PhoneVerification,
}

impl Feature {
    pub const ALL: [Feature; 4] = [Self::WalletWrites, Self::CardSaves, Self::AutoBooking, Self::PhoneVerification];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::WalletWrites => "wallet_writes",
            Self::CardSaves => "card_saves",
            Self::AutoBooking => "auto_booking",
            Self::PhoneVerification => "phone_verification",
        }
    }

    fn switch(self) -> String {
        format!("kill_switch.{}", self.as_str())
    }
}

/// The switches as last read; none thrown until the first read.
#[derive(Debug, Default)]
pub struct KillSwitches {
    thrown: RwLock<Vec<Feature>>,
}

impl KillSwitches {
    pub fn is_off(&self, feature: Feature) -> bool {
        self.thrown.read().unwrap_or_else(PoisonError::into_inner).contains(&feature)
    }

    /// Reads the switches; a failed read keeps the last ones.
    pub async fn refresh(&self, database: &Database) -> Result<(), sqlx::Error> {
        let mut tx = database.as_system().await?;
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM public.feature_flags WHERE name LIKE 'kill\\_switch.%' AND enabled")
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let thrown: Vec<Feature> =
            Feature::ALL.into_iter().filter(|feature| names.contains(&feature.switch())).collect();
        let mut current = self.thrown.write().unwrap_or_else(PoisonError::into_inner);
        if *current != thrown {
            let off: Vec<&str> = thrown.iter().map(|feature| feature.as_str()).collect();
            tracing::warn!(?off, "kill switches changed");
            *current = thrown;
        }
        Ok(())
    }

    /// Reads the switches every [`REFRESH`], for as long as the sidecar runs.
    pub async fn watch(&self, database: Database) {
        let mut every = tokio::time::interval(REFRESH);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(error) = self.refresh(&database).await {
                tracing::warn!(%error, "reading the kill switches failed; keeping the last ones");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_are_named_after_their_feature() {
        let names: Vec<String> = Feature::ALL.into_iter().map(Feature::switch).collect();
        assert_eq!(
            names,
            [
                "kill_switch.wallet_writes",
                "kill_switch.card_saves",
                "kill_switch.auto_booking",
                "kill_switch.phone_verification"
            ]
        );
        let switches = KillSwitches::default();
        assert!(!switches.is_off(Feature::AutoBooking), "nothing is off before the first read");
    }
}
