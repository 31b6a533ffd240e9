//! Who drives a booking: one holder at a time, in this process by
//! [`BookingLocks`] (requests queue in memory, not on database connections),
//! across processes (the sidecar and `kms-sidecar reconcile`) by a database
//! lease that a crash frees.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{flow, Actor, BookingError, Ports};
use crate::db::Lease;

/// In-process queue per booking, so concurrent requests for one booking wait
/// in memory rather than each holding a database connection.
#[derive(Debug, Default)]
pub struct BookingLocks(std::sync::Mutex<HashMap<uuid::Uuid, Weak<tokio::sync::Mutex<()>>>>);

impl BookingLocks {
    async fn hold(&self, id: uuid::Uuid) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.retain(|_, lock| lock.strong_count() > 0);
            match map.get(&id).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(id, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

/// Who drives: a request waits its turn; the reconciler skips busy bookings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// A request naming a booking by id: 404 unless it is the caller's.
    Request,
    /// The request that opened the booking (or found it by its key), as its
    /// caller: known to be theirs, so not read first.
    Opener,
    Reconciler,
}

/// How long a request queues behind another holder of its booking.
const REQUEST_WAIT: Duration = Duration::from_secs(60);

/// The reconciler does not queue behind a live request for long: next pass.
const RECONCILER_WAIT: Duration = Duration::from_secs(2);

fn lease_key(id: uuid::Uuid) -> String {
    format!("parker_wallet.booking:{id}")
}

/// The right to drive one booking: its place in this process's queue (for
/// requests) and its database lease. Released explicitly, lease first.
pub(crate) struct Hold {
    pub(super) lease: Lease,
    _queued: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Hold {
    /// A request waits its turn (404 first, before any lock, when the booking
    /// is not the caller's); the reconciler waits briefly. `Ok(None)`: the
    /// reconciler found the booking busy.
    pub(crate) async fn take(
        ports: Ports<'_>,
        actor: &Actor,
        id: uuid::Uuid,
        driver: Driver,
    ) -> Result<Option<Self>, BookingError> {
        if driver == Driver::Request {
            flow::read(ports, actor, id).await?;
        }
        let (queued, wait) = match driver {
            Driver::Request | Driver::Opener => {
                let queued = tokio::time::timeout(REQUEST_WAIT, ports.locks.hold(id))
                    .await
                    .map_err(|_| BookingError::InProgress)?;
                (Some(queued), REQUEST_WAIT)
            }
            Driver::Reconciler => (None, RECONCILER_WAIT),
        };
        match ports.database.lease(&lease_key(id), Some(wait)).await? {
            Some(lease) => Ok(Some(Self { lease, _queued: queued })),
            None if driver != Driver::Reconciler => Err(BookingError::InProgress),
            None => Ok(None),
        }
    }

    pub(crate) async fn release(self) -> Result<(), BookingError> {
        Ok(self.lease.release().await?)
    }
}
