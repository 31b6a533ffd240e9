//! Reversible schema migrations: `NNNN_name.up.sql` with its `NNNN_name.down.sql`.
//!
//! Each migration runs in its own transaction together with its bookkeeping row,
//! so a failed migration leaves nothing behind. An advisory lock keeps two
//! migrators from interleaving. Bookkeeping lives in its own schema so that it is
//! never exposed through PostgREST's `public` schema.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};

/// Arbitrary but fixed: "parker_wallet.migrate" as a 64-bit advisory lock key.
const MIGRATION_LOCK_KEY: i64 = 0x5057_4d49_4752_4154;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot read migrations directory {dir}: {source}")]
    ReadDir { dir: PathBuf, source: std::io::Error },
    #[error("file {0:?} is not named NNNN_name.up.sql or NNNN_name.down.sql")]
    BadFileName(String),
    #[error("migration {version} has no {missing} file: every migration must be reversible")]
    Unpaired { version: i64, missing: &'static str },
    #[error("migrations {first:?} and {second:?} share version {version}")]
    DuplicateVersion { version: i64, first: String, second: String },
    #[error("migration {version} ({name}) was edited after it was applied; add a new migration instead")]
    ChecksumMismatch { version: i64, name: String },
    #[error("the database has migration {0} applied but no file for it exists here")]
    UnknownApplied(i64),
    #[error("migration {version} ({name}) {direction} failed: {source}")]
    Apply { version: i64, name: String, direction: &'static str, source: sqlx::Error },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i64,
    pub name: String,
    up_sql: String,
    down_sql: String,
    checksum: Vec<u8>,
}

/// A migration and, when applied, the time it was applied.
#[derive(Debug)]
pub struct MigrationStatus {
    pub version: i64,
    pub name: String,
    pub applied_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

/// Splits `0003_wallet_tables.up.sql` into (3, "wallet_tables", Up).
fn parse_file_name(file_name: &str) -> Result<(i64, String, Direction), MigrateError> {
    let bad = || MigrateError::BadFileName(file_name.to_owned());
    let (stem, direction) = if let Some(stem) = file_name.strip_suffix(".up.sql") {
        (stem, Direction::Up)
    } else if let Some(stem) = file_name.strip_suffix(".down.sql") {
        (stem, Direction::Down)
    } else {
        return Err(bad());
    };
    let (digits, name) = stem.split_once('_').ok_or_else(bad)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
        return Err(bad());
    }
    let version = digits.parse().map_err(|_| bad())?;
    Ok((version, name.to_owned(), direction))
}

/// Reads and pairs every migration in `dir`, ordered by version. Files that do
/// not end in `.sql` (a README) are ignored.
pub fn load(dir: &Path) -> Result<Vec<Migration>, MigrateError> {
    let read_error = |source| MigrateError::ReadDir { dir: dir.to_owned(), source };
    let mut halves: BTreeMap<i64, (String, Option<String>, Option<String>)> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if !file_name.ends_with(".sql") {
            continue;
        }
        let (version, name, direction) = parse_file_name(&file_name)?;
        let sql = std::fs::read_to_string(&path).map_err(read_error)?;
        let slot = halves.entry(version).or_insert_with(|| (name.clone(), None, None));
        if slot.0 != name {
            return Err(MigrateError::DuplicateVersion { version, first: slot.0.clone(), second: name });
        }
        let half = match direction {
            Direction::Up => &mut slot.1,
            Direction::Down => &mut slot.2,
        };
        if half.replace(sql).is_some() {
            return Err(MigrateError::DuplicateVersion { version, first: name.clone(), second: name });
        }
    }
    halves
        .into_iter()
        .map(|(version, (name, up, down))| {
            let up_sql = up.ok_or(MigrateError::Unpaired { version, missing: "up" })?;
            let down_sql = down.ok_or(MigrateError::Unpaired { version, missing: "down" })?;
            let checksum = Sha256::digest(up_sql.as_bytes()).to_vec();
            Ok(Migration { version, name, up_sql, down_sql, checksum })
        })
        .collect()
}

pub struct Migrator {
    migrations: Vec<Migration>,
}

impl Migrator {
    pub fn from_dir(dir: &Path) -> Result<Self, MigrateError> {
        Ok(Self { migrations: load(dir)? })
    }

    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// Applies pending migrations up to `target` (all when `None`); returns the versions applied.
    pub async fn up(&self, conn: &mut PgConnection, target: Option<i64>) -> Result<Vec<i64>, MigrateError> {
        lock(conn).await?;
        let result = self.up_locked(conn, target).await;
        unlock(conn).await?;
        result
    }

    /// Reverts applied migrations newer than `target`, newest first; `0` reverts all.
    pub async fn down(&self, conn: &mut PgConnection, target: i64) -> Result<Vec<i64>, MigrateError> {
        lock(conn).await?;
        let result = self.down_locked(conn, target).await;
        unlock(conn).await?;
        result
    }

    pub async fn status(&self, conn: &mut PgConnection) -> Result<Vec<MigrationStatus>, MigrateError> {
        ensure_bookkeeping(conn).await?;
        let applied: BTreeMap<i64, chrono::DateTime<chrono::Utc>> =
            sqlx::query_as::<_, (i64, chrono::DateTime<chrono::Utc>)>(
                "SELECT version, applied_at FROM parker_migrations.applied",
            )
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
        Ok(self
            .migrations
            .iter()
            .map(|m| MigrationStatus {
                version: m.version,
                name: m.name.clone(),
                applied_at: applied.get(&m.version).copied(),
            })
            .collect())
    }

