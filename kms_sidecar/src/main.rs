//! `kms-sidecar`: serve the socket, or run an operator command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sqlx::Connection;

use kms_sidecar::audit::{CheckpointLog, KmsSigner};
use kms_sidecar::config::{AuditSettings, Secrets, Settings};
use kms_sidecar::migrate::Migrator;
use kms_sidecar::operations::{self, Job};
use kms_sidecar::privacy::PrivacyError;
use kms_sidecar::{db, rotate, server, telemetry};

#[derive(Parser)]
#[command(name = "kms-sidecar", version, about = "Parker Wallet's KMS and payments sidecar")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the settings come from: a TOML file, `PW__SECTION__KEY` variables, flags.
#[derive(clap::Args, Clone)]
struct ConfigArgs {
    /// TOML settings file (see docs/sidecar.md, "Running").
    #[arg(long, env = "PW_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides socket.path.
    #[arg(long)]
    socket: Option<PathBuf>,
}

impl ConfigArgs {
    fn load(&self) -> anyhow::Result<(Settings, Secrets)> {
        let overrides: Vec<(&str, String)> =
            self.socket.iter().map(|s| ("socket.path", s.display().to_string())).collect();
        let settings = Settings::load_with(self.config.as_deref(), &overrides)?;
        let secrets = Secrets::load(&settings)?;
        Ok((settings, secrets))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API on the Unix socket until SIGTERM.
    Serve(ConfigArgs),
    /// Re-encrypt sealed records under the current key, epoch and format, in
    /// batches: every sealed column, or the one named.
    RotateKeys {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, requires = "column")]
        table: Option<String>,
        #[arg(long, requires = "table")]
        column: Option<String>,
        #[arg(long, default_value_t = 500)]
        batch_size: i64,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// One pass over unsettled bookings: re-query Stripe and Duffel, drive each
    /// to a final state or report it (3-D Secure left undone past its window
    /// is expired); flag authorizations near their capture deadline. Prints
    /// one JSON line per booking; exits 2 when any needs a person.
    Reconcile {
        #[command(flatten)]
        config: ConfigArgs,
        /// Leave bookings younger than this to their live requests
        /// (default: bookings.reconcile_after_secs).
        #[arg(long)]
        min_age_secs: Option<i64>,
    },
    /// Print the TypeScript the Edge Functions import (supabase/functions/_shared/api.ts):
    /// the API's request and answer types and one client function per route,
    /// generated from the sidecar's own types. With --schema, their JSON Schema.
    ApiTypes {
        #[arg(long)]
        schema: bool,
    },
    /// Delete the stored answers of expired Idempotency-Keys (kept 24 hours).
    PurgeIdempotencyKeys {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Sign every audit chain's head through KMS; write the checkpoint to the
    /// database and append it to audit.checkpoint_log. Exits 2 when a chain no
    /// longer holds its checkpointed head (audit-verify says more).
    AuditCheckpoint {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Check the checkpoints' signatures and log, every chain against the newest
    /// valid checkpoint, every redaction's signature. Prints one JSON line per
    /// finding; exits 2 when there is any.
    AuditVerify {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Erasure's part in the audit trail: remove a traveler's personal data from
    /// their chain, record and sign the redaction.
    AuditRedact {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long)]
        user_id: uuid::Uuid,
        /// Why (an erasure request's reference): kept in the redaction row.
        #[arg(long)]
        reason: String,
    },
    /// Carry out erasures (GDPR art. 17): `--user ID` records one as the
    /// operator (refused while a booking's money is in flight) and carries it
    /// out; `--pending` carries out every one not completed (run it from cron).
    /// Resumes where an earlier run stopped. Prints one JSON line per traveler;
    /// exits 2 when one is held back (money in flight, or an `auth.users` row
    /// only Supabase Auth may delete), 1 when one failed (the others still run).
    Erase {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long, conflicts_with = "pending", required_unless_present = "pending")]
        user: Option<uuid::Uuid>,
        #[arg(long)]
        pending: bool,
    },
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

/// How a command that ran to its end went.
enum Outcome {
    Clean,
    Findings,
}

impl From<()> for Outcome {
    fn from((): ()) -> Self {
        Outcome::Clean
    }
}

impl Outcome {
    /// The exit code: 0 clean, 2 findings for a person, 1 failed to run.
    fn exit_code(result: &anyhow::Result<Outcome>) -> u8 {
        match result {
            Ok(Outcome::Clean) => 0,
            Ok(Outcome::Findings) => 2,
            Err(_) => 1,
        }
    }
}

