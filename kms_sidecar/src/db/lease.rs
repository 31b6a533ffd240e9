//! Leases: advisory locks held in their own transactions, on their own pool,
//! for as long as a booking step runs.

use std::time::Duration;

use sqlx::{Postgres, Transaction};

use super::Database;

/// An advisory lock held for as long as this value lives. Dropping it frees
/// the lock only when the pool next touches the connection; [`Lease::release`]
/// frees it now.
#[derive(Debug)]
pub struct Lease {
    tx: Transaction<'static, Postgres>,
}

/// The longest anyone queues for a lease connection.
pub(super) const LEASE_WAIT_LIMIT: Duration = Duration::from_secs(60);
/// How long a lease that is only tried waits for a connection.
const TRY_CONNECTION_WAIT: Duration = Duration::from_secs(1);

impl Lease {
    pub async fn release(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }

    /// Whether the lock is still held (its connection still alive): checked
    /// before a call that must not be made twice.
    pub async fn is_held(&mut self) -> bool {
        sqlx::query("SELECT 1").execute(&mut *self.tx).await.is_ok()
    }
}

impl Database {
    /// Holds a transaction-scoped advisory lock on `key` in its own transaction:
    /// the lock ends with the lease, or with the process (a crash frees it at
    /// once, no timeout to wait out). `wait`: how long to queue for it; `None`
    /// only tries. `Ok(None)`: someone else holds it.
    pub async fn lease(&self, key: &str, wait: Option<Duration>) -> Result<Option<Lease>, sqlx::Error> {
        let started = std::time::Instant::now();
        // A connection first: queueing for one counts against the wait.
        let connection_wait = wait.unwrap_or(TRY_CONNECTION_WAIT).min(LEASE_WAIT_LIMIT);
        let Ok(tx) = tokio::time::timeout(connection_wait, self.leases.begin()).await else {
            return Ok(None);
        };
        let mut tx = tx?;
        let wait = wait.map(|wait| wait.saturating_sub(started.elapsed()));
        // A server-side idle timeout would free the lock behind the holder's
        // back; the lock's own wait is the caller's (no wait: only tried).
        let lock_timeout = wait.map(|wait| format!("{}ms", wait.as_millis().max(1)));
        sqlx::query(
            "SELECT set_config('idle_in_transaction_session_timeout', '0', true),
                    set_config('lock_timeout', coalesce($1, current_setting('lock_timeout')), true)",
        )
        .bind(lock_timeout)
        .execute(&mut *tx)
        .await?;
        let held = match wait {
            None => {
                sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))")
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?
            }
            Some(_) => {
                match sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                    .bind(key)
                    .execute(&mut *tx)
                    .await
                {
                    Ok(_) => true,
                    Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("55P03") => false,
                    Err(other) => return Err(other),
                }
            }
        };
        Ok(held.then_some(Lease { tx }))
    }
}