    async fn up_locked(&self, conn: &mut PgConnection, target: Option<i64>) -> Result<Vec<i64>, MigrateError> {
        let applied = self.verified_applied(conn).await?;
        let mut done = Vec::new();
        for migration in &self.migrations {
            if applied.contains_key(&migration.version) || target.is_some_and(|t| migration.version > t) {
                continue;
            }
            self.apply(conn, migration, Direction::Up).await?;
            done.push(migration.version);
        }
        Ok(done)
    }

    async fn down_locked(&self, conn: &mut PgConnection, target: i64) -> Result<Vec<i64>, MigrateError> {
        let applied = self.verified_applied(conn).await?;
        let mut done = Vec::new();
        for migration in self.migrations.iter().rev() {
            if migration.version <= target || !applied.contains_key(&migration.version) {
                continue;
            }
            self.apply(conn, migration, Direction::Down).await?;
            done.push(migration.version);
        }
        Ok(done)
    }

    /// Applied versions with their checksums, refusing edited or unknown migrations.
    async fn verified_applied(&self, conn: &mut PgConnection) -> Result<BTreeMap<i64, Vec<u8>>, MigrateError> {
        let applied: BTreeMap<i64, Vec<u8>> =
            sqlx::query_as::<_, (i64, Vec<u8>)>("SELECT version, checksum FROM parker_migrations.applied")
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect();
        for (version, checksum) in &applied {
            let Some(migration) = self.migrations.iter().find(|m| m.version == *version) else {
                return Err(MigrateError::UnknownApplied(*version));
            };
            if &migration.checksum != checksum {
                return Err(MigrateError::ChecksumMismatch { version: *version, name: migration.name.clone() });
            }
        }
        Ok(applied)
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        migration: &Migration,
        direction: Direction,
    ) -> Result<(), MigrateError> {
        let (sql, label) = match direction {
            Direction::Up => (&migration.up_sql, "up"),
            Direction::Down => (&migration.down_sql, "down"),
        };
        let apply_error = |source| MigrateError::Apply {
            version: migration.version,
            name: migration.name.clone(),
            direction: label,
            source,
        };
        let mut tx = conn.begin().await?;
        sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(apply_error)?;
        let bookkeeping = match direction {
            Direction::Up => {
                sqlx::query("INSERT INTO parker_migrations.applied (version, name, checksum) VALUES ($1, $2, $3)")
                    .bind(migration.version)
                    .bind(&migration.name)
                    .bind(&migration.checksum)
            }
            Direction::Down => {
                sqlx::query("DELETE FROM parker_migrations.applied WHERE version = $1").bind(migration.version)
            }
        };
        bookkeeping.execute(&mut *tx).await?;
        tx.commit().await.map_err(apply_error)?;
        tracing::info!(version = migration.version, name = %migration.name, direction = label, "migration applied");
        Ok(())
    }
}

/// Serializes migrators; a session lock, so a crashed migrator releases it.
async fn lock(conn: &mut PgConnection) -> Result<(), MigrateError> {
    sqlx::query("SELECT pg_advisory_lock($1)").bind(MIGRATION_LOCK_KEY).execute(&mut *conn).await?;
    ensure_bookkeeping(conn).await
}

async fn unlock(conn: &mut PgConnection) -> Result<(), MigrateError> {
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK_KEY).execute(&mut *conn).await?;
    Ok(())
}

async fn ensure_bookkeeping(conn: &mut PgConnection) -> Result<(), MigrateError> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('parker_migrations.applied') IS NOT NULL").fetch_one(&mut *conn).await?;
    if exists {
        return Ok(());
    }
    sqlx::raw_sql(
        "CREATE SCHEMA IF NOT EXISTS parker_migrations;
         CREATE TABLE IF NOT EXISTS parker_migrations.applied (
             version    bigint PRIMARY KEY,
             name       text NOT NULL,
             checksum   bytea NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        std::fs::write(dir.join(name), body).unwrap();
    }

    #[test]
    fn parses_names() {
        assert_eq!(parse_file_name("0003_wallet.up.sql").unwrap(), (3, "wallet".into(), Direction::Up));
        assert_eq!(parse_file_name("12_a_b.down.sql").unwrap(), (12, "a_b".into(), Direction::Down));
        for bad in ["wallet.up.sql", "0003.up.sql", "0003_x.sql", "x3_y.up.sql", "0003_.up.sql"] {
            assert!(parse_file_name(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn loads_pairs_in_version_order_and_ignores_non_sql() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "0002_b.up.sql", "select 2");
        write(dir.path(), "0002_b.down.sql", "select -2");
        write(dir.path(), "0001_a.up.sql", "select 1");
        write(dir.path(), "0001_a.down.sql", "select -1");
        write(dir.path(), "README.md", "notes");
        let migrations = load(dir.path()).unwrap();
        let versions: Vec<_> = migrations.iter().map(|m| (m.version, m.name.as_str())).collect();
        assert_eq!(versions, [(1, "a"), (2, "b")]);
    }

    #[test]
    fn refuses_a_migration_without_its_down() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "0001_a.up.sql", "select 1");
        match load(dir.path()) {
            Err(MigrateError::Unpaired { version: 1, missing: "down" }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn refuses_two_names_for_one_version() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["0001_a.up.sql", "0001_a.down.sql", "0001_b.up.sql", "0001_b.down.sql"] {
            write(dir.path(), name, "select 1");
        }
        assert!(matches!(load(dir.path()), Err(MigrateError::DuplicateVersion { version: 1, .. })));
    }
}