/// The scheduled job (deploy/systemd) a command runs as, if it is one.
fn scheduled_job(command: &Command) -> Option<Job> {
    match command {
        Command::Reconcile { .. } => Some(Job::Reconcile),
        Command::PurgeIdempotencyKeys { .. } => Some(Job::PurgeIdempotencyKeys),
        Command::AuditCheckpoint { .. } => Some(Job::AuditCheckpoint),
        Command::AuditVerify { .. } => Some(Job::AuditVerify),
        Command::RotateKeys { table: None, .. } => Some(Job::RotateKeys),
        Command::Erase { pending: true, .. } => Some(Job::ErasePending),
        _ => None,
    }
}

/// Records a job's run on the operator's connection (`DATABASE_URL`, which
/// every job's unit has), never the serving sidecar's role.
async fn record_job(job: Job, started_at: chrono::DateTime<chrono::Utc>, exit_code: u8) -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| anyhow::anyhow!("recording the run needs the operator's DATABASE_URL"))?;
    operations::record_run(&mut connect(&url).await?, job, started_at, exit_code).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init();
    kms_sidecar::tls::ensure_provider();
    let command = match Cli::try_parse() {
        Ok(cli) => cli.command,
        // Not clap's own 2 for a usage error: 2 means a run with findings.
        Err(error) if error.use_stderr() => {
            let _ = error.print();
            return ExitCode::from(64);
        }
        Err(help_or_version) => {
            let _ = help_or_version.print();
            return ExitCode::SUCCESS;
        }
    };
    let job = scheduled_job(&command);
    let started_at = chrono::Utc::now();
    let result = match command {
        Command::Serve(config) => serve(config).await.map(Outcome::from),
        Command::RotateKeys { config, table, column, batch_size, database_url } => {
            rotate_keys(config, table.as_deref(), column.as_deref(), batch_size, &database_url).await.map(Outcome::from)
        }
        Command::Reconcile { config, min_age_secs } => reconcile(config, min_age_secs).await,
        Command::PurgeIdempotencyKeys { config: _, database_url } => {
            purge_idempotency_keys(&database_url).await.map(Outcome::from)
        }
        Command::Migrate { action, dir, database_url } => migrate(action, &dir, database_url).await.map(Outcome::from),
        Command::AuditCheckpoint { config, database_url } => audit_checkpoint(config, &database_url).await,
        Command::AuditVerify { config, database_url } => audit_verify(config, &database_url).await,
        Command::AuditRedact { config, database_url, user_id, reason } => {
            audit_redact(config, &database_url, user_id, &reason).await
        }
        Command::Erase { config, database_url, user, pending: _ } => erase(config, &database_url, user).await,
        Command::ApiTypes { schema } => {
            let printed = if schema {
                serde_json::to_string_pretty(&kms_sidecar::routes::api::json_schema()).map(|text| text + "\n")
            } else {
                Ok(kms_sidecar::routes::api::typescript())
            };
            printed.map(|text| print!("{text}")).map_err(anyhow::Error::from).map(Outcome::from)
        }
    };
    let mut exit_code = Outcome::exit_code(&result);
    if let Err(error) = &result {
        eprintln!("kms-sidecar: {error:#}");
    }
    if let Some(job) = job {
        // A run nobody can see is a failed run: its findings would reach no alert.
        if let Err(error) = record_job(job, started_at, exit_code).await {
            eprintln!("kms-sidecar: the {} run was not recorded: {error:#}", job.as_str());
            exit_code = 1;
        }
    }
    // 2: something to look at (the job's alert fires on it), as opposed to a failure to run.
    ExitCode::from(exit_code)
}

async fn connect(database_url: &str) -> anyhow::Result<sqlx::PgConnection> {
    sqlx::PgConnection::connect(database_url).await.map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))
}

/// A connection for an operator command that must see every traveler's rows.
async fn connect_operator(database_url: &str) -> anyhow::Result<sqlx::PgConnection> {
    let mut conn = connect(database_url).await?;
    anyhow::ensure!(db::passes_rls(&mut conn).await?, db::OPERATOR_UNDER_RLS);
    Ok(conn)
}

async fn purge_idempotency_keys(database_url: &str) -> anyhow::Result<()> {
    let mut conn = connect_operator(database_url).await?;
    let purged: i64 =
        sqlx::query_scalar("SELECT wallet_internal.purge_expired_idempotency_keys()").fetch_one(&mut conn).await?;
    println!("purge-idempotency-keys: {purged} expired answer(s) deleted");
    Ok(())
}

async fn serve(config: ConfigArgs) -> anyhow::Result<()> {
    let (settings, secrets) = config.load()?;
    // Safe to log whole: secrets print as [REDACTED] (a test holds this).
    tracing::info!(?settings, ?secrets, "starting kms-sidecar");
    let state = server::build_state(settings, secrets).await?;
    server::serve(state, server::termination_signal()).await?;
    Ok(())
}

