//! The audit trail against its own database's owner (issue 14): each attack the
//! hash chain alone cannot show (a chain cut back or deleted, a row edited and
//! the chain re-hashed to its end, checkpoints deleted or forged, an edit passed
//! off as an erasure) is reported by `kms-sidecar audit-verify` once a
//! KMS-signed checkpoint exists; an untouched trail reports nothing; an
//! erasure's redaction verifies. On both database templates, against moto's KMS.

use std::process::Output;

use harness::{Emulators, SidecarConfig, Template, TestDb};
use kms_sidecar::audit::checkpoint::heads_digest;
use kms_sidecar::audit::{Checkpoint, CheckpointLog};
use kms_sidecar::config::AuditSettings;
use serde_json::Value;
use uuid::Uuid;

/// A migrated database, a sidecar configuration with an audit signing key on
/// moto, and the checkpoint log in a directory of the test's own.
struct Trail {
    db: TestDb,
    config: SidecarConfig,
    dir: tempfile::TempDir,
    travelers: Vec<Uuid>,
}

/// What `audit-verify` (or `audit-checkpoint`) printed, and how it exited.
struct Run {
    code: Option<i32>,
    findings: Vec<Value>,
    summary: String,
}

impl Run {
    /// The reason code of each finding, in the order printed.
    fn reasons(&self) -> Vec<String> {
        self.findings.iter().map(|f| f["reason"].as_str().unwrap_or_default().to_owned()).collect()
    }
}

impl Trail {
    /// Three travelers with a few audited writes each.
    async fn new(template: Template) -> anyhow::Result<Self> {
        let emulators = Emulators::from_env()?;
        let (data_key, _) = emulators.create_kms_key().await?;
        let signing_key_id = emulators.create_signing_key().await?;
        let dir = tempfile::Builder::new().prefix("pw-audit-").tempdir()?;
        let mut config = SidecarConfig { admin_port: None, ..emulators.kms_sidecar_config(&data_key)? };
        config.settings.audit = Some(AuditSettings {
            signing_key_id,
            checkpoint_log: dir.path().join("checkpoints.jsonl"),
            checkpoint_interval_secs: 3_600,
        });
        let trail = Self { db: TestDb::migrated_on(template).await?, config, dir, travelers: vec![] };
        let travelers = (0..3).map(|_| Uuid::new_v4()).collect::<Vec<_>>();
        for traveler in &travelers {
            trail.writes(*traveler, 3).await?;
        }
        Ok(Self { travelers, ..trail })
    }

    /// Ordinary audited writes for `traveler`, as a request would make them.
    async fn writes(&self, traveler: Uuid, renames: usize) -> anyhow::Result<()> {
        let mut conn = self.db.admin().await?;
        let claims = serde_json::json!({ "sub": traveler, "role": "authenticated" }).to_string();
        let mut sql = format!(
            "BEGIN;
             SELECT set_config('request.jwt.claims', '{claims}', true);
             SELECT set_config('request.headers', '{{\"x-forwarded-for\":\"203.0.113.9\",\"user-agent\":\"parker-app/3\"}}', true);
             INSERT INTO auth.users (id) VALUES ('{traveler}') ON CONFLICT DO NOTHING;
             INSERT INTO traveler_profiles (user_id, first_name) VALUES ('{traveler}', 'Ada')
               ON CONFLICT (user_id) DO UPDATE SET first_name = excluded.first_name || '!';"
        );
        for n in 0..renames {
            sql.push_str(&format!(
                "UPDATE traveler_profiles SET last_name = 'Lovelace {n}' WHERE user_id = '{traveler}';"
            ));
        }
        sql.push_str("COMMIT;");
        sqlx::raw_sql(&sql).execute(&mut conn).await?;
        Ok(())
    }

    /// What the database's owner can do: any SQL, past the append-only guard.
    async fn as_owner(&self, sql: &str) -> anyhow::Result<()> {
        sqlx::raw_sql(sql).execute(&mut self.db.admin().await?).await?;
        Ok(())
    }

