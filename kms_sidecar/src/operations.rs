//! What the database knows about running the wallet (migration 0017): the
//! scheduled jobs' last runs, recorded by the jobs themselves, and the money
//! figures, counted from the booking tables at scrape time so that every
//! process's work adds up (the routes, the reconcile command, other replicas).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::bookings::saga::{classify_decline, DeclineKind};
use crate::config::BookingSettings;
use crate::db::Database;
use crate::metrics::Family;

/// The figures' query is a scan of the booking tables: bounded, so that a slow
/// database slows no scrape past it.
const FIGURES_TIMEOUT: Duration = Duration::from_secs(2);

/// The scheduled jobs (deploy/systemd), by the names `job_runs` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Reconcile,
    PurgeIdempotencyKeys,
    AuditCheckpoint,
    AuditVerify,
    RotateKeys,
    ErasePending,
}

impl Job {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reconcile => "reconcile",
            Self::PurgeIdempotencyKeys => "purge_idempotency_keys",
            Self::AuditCheckpoint => "audit_checkpoint",
            Self::AuditVerify => "audit_verify",
            Self::RotateKeys => "rotate_keys",
            Self::ErasePending => "erase_pending",
        }
    }
}

/// Records a finished run with the command's exit code (0 clean, 2 findings,
/// 1 failed), for `parker_wallet_job_*` and the alerts on them. On the
/// operator's connection: the serving sidecar's role may not record runs.
pub async fn record_run(
    conn: &mut sqlx::PgConnection,
    job: Job,
    started_at: DateTime<Utc>,
    exit_code: u8,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT wallet_internal.record_job_run($1, $2, $3)")
        .bind(job.as_str())
        .bind(started_at)
        .bind(i32::from(exit_code))
        .execute(conn)
        .await
        .map(drop)
}

/// The database's figures as metric families; an error when the database did
/// not answer in time (the scrape goes on without them).
pub async fn figures(database: &Database, policy: &BookingSettings) -> Result<Vec<Family>, String> {
    let read = async {
        let mut tx = database.as_system().await?;
        // The server stops the scan too, and the connection goes back free.
        sqlx::query("SET LOCAL statement_timeout = 1900").execute(&mut *tx).await?;
        let rows: Vec<(String, String, f64)> =
            sqlx::query_as("SELECT metric, label, value FROM wallet_internal.operations_figures($1, $2)")
                .bind(i32::try_from(policy.capture_window_hours).unwrap_or(i32::MAX))
                .bind(i32::try_from(policy.alert_before_hours).unwrap_or(i32::MAX))
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(rows)
    };
    match tokio::time::timeout(FIGURES_TIMEOUT, read).await {
        Ok(Ok(rows)) => Ok(families(&rows)),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {FIGURES_TIMEOUT:?}")),
    }
}

/// A declined booking's failure code, grouped for a dashboard: the saga's own
/// codes as they are, Stripe's by the saga's own classification.
pub fn decline_class(failure_code: &str) -> &'static str {
    match failure_code {
        "authentication_expired" => "authentication_expired",
        "consent_withdrawn" => "consent_withdrawn",
        "no_usable_card" => "no_usable_card",
        code => match classify_decline(None, Some(code)) {
            DeclineKind::Fraud => "fraud",
            DeclineKind::Authentication => "authentication_required",
            DeclineKind::Hard => "card",
        },
    }
}

const DECLINE_CLASSES: [&str; 6] =
    ["card", "fraud", "authentication_required", "authentication_expired", "consent_withdrawn", "no_usable_card"];

fn families(rows: &[(String, String, f64)]) -> Vec<Family> {
    let of = |metric: &str, label: &str| -> Vec<(String, f64)> {
        rows.iter()
            .filter(|(m, _, _)| m == metric)
            .map(|(_, value, figure)| {
                (if label.is_empty() { String::new() } else { format!("{{{label}=\"{value}\"}}") }, *figure)
            })
            .collect()
    };
    let mut declines: Vec<(String, f64)> =
        DECLINE_CLASSES.iter().map(|class| (format!("{{class=\"{class}\"}}"), 0.0)).collect();
    for (_, code, count) in rows.iter().filter(|(m, _, _)| m == "declines") {
        let labels = format!("{{class=\"{}\"}}", decline_class(code));
        if let Some((_, total)) = declines.iter_mut().find(|(l, _)| *l == labels) {
            *total += count;
        }
    }
    vec![
        Family::gauge(
            "parker_wallet_bookings",
            "Bookings in each state now (from the database).",
            of("bookings", "state"),
        ),
        Family::gauge(
            "parker_wallet_bookings_near_capture_deadline",
            "Authorizations not yet settled whose capture deadline is within bookings.alert_before_hours.",
            of("bookings_near_capture_deadline", ""),
        ),
        Family::counter(
            "parker_wallet_payments_total",
            "Bookings that ever reached each money event (authorized, captured, voided, refunded, \
             backup_card_used, three_ds_requested/completed/expired), from the database.",
            of("payments", "event"),
        ),
        Family::counter("parker_wallet_payment_declines_total", "Declined bookings, by class.", declines),
        Family::gauge(
            "parker_wallet_job_last_success_timestamp_seconds",
            "When each scheduled job last ran to its end (0: never).",
            of("job_last_success_timestamp", "job"),
        ),
        Family::gauge(
            "parker_wallet_job_last_run_timestamp_seconds",
            "When each scheduled job last finished, however it ended (0: never).",
            of("job_last_run_timestamp", "job"),
        ),
        Family::gauge(
            "parker_wallet_job_last_exit_code",
            "Each scheduled job's last exit code: 0 clean, 2 findings for a person, 1 failed to run.",
            of("job_last_exit_code", "job"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declines_are_grouped_by_the_sagas_classification() {
        assert_eq!(decline_class("insufficient_funds"), "card");
        assert_eq!(decline_class("stolen_card"), "fraud");
        assert_eq!(decline_class("authentication_required"), "authentication_required");
        assert_eq!(decline_class("authentication_expired"), "authentication_expired");
        assert_eq!(decline_class("consent_withdrawn"), "consent_withdrawn");
        assert!(DECLINE_CLASSES.contains(&decline_class("anything_new")));
    }

    #[test]
    fn figures_become_labelled_families_with_every_decline_class() {
        let rows = vec![
            ("bookings".to_owned(), "captured".to_owned(), 3.0),
            ("declines".to_owned(), "insufficient_funds".to_owned(), 2.0),
            ("declines".to_owned(), "do_not_honor".to_owned(), 1.0),
            ("job_last_exit_code".to_owned(), "reconcile".to_owned(), 2.0),
        ];
        let mut out = String::new();
        for family in families(&rows) {
            family.render(&mut out);
        }
        assert!(out.contains("parker_wallet_bookings{state=\"captured\"} 3\n"), "{out}");
        assert!(out.contains("parker_wallet_payment_declines_total{class=\"card\"} 3\n"), "{out}");
        assert!(out.contains("parker_wallet_payment_declines_total{class=\"fraud\"} 0\n"), "{out}");
        assert!(out.contains("parker_wallet_job_last_exit_code{job=\"reconcile\"} 2\n"), "{out}");
        assert!(out.contains("# TYPE parker_wallet_payments_total counter\n"), "{out}");
    }
}
