//! Whether the sidecar can do its work: the key provider answers. Probes ask
//! often and a provider check costs KMS calls, so the answer is reused for a
//! while.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::crypto::EnvelopeCrypto;

const READINESS_TTL: Duration = Duration::from_secs(15);

#[derive(Debug, Default)]
pub struct ReadinessCache(Mutex<Option<(Instant, bool)>>);

impl ReadinessCache {
    /// Whether the key provider works, as checked within the last
    /// `READINESS_TTL`. The provider's error text stays in the log.
    pub async fn key_provider_ready(&self, crypto: &EnvelopeCrypto) -> bool {
        let cached =
            self.0.lock().ok().and_then(|c| *c).filter(|(at, _)| at.elapsed() < READINESS_TTL).map(|(_, ready)| ready);
        if let Some(ready) = cached {
            return ready;
        }
        let ready = match crypto.provider().check().await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "key provider not ready");
                false
            }
        };
        if let Ok(mut cache) = self.0.lock() {
            *cache = Some((Instant::now(), ready));
        }
        ready
    }
}