    fn command(&self, args: &[&str]) -> anyhow::Result<Run> {
        let output: Output = self
            .config
            .command(self.dir.path(), args)?
            .env("DATABASE_URL", self.db.url(harness::OPERATOR)?)
            .output()?;
        let stdout = String::from_utf8(output.stdout)?;
        anyhow::ensure!(
            matches!(output.status.code(), Some(0 | 2)),
            "{args:?} failed: {}{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        let findings = stdout.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()).collect();
        let summary = stdout.lines().last().unwrap_or_default().to_owned();
        Ok(Run { code: output.status.code(), findings, summary })
    }

    fn checkpoint(&self) -> anyhow::Result<Run> {
        self.command(&["audit-checkpoint"])
    }

    fn verify(&self) -> anyhow::Result<Run> {
        self.command(&["audit-verify"])
    }

    /// Findings of the chains checked against themselves only (no checkpoint):
    /// all that could be known before signed checkpoints.
    async fn chains_alone(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM wallet.verify_audit_chain(ARRAY[]::uuid[], ARRAY[]::bigint[], ARRAY[]::bytea[])",
        )
        .fetch_one(&mut self.db.admin().await?)
        .await?)
    }

    fn log(&self) -> CheckpointLog {
        CheckpointLog::new(self.dir.path().join("checkpoints.jsonl"))
    }

    /// A clean checkpoint and a clean verification: the ground the attacks start from.
    fn checkpointed(&self) -> anyhow::Result<()> {
        let taken = self.checkpoint()?;
        anyhow::ensure!(taken.code == Some(0), "checkpoint: {}", taken.summary);
        let verified = self.verify()?;
        anyhow::ensure!(verified.code == Some(0) && verified.findings.is_empty(), "verify: {:?}", verified.findings);
        Ok(())
    }
}

/// Rewrites `traveler`'s chain from row 2 to its end with correct hashes and
/// links, as only the table's owner could: an edit the chain alone cannot show.
fn rehash_from_second_row(traveler: Uuid) -> String {
    format!(
        "UPDATE traveler_data_audit SET new_data = new_data || '{{\"first_name\": \"Mallory\"}}'
          WHERE user_id = '{traveler}' AND chain_seq = 2;
         DO $$
         DECLARE
           r record;
           previous bytea;
         BEGIN
           FOR r IN SELECT * FROM traveler_data_audit WHERE user_id = '{traveler}' ORDER BY chain_seq LOOP
             IF r.chain_seq >= 2 THEN
               UPDATE traveler_data_audit SET prev_hash = previous,
                      row_hash = wallet.audit_row_hash_v2(previous, r.id, r.user_id, r.chain_seq, r.action, r.table_name,
                        r.record_id, r.actor, (extract(epoch FROM r.created_at) * 1000000)::bigint,
                        wallet.audit_personal_digest(r.personal_salt, r.old_data::text, r.new_data::text, r.ip_address::text, r.user_agent))
                WHERE id = r.id RETURNING row_hash INTO previous;
             ELSE
               previous := r.row_hash;
             END IF;
           END LOOP;
         END
         $$;"
    )
}

