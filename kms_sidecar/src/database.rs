//! The sidecar's Postgres adapter. Every traveler-scoped transaction runs as
//! `parker_wallet_sidecar` with the traveler's verified claims and the caller's
//! request headers set, exactly as PostgREST would: RLS applies to the sidecar
//! too, and the audit trail records who asked and from where.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

use crate::auth::Traveler;

/// The caller's request as the audit trail should see it.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub forwarded_for: Option<String>,
    pub user_agent: Option<String>,
}

/// An advisory lock held for as long as this value lives. Dropping it frees
/// the lock only when the pool next touches the connection; [`Lease::release`]
/// frees it now.
#[derive(Debug)]
pub struct Lease {
    tx: Transaction<'static, Postgres>,
}

/// The longest anyone queues for a lease connection.
const LEASE_WAIT_LIMIT: Duration = Duration::from_secs(60);
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

#[derive(Debug, Clone)]
pub struct Database {
    pool: PgPool,
    /// Connections that only hold booking leases: a saga holding its lease for
    /// the length of a Duffel call must not starve the pool its steps write through.
    leases: PgPool,
}

impl Database {
    /// A lazy pool: the sidecar starts even while the database is down
    /// (/readyz says so).
    pub fn connect_lazy(url: &SecretString, max_connections: u32) -> Result<Self, sqlx::Error> {
        let options = |wait| PgPoolOptions::new().max_connections(max_connections).acquire_timeout(wait);
        let pool = options(Duration::from_secs(5)).connect_lazy(url.expose_secret())?;
        // Each lease is held for a whole saga step (a Duffel order may take
        // tens of seconds): a burst of more bookings than connections waits
        // its turn, for as long as the caller of `lease` is willing to.
        // The pool's own limit lies past any caller's: a caller that waited its
        // fill hears `Ok(None)` from `lease`, never the pool's timeout error.
        let leases = options(LEASE_WAIT_LIMIT + Duration::from_secs(5)).connect_lazy(url.expose_secret())?;
        Ok(Self { pool, leases })
    }

    pub async fn check(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop)
    }

    /// A transaction as `parker_wallet_sidecar` acting for no traveler: RLS shows it
    /// nothing; it can only call the functions granted to the role.
    pub async fn as_system(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT set_config('role', 'parker_wallet_sidecar', true)").execute(&mut *tx).await?;
        Ok(tx)
    }

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
        // A server-side idle timeout would free the lock behind the holder's back.
        sqlx::query("SET LOCAL idle_in_transaction_session_timeout = 0").execute(&mut *tx).await?;
        let held = match wait {
            None => {
                sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))")
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?
            }
            Some(wait) => {
                sqlx::query(&format!("SET LOCAL lock_timeout = '{}ms'", wait.as_millis().max(1)))
                    .execute(&mut *tx)
                    .await?;
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

    /// A transaction acting for `traveler`, as role `parker_wallet_sidecar`.
    pub async fn as_traveler(
        &self,
        traveler: &Traveler,
        meta: &RequestMeta,
    ) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut headers = serde_json::Map::new();
        if let Some(forwarded) = &meta.forwarded_for {
            headers.insert("x-forwarded-for".into(), json!(forwarded));
        }
        if let Some(agent) = &meta.user_agent {
            headers.insert("user-agent".into(), json!(agent));
        }
        sqlx::query(
            "SELECT set_config('role', 'parker_wallet_sidecar', true),
                    set_config('request.jwt.claims', $1, true),
                    set_config('request.headers', $2, true)",
        )
        .bind(traveler.claims.to_string())
        .bind(serde_json::Value::Object(headers).to_string())
        .execute(&mut *tx)
        .await?;
        Ok(tx)
    }
}