async fn rotate_keys(
    config: ConfigArgs,
    table: Option<&str>,
    column: Option<&str>,
    batch_size: i64,
    database_url: &str,
) -> anyhow::Result<()> {
    let columns = rotate::columns(table, column)?;
    let (settings, secrets) = config.load()?;
    let state = server::build_state(settings, secrets).await?;
    let mut conn = connect_operator(database_url).await?;
    for sealed in columns {
        let report = rotate::rotate_column(&mut conn, &state.crypto, sealed, batch_size).await?;
        println!(
            "rotate-keys {}.{}: {} examined, {} rewrapped, {} changed meanwhile (run again)",
            sealed.table, sealed.column, report.examined, report.rewrapped, report.skipped_changed
        );
    }
    Ok(())
}

async fn reconcile(config: ConfigArgs, min_age_secs: Option<i64>) -> anyhow::Result<Outcome> {
    let (settings, secrets) = config.load()?;
    let state = server::build_state(settings, secrets).await?;
    let ports = state
        .booking_ports()
        .ok_or_else(|| anyhow::anyhow!("reconcile needs [database], [stripe] and [duffel] in the configuration"))?;
    let min_age = min_age_secs.unwrap_or(state.settings.bookings.reconcile_after_secs);
    let report = kms_sidecar::bookings::reconcile::run(ports, min_age).await?;
    for line in &report.lines {
        println!("{}", serde_json::to_string(line)?);
    }
    println!(
        "reconcile: {} examined, {} settled, {} busy, {} alert(s)",
        report.examined,
        report.settled,
        report.busy,
        report.alerts()
    );
    Ok(if report.alerts() == 0 { Outcome::Clean } else { Outcome::Findings })
}

/// The audit settings, the signer on the audit key, and a database connection.
async fn audit_tools(
    config: ConfigArgs,
    database_url: &str,
) -> anyhow::Result<(AuditSettings, KmsSigner, sqlx::PgConnection)> {
    let (settings, secrets) = config.load()?;
    audit_tools_of(&settings, &secrets, database_url).await
}

async fn audit_tools_of(
    settings: &Settings,
    secrets: &Secrets,
    database_url: &str,
) -> anyhow::Result<(AuditSettings, KmsSigner, sqlx::PgConnection)> {
    let audit = settings
        .audit
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the audit commands need [audit] in the configuration"))?;
    let kms = settings
        .keys
        .aws_kms
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the audit commands reach KMS as [keys.aws_kms] says"))?;
    let signer = KmsSigner::connect(&kms.connection(&audit.signing_key_id, secrets)).await;
    let conn = connect(database_url).await?;
    Ok((audit, signer, conn))
}

async fn audit_checkpoint(config: ConfigArgs, database_url: &str) -> anyhow::Result<Outcome> {
    let (audit, signer, mut conn) = audit_tools(config, database_url).await?;
    let taken =
        kms_sidecar::audit::checkpoint::take(&mut conn, &signer, &CheckpointLog::new(&audit.checkpoint_log)).await?;
    if let Some(seq) = taken.restored {
        println!("{}", serde_json::json!({ "reason": "checkpoint_restored", "checkpoint_seq": seq }));
    }
    for head in &taken.departed {
        println!(
            "{}",
            serde_json::json!({ "reason": "head_departed", "user_id": head.user_id, "chain_seq": head.chain_seq })
        );
    }
    println!(
        "audit-checkpoint {}: {} heads ({} moved), signed by {} ({} KMS call(s)); {} chain(s) departed from their checkpointed head",
        taken.checkpoint.seq,
        taken.checkpoint.head_count,
        taken.moved,
        taken.checkpoint.key_id,
        signer.calls(),
        taken.departed.len()
    );
    Ok(if taken.departed.is_empty() && taken.restored.is_none() { Outcome::Clean } else { Outcome::Findings })
}

async fn audit_verify(config: ConfigArgs, database_url: &str) -> anyhow::Result<Outcome> {
    let (audit, signer, mut conn) = audit_tools(config, database_url).await?;
    let log = CheckpointLog::new(&audit.checkpoint_log);
    let max_age = chrono::Duration::seconds(2 * i64::try_from(audit.checkpoint_interval_secs)?);
    let report = kms_sidecar::audit::verify::run(&mut conn, &signer, Some(&log), max_age, chrono::Utc::now()).await?;
    for finding in &report.findings {
        println!("{}", serde_json::to_string(finding)?);
    }
    println!(
        "audit-verify: checked against checkpoint {} ({} heads), {} redaction(s), {} KMS call(s); {} finding(s)",
        report.checkpoint.as_ref().map_or("none".to_owned(), |c| c.seq.to_string()),
        report.heads,
        report.redactions,
        signer.calls(),
        report.findings.len()
    );
    Ok(if report.findings.is_empty() { Outcome::Clean } else { Outcome::Findings })
}

