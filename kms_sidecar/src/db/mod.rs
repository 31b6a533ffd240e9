//! The sidecar's Postgres adapter. Every traveler-scoped transaction runs as
//! `parker_wallet_sidecar` with the traveler's verified claims and the caller's
//! request headers set, exactly as PostgREST would: RLS applies to the sidecar
//! too, and the audit trail records who asked and from where. [`lease`]: the
//! booking saga's cross-process locks.

mod lease;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

use crate::domain::{RequestMeta, Traveler};
use crate::metrics::{timed, CallOutcome};

pub use lease::Lease;
use lease::LEASE_WAIT_LIMIT;

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

    /// A transaction on a pooled connection; the wait for the connection is
    /// counted as the `postgres_pool` dependency.
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        timed("postgres_pool", self.pool.begin(), |begun| match begun {
            Ok(_) => CallOutcome::Ok,
            Err(sqlx::Error::PoolTimedOut) => CallOutcome::Timeout,
            Err(_) => CallOutcome::Failed,
        })
        .await
    }

    pub async fn check(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop)
    }

    /// A transaction as `parker_wallet_sidecar` acting for no traveler: RLS shows it
    /// nothing; it can only call the functions granted to the role.
    pub async fn as_system(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT set_config('role', 'parker_wallet_sidecar', true)").execute(&mut *tx).await?;
        Ok(tx)
    }

    /// A transaction acting for `traveler`, as role `parker_wallet_sidecar`.
    pub async fn as_traveler(
        &self,
        traveler: &Traveler,
        meta: &RequestMeta,
    ) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let tx = self.begin().await?;
        Self::act_for(tx, traveler, meta, None).await
    }

    /// The same, holding the traveler's `scope` lock ([`lock_traveler`]) from
    /// its first statement: a round trip fewer for each change that takes it.
    pub async fn as_traveler_locked(
        &self,
        traveler: &Traveler,
        meta: &RequestMeta,
        scope: &str,
    ) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let tx = self.begin().await?;
        Self::act_for(tx, traveler, meta, Some(scope)).await
    }

    /// The same, reading one REPEATABLE READ snapshot and writing nothing.
    pub async fn snapshot_as_traveler(
        &self,
        traveler: &Traveler,
        meta: &RequestMeta,
    ) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        Self::act_for(tx, traveler, meta, None).await
    }

    async fn act_for(
        mut tx: Transaction<'static, Postgres>,
        traveler: &Traveler,
        meta: &RequestMeta,
        lock_scope: Option<&str>,
    ) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut headers = serde_json::Map::new();
        if let Some(forwarded) = &meta.forwarded_for {
            headers.insert("x-forwarded-for".into(), json!(forwarded));
        }
        if let Some(agent) = &meta.user_agent {
            headers.insert("user-agent".into(), json!(agent));
        }
        let settings = "SELECT set_config('role', 'parker_wallet_sidecar', true),
                               set_config('request.jwt.claims', $1, true),
                               set_config('request.headers', $2, true)";
        let statement = match lock_scope {
            None => settings.to_owned(),
            Some(_) => format!("{settings}, {}", traveler_lock("$3", "$4")),
        };
        let mut query = sqlx::query(&statement)
            .bind(traveler.claims.to_string())
            .bind(serde_json::Value::Object(headers).to_string());
        if let Some(scope) = lock_scope {
            query = query.bind(scope).bind(traveler.user_id);
        }
        query.execute(&mut *tx).await?;
        Ok(tx)
    }
}

/// Why an operator command refuses a role that RLS applies to.
pub const OPERATOR_UNDER_RLS: &str =
    "the operator's role must pass row-level security (BYPASSRLS, as the migrations' role has)";

/// Whether the connection's role passes row-level security (superuser or
/// BYPASSRLS). Operator commands that must see every traveler's rows check it
/// first: under RLS they would see none and report nothing to do.
pub async fn passes_rls(conn: &mut sqlx::PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT rolsuper OR rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user")
        .fetch_one(conn)
        .await
}

/// A transaction lock on one traveler's `scope` (`wallet`, `phone`...): their
/// requests in that scope queue, other travelers' do not.
pub async fn lock_traveler(tx: &mut sqlx::PgConnection, scope: &str, user_id: uuid::Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("SELECT {}", traveler_lock("$1", "$2"))).bind(scope).bind(user_id).execute(tx).await?;
    Ok(())
}

/// The lock of one traveler's scope, its two parameters as the statement numbers them.
fn traveler_lock(scope: &str, user_id: &str) -> String {
    format!("pg_advisory_xact_lock(hashtextextended('parker_wallet.' || {scope} || ':' || {user_id}::text, 0))")
}

/// A [`BeforeCommit`] write under way.
pub type Writing<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'a>>;

/// What a change's caller writes in the change's own transaction, just before
/// it commits: kept exactly when the change is (a route's idempotent answer),
/// without a transaction of its own.
pub trait BeforeCommit<T: ?Sized>: Send + Sync {
    fn write<'a>(&'a self, tx: &'a mut sqlx::PgConnection, outcome: &'a T) -> Writing<'a>;
}
