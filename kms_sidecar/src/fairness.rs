//! Fair use of the database pool. The wallet holds a per-traveler advisory lock,
//! and so a pooled connection, across Stripe calls of up to `stripe.timeout_ms`;
//! without a cap one traveler's burst would hold the whole pool and every other
//! traveler would get 503. So at most `running` requests of one traveler run
//! at once; the next `queued` wait their turn here, holding no connection, for
//! at most `wait`; anything beyond is refused at once (429 with Retry-After).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone, Copy)]
pub struct FairUse {
    pub running: usize,
    pub queued: usize,
    pub wait: Duration,
}

#[derive(Debug)]
pub struct TravelerGate {
    policy: FairUse,
    travelers: Mutex<HashMap<uuid::Uuid, Turns>>,
}

/// One traveler's requests: their turns, and how many hold or await one.
#[derive(Debug)]
struct Turns {
    permits: Arc<Semaphore>,
    present: usize,
}

/// One admitted request; its turn is given back when this is dropped.
#[derive(Debug)]
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    _presence: Presence,
}

/// A request counted as present (waiting or running); uncounted when dropped,
/// also when the waiting request itself is dropped (its client hung up).
#[derive(Debug)]
struct Presence {
    gate: Arc<TravelerGate>,
    traveler: uuid::Uuid,
}

impl Drop for Presence {
    fn drop(&mut self) {
        let mut travelers = self.gate.travelers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(turns) = travelers.get_mut(&self.traveler) {
            turns.present -= 1;
            if turns.present == 0 {
                travelers.remove(&self.traveler);
            }
        }
    }
}

impl TravelerGate {
    pub fn new(policy: FairUse) -> Arc<Self> {
        let policy = FairUse { running: policy.running.max(1), ..policy };
        Arc::new(Self { policy, travelers: Mutex::new(HashMap::new()) })
    }

    /// Waits for a turn of `traveler`'s; `None` when too many of theirs are
    /// already running and waiting, or the wait ran out.
    pub async fn admit(self: &Arc<Self>, traveler: uuid::Uuid) -> Option<Admission> {
        let (permits, presence) = {
            let mut travelers = self.travelers.lock().unwrap_or_else(PoisonError::into_inner);
            let turns = travelers
                .entry(traveler)
                .or_insert_with(|| Turns { permits: Arc::new(Semaphore::new(self.policy.running)), present: 0 });
            if turns.present >= self.policy.running + self.policy.queued {
                return None;
            }
            turns.present += 1;
            (Arc::clone(&turns.permits), Presence { gate: Arc::clone(self), traveler })
        };
        let permit = tokio::time::timeout(self.policy.wait, permits.acquire_owned()).await.ok()?.ok()?;
        Some(Admission { _permit: permit, _presence: presence })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(running: usize, queued: usize, wait_ms: u64) -> Arc<TravelerGate> {
        TravelerGate::new(FairUse { running, queued, wait: Duration::from_millis(wait_ms) })
    }

    const ALICE: uuid::Uuid = uuid::Uuid::from_u128(1);
    const BOB: uuid::Uuid = uuid::Uuid::from_u128(2);

    #[tokio::test]
    async fn one_traveler_waits_in_turn_and_others_do_not_wait() {
        let gate = gate(1, 1, 5_000);
        let first = gate.admit(ALICE).await.unwrap();
        let waiting = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.admit(ALICE).await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(gate.admit(ALICE).await.is_none(), "one running and one waiting: a third is refused at once");
        assert!(gate.admit(BOB).await.is_some(), "another traveler is not affected");
        drop(first);
        assert!(waiting.await.unwrap(), "the waiting request gets the turn given back");
    }

    #[tokio::test]
    async fn a_waiting_request_dropped_gives_its_place_back() {
        let gate = gate(1, 1, 5_000);
        let running = gate.admit(ALICE).await.unwrap();
        let abandoned = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.admit(ALICE).await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        abandoned.abort();
        let _ = abandoned.await;
        drop(running);
        assert!(gate.travelers.lock().unwrap().is_empty(), "the client that hung up left no place taken");
        assert!(gate.admit(ALICE).await.is_some());
    }

    #[tokio::test]
    async fn a_wait_that_runs_out_is_refused_and_leaves_no_trace() {
        let gate = gate(1, 5, 50);
        let first = gate.admit(ALICE).await.unwrap();
        assert!(gate.admit(ALICE).await.is_none(), "waited 50 ms");
        drop(first);
        assert!(gate.travelers.lock().unwrap().is_empty());
    }
}