async fn audit_redact(
    config: ConfigArgs,
    database_url: &str,
    user_id: uuid::Uuid,
    reason: &str,
) -> anyhow::Result<Outcome> {
    let (_, signer, mut conn) = audit_tools(config, database_url).await?;
    match kms_sidecar::audit::redact::redact(&mut conn, &signer, user_id, reason).await? {
        Some(redaction) => println!(
            "audit-redact {user_id}: {} row(s) redacted, recorded and signed as row {} ({})",
            redaction.redacted_rows, redaction.chain_seq, redaction.audit_id
        ),
        None => println!("audit-redact {user_id}: nothing left to redact"),
    }
    Ok(Outcome::Clean)
}

async fn erase(config: ConfigArgs, database_url: &str, user: Option<uuid::Uuid>) -> anyhow::Result<Outcome> {
    use kms_sidecar::privacy::erase::{self, Eraser};
    let (settings, secrets) = config.load()?;
    let (_, signer, mut conn) = audit_tools_of(&settings, &secrets, database_url).await?;
    let state = server::build_state(settings, secrets).await?;
    erase::check_operator(&mut conn).await?;
    let users = match user {
        Some(user) => {
            let mut tx = conn.begin().await?;
            match erase::request(&mut tx, user, "role:operator").await {
                Ok(_) => tx.commit().await?,
                Err(refused @ PrivacyError::MoneyInFlight(_)) => {
                    report_erasure(user, Err(refused))?;
                    return Ok(Outcome::Findings);
                }
                Err(other) => return Err(other.into()),
            }
            vec![user]
        }
        None => erase::pending(&mut conn).await?,
    };
    // One traveler's failure does not hold the others back.
    let (mut held_back, mut failed) = (false, 0);
    for user_id in users {
        let mut eraser = Eraser { conn: &mut conn, stripe: state.stripe.as_deref(), signer: &signer };
        match report_erasure(user_id, eraser.run(user_id).await) {
            Ok(Outcome::Clean) => {}
            Ok(Outcome::Findings) => held_back = true,
            Err(_) => failed += 1,
        }
    }
    match (failed, held_back) {
        (0, false) => Ok(Outcome::Clean),
        (0, true) => Ok(Outcome::Findings),
        (failed, _) => Err(anyhow::anyhow!("{failed} erasure(s) failed: the next run resumes them")),
    }
}

/// One JSON line for a traveler's erasure, with the time (for the log kept
/// outside the database, re-applied after a restore); `Findings` when it was
/// held back, an error when it failed.
fn report_erasure(
    user_id: uuid::Uuid,
    outcome: Result<kms_sidecar::privacy::erase::Stage, PrivacyError>,
) -> anyhow::Result<Outcome> {
    let at = chrono::Utc::now();
    let (mut line, verdict) = match outcome {
        Ok(stage) => (serde_json::json!({ "state": stage.as_str() }), Ok(Outcome::Clean)),
        Err(PrivacyError::MoneyInFlight(bookings)) => {
            (serde_json::json!({ "refused": "money_in_flight", "bookings": bookings }), Ok(Outcome::Findings))
        }
        Err(PrivacyError::AuthUserRemains) => {
            (serde_json::json!({ "waiting_for": "auth_user_deletion" }), Ok(Outcome::Findings))
        }
        Err(PrivacyError::InProgress) => (serde_json::json!({ "waiting_for": "another_run" }), Ok(Outcome::Findings)),
        Err(other) => {
            let message = other.to_string();
            (serde_json::json!({ "error": message }), Err(anyhow::anyhow!(message)))
        }
    };
    line["user_id"] = serde_json::json!(user_id);
    line["at"] = serde_json::json!(at);
    println!("{line}");
    verdict
}

async fn migrate(action: MigrateAction, dir: &std::path::Path, database_url: Option<String>) -> anyhow::Result<()> {
    let migrator = Migrator::from_dir(dir)?;
    let url = database_url.ok_or_else(|| anyhow::anyhow!("set DATABASE_URL or --database-url"))?;
    let mut conn = connect(&url).await?;
    match action {
        MigrateAction::Up { to } => {
            let applied = migrator.up(&mut conn, to).await?;
            println!("applied {} migration(s): {applied:?}", applied.len());
        }
        MigrateAction::Down { to } => {
            let newest_applied =
                migrator.status(&mut conn).await?.iter().filter(|m| m.applied_at.is_some()).map(|m| m.version).max();
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
