//! `kms-sidecar`: serve the socket, or run an operator command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sqlx::Connection;

use kms_sidecar::config::ServeConfig;
use kms_sidecar::migrate::Migrator;
use kms_sidecar::{server, telemetry};

#[derive(Parser)]
#[command(name = "kms-sidecar", version, about = "Parker Wallet's KMS and payments sidecar")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API on the Unix socket until SIGTERM.
    Serve(ServeConfig),
    /// Apply or revert the schema migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
        /// Directory holding NNNN_name.up.sql / .down.sql files.
        #[arg(long, env = "PW_MIGRATIONS_DIR", default_value = "migrations", global = true)]
        dir: PathBuf,
        /// Database to migrate, e.g. postgres://postgres@localhost/app?host=/run/postgresql
        #[arg(long, env = "DATABASE_URL", global = true)]
        database_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Apply pending migrations (up to --to, when given).
    Up {
        #[arg(long)]
        to: Option<i64>,
    },
    /// Revert migrations newer than --to (default: only the newest one; 0 reverts all).
    Down {
        #[arg(long)]
        to: Option<i64>,
    },
    /// List migrations and when each was applied.
    Status,
}

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init();
    let result = match Cli::parse().command {
        Command::Serve(config) => server::serve(&config, server::termination_signal())
            .await
            .map_err(anyhow::Error::from),
        Command::Migrate { action, dir, database_url } => migrate(action, &dir, database_url).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kms-sidecar: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(action: MigrateAction, dir: &std::path::Path, database_url: Option<String>) -> anyhow::Result<()> {
    let migrator = Migrator::from_dir(dir)?;
    let url = database_url.ok_or_else(|| anyhow::anyhow!("set DATABASE_URL or --database-url"))?;
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))?;
    match action {
        MigrateAction::Up { to } => {
            let applied = migrator.up(&mut conn, to).await?;
            println!("applied {} migration(s): {applied:?}", applied.len());
        }
        MigrateAction::Down { to } => {
            let newest_applied = migrator
                .status(&mut conn)
                .await?
                .iter()
                .filter(|m| m.applied_at.is_some())
                .map(|m| m.version)
                .max();
            let Some(newest) = newest_applied else {
                println!("nothing to revert");
                return Ok(());
            };
            let target = to.unwrap_or_else(|| {
                migrator.migrations().iter().map(|m| m.version).filter(|v| *v < newest).max().unwrap_or(0)
            });
            let reverted = migrator.down(&mut conn, target).await?;
            println!("reverted {} migration(s): {reverted:?}", reverted.len());
        }
        MigrateAction::Status => {
            for status in migrator.status(&mut conn).await? {
                let when = status.applied_at.map_or_else(|| "pending".to_owned(), |t| t.to_rfc3339());
                println!("{:04} {:<32} {when}", status.version, status.name);
            }
        }
    }
    conn.close().await.ok();
    Ok(())
}
