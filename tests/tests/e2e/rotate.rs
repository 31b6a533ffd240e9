//! `kms-sidecar rotate-keys`: every sealed column (one list,
//! `kms_sidecar::domain::SEALED_COLUMNS`) moves to a new key epoch and then to
//! a new KMS key, in batches; a second run finds nothing left to do; and once
//! the old key is retired from the configuration, everything still reads.

use std::process::Command;

use base64::Engine;
use harness::{Emulators, Sidecar, SidecarConfig, TestDb};
use hyper::StatusCode;
use kms_sidecar::crypto::format;
use kms_sidecar::domain::SEALED_COLUMNS;
use serde_json::json;

const B64: base64::engine::general_purpose::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const ROWS_PER_COLUMN: usize = 3;

/// Runs `rotate-keys` (all columns) with the configuration of `sidecar`.
fn rotate(sidecar: &Sidecar, config: &SidecarConfig, db: &TestDb, epoch: u32) -> anyhow::Result<String> {
    let output = Command::new(std::env::var("PW_SIDECAR_BIN")?)
        .args(["rotate-keys", "--batch-size", "2", "--config"])
        .arg(sidecar.dir().join("sidecar.toml"))
        .envs(config.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PW__KEYS__EPOCH", epoch.to_string())
        .env("DATABASE_URL", db.url("postgres")?)
        .output()?;
    anyhow::ensure!(output.status.success(), "rotate-keys failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8(output.stdout)?)
}

/// Every sealed record in the database: (table, column, row id, owner, record).
async fn sealed_records(
    db: &TestDb,
) -> anyhow::Result<Vec<(&'static str, &'static str, uuid::Uuid, uuid::Uuid, Vec<u8>)>> {
    let mut conn = db.admin().await?;
    let mut all = Vec::new();
    for sealed in SEALED_COLUMNS {
        let rows: Vec<(uuid::Uuid, uuid::Uuid, Vec<u8>)> =
            sqlx::query_as(&format!("SELECT id, user_id, {} FROM public.{} ORDER BY id", sealed.column, sealed.table))
                .fetch_all(&mut conn)
                .await?;
        all.extend(rows.into_iter().map(|(id, user, record)| (sealed.table, sealed.column, id, user, record)));
    }
    Ok(all)
}

fn context(table: &str, column: &str, id: uuid::Uuid, user: uuid::Uuid) -> serde_json::Value {
    json!({ "user_id": user, "table": table, "column": column, "record_id": id })
}

/// Decrypts every sealed record through `sidecar` and checks its plaintext.
async fn read_everything(sidecar: &Sidecar, db: &TestDb) -> anyhow::Result<()> {
    for (table, column, id, user, record) in sealed_records(db).await? {
        let opened = sidecar.crypto("decrypt", &B64.encode(&record), &context(table, column, id, user)).await?;
        anyhow::ensure!(opened.status == StatusCode::OK, "{table}.{column} {id}: {}", opened.text);
        assert_eq!(B64.decode(opened.json["data"].as_str().unwrap_or_default())?, format!("{table} {id}").as_bytes());
    }
    Ok(())
}

#[tokio::test]
async fn every_sealed_column_rotates_to_a_new_epoch_and_key_and_the_old_key_retires() -> anyhow::Result<()> {
    let emulators = Emulators::from_env()?;
    let (old_alias, old_arn) = emulators.create_kms_key().await?;
    let (new_alias, new_arn) = emulators.create_kms_key().await?;
    let db = TestDb::migrated().await?;
    let mut conn = db.admin().await?;
    let campaign = uuid::Uuid::new_v4();
    sqlx::raw_sql(&format!(
        "INSERT INTO auth.users (id) VALUES ('{ALICE}');
         INSERT INTO wallet_customers (user_id, stripe_customer_id) VALUES ('{ALICE}', 'cus_rot');
         INSERT INTO campaigns (id, user_id, name) VALUES ('{campaign}', '{ALICE}', 'rotation');"
    ))
    .execute(&mut conn)
    .await?;

    // rotate-keys reads the sidecars' own files: no admin port (its token is the harness's).
    let kms_config = |alias: &str| -> anyhow::Result<SidecarConfig> {
        Ok(SidecarConfig { admin_port: None, ..emulators.kms_sidecar_config(alias)? })
    };
    let old_config = kms_config(&old_alias)?;
    let old = Sidecar::start_with(old_config.clone()).await?;
    for n in 0..ROWS_PER_COLUMN {
        for sealed in SEALED_COLUMNS {
            let id = uuid::Uuid::new_v4();
            let user = uuid::Uuid::parse_str(ALICE)?;
            let plaintext = format!("{} {id}", sealed.table);
            let encrypted =
                old.crypto("encrypt", &B64.encode(&plaintext), &context(sealed.table, sealed.column, id, user)).await?;
            anyhow::ensure!(encrypted.status == StatusCode::OK, "{}", encrypted.text);
            let record = B64.decode(encrypted.json["data"].as_str().unwrap_or_default())?;
            let insert = match sealed.table {
                "payment_methods" => "INSERT INTO payment_methods (id, user_id, stripe_customer_id, stripe_payment_method_id, encrypted_card_data)
                                      VALUES ($1, $2, 'cus_rot', 'pm_rot' || $4::text, $3)",
                "booking_charges" => "INSERT INTO booking_charges (id, user_id, campaign_id, idempotency_key, request_fingerprint,
                                        offer_id, passengers_sealed, amount, currency, state)
                                      VALUES ($1, $2, $5, 'key-' || $4::text, '\\x00', 'off_rot', $3, 100, 'eur', 'captured')",
                other => anyhow::bail!("this test has no row shape for the sealed table {other}: add one"),
            };
            sqlx::query(insert)
                .bind(id)
                .bind(user)
                .bind(&record)
                .bind(n.to_string())
                .bind(campaign)
                .execute(&mut conn)
                .await?;
        }
    }
    let before = sealed_records(&db).await?;
    assert_eq!(before.len(), ROWS_PER_COLUMN * SEALED_COLUMNS.len());

    // A new epoch, same key: every column, in batches.
    let output = rotate(&old, &old_config, &db, 2)?;
    for sealed in SEALED_COLUMNS {
        let line = format!(
            "rotate-keys {}.{}: {ROWS_PER_COLUMN} examined, {ROWS_PER_COLUMN} rewrapped",
            sealed.table, sealed.column
        );
        assert!(output.contains(&line), "{output}");
    }
    for (.., record) in sealed_records(&db).await? {
        let envelope = format::parse(&record)?;
        assert_eq!((envelope.key_ref, envelope.key_epoch), (old_arn.as_str(), 2));
    }
    drop(old);

    // A new KMS key; the old one listed as retired while the records move.
    let mut moving = kms_config(&new_alias)?;
    moving.settings.keys.retired_key_refs = vec![old_arn.clone()];
    moving.settings.keys.epoch = 2;
    let during = Sidecar::start_with(moving.clone()).await?;
    read_everything(&during, &db).await?;
    let output = rotate(&during, &moving, &db, 2)?;
    assert!(output.contains(&format!("{ROWS_PER_COLUMN} examined, {ROWS_PER_COLUMN} rewrapped")), "{output}");
    let again = rotate(&during, &moving, &db, 2)?;
    assert_eq!(
        again.matches(&format!("{ROWS_PER_COLUMN} examined, 0 rewrapped")).count(),
        SEALED_COLUMNS.len(),
        "{again}"
    );
    drop(during);

    // The old key retired: everything reads; a record still under it does not,
    // and KMS is not asked about it.
    let mut retired = kms_config(&new_alias)?;
    retired.settings.keys.epoch = 2;
    let after = Sidecar::start_with(retired).await?;
    read_everything(&after, &db).await?;
    for (.., record) in sealed_records(&db).await? {
        assert_eq!(format::parse(&record)?.key_ref, new_arn);
    }
    let (table, column, id, user, stale) = &before[0];
    let refused = after.crypto("decrypt", &B64.encode(stale), &context(table, column, *id, *user)).await?;
    assert_eq!(
        (refused.status, refused.json["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("key_not_accepted"))
    );
    Ok(())
}

#[tokio::test]
async fn only_listed_columns_can_be_named() -> anyhow::Result<()> {
    let sidecar = Sidecar::start().await?;
    let db = TestDb::migrated().await?;
    let output = Command::new(std::env::var("PW_SIDECAR_BIN")?)
        .args(["rotate-keys", "--table", "booking_charges", "--column", "route", "--config"])
        .arg(sidecar.dir().join("sidecar.toml"))
        .env("DATABASE_URL", db.url("postgres")?)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("booking_charges.route is not a sealed column"), "{stderr}");
    assert!(stderr.contains("booking_charges.passengers_sealed"), "{stderr}");
    Ok(())
}