async fn a_chain_cut_back_or_deleted_is_reported(template: Template) -> anyhow::Result<()> {
    let trail = Trail::new(template).await?;
    trail.checkpointed()?;
    let [a, b, c] = [trail.travelers[0], trail.travelers[1], trail.travelers[2]];
    trail.writes(a, 2).await?; // growing past the checkpoint is what chains do
    assert!(trail.verify()?.findings.is_empty());

    trail
        .as_owner(&format!(
            "DELETE FROM traveler_data_audit WHERE user_id = '{b}'
               AND chain_seq > (SELECT max(chain_seq) - 2 FROM traveler_data_audit WHERE user_id = '{b}');
             DELETE FROM traveler_data_audit WHERE user_id = '{c}';"
        ))
        .await?;
    let internal = trail.chains_alone().await?;
    assert_eq!(internal, 0, "the chains alone do not show it");
    let verified = trail.verify()?;
    assert_eq!(verified.code, Some(2), "{}", verified.summary);
    let mut found: Vec<(String, String)> = verified
        .findings
        .iter()
        .map(|f| {
            (f["reason"].as_str().unwrap_or_default().to_owned(), f["user_id"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    found.sort();
    assert_eq!(found, [("chain_truncated".into(), b.to_string()), ("chain_vanished".into(), c.to_string())]);

    // The next checkpoint does not bless it: the departed heads are kept, and said.
    let next = trail.checkpoint()?;
    assert_eq!((next.code, next.findings.len()), (Some(2), 2), "{}", next.summary);
    assert_eq!(trail.verify()?.reasons().len(), 2);
    Ok(())
}

async fn an_edit_rehashed_to_the_end_is_reported(template: Template) -> anyhow::Result<()> {
    let trail = Trail::new(template).await?;
    trail.checkpointed()?;
    let a = trail.travelers[0];
    trail.as_owner(&rehash_from_second_row(a)).await?;
    let internal = trail.chains_alone().await?;
    assert_eq!(internal, 0, "the rewritten chain is consistent in itself");
    // A superuser can make the database's own walk lie; the auditor's does not use it.
    sqlx::raw_sql(
        "CREATE OR REPLACE FUNCTION wallet.verify_audit_chain(head_users uuid[], head_seqs bigint[], head_hashes bytea[])
           RETURNS TABLE (id uuid, user_id uuid, chain_seq bigint, reason text)
           LANGUAGE sql AS $$ SELECT NULL::uuid, NULL::uuid, NULL::bigint, NULL::text WHERE false $$",
    )
    .execute(&mut trail.db.superuser().await?)
    .await?;
    let verified = trail.verify()?;
    assert_eq!(verified.reasons(), ["head_rehashed"]);
    assert_eq!(verified.findings[0]["user_id"], a.to_string());
    assert_eq!(verified.code, Some(2));
    Ok(())
}

async fn checkpoints_deleted_or_forged_are_reported(template: Template) -> anyhow::Result<()> {
    let trail = Trail::new(template).await?;
    trail.checkpointed()?;
    trail.writes(trail.travelers[1], 1).await?;
    assert_eq!(trail.checkpoint()?.code, Some(0));

    // Forged: a third checkpoint that vouches for a chain cut back, with a
    // correct digest but no KMS signature, in the table and even in the log.
    let b = trail.travelers[1];
    trail
        .as_owner(&format!(
            "DELETE FROM traveler_data_audit WHERE user_id = '{b}'
               AND chain_seq = (SELECT max(chain_seq) FROM traveler_data_audit WHERE user_id = '{b}')"
        ))
        .await?;
    let mut conn = trail.db.admin().await?;
    let heads: Vec<(Uuid, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT DISTINCT ON (user_id) user_id, chain_seq, row_hash FROM traveler_data_audit ORDER BY user_id, chain_seq DESC",
    )
    .fetch_all(&mut conn)
    .await?;
    let heads: Vec<kms_sidecar::audit::Head> = heads
        .into_iter()
        .map(|(user_id, chain_seq, row_hash)| kms_sidecar::audit::Head { user_id, chain_seq, row_hash })
        .collect();
    let second = trail.log().newest()?.unwrap();
    let mut forged = Checkpoint {
        seq: 3,
        created_at: chrono::DateTime::from_timestamp_micros(chrono::Utc::now().timestamp_micros()).unwrap(),
        head_count: heads.len() as i64,
        heads_digest: heads_digest(&heads).to_vec(),
        prev_digest: second.digest.clone(),
        digest: vec![],
        signature: vec![0x30; 70],
        ..second.clone()
    };
    forged.digest = forged.expected_digest().to_vec();
    // Stored as audit-checkpoint would, without the key.
    kms_sidecar::audit::checkpoint::store(&mut conn, &forged, &heads).await?;
    let unlogged = trail.verify()?;
    assert_eq!(unlogged.reasons(), ["checkpoint_unlogged", "chain_truncated"], "{:?}", unlogged.findings);

    trail.log().append(&forged, &heads)?;
    let unsigned = trail.verify()?;
    assert_eq!(unsigned.reasons(), ["checkpoint_signature_invalid", "chain_truncated"], "{:?}", unsigned.findings);
    assert!(unsigned.summary.contains("checked against checkpoint 2"), "{}", unsigned.summary);
    assert!(trail.checkpoint().is_err(), "no checkpoint on top of a forged one");

    // Altered: a traveler's checkpointed head moved back in the table.
    let fresh = Trail::new(template).await?;
    fresh.checkpointed()?;
    fresh
        .as_owner(
            "UPDATE audit_checkpoint_heads SET chain_seq = chain_seq - 1
              WHERE user_id = (SELECT user_id FROM audit_checkpoint_heads ORDER BY user_id LIMIT 1)",
        )
        .await?;
    assert_eq!(fresh.verify()?.reasons(), ["checkpoint_heads_altered"]);
    assert!(fresh.checkpoint().is_err(), "no checkpoint on top of altered heads");
    // A time no checkpoint was taken at is reported, not a crash of the command.
    fresh.as_owner("UPDATE audit_checkpoints SET created_at = 'infinity'").await?;
    assert_eq!(fresh.verify()?.reasons(), ["checkpoint_altered", "checkpoint_altered", "checkpoint_heads_altered"]);

    // Deleted: every checkpoint gone from the table; the log still has them.
    fresh.as_owner("DELETE FROM audit_checkpoint_heads; DELETE FROM audit_checkpoints;").await?;
    let deleted = fresh.verify()?;
    assert_eq!(deleted.reasons(), ["checkpoint_deleted", "checkpoint_heads_altered"], "{:?}", deleted.findings);
    assert_eq!(deleted.code, Some(2));
    // The next checkpoint puts the logged one back (as after a commit that
    // failed once the log was written), says so, and builds on it.
    let healed = fresh.checkpoint()?;
    assert_eq!(
        (healed.code, healed.reasons()),
        (Some(2), vec!["checkpoint_restored".to_owned()]),
        "{}",
        healed.summary
    );
    let clean = fresh.verify()?;
    assert!(clean.findings.is_empty() && clean.summary.contains("checkpoint 2"), "{:?}", clean.findings);
    Ok(())
}

async fn an_erasure_verifies_and_an_edit_passed_off_as_one_does_not(template: Template) -> anyhow::Result<()> {
    let trail = Trail::new(template).await?;
    trail.checkpointed()?;
    let [a, b] = [trail.travelers[0], trail.travelers[1]];
    let redacted = trail.command(&["audit-redact", "--user-id", &a.to_string(), "--reason", "erasure request 7"])?;
    assert!(redacted.summary.contains("row(s) redacted, recorded and signed"), "{}", redacted.summary);
    let clean = trail.verify()?;
    assert_eq!((clean.code, clean.reasons().len()), (Some(0), 0), "{:?}", clean.findings);
    assert!(clean.summary.contains("1 redaction(s)"), "{}", clean.summary);
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM traveler_data_audit WHERE user_id = $1
            AND (new_data::text ~ 'Ada|Lovelace' OR old_data::text ~ 'Ada|Lovelace' OR ip_address IS NOT NULL)",
    )
    .bind(a)
    .fetch_one(&mut trail.db.admin().await?)
    .await?;
    assert_eq!(leaked, 0, "personal data left in the trail after erasure");
    assert_eq!(trail.checkpoint()?.code, Some(0), "a redaction moves the chain on, it does not depart from it");

    // Tampering after the redaction, and a redaction nobody signed.
    trail
        .as_owner(&format!(
            "UPDATE traveler_data_audit SET action = 'DELETE' WHERE user_id = '{a}' AND chain_seq = 2;
             SELECT wallet.redact_audit('{b}', 'no erasure was requested');"
        ))
        .await?;
    let tampered = trail.verify()?;
    assert_eq!(tampered.reasons(), ["content_changed", "redaction_unsigned"], "{:?}", tampered.findings);
    assert_eq!(tampered.findings[0]["user_id"], a.to_string());
    assert_eq!(tampered.findings[1]["user_id"], b.to_string());

    // A forged signature on it, and a break after it in the same chain: the
    // break must not spare the forged redaction its signature check.
    let key_id = trail.config.settings.audit.as_ref().map(|a| a.signing_key_id.clone()).unwrap_or_default();
    trail
        .as_owner(&format!(
            "INSERT INTO audit_redaction_signatures (audit_id, key_id, signing_algorithm, signature)
             SELECT id, '{key_id}', 'ECDSA_SHA_256', decode(repeat('30', 70), 'hex')
               FROM traveler_data_audit WHERE user_id = '{b}' AND action = 'REDACT';
             UPDATE traveler_data_audit SET action = 'DELETE' WHERE user_id = '{b}' AND chain_seq = 1;"
        ))
        .await?;
    let forged = trail.verify()?;
    let mut found: Vec<(String, String)> = forged
        .findings
        .iter()
        .map(|f| {
            (f["user_id"].as_str().unwrap_or_default().to_owned(), f["reason"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    found.sort();
    let mut expected = vec![
        (a.to_string(), "content_changed".to_owned()),
        (b.to_string(), "content_changed".to_owned()),
        (b.to_string(), "redaction_signature_invalid".to_owned()),
    ];
    expected.sort();
    assert_eq!(found, expected, "{:?}", forged.findings);
    Ok(())
}

async fn an_untouched_trail_reports_nothing_after_a_long_run(template: Template) -> anyhow::Result<()> {
    let trail = Trail::new(template).await?;
    let travelers: Vec<Uuid> = (0..40).map(|_| Uuid::new_v4()).collect();
    for round in 0..3 {
        for traveler in &travelers {
            trail.writes(*traveler, 2 + round).await?;
        }
        let taken = trail.checkpoint()?;
        assert_eq!(taken.code, Some(0), "{}", taken.summary);
    }
    let verified = trail.verify()?;
    assert_eq!((verified.code, verified.reasons().len()), (Some(0), 0), "{:?}", verified.findings);
    assert!(verified.summary.contains("checked against checkpoint 3 (43 heads)"), "{}", verified.summary);
    let in_database: i64 = sqlx::query_scalar("SELECT count(*) FROM wallet.verify_audit_chain()")
        .fetch_one(&mut trail.db.admin().await?)
        .await?;
    assert_eq!(in_database, 0);
    Ok(())
}

harness::on_both_templates!(
    a_chain_cut_back_or_deleted_is_reported,
    an_edit_rehashed_to_the_end_is_reported,
    checkpoints_deleted_or_forged_are_reported,
    an_erasure_verifies_and_an_edit_passed_off_as_one_does_not,
    an_untouched_trail_reports_nothing_after_a_long_run,
);
